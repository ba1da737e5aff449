"""The measured window, shared by every engine: its clock, its tally and what it folds them into.

An engine calls ``Window.done()`` for every request that ends; the hot path only appends raw
samples to arrays, and ``Window.fold()`` (a task, every ``load.FOLD_INTERVAL_S``, and at once
whenever :data:`FOLD_CHUNK` samples are waiting) moves them into the HDR histograms
(microseconds), the per-second series and the 10 ms buckets the fault analysis reads, and
empties the arrays: connbench's memory does not grow with the duration.
Requests count in the window when they *complete* inside it (as wrk counts).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby, islice
from operator import le
from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from connbench.measure.turns import Turns
from connbench.model.appspec import Request

if TYPE_CHECKING:
    from connbench.measure.httptools_engine import Slot
    from connbench.measure.mix import Mix

LATENCY_MIN_US = 1
LATENCY_MAX_US = 3_600_000_000  # an hour: anything slower is clamped, never dropped
LATENCY_DIGITS = 3
SERIES_DIGITS = 2  # per-second histograms: coarser, they only feed the charts
# Samples folded at once (see Window.done): a fold stalls the event loop while it runs (about
# 1 us a sample), and every reply that arrives meanwhile waits. Folded only on a timer, 0.25 s
# of samples at 50,000 req/s stalled it 10-20 ms and put that stall into the open model's p99
# (15.7 ms against wrk's 1.7 at 1,024 connections); in chunks of this size a stall is ~0.3 ms.
FOLD_CHUNK = 256
BODY_KEPT_BYTES = 64 * 1024  # of a reply's body kept: classify() reads a short JSON error
BUCKET_NS = 10_000_000  # 10 ms: the resolution of the counts the fault analysis reads
SECOND_NS = 1_000_000_000


def new_histogram(digits: int = LATENCY_DIGITS) -> HdrHistogram:
    return HdrHistogram(LATENCY_MIN_US, LATENCY_MAX_US, digits)


@dataclass(frozen=True)
class LoadConfig:
    concurrency: int
    duration_s: float
    warmup_s: float
    timeout_s: float
    engine: str = "httptools"
    rate_rps: float | None = None  # open model: requests per second, None for closed loop
    # What each request sends (own apps: --method, --header, --body as JSON).
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    # A mix (own apps): each request of a kind from it, by weight; () : the one request above,
    # to the URL's path. Their paths replace the URL's.
    mix: tuple[Request, ...] = ()

    @property
    def all_headers(self) -> dict[str, str]:
        """The request's headers, with the JSON content type when there is a body."""
        extra = {"Content-Type": "application/json"} if self.body is not None else {}
        return extra | dict(self.headers)


def clamped(latency_us: int) -> int:
    return min(max(LATENCY_MIN_US, latency_us), LATENCY_MAX_US)


def record_all(histogram: HdrHistogram, latencies_us: Sequence[int]) -> None:
    """Record every latency, clamped, into ``histogram``: the same counts, total, min and max
    as ``record_value`` on each, at a tenth of the cost.

    hdrh's ``record_value`` is Python, about 2 us a call: as much as the rest of a request
    costs the generator. Here each sample's bucket is computed as ``record_value`` computes it
    (its ``_counts_index_for``), in one comprehension, and the samples are counted by bucket
    in C; each bucket's count is then added once."""
    if not latencies_us:
        return
    try:
        counts = histogram.counts
        mask = histogram.sub_bucket_mask
        unit = histogram.unit_magnitude
        half_magnitude = histogram.sub_bucket_half_count_magnitude
        half = histogram.sub_bucket_half_count
    except AttributeError:  # pragma: no cover - another hdrh: its own, slower way
        for latency in latencies_us:
            histogram.record_value(clamped(latency))
        return
    low, high = min(latencies_us), max(latencies_us)
    values = latencies_us
    if low < LATENCY_MIN_US or high > LATENCY_MAX_US:
        values = [clamped(latency) for latency in latencies_us]
        low, high = clamped(low), clamped(high)
    # The bucket (a power of two: its shift), then the sub-bucket in it.
    magnitude = half_magnitude + 1
    by_index = Counter(
        [
            (((shift := (value | mask).bit_length() - magnitude) - unit + 1) << half_magnitude)
            + (value >> shift)
            - half
            for value in values
        ]
    )
    for index, count in by_index.items():
        counts[index] += count
    histogram.total_count += len(values)
    histogram.min_value = min(histogram.min_value, low)
    histogram.max_value = max(histogram.max_value, high)


