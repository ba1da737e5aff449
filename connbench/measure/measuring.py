"""The measuring loop of one variant: the load over the scenario's window, with the samplers,
the watchdog, the fault and the window's edges around it, on one event loop.

The runner starts and stops what is measured (:mod:`connbench.runner`); the load engines
(:mod:`connbench.measure.engines`), the probes (:mod:`connbench.measure.sampler`,
:mod:`connbench.measure.edges`) and the watchdog (:mod:`connbench.measure.watchdog`) are
modules of their own. This one runs them together and hands back what they saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from connbench.infra import appserver, pgbouncer, postgres, userapp
from connbench.measure import engines, faults, load, sampler, watchdog
from connbench.measure.edges import STATS_TIMEOUT_S, Edges
from connbench.measure.load import Progress
from connbench.measure.measurement import Measurement
from connbench.measure.turns import Turns
from connbench.model.appspec import AppSpec
from connbench.model.scenario import Scenario, Variant


class Signals(Protocol):
    """Ctrl-C while the load runs (the runner's, which handles it in one place)."""

    def attach(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None: ...
    def detach(self, loop: asyncio.AbstractEventLoop) -> None: ...


def measure(
    app: appserver.App | userapp.Served,
    bouncer: pgbouncer.PgBouncer | None,
    pg: postgres.Postgres,
    variant: Variant,
    scenario: Scenario,
    signals: Signals,
    on_progress: Callable[[Progress], None],
    spec: AppSpec | None = None,
    database: str | None = None,
) -> tuple[Measurement, watchdog.Death | None]:
    """Load the app for the scenario's window while the samplers watch the server (and
    PgBouncer), the fault is injected and the edges of the window are marked; and the
    child that died meanwhile, if one did (the load then stopped early).

    An own app or target (``spec``) is sent its own requests, and its sessions are every
    client session on ``database`` (see :mod:`connbench.infra.userapp`)."""
    injector = faults.Injector(scenario.fault, pg) if scenario.fault else None

    async def main() -> tuple[Measurement, watchdog.Death | None]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        samples = sampler.Samples()
        pool_samples = sampler.PoolSamples() if bouncer is not None else None
        edges = Edges(app, pg, bouncer, injector, appserver.loopback_async_client(STATS_TIMEOUT_S))
        signals.attach(loop, stop)
        deaths: list[watchdog.Death] = []
        watchers = [
            asyncio.create_task(sampler.watch(pg, samples, database=database)),
            asyncio.create_task(watchdog.watch(app, pg, bouncer, edges.seen, stop, deaths)),
        ]
        if bouncer is not None and pool_samples is not None:
            watchers.append(asyncio.create_task(sampler.watch_pgbouncer(bouncer, pool_samples)))
        injected = None

        def progress(p: Progress) -> None:  # with the server's side at the last sample
            # Unknown while the server hides the sessions' state: not the ones left visible.
            seen = samples.samples[-1].total if samples.samples and not samples.hidden else None
            on_progress(replace(p, connections=seen))

        try:
            config = engines.load_config(variant, scenario, spec)
            raw = await engines.drive(app.visit_url, config, scenario, progress, edges.mark, stop)
            if injector is not None:
                injected = await injector.finish()
            app_stats = {name: await read for name, read in edges.reads.items()}
        finally:
            for task in (*watchers, *edges.reads.values()):
                task.cancel()
            await asyncio.gather(*watchers, *edges.reads.values(), return_exceptions=True)
            await edges.client.aclose()
            signals.detach(loop)
        measured = Measurement(
            raw=raw,
            samples=samples,
            cpu_percent=edges.cpu_percent(),
            pool_samples=pool_samples,
            injected=injected,
            app_stats=(app_stats.get("start"), app_stats.get("end")),
        )
        return measured, deaths[0] if deaths else None

    with load.new_runner() as runner:
        return runner.run(main())


@dataclass(frozen=True)
class Side:
    """One side of a sliced round: its app (started), its variant, requests and database."""

    app: appserver.App | userapp.Served
    variant: Variant
    spec: AppSpec | None
    database: str | None


def measure_turns(
    sides: Sequence[Side],
    pg: postgres.Postgres,
    scenario: Scenario,
    signals: Signals,
    on_progress: Callable[[Progress], None],
) -> list[tuple[Measurement, watchdog.Death | None]]:
    """A sliced round (``--slices``, see :mod:`connbench.measure.turns`): every side's app is
    up, the load takes turns between them, ``scenario.slices`` turns a side in ``sides``'
    order; what each side measured in its turns, as :func:`measure` gives it for one variant
    (its server samples and CPU shares over its own turns only, on its window's time line).

    An app that dies stops its own side (kept as measured until then, as in :func:`measure`)
    and the others go on taking their turns; PostgreSQL's death stops every side, and so does
    Ctrl-C. ``on_progress`` hears the first side's clock with every side's counts."""

    async def main() -> list[tuple[Measurement, watchdog.Death | None]]:
        loop = asyncio.get_running_loop()
        interrupted = asyncio.Event()
        stops = [asyncio.Event() for _ in sides]

        async def stop_all() -> None:
            await interrupted.wait()
            for stop in stops:
                stop.set()

        signals.attach(loop, interrupted)
        plans = Turns.plan(
            time.perf_counter_ns(),
            scenario.warmup_s,
            scenario.duration_s,
            scenario.slices,
            len(sides),
        )
        samples = [sampler.Samples() for _ in sides]
        edges = [
            Edges(side.app, pg, None, None, appserver.loopback_async_client(STATS_TIMEOUT_S))
            for side in sides
        ]
        deaths: list[list[watchdog.Death]] = [[] for _ in sides]
        watchers = [asyncio.create_task(stop_all())]
        for side, kept, edge, died, stop in zip(sides, samples, edges, deaths, stops, strict=True):
            watchers += [
                asyncio.create_task(sampler.watch(pg, kept, database=side.database)),
                asyncio.create_task(watchdog.watch(side.app, pg, None, edge.seen, stop, died)),
            ]
        latest: dict[int, Progress] = {}

        def progress(index: int) -> Callable[[Progress], None]:
            def told(p: Progress) -> None:
                latest[index] = p
                if index == 0:
                    ok = sum(q.ok for q in latest.values())
                    errors = sum(q.errors for q in latest.values())
                    on_progress(replace(p, ok=ok, errors=errors))

            return told

        try:
            raws = await asyncio.gather(
                *(
                    load.run(
                        side.app.visit_url,
                        engines.load_config(side.variant, scenario, side.spec),
                        on_progress=progress(index),
                        on_edge=edge.mark,
                        stop=stop,
                        turns=plan,
                    )
                    for index, (side, edge, plan, stop) in enumerate(
                        zip(sides, edges, plans, stops, strict=True)
                    )
                )
            )
            stats = [{name: await read for name, read in e.reads.items()} for e in edges]
        finally:
            reads = [task for e in edges for task in e.reads.values()]
            for task in (*watchers, *reads):
                task.cancel()
            await asyncio.gather(*watchers, *reads, return_exceptions=True)
            for edge in edges:
                await edge.client.aclose()
            signals.detach(loop)
        out = []
        for raw, kept, edge, died, plan, read in zip(
            raws, samples, edges, deaths, plans, stats, strict=True
        ):
            measured = Measurement(
                raw=raw,
                samples=kept.moved(plan.offset, plan.base_ns),
                cpu_percent=edge.cpu_percent(),
                app_stats=(read.get("start"), read.get("end")),
            )
            out.append((measured, died[0] if died else None))
        return out

    with load.new_runner() as runner:
        return runner.run(main())
