"""The window's fold, batched for speed, records exactly what recording each sample one at a
time records: the same histogram counts, total, min and max, per-second series and buckets,
samples in or out of time order, in range or clamped."""

from __future__ import annotations

import asyncio
import random
from array import array

import pytest
from hdrh.histogram import HdrHistogram

from connbench.measure import load
from connbench.measure.load import (
    _SECOND_NS,
    BUCKET_NS,
    LATENCY_MAX_US,
    Buckets,
    LoadConfig,
    Second,
    new_histogram,
    record_all,
    runs,
)
from connbench.measure.window import FOLD_CHUNK

EDGES = [-3, 0, 1, 5, 2047, 2048, 2049, 4095, 4096, LATENCY_MAX_US, LATENCY_MAX_US + 1, 10**13]


def _latencies(rnd: random.Random, n: int) -> list[int]:
    def one() -> int:
        pick = rnd.random()
        if pick < 0.05:
            return rnd.choice(EDGES)
        if pick < 0.5:
            return int(rnd.lognormvariate(7, 1))  # around a millisecond
        return int(rnd.lognormvariate(11, 2))  # tens of milliseconds, a long tail

    return [one() for _ in range(n)]


def _same(a: HdrHistogram, b: HdrHistogram) -> None:
    assert a.encode() == b.encode()
    assert (a.total_count, a.min_value, a.max_value) == (b.total_count, b.min_value, b.max_value)
    for q in (50, 90, 99, 99.9, 100):
        assert a.get_value_at_percentile(q) == b.get_value_at_percentile(q)


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("digits", [load.LATENCY_DIGITS, load.SERIES_DIGITS])
def test_record_all_is_record_value_on_each(seed: int, digits: int) -> None:
    rnd = random.Random(seed)
    batched, one_by_one = new_histogram(digits), new_histogram(digits)
    for _ in range(3):
        values = _latencies(rnd, rnd.randint(0, 2000))
        record_all(batched, array("q", values))
        for v in values:
            one_by_one.record_value(min(max(load.LATENCY_MIN_US, v), LATENCY_MAX_US))
        _same(batched, one_by_one)


class _Reference:
    """The fold as it was written, one sample at a time: what the batched one must equal."""

    def __init__(self, last_second: int) -> None:
        self.histogram = new_histogram()
        self.seconds: list[Second] = []
        self.buckets = Buckets()
        self.last = last_second
        self.open = -1
        self.second = new_histogram(load.SERIES_DIGITS)

    def _close(self) -> None:
        if self.open >= 0 and self.second.get_total_count():
            s = self.seconds[self.open]
            s.p50_ms = round(self.second.get_value_at_percentile(50) / 1000.0, 3)
            s.p99_ms = round(self.second.get_value_at_percentile(99) / 1000.0, 3)
            self.second.reset()

    def fold(self, samples: list[tuple[int, int]], final: bool = False) -> None:
        for latency, offset in samples:
            value = min(max(load.LATENCY_MIN_US, latency), LATENCY_MAX_US)
            self.histogram.record_value(value)
            index = min(offset // _SECOND_NS, self.last)
            if index != self.open:
                self._close()
                self.open = index
            while len(self.seconds) <= index:
                self.seconds.append(Second())
            self.seconds[index].ok += 1
            self.second.record_value(value)
            self.buckets.add(offset)
        if final:
            self._close()


@pytest.mark.parametrize("seed", range(12))
def test_the_fold_equals_recording_one_sample_at_a_time(seed: int) -> None:
    rnd = random.Random(seed)
    config = LoadConfig(8, rnd.choice([1.0, 2.5, 5.0]), 0.0, 10.0)

    async def check() -> None:
        window = load._Window(config, asyncio.Event())
        reference = _Reference(window.last_second)
        t = 0
        for _ in range(rnd.randint(1, 6)):
            samples = []
            for latency in _latencies(rnd, rnd.randint(0, 1500)):
                t += rnd.randint(0, 3_000_000)
                late = rnd.random() < 0.02  # out of time order (a late Locust report)
                offset = max(0, t - rnd.randint(0, 2 * _SECOND_NS)) if late else t
                samples.append((latency, offset))
                window.latencies_us.append(latency)
                window.offsets_ns.append(offset)
                window.requests.append(0)
            window.fold()
            reference.fold(samples)
        window.fold(final=True)
        reference.fold([], final=True)
        _same(window.histogram, reference.histogram)
        assert window.seconds == reference.seconds
        assert list(window.ok_buckets.counts) == list(reference.buckets.counts)

    asyncio.run(check())


@pytest.mark.parametrize("seed", range(200))
def test_runs_are_the_runs_of_equal_intervals_in_order(seed: int) -> None:
    rnd = random.Random(seed)
    offsets = sorted(rnd.randint(-3 * BUCKET_NS, 50 * BUCKET_NS) for _ in range(rnd.randint(0, 60)))
    if offsets and rnd.random() < 0.5:
        offsets[rnd.randrange(len(offsets))] = rnd.randint(-BUCKET_NS, 60 * BUCKET_NS)
    last = rnd.choice([20, 10**9])
    expected: list[tuple[int, int, int]] = []
    for i, offset in enumerate(offsets):
        index = min(offset // BUCKET_NS, last)
        if expected and expected[-1][0] == index:
            expected[-1] = (index, expected[-1][1], i + 1)
        else:
            expected.append((index, i, i + 1))
    assert list(runs(offsets, BUCKET_NS, last)) == expected


def test_progress_p99_is_the_windows_so_far() -> None:
    """Progress reads the window's own histogram: every folded sample counts (the raw arrays
    are emptied at each fold, so reading them would miss samples)."""

    async def check() -> None:
        window = load._Window(LoadConfig(8, 10.0, 0.0, 10.0), asyncio.Event())
        p99 = load._RunningP99(window.histogram)
        assert p99.update(0.0) is None  # nothing yet
        for second, latency in enumerate((1_000, 200_000, 5_000)):
            for _ in range(1000):
                window.latencies_us.append(latency)
                window.offsets_ns.append(second * _SECOND_NS)
                window.requests.append(0)
            window.fold()
            expected = window.histogram.get_value_at_percentile(99) / 1000
            assert p99.update(second + 1.0) == expected
        assert expected >= 199  # the second second's slow requests are in it

    asyncio.run(check())


@pytest.mark.parametrize("seed", range(4))
def test_done_folds_in_chunks_and_the_result_is_the_same(seed: int) -> None:
    """A fold stalls the event loop while it runs: ``done()`` folds as soon as FOLD_CHUNK
    samples wait, so no fold holds more (the stall was 10-20 ms at 50,000 req/s on the
    timer alone), and chunking changes nothing that is recorded."""
    rnd = random.Random(seed)

    async def check() -> None:
        window = load._Window(LoadConfig(8, 2.0, 0.0, 10.0), asyncio.Event())
        reference = _Reference(window.last_second)
        samples = []
        t = window.start_ns
        for i, latency in enumerate(_latencies(rnd, 3 * FOLD_CHUNK + rnd.randint(1, 99))):
            t += rnd.randint(0, 400_000)
            value = max(0, min(latency, 10**9))
            window.done(t - value * 1000, t, None)
            samples.append((value, t - window.start_ns))
            assert len(window.latencies_us) == (i + 1) % FOLD_CHUNK
        window.fold(final=True)
        reference.fold(samples, final=True)
        _same(window.histogram, reference.histogram)
        assert window.seconds == reference.seconds
        assert list(window.ok_buckets.counts) == list(reference.buckets.counts)

    asyncio.run(check())
