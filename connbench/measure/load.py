"""The load generator: closed-loop HTTP load at a fixed concurrency.

On a 2-core machine the generator shares the CPU with the app and Postgres, so its cost per
request is part of what it measures. Three engines, cheapest first:

- ``httptools`` (default): wrk's design in Python. Each of ``concurrency`` slots owns one
  keep-alive connection and is driven by protocol callbacks: the reply is parsed by httptools
  (the parser uvicorn uses) and the next request is written from the callback that completes
  the last one, with no coroutine, future or timer per request.
- ``aiohttp``: a shared ``ClientSession``; about 3x the CPU per request of the above.
- ``httpx``: a shared ``AsyncClient``, the design's client API. It saturates a core at about a
  quarter of wrk's throughput on the pool app and inflates p99 many-fold, so it is kept to
  show that, and connbench uses httpx everywhere outside the hot loop.

``make fidelity`` measures all three against wrk (figures in the README).

Requests count in the measured window when they *complete* inside it (as wrk counts); those
in flight at its end are awaited, not cancelled, so every row the app inserts is matched by a
response we saw. Latency percentiles come from an HDR histogram in microseconds. The hot path
only appends raw samples to arrays; a task folds them into the histograms and the per-second
series every ``FOLD_INTERVAL_S`` and empties the arrays, so connbench's memory does not grow
with the duration (a second of the series is a few numbers; the fault analysis keeps counts
per ``BUCKET_NS``).
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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby, islice
from operator import le
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import httptools
import httpx
import yarl
from hdrh.histogram import HdrHistogram

from connbench.model import template
from connbench.model.appspec import Compiled, Request

LATENCY_MIN_US = 1
LATENCY_MAX_US = 3_600_000_000  # an hour: anything slower is clamped, never dropped
LATENCY_DIGITS = 3
SERIES_DIGITS = 2  # per-second histograms: coarser, they only feed the charts
PROGRESS_INTERVAL_S = 0.25
FOLD_INTERVAL_S = 0.25
SWEEP_INTERVAL_S = 0.05
HEAD_MAX_BYTES = 64 * 1024  # of a reply kept to read its head (see _Connection.connection_lost)
BODY_KEPT_BYTES = 64 * 1024  # of a reply's body kept: classify() reads a short JSON error
BUCKET_NS = 10_000_000  # 10 ms: the resolution of the counts the fault analysis reads
_SECOND_NS = 1_000_000_000


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


def _clamped(latency_us: int) -> int:
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
            histogram.record_value(_clamped(latency))
        return
    low, high = min(latencies_us), max(latencies_us)
    values = latencies_us
    if low < LATENCY_MIN_US or high > LATENCY_MAX_US:
        values = [_clamped(latency) for latency in latencies_us]
        low, high = _clamped(low), _clamped(high)
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
    errors count, see ``_Window.fold``); ``all_*`` figures do not."""

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


