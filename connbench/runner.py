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
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from connbench import appserver, limits, load, postgres, results, sampler, stats, tempdirs
from connbench.apps import STRATEGIES
from connbench.errors import ProcessError
from connbench.load import LoadConfig, Progress
from connbench.results import RunResult, StrategyResult
from connbench.scenario import Scenario, Variant


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
    cpu_percent: dict[str, float | None]


def execute(scenario: Scenario, reporter: Reporter, output: Path | None) -> tuple[RunResult, Path]:
    """Run every strategy of ``scenario``, save the result, return it and where it went.

    Raises the domain errors of :mod:`connbench.postgres` when the server cannot be had; an app
    that fails is recorded as failed and the run goes on.
    """
    run = results.new_run(scenario.to_dict())
    path = output or results.default_path(run)
    backend = postgres.parse_backend(scenario.postgres)
    # Interleaved (A B C A B C ...): drift over the run hits every variant alike.
    plan = [(repeat, v) for repeat in range(scenario.repeat) for v in scenario.variants()]
    for stale in tempdirs.remove_stale():
        reporter.note(f"removed {stale}, left by a connbench that was killed")
    try:
        with Interrupts(reporter.note) as interrupts, ExitStack() as stack:
            tmp = tempdirs.make("run")
            stack.callback(tempdirs.remove, tmp)
            try:
                reporter.note(f"starting PostgreSQL ({backend.label}) ...")
                with postgres.start(backend, settings=scenario.server) as pg:
                    run.environment["postgres"] = {
                        "backend": pg.backend,
                        "version": pg.version,
                        "settings": pg.settings,
                        "dsn": pg.display_dsn,
                    }
                    reporter.note(f"PostgreSQL {pg.version} at {pg.display_dsn}")
                    for index, (repeat, variant) in enumerate(plan, 1):
                        label = variant.key if len(plan) > 1 else variant.strategy
                        if scenario.repeat > 1:
                            label += f" #{repeat + 1}"
                        reporter.strategy_started(
                            label, index, len(plan), scenario.warmup_s + scenario.duration_s
                        )
                        result = _run_variant(
                            pg, variant, repeat, scenario, interrupts, tmp, reporter.progress
                        )
                        run.results.append(result)
                        reporter.strategy_finished(result)
                        if interrupts.count:
                            raise KeyboardInterrupt
            except (KeyboardInterrupt, asyncio.CancelledError):
                run.interrupted = True
    finally:
        run.summary = stats.aggregate(run.results)
        run.limits = [asdict(v) for v in limits.check(scenario.fail_if, run.summary)]
        results.save(run, path)
    return run, path


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
    pool_min, pool_maxes = scenario.effective_pool
    config = appserver.AppConfig(
        pool_min=variant.pool_min if variant.pool_min is not None else pool_min,
        pool_max=variant.pool_max if variant.pool_max is not None else pool_maxes[0],
        workers=variant.workers,
    )
    log_path = tmp / f"{strategy.name}-{len(list(tmp.iterdir()))}.log"
    with pg.connect(application_name="connbench-control") as control:
        pg.reset_table(control)
        sessions_before = sampler.sessions_counter(control)
        try:
            with appserver.start(strategy, pg, config, log_path) as app:
                measured = _measure(app, pg, variant, scenario, interrupts, on_progress)
                died = app.exit_code()
                app_log = app.log_tail()
        except ProcessError as exc:
            return StrategyResult(
                strategy=strategy.name,
                variant=variant.to_dict(),
                repeat=repeat,
                status="failed",
                failure=str(exc),
            )
        sampler.wait_for_app_sessions_to_end(control)
        sessions_after = sampler.sessions_counter(control)
        rows = pg.count_rows(control)
    opened = None
    if sessions_before is not None and sessions_after is not None:
        opened = sessions_after - sessions_before - measured.samples.connects
    result = stats.summarize(
        strategy=strategy.name,
        variant=variant.to_dict(),
        repeat=repeat,
        raw=measured.raw,
        samples=measured.samples,
        sessions_opened=opened,
        rows_inserted=rows,
        cpu_percent=measured.cpu_percent,
        interrupted=measured.raw.interrupted,
    )
    if died is not None:
        result.warnings.append(f"the app exited during the run (code {died}); its log:\n{app_log}")
    return result


def _measure(
    app: appserver.App,
    pg: postgres.Postgres,
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
    )
    edges: dict[str, tuple[float | None, float | None, float]] = {}

    def on_edge(name: str) -> None:
        edges[name] = (
            sampler.tree_cpu_s(app.pid),
            sampler.tree_cpu_s(pg.server_pid),
            time.perf_counter(),
        )

    async def main() -> _Measured:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        samples = sampler.Samples()
        interrupts.attach(loop, stop)
        watcher = asyncio.create_task(sampler.watch(pg, samples))
        try:
            raw = await load.run(
                app.visit_url,
                config,
                on_progress=on_progress,
                on_edge=on_edge,
                stop=stop,
            )
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            interrupts.detach(loop)
        return _Measured(raw, samples, _cpu_percent(edges))

    with load.new_runner() as runner:
        return runner.run(main())


def _cpu_percent(
    edges: dict[str, tuple[float | None, float | None, float]],
) -> dict[str, float | None]:
    if "start" not in edges or "end" not in edges:
        return {"app": None, "postgres": None}
    start, end = edges["start"], edges["end"]
    wall = end[2] - start[2]

    def pct(a: float | None, b: float | None) -> float | None:
        if a is None or b is None or wall <= 0:
            return None
        return round(100.0 * (b - a) / wall, 1)

    return {"app": pct(start[0], end[0]), "postgres": pct(start[1], end[1])}