def runs(offsets_ns: Sequence[int], width_ns: int, last: int) -> Iterator[tuple[int, int, int]]:
    """``(index, start, end)`` for each run of consecutive offsets in the same interval
    ``min(offset // width_ns, last)``, in order: what taking them one at a time would see, at
    the cost of a bisection per run when they are in time order (they usually are)."""
    n = len(offsets_ns)
    start = 0
    if all(map(le, offsets_ns, islice(offsets_ns, 1, None))):
        while start < n:
            index = min(offsets_ns[start] // width_ns, last)
            end = n if index >= last else bisect_left(offsets_ns, (index + 1) * width_ns, start)
            yield index, start, end
            start = end
        return
    for index, run in groupby([min(offset // width_ns, last) for offset in offsets_ns]):
        end = start + len(list(run))
        yield index, start, end
        start = end


@dataclass
class Second:
    """One second of the measured window (its percentiles once the second is over)."""

    ok: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0


class Buckets:
    """How many events fell in each ``BUCKET_NS`` from the window's start on (earlier ones are
    not kept): 4 bytes per 10 ms of run, whatever the request rate."""

    def __init__(self) -> None:
        self.counts = array("I")

    @classmethod
    def of(cls, offsets_ns: Iterable[int]) -> Buckets:
        out = cls()
        out.add_all(list(offsets_ns))
        return out

    def add(self, offset_ns: int, count: int = 1) -> None:
        if offset_ns < 0:
            return
        index = offset_ns // BUCKET_NS
        missing = index + 1 - len(self.counts)
        if missing > 0:
            self.counts.frombytes(bytes(missing * self.counts.itemsize))
        self.counts[index] += count

    def add_all(self, offsets_ns: Sequence[int]) -> None:
        """:meth:`add` each offset, a bucket's run of them at a time (see :func:`runs`)."""
        for index, start, end in runs(offsets_ns, BUCKET_NS, sys.maxsize):
            self.add(index * BUCKET_NS, end - start)

    def count(self, low_ns: int = 0, high_ns: int | None = None) -> int:
        """Events in [low_ns, high_ns), to the bucket (exact on multiples of BUCKET_NS)."""
        low = max(0, low_ns // BUCKET_NS)
        high = len(self.counts) if high_ns is None else max(0, high_ns // BUCKET_NS)
        return sum(self.counts[low:high])


@dataclass
class RawLoad:
    """What the generator saw. Window figures exclude the warm-up (and the drain's 2xx: its
    errors count, see ``Window.fold``); ``all_*`` figures do not."""

    config: LoadConfig
    histogram: HdrHistogram
    ok: int = 0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    all_ok: int = 0
    all_sent: int = 0
    all_errors_by_kind: Counter[str] = field(default_factory=Counter)
    window_s: float = 0.0
    cpu_process_s: float = 0.0  # the whole connbench process during the window
    cpu_loop_s: float = 0.0  # the event-loop thread alone: the generator's bottleneck
    seconds: list[Second] = field(default_factory=list)
    # Completions counted by time since the window's start: 2xx inside the window, and every
    # error by kind from the window's start to the end of the drain.
    ok_buckets: Buckets = field(default_factory=Buckets)
    error_buckets: dict[str, Buckets] = field(default_factory=dict)
    window_start_ns: int = 0  # time.perf_counter_ns() at the window's edges
    window_end_ns: int = 0
    interrupted: bool = False  # stopped early: the window ends where it stopped
    # Open model only: latency from the *actual* send (the main histogram is from the intended
    # send time, i.e. corrected for coordinated omission), and what did not go to plan.
    uncorrected: HdrHistogram | None = None
    open_model: dict[str, Any] = field(default_factory=dict)
    # What an engine run in other processes says of itself (Locust: version, workers).
    engine_info: dict[str, Any] = field(default_factory=dict)
    # A mix of more than one kind: each kind's own window figures, in the mix's order.
    by_request: list[KindTally] = field(default_factory=list)
    write_ok: int | None = None  # a mix: 2xx of the kinds that write (None: every 2xx counts)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_kind.values())

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_process_s / self.window_s if self.window_s else 0.0

    @property
    def loop_cpu_percent(self) -> float:
        return 100.0 * self.cpu_loop_s / self.window_s if self.window_s else 0.0


def classify(status: int, body: bytes) -> str:
    """The error kind for a non-2xx response: the database's SQLSTATE when the app names it."""
    if status == 503 and body:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("error") == "database":
            return f"db:{payload.get('name') or payload.get('sqlstate') or 'unknown'}"
    return f"http_{status}"


@dataclass
class KindTally:
    """One kind of request of a mix over the window (its errors as the window's count them)."""

    request: Request
    histogram: HdrHistogram = field(default_factory=new_histogram)
    ok: int = 0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    sent: int = 0  # over the whole run, warm-up and drain included


class Window:
    """The run's clock and tally, shared by every engine.

    ``accepting()`` says whether a new request may start; ``done()`` records one that ended.
    """

    def __init__(self, config: LoadConfig, stop: asyncio.Event) -> None:
        self.clock = time.perf_counter_ns
        self.t0 = self.clock()
        self.start_ns = self.t0 + int(config.warmup_s * 1e9)
        self.end_ns = self.start_ns + int(config.duration_s * 1e9)
        # Until when a slot may send without asking (see resume()): the window's end here, a
        # turn's end in a sliced round (TurnWindow).
        self.edge_ns = self.end_ns
        self.stop = stop
        self.sent = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.ok_by_request = [0]  # every 2xx by kind of request (the mix's index)
        # Raw samples since the last fold (see fold()): appended on the hot path, then emptied.
        self.latencies_us = array("q")
        self.uncorrected_us = array("q")  # open model: from the actual send
        self.offsets_ns = array("q")  # completion time since the window's start
        self.error_offsets: list[tuple[int, str, int]] = []  # every error: offset, kind, request
        self.requests = array("H")  # each 2xx's kind of request in a mix (its index)
        self.by_request: list[KindTally] = []  # a mix of more than one kind: per kind
        self.schedule_lag_us = array("q")  # timer fired this long after the intended time
        # What the folds made of them.
        self.histogram = new_histogram()
        self.uncorrected = new_histogram()
        self.schedule_lag = new_histogram()
        self.seconds: list[Second] = []
        self.last_second = max(1, math.ceil(config.duration_s)) - 1
        self._open_second = -1  # the second whose histogram is still being filled
        self._second_histogram = new_histogram(SERIES_DIGITS)
        self.window_ok = 0
        self.window_errors: Counter[str] = Counter()
        self.ok_buckets = Buckets()
        self.error_buckets: dict[str, Buckets] = {}
        # open model bookkeeping
        self.sent_late = 0  # sent after their intended time (their slot was still busy)
        self.not_sent = 0  # intended inside the window, never sent before it closed
        self.in_flight_at_end = 0
        self.slots: list[Slot] = []
        self.mix: Mix | None = None

    def accepting(self) -> bool:
        return self.clock() < self.end_ns and not self.stop.is_set()

    def done(
        self, start: int, end: int, kind: str | None, intended: int = 0, request: int = 0
    ) -> None:
        """Record a request that ended; ``intended`` (open model) is when it should have been
        sent, and latency is then measured from there; ``request``: its kind in the mix."""
        in_window = self.start_ns <= end < self.end_ns
        if kind is None:
            self.ok += 1
            self.ok_by_request[request] += 1
            if in_window:
                self.latencies_us.append((end - (intended or start)) // 1000)
                if intended:
                    self.uncorrected_us.append((end - start) // 1000)
                self.offsets_ns.append(end - self.start_ns)
                self.requests.append(request)
                if len(self.offsets_ns) >= FOLD_CHUNK:
                    self.fold()
        else:
            self.errors[kind] += 1
            self.error_offsets.append((end - self.start_ns, kind, request))

    def resume(self, now_ns: int) -> int | None:
        """A slot past ``edge_ns`` asks when it may send again: None, never (the window is
        over); a sliced round's window (TurnWindow) answers its side's next turn."""
        return None

    def cut(self) -> None:
        """End the window now (an interrupt): later responses belong to the drain."""
        self.end_ns = self.edge_ns = min(self.end_ns, self.clock())

    @property
    def measured_ns(self) -> int:
        """The window's length so far as it ends (cut short by an interrupt, or not)."""
        return max(0, self.end_ns - self.start_ns)

    def _second(self, index: int) -> Second:
        while len(self.seconds) <= index:
            self.seconds.append(Second())
        return self.seconds[index]

    def _close_second(self) -> None:
        hist = self._second_histogram
        if self._open_second >= 0 and hist.get_total_count():
            second = self.seconds[self._open_second]
            second.p50_ms = round(hist.get_value_at_percentile(50) / 1000.0, 3)
            second.p99_ms = round(hist.get_value_at_percentile(99) / 1000.0, 3)
            hist.reset()

    def fold(self, final: bool = False) -> None:
        """Move the raw samples since the last fold into the histograms, the per-second series
        and the counts, and empty the arrays. Completions arrive in time order, so a second
        is over once a later one has begun (or, ``final``, when the run is)."""
        latencies, offsets = self.latencies_us, self.offsets_ns
        record_all(self.histogram, latencies)
        # The per-second series, a run of samples of the same second at a time.
        for index, start, end in runs(offsets, SECOND_NS, self.last_second):
            if index != self._open_second:
                self._close_second()
                self._open_second = index
            self._second(index).ok += end - start
            record_all(self._second_histogram, latencies[start:end])
        self.ok_buckets.add_all(offsets)
        self.window_ok += len(self.latencies_us)
        if self.by_request:
            tallies = self.by_request
            for latency, request in zip(self.latencies_us, self.requests, strict=True):
                tally = tallies[request]
                tally.ok += 1
                tally.histogram.record_value(clamped(latency))
        record_all(self.uncorrected, self.uncorrected_us)
        record_all(self.schedule_lag, self.schedule_lag_us)
        for offset, kind, request in self.error_offsets:
            if offset >= 0 and self.by_request:
                self.by_request[request].errors_by_kind[kind] += 1
            buckets = self.error_buckets.get(kind)
            if buckets is None:
                buckets = self.error_buckets[kind] = Buckets()
            buckets.add(offset)
            # An error counts when it ends in the window, or in the drain: a request in flight
            # at the window's end that then fails (a timeout outlasts the window it was sent
            # in) is a failure of the window, not nothing.
            if offset >= 0:
                self.window_errors[kind] += 1
                self._second(min(offset // SECOND_NS, self.last_second)).errors += 1
        for samples in (self.latencies_us, self.offsets_ns, self.uncorrected_us):
            del samples[:]
        del self.requests[:]
        del self.schedule_lag_us[:]
        self.error_offsets.clear()
        if final:
            self._close_second()


class TurnWindow(Window):
    """The window of one side of a sliced round (see :mod:`connbench.measure.turns`): it sends
    only in its side's turns, and counts what completes in their measured parts, laid end to
    end from the warm-up's end on (``start_ns``): the offsets the per-second figures and the
    10 ms counts are kept by are on that virtual time line."""

    def __init__(self, config: LoadConfig, stop: asyncio.Event, turns: Turns) -> None:
        super().__init__(config, stop)
        self.turns = turns
        self.t0 = turns.t0_ns
        self.start_ns = turns.base_ns
        self.end_ns = turns.end_ns
        self.edge_ns = turns.base_ns  # the warm-up: every side sends at once until then
        self.last_second = max(1, math.ceil(turns.measured_ns / SECOND_NS)) - 1

    def resume(self, now_ns: int) -> int | None:
        """When the slot may send: ``now_ns`` inside a turn (until its end, now the edge), its
        next turn's start, or None after the last (or once stopped)."""
        if self.stop.is_set() or now_ns >= self.end_ns:
            return None
        state = self.turns.sending(now_ns)
        if state is None:
            return None
        inside, edge = state
        if not inside:
            return edge
        self.edge_ns = edge
        return now_ns

    def done(
        self, start: int, end: int, kind: str | None, intended: int = 0, request: int = 0
    ) -> None:
        """As :meth:`Window.done`, by the turns' clock: a 2xx counts when it completes in a
        measured part, an error when it ends after the warm-up (in a pause too: a request sent
        in a turn that fails after it failed in it). Written out, not shared with
        ``Window.done``: the hot path of every request."""
        if kind is None:
            self.ok += 1
            self.ok_by_request[request] += 1
            offset = self.turns.offset(end)
            if offset is not None:
                self.latencies_us.append((end - start) // 1000)
                self.offsets_ns.append(offset)
                self.requests.append(request)
                if len(self.offsets_ns) >= FOLD_CHUNK:
                    self.fold()
        else:
            self.errors[kind] += 1
            at = self.turns.measured_until(end) if end >= self.start_ns else -1
            self.error_offsets.append((at, kind, request))

    @property
    def measured_ns(self) -> int:
        return self.turns.measured_until(self.end_ns)


def fill(raw: RawLoad, window: Window) -> None:
    """The window's histograms, per-second figures and counts, from the last fold."""
    window.fold(final=True)
    n_seconds = min(max(1, math.ceil(raw.window_s)), window.last_second + 1)
    window._second(n_seconds - 1)
    raw.seconds = window.seconds[:n_seconds]
    raw.histogram = window.histogram
    raw.ok = window.window_ok
    raw.errors_by_kind = window.window_errors
    raw.ok_buckets, raw.error_buckets = window.ok_buckets, window.error_buckets
    if window.by_request and window.mix is not None:
        for tally, sent in zip(window.by_request, window.mix.sent, strict=True):
            tally.sent = sent
        raw.by_request = window.by_request
        raw.write_ok = sum(
            ok
            for ok, kind in zip(window.ok_by_request, window.mix.kinds, strict=True)
            if kind.request.counted
        )
    if raw.config.rate_rps:
        raw.uncorrected = window.uncorrected
        lags = window.schedule_lag
        raw.open_model = {
            "rate_rps": raw.config.rate_rps,
            "offered": round(raw.config.rate_rps * raw.window_s),
            "sent_late": window.sent_late,
            "not_sent": window.not_sent,
            "in_flight_at_end": window.in_flight_at_end,
            "schedule_lag_ms_p99": (
                lags.get_value_at_percentile(99) / 1000 if lags.get_total_count() else None
            ),
        }
