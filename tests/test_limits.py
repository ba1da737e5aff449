"""--fail-if limits: parsing and checking on a run's medians (pure)."""

from __future__ import annotations

import re

import pytest

from connbench.analyse import limits, stats
from connbench.model.results import StrategyResult

from .conftest import made


def run(repeat: int, rps: float, p99: float, errors: int = 0) -> StrategyResult:
    return made(
        "pool",
        variant={"key": "pool c=32"},
        repeat=repeat,
        requests={"ok": 1000 - errors, "errors": errors, "total": 1000},
        throughput_rps=rps,
        latency_ms={"p50": p99 / 2, "p99": p99},
        server={"connections_peak": 4},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99_ms>50", "p99_ms>50"),
        (" p99_ms > 50.5 ", "p99_ms>50.5"),
        ("error_rate>=0.001", "error_rate>=0.001"),
        ("throughput_rps<1e3", "throughput_rps<1000"),
        ("connections_peak<=4", "connections_peak<=4"),
        # Any of a metric's names, normalised to the one with its unit.
        ("p99>50", "p99_ms>50"),
        ("rps<500", "throughput_rps<500"),
        ("throughput<500", "throughput_rps<500"),
    ],
)
def test_parse(text: str, expected: str) -> None:
    assert str(limits.parse(text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99_ms", "cannot read 'p99_ms': expected METRIC<NUMBER or METRIC>NUMBER"),
        ("p99_ms=50", "cannot read 'p99_ms=50'"),
        ("p98>50", "'p98>50': unknown metric 'p98' (known: throughput/throughput_rps/rps, mean"),
        ("p99_ms>fast", "'fast' is not a number"),
        ("p99_ms>inf", "'inf' is not a finite number"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        limits.parse(text)


def test_checked_on_the_medians_of_the_repeats() -> None:
    summary = stats.aggregate([run(0, 900, 30), run(1, 1000, 60), run(2, 1100, 45)])
    verdicts = limits.check(
        [limits.parse("p99_ms>50"), limits.parse("throughput_rps<950")], summary
    )
    p99, rps = verdicts
    assert not p99.failed and p99.value == 45  # one repeat above 50 does not move the median
    assert p99.reason == "p99_ms = 45 (median of 3 repeats)"
    assert not rps.failed and rps.variant == "pool c=32"
    (crossed,) = limits.check([limits.parse("p99_ms>=45")], summary)
    assert crossed.failed and crossed.reason.endswith("p99_ms>=45 is true")


def test_error_rate_counts_every_request_of_every_repeat() -> None:
    summary = stats.aggregate([run(0, 1, 1, errors=0), run(1, 1, 1, errors=0), run(2, 1, 1, 90)])
    (verdict,) = limits.check([limits.parse("error_rate>0.01")], summary)
    assert verdict.value == pytest.approx(0.03)  # 90 / 3000; the median repeat had none
    assert verdict.failed and "(over all requests)" in verdict.reason


def test_a_variant_that_measured_nothing_fails() -> None:
    failed = made("pool", "failed", variant={"key": "pool c=32"})
    (verdict,) = limits.check([limits.parse("p99_ms>50")], stats.aggregate([failed]))
    assert verdict.failed and verdict.value is None
    assert verdict.reason == "p99_ms not measured (failed)"
