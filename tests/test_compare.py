"""compare: the U test, matching, the gate's verdicts, environment differences (pure)."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from typing import Any

import pytest

from connbench.analyse import compare
from connbench.analyse.compare import Gate, Threshold, mann_whitney_u
from connbench.model import results
from connbench.model.errors import BadInput, ResultFileError
from connbench.model.results import RunResult
from connbench.model.scenario import Variant

from .conftest import entry, made, run_of


def repeats(rps: Sequence[float], p99: Sequence[float] | None = None, **kw: Any) -> RunResult:
    p99s = p99 or [40.0] * len(rps)
    pairs = enumerate(zip(rps, p99s, strict=True))
    return run_of(*(entry(repeat=i, rps=r, p99=p) for i, (r, p) in pairs), **kw)


GATE = Gate((Threshold("throughput", 0.10, "test"), Threshold("p99", 0.25, "test")))


def verdict(base: RunResult, new: RunResult, metric: str = "throughput") -> compare.Verdict:
    (variant,) = compare.compare(base, new, gate=GATE).variants
    return next(v for v in variant.verdicts if v.metric == metric)


# --- the U test --------------------------------------------------------------------------------


def brute_force_p(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided exact p by enumerating every split of the pooled mid-ranks."""
    pooled = sorted([*x, *y])
    rank = {v: sum(i + 1 for i, w in enumerate(pooled) if w == v) / pooled.count(v) for v in pooled}
    ranks = [rank[v] for v in pooled]
    expected = len(x) * (len(pooled) + 1) / 2
    observed = abs(sum(rank[v] for v in x) - expected)
    splits = list(itertools.combinations(ranks, len(x)))
    return sum(abs(sum(s) - expected) >= observed - 1e-9 for s in splits) / len(splits)


@pytest.mark.parametrize(
    ("x", "y", "p"),
    [
        ([1, 2, 3], [4, 5, 6], 0.1),  # 3 + 3 can never go below 0.1
        ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 2 / 252),
        ([1, 2, 3, 4], [1.5, 2.5, 3.5, 4.5], 0.6857142857),
        ([5, 5, 5], [5, 5, 5], 1.0),
    ],
)
def test_u_test_known_values(x: list[float], y: list[float], p: float) -> None:
    assert mann_whitney_u(x, y).p_value == pytest.approx(p)
    assert mann_whitney_u(y, x).p_value == pytest.approx(p)  # two-sided: symmetric


def test_u_test_is_exact_with_ties() -> None:
    rng = random.Random(3)
    for _ in range(40):
        n1, n2 = rng.randint(2, 6), rng.randint(2, 6)
        x = [rng.choice([1, 2, 2, 3, 4]) for _ in range(n1)]
        y = [rng.choice([2, 3, 3, 4, 5]) for _ in range(n2)]
        assert mann_whitney_u(x, y).p_value == pytest.approx(brute_force_p(x, y))


def test_smallest_possible_p_and_the_repeats_it_takes() -> None:
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]).min_p_value == pytest.approx(0.1)
    # A tie across the sides: two splits share each extreme rank sum.
    assert mann_whitney_u([1, 2, 3], [3, 4, 5]).min_p_value == pytest.approx(0.2)
    assert mann_whitney_u([1, 2, 3, 4], [3, 4, 5, 6]).min_p_value == pytest.approx(2 / 70)
    assert mann_whitney_u([4, 4, 4], [4, 4, 4]).min_p_value == 1.0  # all tied: nothing to see
    assert compare.repeats_needed(0.05) == 4
    assert compare.repeats_needed(0.01) == 5


def test_large_samples_use_the_normal_approximation_close_to_exact() -> None:
    rng = random.Random(7)
    x = [rng.gauss(0, 1) for _ in range(20)]
    y = [rng.gauss(0.8, 1) for _ in range(20)]
    exact = mann_whitney_u(x, y)
    approx = mann_whitney_u(x + x[:1], y)  # 41 values: past EXACT_MAX_N
    assert exact.exact and not approx.exact
    assert approx.p_value == pytest.approx(exact.p_value, rel=0.35)


