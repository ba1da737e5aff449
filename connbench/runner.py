"""Run a scenario: one throwaway Postgres, then each strategy in turn. Ctrl-C is handled here.

Interrupts, in one place:

- outside the measurement (starting Postgres or an app): the first Ctrl-C (or SIGTERM) unwinds
  every ``with`` block in reverse order, stopping what was started; further ones are ignored
  while that cleanup runs.
- during the measurement: the first stops the load generator gracefully (no new requests,
  those in flight awaited), so the strategy's partial numbers are kept; a second abandons it.

Either way what was measured is saved with ``"interrupted": true`` and the run exits 130.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import httpx

from connbench.analyse import capacity, limits, stats
from connbench.apps import STRATEGIES
from connbench.infra import appserver, pgbouncer, postgres, tempdirs
from connbench.measure import calibrate, faults, load, sampler
from connbench.measure.load import LoadConfig, Progress
from connbench.model import results
from connbench.model.errors import ProcessError
from connbench.model.result_types import LimitRecord, VariantRecord
from connbench.model.results import RunResult, StrategyResult
from connbench.model.scenario import Scenario, Variant

CALIBRATE_MAX_S = 5.0
CONTROL_APP = "connbench-control"  # application_name of the runner's own connection
STATS_TIMEOUT_S = 10.0  # the app answers its timing totals behind the requests it is serving


class Reporter(Protocol):
    def note(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def strategy_started(self, label: str, index: int, count: int, total_s: float) -> None: ...
    def progress(self, p: Progress) -> None: ...
    def strategy_finished(self, result: StrategyResult) -> None: ...


class Interrupts:
    """SIGINT/SIGTERM policy for a run (see the module docstring)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, note: Callable[[str], None]) -> None:
        self.count = 0
        self._note = note
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._sync_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _sync_handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        self._note("interrupted: still cleaning up, please wait")

    def attach(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        task = asyncio.current_task()

        def on_signal() -> None:
            self.count += 1
            if self.count == 1:
                self._note(
                    "interrupted: finishing the requests in flight (Ctrl-C again to abandon)"
                )
                stop.set()
            elif self.count == 2 and task is not None:
                task.cancel()
            else:
                self._note("interrupted: still cleaning up, please wait")

        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, on_signal)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in self.SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, self._sync_handler)


@dataclass
class _Measured:
    raw: load.RawLoad
    samples: sampler.Samples
    pool_samples: sampler.PoolSamples | None
    cpu_percent: dict[str, float | None]
    injected: faults.Injected | None = None
    app_stats: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # by edge

    @property
    def connects(self) -> int:
        """Sessions connbench opened while measuring (not the app's)."""
        return self.samples.connects + (self.injected.connects if self.injected else 0)


def execute(
    scenario: Scenario, reporter: Reporter, output: Path | None, calibrate_first: bool = False
) -> tuple[RunResult, Path]:
    """Run every strategy of ``scenario``, save the result, return it and where it went.

    Raises the domain errors of :mod:`connbench.infra.postgres` when the server cannot be had;
    an app that fails is recorded as failed and the run goes on.
    """
    run = results.new_run(scenario.to_dict())
    path = output or results.default_path(run)
    backend = postgres.parse_backend(scenario.postgres)
    plan = round_plan(scenario.variants(), scenario.repeat)
    for stale in tempdirs.remove_stale():
        reporter.note(f"removed {stale}, left by a connbench that was killed")
    try:
        with Interrupts(reporter.note) as interrupts, ExitStack() as stack:
            tmp = tempdirs.make("run")
            stack.callback(tempdirs.remove, tmp)
            try:
                reporter.note(f"starting PostgreSQL ({backend.label}) ...")
                with postgres.start(backend, settings=scenario.server) as pg:
                    run.environment.postgres = results.postgres_info(
                        pg.backend, pg.version, pg.settings, pg.display_dsn
                    )
                    reporter.note(f"PostgreSQL {pg.version} at {pg.display_dsn}")
                    _warn_before(scenario, pg, reporter)
                    if calibrate_first:
                        reporter.note("calibrating: generator ceiling, pgbench with and without -C")
                        run.calibration = calibrate.measure(
                            pg,
                            concurrency=scenario.concurrency[0],
                            duration_s=min(scenario.duration_s, CALIBRATE_MAX_S),
                            engine=scenario.engine,
                        )
                    for index, (repeat, position, variant) in enumerate(plan, 1):
                        label = variant.key if len(plan) > 1 else variant.strategy
                        if scenario.repeat > 1:
                            label += f" #{repeat + 1}"
                        reporter.strategy_started(
                            label, index, len(plan), scenario.warmup_s + scenario.duration_s
                        )
                        result = _run_variant(
                            pg, variant, repeat, scenario, interrupts, tmp, reporter.progress
                        )
                        result.position = position
                        run.results.append(result)
                        reporter.strategy_finished(result)
                        if interrupts.count:
                            raise KeyboardInterrupt
            except (KeyboardInterrupt, asyncio.CancelledError):
                run.interrupted = True
    finally:
        run.summary = stats.aggregate(run.results)
        run.limits = [LimitRecord(**asdict(v)) for v in limits.check(scenario.fail_if, run.summary)]
        results.save(run, path)
    return run, path


