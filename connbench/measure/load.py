"""The load generator: closed-loop HTTP load at a fixed concurrency, or an open model's rate.

On a 2-core machine the generator shares the CPU with the app and Postgres, so its cost per
request is part of what it measures. Three engines, cheapest first:

- ``httptools`` (default, :mod:`~connbench.measure.httptools_engine`): wrk's design in
  Python, protocol callbacks on one keep-alive connection per slot.
- ``aiohttp`` and ``httpx`` (:mod:`~connbench.measure.client_engines`): a shared client and a
  worker task per slot; about 3x and many times the CPU per request.

``make fidelity`` measures all three against wrk, ``make generator-limit`` the default one
against wrk on nginx (figures in docs/measuring.md).

Every engine reports to the :class:`~connbench.measure.window.Window` (the clock, the tally,
the fold into histograms); what is sent comes from :mod:`~connbench.measure.mix`. This module
runs an engine: warm-up, window, drain, the generator's CPU at the window's edges, progress.
Requests in flight at the window's end are awaited, not cancelled, so every row the app
inserts is matched by a response we saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from connbench.measure import httptools_engine
from connbench.measure.httptools_engine import ends_at_close
from connbench.measure.mix import Mix, request_bytes, weighted_order, wire_bytes
from connbench.measure.turns import Turns
from connbench.measure.window import (
    BUCKET_NS,
    LATENCY_DIGITS,
    LATENCY_MAX_US,
    LATENCY_MIN_US,
    SERIES_DIGITS,
    Buckets,
    KindTally,
    LoadConfig,
    RawLoad,
    Second,
    TurnWindow,
    Window,
    classify,
    fill,
    new_histogram,
    record_all,
    runs,
)
from connbench.measure.window import SECOND_NS as _SECOND_NS
from connbench.measure.window import Window as _Window
from connbench.measure.window import clamped as _clamped
from connbench.measure.window import fill as _fill

# The names this module had before the window, the mix and the engines moved out of it.
__all__ = [
    "BUCKET_NS", "LATENCY_DIGITS", "LATENCY_MAX_US", "LATENCY_MIN_US", "SERIES_DIGITS",
    "Buckets", "KindTally", "LoadConfig", "Mix", "Progress", "RawLoad", "Second", "classify",
    "ends_at_close", "new_histogram", "new_runner", "record_all", "request_bytes", "run",
    "run_sync", "runs", "weighted_order", "wire_bytes",
    # under their old private names, for code written against them
    "_SECOND_NS", "_Window", "_clamped", "_fill",
]  # fmt: skip

PROGRESS_INTERVAL_S = 0.25
FOLD_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Progress:
    phase: str  # warmup | measure | drain
    elapsed_s: float
    ok: int  # every 2xx so far, warm-up included
    errors: int
    p99_ms: float | None = None  # over the measured window so far (refreshed once a second)
    connections: int | None = None  # the app's server sessions at the last sample (the runner)


class _RunningP99:
    """p99 of the measured window so far, for progress: read from the window's histogram (as
    of its last fold, at most ``FOLD_INTERVAL_S`` old) once a second, at no cost per request."""

    def __init__(self, histogram: HdrHistogram) -> None:
        self._histogram = histogram
        self._read_at = 0.0
        self.value_ms: float | None = None

    def update(self, now_s: float) -> float | None:
        if self._histogram.get_total_count() and now_s - self._read_at >= 1.0:
            self._read_at = now_s
            self.value_ms = self._histogram.get_value_at_percentile(99) / 1000
        return self.value_ms


def _engine(config: LoadConfig) -> Callable[[str, LoadConfig, Window], Awaitable[None]]:
    """The engine's run function, imported before the clock starts: importing aiohttp inside
    the window would spend the window's first 0.2-0.5 s on it (it is imported only when
    chosen, because it is that much of every run's start-up otherwise)."""
    if config.rate_rps and config.engine != "httptools":
        raise ValueError("the open model (rate) needs the httptools engine")
    if config.engine == "httptools":
        return httptools_engine.run
    if config.engine in ("aiohttp", "httpx"):
        from connbench.measure import client_engines

        return client_engines.run
    raise ValueError(f"unknown load engine {config.engine!r}")