# --- verdicts ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_same_numbers_pass() -> None:
    base = repeats([1000, 1010, 990, 1005, 995])
    v = verdict(base, base)
    assert not v.failed
    assert v.significance == "not significant"
    assert "no worse" in v.reason


@pytest.mark.integration
def test_a_real_regression_fails_and_says_why() -> None:
    base = repeats([1000, 1010, 990, 1005, 995])
    new = repeats([500, 510, 490, 505, 495])
    v = verdict(base, new)
    assert v.failed and v.significance == "significant"
    assert v.n_base == v.n_new == 5
    assert v.p_value == pytest.approx(2 / 252)
    assert v.reason.startswith("throughput -50.0% (1,000 → 500 req/s): worse than the 10%")
    assert "Mann-Whitney U p=0.00794 ≤ α=0.05, n=5+5" in v.reason


def test_beyond_the_threshold_but_within_the_noise_is_inconclusive() -> None:
    base = repeats([1000, 700, 1300, 900, 1100])
    new = repeats([850, 1250, 650, 800, 1050])  # median -15 %, but the repeats overlap
    v = verdict(base, new)
    assert not v.failed and v.verdict == "inconclusive"
    assert v.significance == "not significant"
    assert "within the noise of the repeats, so inconclusive" in v.reason


@pytest.mark.integration
def test_significant_but_within_the_threshold_passes() -> None:
    v = verdict(repeats([1000, 1001, 1002, 1003, 1004]), repeats([950, 951, 952, 953, 954]))
    assert not v.failed and v.significance == "significant"
    assert "within the 10% threshold" in v.reason


@pytest.mark.integration
def test_direction_matters() -> None:
    base = repeats([1000] * 5, [40, 41, 42, 43, 44])
    faster = repeats([2000, 2001, 2002, 2003, 2004], [20, 21, 22, 23, 24])
    assert not verdict(base, faster).failed
    assert not verdict(base, faster, "p99").failed
    slower = repeats([1000] * 5, [80, 81, 82, 83, 84])
    p99 = verdict(base, slower, "p99")
    assert p99.failed and p99.reason.startswith("p99 +95.2% (42 → 82 ms)")


@pytest.mark.integration
def test_single_runs_apply_the_threshold_alone_and_say_so() -> None:
    v = verdict(repeats([1000]), repeats([800]))
    assert v.failed and v.significance == "not judged"
    assert "significance not judged (n=1+1: a single run on a side)" in v.reason
    assert "the threshold alone decides" in v.reason
    assert not verdict(repeats([1000]), repeats([950])).failed


@pytest.mark.integration
def test_three_repeats_cannot_reach_alpha_and_say_how_many_can() -> None:
    v = verdict(repeats([1000, 1010, 990]), repeats([800, 810, 790]))
    assert v.failed and v.significance == "not judged"
    assert "the smallest possible p is 0.1 > α=0.05; 4+ repeats a side can reach it" in v.reason


@pytest.mark.integration
def test_ties_not_sample_size_are_named_when_they_stop_the_test() -> None:
    base = run_of(*(entry(repeat=i, peak=4) for i in range(5)))
    gate = Gate((Threshold("connections_peak", 0.25, "test"),))
    (variant,) = compare.compare(base, base, gate=gate).variants
    (same,) = variant.verdicts
    assert not same.failed
    assert "(n=5+5: every repeat on both sides gave 4)" in same.reason
    grown = run_of(*(entry(repeat=i, peak=p) for i, p in enumerate([4, 4, 4, 4, 30])))
    (variant,) = compare.compare(base, grown, gate=gate).variants
    (tied,) = variant.verdicts
    assert "ties leave the smallest possible p at" in tied.reason
    assert not tied.failed  # the median did not move