def weighted_order(weights: list[int]) -> list[int]:
    """Indexes in the order a mix sends them: each ``weights[i]`` times per cycle, spread out
    (smooth weighted round-robin, nginx's), so that any stretch of the run has the mix's
    proportions, not a random walk around them."""
    divisor = math.gcd(*weights)
    weights = [w // divisor for w in weights]
    total, current, order = sum(weights), [0] * len(weights), []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        order.append(best)
    return order


class _Kind(Compiled):
    """One request of the mix, compiled once, and its bytes on the wire."""

    def __init__(self, request: Request, host: str) -> None:
        super().__init__(request)
        self.host = host
        self.payload = b""
        if self.static:
            path, headers, body = self.render()
            self.payload = wire_bytes(request.method, path, host, headers, body)
        # A templated one: the bytes around its values, laid out once (static headers first).
        self.head = f"{request.method} ".encode()
        fixed = [(n, t.render(0, 0)) for n, t in self.headers if t.static]
        if self.body is not None and not self.typed:
            fixed.insert(0, ("Content-Type", "application/json"))
        self.varying = [(f"{n}: ", t) for n, t in self.headers if not t.static]
        lines = [f"Host: {host}", "User-Agent: connbench", "Accept: */*"]
        lines += [f"{name}: {value}" for name, value in fixed]
        self.middle = (" HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines)).encode()

    def wire(self) -> bytes:
        """The next request as sent on the wire (the same bytes each time for a static one)."""
        if self.static:
            return self.payload
        seq, count = template.next_seq(), next(self.count)
        out = self.head + self.path.render(seq, count).encode() + self.middle
        for name, value in self.varying:
            out += f"{name}{value.render(seq, count)}\r\n".encode()
        if self.body is None:
            return out + b"\r\n"
        body = self.body.render(seq, count).encode()
        return out + b"Content-Length: %d\r\n\r\n" % len(body) + body


class Mix:
    """The kinds of request a run sends, in their weighted order (shared by every slot)."""

    def __init__(self, requests: tuple[Request, ...], host: str) -> None:
        self.kinds = [_Kind(r, host) for r in requests]
        self.order = weighted_order([r.weight for r in requests])
        self.n = len(self.order)
        self.pos = 0
        self.sent = [0] * len(self.kinds)
        # One static request: its bytes, sent as they are every time (the hot path's shortcut).
        single = len(self.kinds) == 1 and self.kinds[0].static
        self.static: bytes | None = self.kinds[0].payload if single else None

    def next(self) -> int:
        """The index of the next kind to send."""
        index = self.order[self.pos]
        self.pos = self.pos + 1 if self.pos + 1 < self.n else 0
        self.sent[index] += 1
        return index


def _mix_for(url: str, config: LoadConfig) -> Mix:
    """The run's mix: ``config.mix``, or the one request ``config`` describes to ``url``."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # userinfo never on the wire: it is a header
    requests = config.mix
    if not requests:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = config.body.decode() if config.body is not None else None
        # Not a template: its text is sent as it is.
        requests = (Request(config.method, target, config.headers, None),)
        mix = Mix(requests, host)
        kind = mix.kinds[0]
        kind.body = template.Template(body, (body,)) if body is not None else None
        kind.payload = request_bytes(config.method, target, host, config)
        mix.static = kind.payload if kind.static else None
        return mix
    return Mix(requests, host)


Requester = Callable[[str, str, list[tuple[str, str]], bytes | None], Awaitable[tuple[int, bytes]]]


class _Aborted(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


class _Window:
    """The run's clock and tally, shared by every engine.

    ``accepting()`` says whether a new request may start; ``done()`` records one that ended.
    """

    def __init__(self, config: LoadConfig, stop: asyncio.Event) -> None:
        self.clock = time.perf_counter_ns
        self.t0 = self.clock()
        self.start_ns = self.t0 + int(config.warmup_s * 1e9)
        self.end_ns = self.start_ns + int(config.duration_s * 1e9)
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
        self.slots: list[_Slot] = []
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
        else:
            self.errors[kind] += 1
            self.error_offsets.append((end - self.start_ns, kind, request))

    def cut(self) -> None:
        """End the window now (an interrupt): later responses belong to the drain."""
        self.end_ns = min(self.end_ns, self.clock())

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
        for index, start, end in runs(offsets, _SECOND_NS, self.last_second):
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
                tally.histogram.record_value(_clamped(latency))
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
                self._second(min(offset // _SECOND_NS, self.last_second)).errors += 1
        for samples in (self.latencies_us, self.offsets_ns, self.uncorrected_us):
            del samples[:]
        del self.requests[:]
        del self.schedule_lag_us[:]
        self.error_offsets.clear()
        if final:
            self._close_second()


# --- the httptools engine: callbacks, one keep-alive connection per slot --------------------


class _Connection(asyncio.Protocol):
    """Transport events for one connection, forwarded to its slot."""

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        # The reply's first bytes, kept until it completes: should the server end the body by
        # closing (HTTP/1.0, no Content-Length), its head says whether that was the whole reply.
        self.head: list[bytes] = []
        self.head_bytes = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.head_bytes < HEAD_MAX_BYTES:
            self.head.append(data)
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.slot.failed(self, "protocol_error")

    def connection_lost(self, exc: Exception | None) -> None:
        # httptools has no "end of input": a body delimited by the close is completed here.
        if exc is None and self.head and ends_at_close(b"".join(self.head)):
            self.on_message_complete()
        self.slot.failed(self, "disconnected")

    def on_body(self, body: bytes) -> None:
        if len(self.body) < BODY_KEPT_BYTES:  # enough to classify an error; never the stream
            self.body += body

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        body = b"" if 200 <= status < 300 else bytes(self.body)  # only an error's is read
        self.body.clear()
        self.head.clear()
        self.head_bytes = 0
        self.slot.replied(self, status, body, self.parser.should_keep_alive())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def ends_at_close(received: bytes) -> bool:
    """Whether a reply whose connection closed after ``received`` was complete: its head is
    whole and gives neither Content-Length nor Transfer-Encoding, so its body is "until the
    close" (RFC 9112 6.3), as for HTTP/1.0 servers. A body cut short of its stated length, or
    a head cut short, is not."""
    head, whole, _ = received.partition(b"\r\n\r\n")
    if not whole:
        return False
    status_line, *fields = head.split(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) < 200:
        return False
    names = {field.partition(b":")[0].strip().lower() for field in fields}
    return not names & {b"content-length", b"transfer-encoding"}


class _Slot:
    """One closed-loop user: send, wait for the reply, send again, until the window closes."""

    def __init__(
        self,
        window: _Window,
        target: tuple[str, int],
        mix: Mix,
        timeout_s: float,
        period_ns: float = 0.0,
        first_ns: int = 0,
    ) -> None:
        self.window = window
        self.target = target
        self.mix = mix
        self.payload = b""  # the request in flight
        self.request = 0  # its kind in the mix
        self.timeout_s = timeout_s
        self.timeout_ns = int(timeout_s * 1e9)
        self.loop = asyncio.get_running_loop()
        self.conn: _Connection | None = None
        self.due = 0  # intended send time of the request in flight (open model)
        self.started = 0  # perf_counter_ns of the request in flight; 0 when none is
        self.finished: asyncio.Future[None] = self.loop.create_future()
        # Open model (wrk2's design): this slot's share of the rate, on a fixed schedule.
        # Request k is due at first_ns + k * period_ns (perf_counter_ns): a float period, so
        # that no rate rounds to a zero or drifting one. 0.0: closed loop.
        self.period_ns = period_ns
        self.first_ns = first_ns
        self.k = 0  # the next request of the schedule

    def begin(self) -> None:
        self.next()

    def next(self) -> None:
        if not self.period_ns:
            self._send()
            return
        window = self.window
        due = self.first_ns + int(self.k * self.period_ns)
        now = window.clock()
        if due >= window.end_ns or window.stop.is_set():
            self.finish()
            return
        self.k += 1
        if due > now:
            self.loop.call_later((due - now) / 1e9, self._send_on_time, due)
        else:
            if now - due > 1_000_000:  # more than 1 ms behind: the slot was still busy
                window.sent_late += 1
            self._send(due)

    def _send_on_time(self, due: int) -> None:
        self.window.schedule_lag_us.append(max(0, self.window.clock() - due) // 1000)
        self._send(due)

    def _send(self, due: int = 0) -> None:
        # The hot path (with the reply's): one clock read, no call it can do without.
        window = self.window
        now = window.clock()
        if now >= window.end_ns or window.stop.is_set():  # window.accepting(), inlined
            if self.period_ns:
                self.k -= 1  # taken from the schedule, never sent
            self.finish()
            return
        self.due = due
        window.sent += 1
        self.started = now
        mix = self.mix
        if mix.static is not None:  # one request, the same bytes every time
            mix.sent[0] += 1
            self.payload = mix.static
        else:
            self.request = index = mix.next()
            self.payload = mix.kinds[index].wire()
        conn = self.conn
        transport = conn.transport if conn is not None else None
        if transport is None or transport.is_closing():
            self.loop.create_task(self._connect_and_send())
        else:
            transport.write(self.payload)

    async def _connect_and_send(self) -> None:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), *self.target),
                self.timeout_s,
            )
        except TimeoutError:
            self._end("timeout")
        except ConnectionRefusedError:
            self._end("connect_refused")
        except OSError:
            self._end("connect_error")
        else:
            self.conn = conn
            assert conn.transport is not None
            conn.transport.write(self.payload)

    def replied(self, conn: _Connection, status: int, body: bytes, keep_alive: bool) -> None:
        if conn is not self.conn or not self.started:
            return
        if not keep_alive:
            self.drop()
        self._end(None if 200 <= status < 300 else classify(status, body))

    def failed(self, conn: _Connection, kind: str) -> None:
        if conn is not self.conn:
            return
        self.drop()
        if self.started:
            self._end(kind)

    def expire(self, now_ns: int) -> None:
        if self.started and now_ns - self.started >= self.timeout_ns:
            self.drop()
            self._end("timeout")

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def _end(self, kind: str | None) -> None:
        started, self.started = self.started, 0
        self.window.done(started, self.window.clock(), kind, self.due, self.request)
        if self.period_ns:
            self.next()
        else:
            self._send()

    def finish(self) -> None:
        if self.period_ns and not self.finished.done():
            self.window.not_sent += self._owed()
        self.drop()
        if not self.finished.done():
            self.finished.set_result(None)

    def _owed(self) -> int:
        """Requests of this slot's schedule due inside the window and never sent (it fell
        behind): never more than the window's share of the schedule."""
        window = self.window
        end = window.end_ns
        if window.stop.is_set():
            end = min(end, window.clock())
        first = max(self.k, math.ceil((window.start_ns - self.first_ns) / self.period_ns))
        last = math.ceil((end - self.first_ns) / self.period_ns)
        return max(0, last - first)


async def _run_httptools(url: str, config: LoadConfig, window: _Window) -> None:
    parts = urlsplit(url)
    mix = _mix_for(url, config)
    _tally(window, mix)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    n = config.concurrency
    if config.rate_rps:
        # Each of the n connections carries rate/n, the schedules staggered by 1/rate.
        period_ns = n * 1e9 / config.rate_rps
        first = window.clock()
        slots = [
            _Slot(
                window,
                address,
                mix,
                config.timeout_s,
                period_ns,
                first + int(i * period_ns / n),
            )
            for i in range(n)
        ]
    else:
        slots = [_Slot(window, address, mix, config.timeout_s) for _ in range(n)]
    window.slots = slots

    async def sweep() -> None:
        # One timer for every slot instead of one per request: a request times out within
        # timeout_s + the sweep interval.
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL_S, config.timeout_s / 10))
            now = window.clock()
            for slot in slots:
                slot.expire(now)

    sweeper = asyncio.create_task(sweep())
    try:
        for slot in slots:
            slot.begin()
        await asyncio.gather(*(slot.finished for slot in slots))
    finally:
        sweeper.cancel()
        for slot in slots:
            slot.drop()