async def run(
    url: str,
    config: LoadConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_edge: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
    turns: Turns | None = None,
) -> RawLoad:
    """Drive ``config.concurrency`` closed-loop users at ``url``: warm-up, window, drain.

    Each request has ``config.timeout_s`` to complete; a timeout is counted as an error of
    kind ``timeout``. ``on_edge("start")`` and ``on_edge("end")`` are called on the loop at the
    measured window's edges (to read other processes' CPU at the same instants). Setting
    ``stop`` ends the run early: no new requests are sent, those in flight are awaited, and
    the result is marked ``interrupted`` with the window cut where it stopped.

    ``turns``: one side of a sliced round (see :mod:`connbench.measure.turns`; the httptools
    engine, closed loop): the load is sent in that side's turns only, the window is their
    measured parts, and ``on_edge("turn-start")``, ``on_edge("turn-end")`` are called at each
    turn's edges, where the CPU shares are read (``start`` and ``end`` are then the first
    turn's start and the last one's end).
    """
    stop = stop or asyncio.Event()
    engine = _engine(config)
    if turns is not None and (config.engine != "httptools" or config.rate_rps):
        raise ValueError("a sliced round needs the httptools engine and the closed loop")
    window = Window(config, stop) if turns is None else TurnWindow(config, stop, turns)
    cpu_marks: dict[str, tuple[float, float]] = {}
    turn_cpu = _TurnCpu()

    def mark(name: str) -> None:
        if name.startswith("turn-"):
            turn_cpu.mark(name)
        elif name in cpu_marks:
            return
        else:
            cpu_marks[name] = (time.process_time(), time.thread_time())
        if name == "end":
            window.in_flight_at_end = sum(1 for slot in window.slots if slot.started)
        if on_edge is not None:
            on_edge(name)

    async def fold() -> None:
        while True:
            await asyncio.sleep(FOLD_INTERVAL_S)
            window.fold()

    async def stopper() -> None:
        await stop.wait()
        window.cut()
        if window.end_ns > window.start_ns:
            mark("end")

    loop = asyncio.get_running_loop()

    def at(t_ns: int, name: str) -> asyncio.TimerHandle:
        return loop.call_at(loop.time() + (t_ns - window.clock()) / 1e9, mark, name)

    if turns is None:
        timers = [
            loop.call_at(loop.time() + config.warmup_s, mark, "start"),
            loop.call_at(loop.time() + config.warmup_s + config.duration_s, mark, "end"),
        ]
    else:
        edges = turns.turns()
        timers = [at(edges[0][0], "start")]
        for start_ns, end_ns in edges:
            timers += [at(start_ns, "turn-start"), at(end_ns, "turn-end")]
        timers.append(at(edges[-1][1], "end"))
    helpers = [
        asyncio.create_task(_report(window, on_progress)),
        asyncio.create_task(stopper()),
        asyncio.create_task(fold()),
    ]
    try:
        await engine(url, config, window)
        # An open-model run can finish its last request before the window closes: the window
        # is still the window (its CPU is read at its end).
        remaining_s = (window.end_ns - window.clock()) / 1e9
        if remaining_s > 0 and not stop.is_set():
            await asyncio.sleep(remaining_s + 0.01)
        # The end's timer was set on the loop's clock a moment after the window's own: when the
        # drain is over first, the timer would be cancelled unfired and the window left without
        # its CPU. Its end has passed; mark it now (later by the drain, a few ms at most).
        if window.clock() >= window.end_ns > window.start_ns:
            mark("end")
    finally:
        for task in helpers:
            task.cancel()
        for timer in timers:
            timer.cancel()
    raw = _raw(config, window, cpu_marks, interrupted=stop.is_set())
    if turns is not None:
        # The generator's CPU in its side's turns, at the rate it was used there: the CPU
        # between the first turn's start and the last one's end served every side.
        raw.cpu_process_s, raw.cpu_loop_s = turn_cpu.over(raw.window_s)
    return raw


class _TurnCpu:
    """This process's CPU (all threads, and the loop's thread) summed over a side's turns."""

    def __init__(self) -> None:
        self.started: tuple[float, float, float] | None = None
        self.process_s = self.thread_s = self.wall_s = 0.0

    def mark(self, name: str) -> None:
        now = (time.process_time(), time.thread_time(), time.perf_counter())
        if name == "turn-start":
            self.started = now
        elif self.started is not None:
            process, thread, wall = (b - a for a, b in zip(self.started, now, strict=True))
            self.process_s += process
            self.thread_s += thread
            self.wall_s += wall
            self.started = None

    def over(self, window_s: float) -> tuple[float, float]:
        """(process, loop thread) CPU seconds at the turns' rate, over ``window_s``."""
        if self.wall_s <= 0:
            return 0.0, 0.0
        scale = window_s / self.wall_s
        return self.process_s * scale, self.thread_s * scale


async def _report(window: Window, on_progress: Callable[[Progress], None] | None) -> None:
    """Tell ``on_progress`` the phase, counts and p99 so far every PROGRESS_INTERVAL_S, until
    cancelled."""
    p99 = _RunningP99(window.histogram)
    while on_progress is not None:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        now = window.clock()
        phase = "warmup" if now < window.start_ns else "measure" if now < window.end_ns else "drain"
        errors = sum(window.errors.values())
        elapsed_s = (now - window.t0) / 1e9
        on_progress(Progress(phase, elapsed_s, window.ok, errors, p99.update(elapsed_s)))


def _raw(
    config: LoadConfig,
    window: Window,
    cpu_marks: dict[str, tuple[float, float]],
    interrupted: bool,
) -> RawLoad:
    """What the window counted, with the generator's CPU between the window's edges."""
    raw = RawLoad(config=config, histogram=new_histogram())
    raw.interrupted = interrupted
    raw.window_start_ns = window.start_ns
    raw.window_end_ns = window.start_ns + window.measured_ns
    raw.window_s = (raw.window_end_ns - raw.window_start_ns) / 1e9
    if "start" in cpu_marks and "end" in cpu_marks:
        raw.cpu_process_s = cpu_marks["end"][0] - cpu_marks["start"][0]
        raw.cpu_loop_s = cpu_marks["end"][1] - cpu_marks["start"][1]
    raw.all_sent, raw.all_ok, raw.all_errors_by_kind = window.sent, window.ok, window.errors
    fill(raw, window)
    return raw


def run_sync(url: str, config: LoadConfig, **kwargs: Any) -> RawLoad:
    """:func:`run` on a fresh uvloop (or asyncio) event loop, for scripts and benchmarks."""
    with new_runner() as runner:
        return runner.run(run(url, config, **kwargs))


def new_runner() -> asyncio.Runner:
    """An event-loop runner on uvloop where available: the generator's CPU per request is
    part of what a 2-core machine measures, and uvloop trims the loop's share of it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard] on Linux
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)