@pytest.mark.integration
def test_a_variant_that_failed_in_new_fails_the_gate() -> None:
    base = repeats([1000, 1000])
    new = run_of(entry(status="failed"), entry(repeat=1, status="failed"))
    (variant,) = compare.compare(base, new, gate=GATE).variants
    assert variant.new_status == "failed"
    assert all(v.failed for v in variant.verdicts)
    assert "NEW measured nothing" in variant.verdicts[0].reason


@pytest.mark.integration
def test_unmatched_variants_are_listed_and_no_match_at_all_fails_a_gate() -> None:
    base = run_of(entry("pool"), entry("connect", pool=None))
    new = run_of(entry("pool"), entry("yield", pool=None))
    result = compare.compare(base, new, gate=GATE)
    assert [v.key for v in result.variants] == ["pool c=32 w=1 pool=4..4"]
    assert result.only_in_base == ["connect c=32 w=1"]
    assert result.only_in_new == ["yield c=32 w=1"]
    other = run_of(entry("pool", concurrency=8))
    assert compare.compare(base, other, gate=GATE).failed
    assert not compare.compare(base, other, gate=Gate()).failed  # no gate: nothing to fail


@pytest.mark.integration
def test_ignore_matches_across_pool_sizes_and_strategies() -> None:
    base = run_of(*(entry(repeat=i, rps=1000, pool=4) for i in range(5)))
    small = run_of(*(entry(repeat=i, rps=400, pool=1) for i in range(5)))
    assert not compare.compare(base, small, gate=GATE).variants
    (variant,) = compare.compare(base, small, gate=GATE, ignore=["pool"]).variants
    assert (variant.key, variant.base_key, variant.new_key) == (
        "pool c=32 w=1",
        "pool c=32 w=1 pool=4..4",
        "pool c=32 w=1 pool=1..1",
    )
    assert variant.failed
    per_request = run_of(*(entry("connect", repeat=i, rps=100, pool=None) for i in range(5)))
    (variant,) = compare.compare(base, per_request, gate=GATE, ignore=["strategy", "pool"]).variants
    assert variant.key == "c=32 w=1" and variant.failed


@pytest.mark.integration
def test_ignoring_too_much_is_bad_input() -> None:
    base = run_of(entry("pool"), entry("connect", pool=None))
    with pytest.raises(BadInput, match="are the same variant once strategy, pool is ignored"):
        compare.compare(base, base, gate=GATE, ignore=["strategy", "pool"])


@pytest.mark.integration
def test_ignore_keeps_the_topology_and_rate_in_the_key() -> None:
    """--ignore workers must not merge a direct and a PgBouncer variant (nor two rates): the
    key matched on is Variant.key less the ignored dimension, via= and rate= included."""
    base = run_of(
        entry("pool", workers=1),
        entry("pool", workers=1, topology="pgbouncer-transaction"),
        entry("pool", workers=1, rate=500),
        entry("pool", workers=1, rate=900),
    )
    new = run_of(
        entry("pool", workers=2),
        entry("pool", workers=2, topology="pgbouncer-transaction"),
        entry("pool", workers=2, rate=500),
        entry("pool", workers=2, rate=900),
    )
    result = compare.compare(base, new, gate=GATE, ignore=["workers"])
    assert [(v.key, v.new_key) for v in result.variants] == [
        ("pool c=32 pool=4..4", "pool c=32 w=2 pool=4..4"),
        ("pool c=32 pool=4..4 via=pgbouncer-transaction",
         "pool c=32 w=2 pool=4..4 via=pgbouncer-transaction"),
        ("pool c=32 pool=4..4 rate=500", "pool c=32 w=2 pool=4..4 rate=500"),
        ("pool c=32 pool=4..4 rate=900", "pool c=32 w=2 pool=4..4 rate=900"),
    ]  # fmt: skip
    assert not result.only_in_base and not result.only_in_new