def round_plan(variants: list[Variant], rounds: int) -> list[tuple[int, int, Variant]]:
    """(round, position in the round, variant) in the order they run.

    Interleaved, so that drift over the run hits every variant alike, and the order reversed
    every other round (A B, B A, A B, ...), so that neither side of an A/B pair always runs
    first: a paired comparison's rounds then cancel what the position costs (a warmer cache,
    a neighbour that starts or stops between the two).
    """
    plan: list[tuple[int, int, Variant]] = []
    for repeat in range(rounds):
        order = variants if repeat % 2 == 0 else variants[::-1]
        plan.extend((repeat, position, v) for position, v in enumerate(order))
    return plan


def _max_connections(pg: postgres.Postgres) -> int | None:
    value = pg.settings.get("max_connections", "")
    return int(value) if value.isdigit() else None


def _warn_before(scenario: Scenario, pg: postgres.Postgres, reporter: Reporter) -> None:
    """Say up front what will not fit or not run, rather than after minutes of runs."""
    max_connections = _max_connections(pg)
    if max_connections is not None:
        for variant in scenario.variants():
            strategy = STRATEGIES[variant.strategy]
            prediction = capacity.predict(strategy, variant, scenario.pgbouncer_pool_size)
            message = capacity.warning(variant.key, prediction, max_connections)
            if message:
                reporter.warn(message)
    for topology in scenario.topology:
        reason = pgbouncer.unavailable(topology)
        if reason:
            reporter.warn(f"{reason}: the {topology} variants will be reported as unavailable")


def _run_variant(
    pg: postgres.Postgres,
    variant: Variant,
    repeat: int,
    scenario: Scenario,
    interrupts: Interrupts,
    tmp: Path,
    on_progress: Callable[[Progress], None],
) -> StrategyResult:
    strategy = STRATEGIES[variant.strategy]
    unavailable = pgbouncer.unavailable(variant.topology)
    if unavailable:
        return StrategyResult(
            strategy=strategy.name,
            variant=VariantRecord.model_validate(variant.to_dict()),
            repeat=repeat,
            status="unavailable",
            failure=unavailable,
        )
    pool_min, pool_maxes = scenario.effective_pool
    predicted = capacity.predict(strategy, variant, scenario.pgbouncer_pool_size)
    log_path = tmp / f"{strategy.name}-{len(list(tmp.iterdir()))}.log"
    with ExitStack() as stack:
        control = stack.enter_context(pg.connect(application_name=CONTROL_APP))
        pg.reset_table(control)
        sessions_before = sampler.sessions_counter(control)
        try:
            with (
                pgbouncer.route(
                    pg,
                    variant.topology,
                    pool_size=scenario.pgbouncer_pool_size,
                    max_client_conn=capacity.max_client_conn(strategy, variant),
                    conn=control,
                ) as route,
                appserver.start(
                    strategy,
                    route.dsn,
                    pg.table,
                    appserver.AppConfig(
                        pool_min=variant.pool_min if variant.pool_min is not None else pool_min,
                        pool_max=variant.pool_max or pool_maxes[0],
                        workers=variant.workers,
                        prepare_threshold=route.prepare_threshold,
                        # Each uvicorn worker would keep its own totals; connbench reads one.
                        instrument=variant.workers == 1,
                    ),
                    log_path,
                ) as app,
            ):
                measured = _measure(
                    app, pg, route.bouncer, variant, scenario, interrupts, on_progress
                )
                died = app.exit_code()
                app_log = app.log_tail()
        except ProcessError as exc:
            return StrategyResult(
                strategy=strategy.name,
                variant=VariantRecord.model_validate(variant.to_dict()),
                repeat=repeat,
                status="failed",
                failure=str(exc),
            )
        connects = measured.connects
        if measured.injected is not None and measured.injected.restarted:
            # The restart cut our session: one more of ours for the count to discount.
            control = stack.enter_context(pg.connect(application_name=CONTROL_APP))
            connects += 1
        sampler.wait_for_app_sessions_to_end(control)
        sessions_after = sampler.sessions_counter(control)
        rows = pg.count_rows(control)
    opened = None
    if sessions_before is not None and sessions_after is not None:
        opened = sessions_after - sessions_before - connects
    result = stats.summarize(
        strategy=strategy.name,
        variant=VariantRecord.model_validate(variant.to_dict()),
        repeat=repeat,
        raw=measured.raw,
        samples=measured.samples,
        sessions_opened=opened,
        rows_inserted=rows,
        cpu_percent=measured.cpu_percent,
        interrupted=measured.raw.interrupted,
        predicted=predicted.to_dict(_max_connections(pg)),
        pgbouncer=route.bouncer.describe() if route.bouncer else None,
        pool_samples=measured.pool_samples,
        injected=measured.injected,
        app_stats=(measured.app_stats.get("start"), measured.app_stats.get("end")),
    )
    if died is not None:
        result.warnings.append(f"the app exited during the run (code {died}); its log:\n{app_log}")
    return result