def request_bytes(method: str, target: str, host: str, config: LoadConfig) -> bytes:
    """One HTTP/1.1 request as sent on the wire, the same every time."""
    return wire_bytes(method, target, host, list(config.all_headers.items()), config.body)


def wire_bytes(
    method: str, target: str, host: str, headers: list[tuple[str, str]], body: bytes | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "User-Agent: connbench", "Accept: */*"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _tally(window: _Window, mix: Mix) -> None:
    """Per-kind figures for a mix of more than one kind (one kind's are the run's)."""
    if len(mix.kinds) > 1:
        window.by_request = [KindTally(kind.request) for kind in mix.kinds]
    window.mix = mix
    window.ok_by_request = [0] * len(mix.kinds)


# --- the coroutine engines: a worker task per slot around a shared client -------------------


async def _kept(chunks: AsyncIterator[bytes]) -> bytes:
    """A reply's body read to its end, only its first ``BODY_KEPT_BYTES`` kept: a huge or
    endless body costs connbench a buffer, never its size."""
    kept = bytearray()
    async for chunk in chunks:
        if len(kept) < BODY_KEPT_BYTES:
            kept += chunk[: BODY_KEPT_BYTES - len(kept)]
    return bytes(kept)


def _aiohttp_requester(session: aiohttp.ClientSession) -> Requester:
    async def request(
        method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, bytes]:
        target = yarl.URL(url, encoded=True)  # sent as written: yarl would decode %41 to A
        try:
            async with session.request(method, target, data=body, headers=headers) as resp:
                return resp.status, await _kept(resp.content.iter_any())
        except TimeoutError:
            raise _Aborted("timeout") from None
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            raise _Aborted("connect_refused" if refused else "connect_error") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            raise _Aborted("disconnected") from None
        except aiohttp.ClientError:
            raise _Aborted("client_error") from None

    return request


def _httpx_requester(client: httpx.AsyncClient) -> Requester:
    async def request(
        method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, bytes]:
        try:
            async with client.stream(method, url, content=body, headers=headers) as resp:
                return resp.status_code, await _kept(resp.aiter_raw())
        except httpx.TimeoutException:
            raise _Aborted("timeout") from None
        except httpx.ConnectError:
            raise _Aborted("connect_refused") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            raise _Aborted("disconnected") from None
        except httpx.HTTPError:
            raise _Aborted("client_error") from None

    return request


async def _run_workers(request: Requester, url: str, config: LoadConfig, window: _Window) -> None:
    mix = _mix_for(url, config)
    _tally(window, mix)
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"

    async def worker() -> None:
        clock = window.clock
        while window.accepting():
            window.sent += 1
            index = mix.next()
            path, headers, content = mix.kinds[index].render()
            start = clock()
            kind: str | None = None
            try:
                status, body = await request(
                    mix.kinds[index].request.method, base + path, headers, content
                )
                if not 200 <= status < 300:
                    kind = classify(status, body)
            except _Aborted as aborted:
                kind = aborted.kind
            window.done(start, clock(), kind, 0, index)

    await asyncio.gather(*(worker() for _ in range(config.concurrency)))


async def _run_engine(url: str, config: LoadConfig, window: _Window) -> None:
    if config.rate_rps and config.engine != "httptools":
        raise ValueError("the open model (rate) needs the httptools engine")
    if config.engine == "httptools":
        await _run_httptools(url, config, window)
    elif config.engine == "aiohttp":
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            await _run_workers(_aiohttp_requester(session), url, config, window)
    elif config.engine == "httpx":
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=config.timeout_s, limits=limits) as client:
            await _run_workers(_httpx_requester(client), url, config, window)
    else:
        raise ValueError(f"unknown load engine {config.engine!r}")