@pytest.mark.integration
def test_ignore_topology_matches_direct_with_pgbouncer() -> None:
    base = run_of(entry("pool"))
    new = run_of(entry("pool", topology="pgbouncer-session"))
    assert not compare.compare(base, new, gate=GATE).variants
    (variant,) = compare.compare(base, new, gate=GATE, ignore=["topology"]).variants
    assert variant.new_key == "pool c=32 w=1 pool=4..4 via=pgbouncer-session"


@pytest.mark.parametrize(
    "variant",
    [
        Variant("pool", 8, 2, 1, 4),
        Variant("connect", 8, 1, None, None, topology="pgbouncer-transaction"),
        Variant("pool", 8, 1, 4, 4, rate=250.5, topology="pgbouncer-session"),
    ],
)
def test_one_variant_key_everywhere(variant: Variant) -> None:
    """Runs, --ignore, compare and reports match on the one key the model defines."""
    recorded = made(variant.strategy, variant=variant.to_dict())
    assert recorded.key == variant.key == compare.match_key(recorded, [])
    assert Variant.from_dict(recorded.variant.model_dump()) == variant
    assert compare.match_key(recorded, ["concurrency"]) == variant.key.replace(" c=8", "")


@pytest.mark.integration
def test_environment_and_scenario_differences_are_listed() -> None:
    base, new = repeats([1000]), repeats([1000], duration_s=20)
    new.environment.cpu_count, new.environment.cpu_model = 64, "Other CPU"
    new.environment.postgres = results.postgres_info("embedded", "17.0", {"fsync": "off"}, "-")
    base.environment.postgres = results.postgres_info("embedded", "16.2", {"fsync": "on"}, "-")
    new.connbench_version = "9.9"
    found = {d.what: (d.base, d.new) for d in compare.environment_differences(base, new)}
    assert found["cpu_count"][1] == "64"
    assert found["cpu_model"][1] == "Other CPU"
    assert found["PostgreSQL version"] == ("16.2", "17.0")
    assert found["PostgreSQL fsync"] == ("on", "off")
    assert found["connbench version"][1] == "9.9"
    assert found["scenario duration_s"] == ("5.0", "20.0")
    assert "load_average_1m" not in found  # changes every run: not a difference in setup
    assert compare.environment_differences(base, base) == []


# --- thresholds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("throughput", "expected METRIC:PERCENT"),
        ("throughput:10", 'expected a percentage such as "10%"'),
        ("throughput:0%", "expected a percentage above 0"),
        ("latency:10%", "unknown metric 'latency' (known: throughput/throughput_rps/rps, mean/"),
    ],
)
def test_bad_fail_on(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compare.parse_fail_on(text)


@pytest.mark.integration
def test_gate_from_the_result_with_command_line_overrides() -> None:
    new = repeats([1000], gate={"throughput": 0.1, "p99": 0.5, "alpha": 0.01}, source="ci.toml")
    gate = compare.resolve_gate(new, "new.json", [("p99", 0.2), ("p50", 0.3)])
    assert gate.alpha == 0.01
    assert {t.metric: (t.fraction, t.source) for t in gate.thresholds} == {
        "throughput": (0.1, "ci.toml [gate]"),
        "p99": (0.2, "--fail-on"),
        "p50": (0.3, "--fail-on"),
    }
    assert compare.resolve_gate(new, "new.json", alpha=0.1).alpha == 0.1
    assert compare.resolve_gate(repeats([1]), "x").thresholds == ()


@pytest.mark.integration
def test_a_bad_recorded_gate_names_the_file_and_key() -> None:
    new = repeats([1000], gate={"throughput": -0.1})
    with pytest.raises(ResultFileError, match="new.json: scenario.gate.throughput"):
        compare.resolve_gate(new, "new.json")
    document = results.to_dict(new)
    document["scenario"]["gate"]["throughput"] = "lots"  # not a number: the loader says so
    with pytest.raises(
        ResultFileError, match='new.json: scenario.gate.throughput: expected a number, got "lots"'
    ):
        results.parse(document, "new.json")