def _measure(
    app: appserver.App,
    pg: postgres.Postgres,
    bouncer: pgbouncer.PgBouncer | None,
    variant: Variant,
    scenario: Scenario,
    interrupts: Interrupts,
    on_progress: Callable[[Progress], None],
) -> _Measured:
    config = LoadConfig(
        concurrency=variant.concurrency,
        duration_s=scenario.duration_s,
        warmup_s=scenario.warmup_s,
        timeout_s=scenario.timeout_s,
        engine=scenario.engine,
        rate_rps=variant.rate,
    )
    edges: dict[str, _Edge] = {}
    injector = faults.Injector(scenario.fault, pg) if scenario.fault else None

    def processes() -> dict[str, int | None]:
        # Read at each edge: a restart gives PostgreSQL a new process.
        found = {"app": app.pid, "postgres": pg.server_pid}
        if bouncer is not None:
            found["pgbouncer"] = bouncer.pid
        return found

    async def main() -> _Measured:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        samples = sampler.Samples()
        pool_samples = sampler.PoolSamples() if bouncer is not None else None
        reads: dict[str, asyncio.Task[dict[str, Any] | None]] = {}
        client = httpx.AsyncClient(timeout=STATS_TIMEOUT_S)

        def on_edge(name: str) -> None:
            pids = processes()
            cpu = {label: sampler.tree_cpu_s(pid) for label, pid in pids.items()}
            edges[name] = _Edge(cpu, pids, time.perf_counter())
            if app.instrumented:  # the app's timing totals at this edge, read meanwhile
                reads[name] = loop.create_task(app.read_stats(client))
            if name == "start" and injector is not None:
                injector.arm()

        interrupts.attach(loop, stop)
        watchers = [asyncio.create_task(sampler.watch(pg, samples))]
        if bouncer is not None and pool_samples is not None:
            watchers.append(asyncio.create_task(sampler.watch_pgbouncer(bouncer, pool_samples)))
        injected = None
        try:
            raw = await load.run(
                app.visit_url,
                config,
                on_progress=on_progress,
                on_edge=on_edge,
                stop=stop,
            )
            if injector is not None:
                injected = await injector.finish()
            app_stats = {name: await read for name, read in reads.items()}
        finally:
            for task in (*watchers, *reads.values()):
                task.cancel()
            await asyncio.gather(*watchers, *reads.values(), return_exceptions=True)
            await client.aclose()
            interrupts.detach(loop)
        return _Measured(
            raw, samples, pool_samples, _cpu_percent(processes(), edges), injected, app_stats
        )

    with load.new_runner() as runner:
        return runner.run(main())


@dataclass(frozen=True)
class _Edge:
    """CPU seconds used so far by each process tree at one edge of the window."""

    cpu_s: dict[str, float | None]
    pids: dict[str, int | None]  # a restart replaces the server: no start to count from
    t_s: float


def _cpu_percent(
    processes: dict[str, int | None], edges: dict[str, _Edge]
) -> dict[str, float | None]:
    """% of one core used by each process tree over the measured window (None: unknown)."""
    if "start" not in edges or "end" not in edges:
        return {label: None for label in processes}
    start, end = edges["start"], edges["end"]
    wall = end.t_s - start.t_s
    out: dict[str, float | None] = {}
    for label in processes:
        a, b = start.cpu_s.get(label), end.cpu_s.get(label)
        if a is None or b is None or wall <= 0 or start.pids.get(label) != end.pids.get(label):
            out[label] = None
        else:
            out[label] = round(100 * (b - a) / wall, 1)
    return out