async def run(
    url: str,
    config: LoadConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_edge: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RawLoad:
    """Drive ``config.concurrency`` closed-loop users at ``url``: warm-up, window, drain.

    Each request has ``config.timeout_s`` to complete; a timeout is counted as an error of
    kind ``timeout``. ``on_edge("start")`` and ``on_edge("end")`` are called on the loop at the
    measured window's edges (to read other processes' CPU at the same instants). Setting
    ``stop`` ends the run early: no new requests are sent, those in flight are awaited, and
    the result is marked ``interrupted`` with the window cut where it stopped.
    """
    stop = stop or asyncio.Event()
    window = _Window(config, stop)
    cpu_marks: dict[str, tuple[float, float]] = {}

    def mark(name: str) -> None:
        if name in cpu_marks:
            return
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
    timers = [
        loop.call_at(loop.time() + config.warmup_s, mark, "start"),
        loop.call_at(loop.time() + config.warmup_s + config.duration_s, mark, "end"),
    ]
    helpers = [
        asyncio.create_task(_report(window, on_progress)),
        asyncio.create_task(stopper()),
        asyncio.create_task(fold()),
    ]
    try:
        await _run_engine(url, config, window)
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
    return _raw(config, window, cpu_marks, interrupted=stop.is_set())


async def _report(window: _Window, on_progress: Callable[[Progress], None] | None) -> None:
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
    window: _Window,
    cpu_marks: dict[str, tuple[float, float]],
    interrupted: bool,
) -> RawLoad:
    """What the window counted, with the generator's CPU between the window's edges."""
    raw = RawLoad(config=config, histogram=new_histogram())
    raw.interrupted = interrupted
    raw.window_start_ns, raw.window_end_ns = window.start_ns, max(window.start_ns, window.end_ns)
    raw.window_s = (raw.window_end_ns - raw.window_start_ns) / 1e9
    if "start" in cpu_marks and "end" in cpu_marks:
        raw.cpu_process_s = cpu_marks["end"][0] - cpu_marks["start"][0]
        raw.cpu_loop_s = cpu_marks["end"][1] - cpu_marks["start"][1]
    raw.all_sent, raw.all_ok, raw.all_errors_by_kind = window.sent, window.ok, window.errors
    _fill(raw, window)
    return raw


def _fill(raw: RawLoad, window: _Window) -> None:
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
