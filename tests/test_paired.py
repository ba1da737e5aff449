"""The paired A/B gate: its statistics (exact values, brute force) and its verdicts (pure)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from connbench.analyse import compare, paired
from connbench.analyse.compare import Gate, Threshold
from connbench.analyse.paired import Interval
from connbench.cli import app
from connbench.model import results
from connbench.model.errors import BadInput
from connbench.model.results import RunResult

from .conftest import entry, run_of
from .helpers import BASE, ab_run, assert_one_line_exit_2

# --- the statistics -----------------------------------------------------------------------------


def test_signed_rank_counts_known_distributions() -> None:
    assert paired.signed_rank_counts(1) == [1, 1]
    assert paired.signed_rank_counts(3) == [1, 1, 1, 2, 1, 1, 1]
    counts = paired.signed_rank_counts(10)
    assert sum(counts) == 2**10 and len(counts) == 56
    assert sum(counts[:9]) == 25  # P(T+ <= 8) = 25/1024: the tabled critical value for n=10


def brute_force_counts(n: int) -> list[int]:
    counts = [0] * (n * (n + 1) // 2 + 1)
    for signs in itertools.product((0, 1), repeat=n):
        counts[sum(rank for rank, s in zip(range(1, n + 1), signs, strict=True) if s)] += 1
    return counts


@pytest.mark.parametrize("n", [2, 5, 8])
def test_signed_rank_counts_match_enumeration(n: int) -> None:
    assert paired.signed_rank_counts(n) == brute_force_counts(n)


@pytest.mark.parametrize(("alpha", "rounds"), [(0.05, 6), (0.01, 8), (0.1, 5), (0.125, 4)])
def test_min_rounds(alpha: float, rounds: int) -> None:
    assert paired.min_rounds(alpha) == rounds
    assert 2 / 2**rounds <= alpha < 2 / 2 ** (rounds - 1)


@pytest.mark.parametrize(
    ("d", "estimate"),
    [
        ([1, 2, 3], 2.0),  # Walsh averages 1 1.5 2 2 2.5 3
        ([0, 10], 5.0),  # 0 5 10
        ([1, 2, 3, 100], 2.75),  # 1 1.5 2 2 2.5 3 50.5 51 51.5 100: the outlier barely moves it
        ([-0.1], -0.1),
    ],
)
def test_hodges_lehmann_known_values(d: list[float], estimate: float) -> None:
    assert paired.hodges_lehmann(d) == pytest.approx(estimate)


def test_hodges_lehmann_needs_a_value() -> None:
    with pytest.raises(ValueError):
        paired.hodges_lehmann([])


def test_interval_for_six_rounds_is_their_range_at_96_9_percent() -> None:
    d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert paired.shift_interval(d, 0.05) == Interval(0.1, 0.6, 1 - 2 / 64)
    assert paired.shift_interval(d[:5], 0.05) is None  # 5 rounds cannot reach 0.05
    assert paired.shift_interval(d[:5], 0.1) == Interval(0.1, 0.5, 1 - 2 / 32)


def test_interval_for_ten_rounds_uses_the_tabled_critical_value() -> None:
    d = [0.05, -0.02, 0.11, 0.03, 0.08, -0.01, 0.06, 0.04, 0.09, 0.025]
    walsh = paired.walsh_averages(d)
    assert len(walsh) == 55
    interval = paired.shift_interval(d, 0.05)
    # k = 9: P(T+ <= 8) = 25/1024 <= 0.025 < P(T+ <= 9) = 30/1024.
    assert interval == Interval(walsh[8], walsh[46], 1 - 50 / 1024)
    assert interval.low == pytest.approx(0.015) and interval.high == pytest.approx(
        0.075
    )  # by hand: the 9th from each end


def test_interval_moves_with_a_shift_of_every_round() -> None:
    rng = random.Random(7)
    d = [rng.gauss(0, 0.1) for _ in range(9)]
    base = paired.shift_interval(d, 0.05)
    moved = paired.shift_interval([v - 0.2 for v in d], 0.05)
    assert base is not None and moved is not None
    assert moved.low == pytest.approx(base.low - 0.2)
    assert moved.high == pytest.approx(base.high - 0.2)
    assert moved.confidence == base.confidence


def brute_force_signed_rank_p(d: Sequence[float]) -> float:
    """Two-sided exact p by flipping every sign of the mid-ranked nonzero differences."""
    nonzero = [v for v in d if v != 0]
    mags = sorted(abs(v) for v in nonzero)
    rank = {m: statistics.mean(i + 1 for i, w in enumerate(mags) if w == m) for m in mags}
    ranks = [rank[abs(v)] for v in nonzero]
    total = sum(ranks)
    observed = abs(2 * sum(rank[abs(v)] for v in nonzero if v > 0) - total)
    patterns = list(itertools.product((0, 1), repeat=len(ranks)))
    as_far = sum(
        abs(2 * sum(r for r, s in zip(ranks, signs, strict=True) if s) - total) >= observed - 1e-9
        for signs in patterns
    )
    return as_far / len(patterns)


@pytest.mark.parametrize(
    ("d", "p"),
    [
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 2 / 64),  # all one sign: the smallest p for 6
        ([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6], 2 / 64),
        ([0.1, -0.2, 0.3], 0.75),  # T+ = 4, T- = 2: 6 of the 8 sign patterns are as far
        ([0.0, 0.0], 1.0),
        ([0.1, 0.0, 0.2, 0.3, 0.4, 0.5], 2 / 32),  # the zero is dropped: 5 left
    ],
)
def test_signed_rank_p_known_values(d: list[float], p: float) -> None:
    assert paired.signed_rank_p(d) == pytest.approx(p)


@pytest.mark.parametrize(
    "d",
    [
        [0.05, -0.02, 0.11, 0.03, 0.08, -0.01, 0.06, 0.04, 0.09, 0.02],
        [0.1, -0.1, 0.1, 0.2, -0.2, 0.3, 0.0],  # ties in magnitude, and a zero
        [1, 1, 1, -1, 2],
    ],
)
def test_signed_rank_p_matches_enumeration_with_ties(d: list[float]) -> None:
    assert paired.signed_rank_p(d) == pytest.approx(brute_force_signed_rank_p(d))


def test_the_interval_excludes_zero_exactly_when_the_test_rejects() -> None:
    rng = random.Random(13)
    for _ in range(200):
        n = rng.randint(6, 12)
        d = [rng.gauss(rng.choice([0, 0.05, 0.2]), 0.1) for _ in range(n)]
        interval = paired.shift_interval(d, 0.05)
        assert interval is not None
        rejects = paired.signed_rank_p(d) <= 0.05
        assert (not interval.low <= 0 <= interval.high) == rejects, d


def test_rounds_alternate_their_order() -> None:
    from connbench.model.scenario import build
    from connbench.runner import round_plan

    variants = build(None, {"strategies": ["pool,connect,yield"]}).variants()
    plan = round_plan(variants, 3)
    assert [(r, p, v.strategy) for r, p, v in plan] == [
        (0, 0, "pool"), (0, 1, "connect"), (0, 2, "yield"),
        (1, 0, "yield"), (1, 1, "connect"), (1, 2, "pool"),
        (2, 0, "pool"), (2, 1, "connect"), (2, 2, "yield"),
    ]  # fmt: skip


# --- A/B inside one result ----------------------------------------------------------------------


THROUGHPUT = Gate((Threshold("throughput", 0.10, "--fail-on"),))


def ab(run: RunResult, gate: Gate = THROUGHPUT, **kw: Any) -> paired.PairedComparison:
    return paired.compare_paired(run, base="base", head="head", gate=gate, label="r.json", **kw)


def test_a_consistent_loss_beyond_the_threshold_fails() -> None:
    head = [b * f for b, f in zip(BASE, [0.84, 0.86, 0.83, 0.85, 0.87, 0.82], strict=True)]
    result = ab(ab_run(BASE, head))
    assert result.base == "base c=32 w=1 pool=4..4" and result.head == "head c=32 w=1 pool=4..4"
    (check,) = result.checks
    assert check.failed and result.failed
    throughput = result.metrics["throughput"]
    assert throughput.ratios == pytest.approx([0.84, 0.86, 0.83, 0.85, 0.87, 0.82])
    assert throughput.rounds == [1, 2, 3, 4, 5, 6]
    logs = [math.log(r) for r in throughput.ratios]
    assert throughput.ratio is not None
    assert throughput.ratio == pytest.approx(math.exp(paired.hodges_lehmann(logs)))
    assert (throughput.low, throughput.high) == pytest.approx((0.82, 0.87))
    assert throughput.p_value == pytest.approx(2 / 64)
    assert throughput.detectable == pytest.approx(1 - throughput.ratio / 0.87)
    assert check.reason == (
        f"throughput ×{throughput.ratio:.3f} ({throughput.ratio - 1:+.1%}), 96.9% interval "
        "×0.820..×0.870, 6 rounds: worse than the 10% threshold, and the interval rules out a "
        "change of less than 5%"
    )
    assert check.verdict == "fail" and result.verdict == "fail"
    assert check.rule == (
        "fail when the estimate is below ×0.90 (10% worse) and the interval's high end is below "
        "×0.950 (it rules out a change of less than 5%); pass when its low end is not below "
        "×0.90 (it rules out a change worse than the threshold); otherwise inconclusive"
    )
    assert result.order == "base first in round 1, 3, 5; head first in round 2, 4, 6"


def test_a_loss_beyond_the_threshold_with_one_round_the_other_way_is_inconclusive() -> None:
    head = [b * f for b, f in zip(BASE, [0.84, 0.86, 1.02, 0.85, 0.87, 0.82], strict=True)]
    result = ab(ab_run(BASE, head))
    (check,) = result.checks
    assert not check.failed and check.verdict == "inconclusive"
    assert result.verdict == "inconclusive" and not result.failed
    assert check.reason.endswith(
        "inconclusive: worse than the 10% threshold, but the interval reaches ×1.020: a change "
        "of less than 5% is not ruled out"
    )
    # More rounds at this spread would decide it, and that is said.
    assert check.more_rounds is not None and check.more_rounds > 6


def test_noise_wider_than_the_threshold_never_passes_silently() -> None:
    """The issue's case: an estimate within the threshold from rounds too noisy to rule out
    a change beyond it is inconclusive, not a pass."""
    head = [b * f for b, f in zip(BASE, [0.80, 1.15, 0.90, 1.10, 0.85, 1.02], strict=True)]
    result = ab(ab_run(BASE, head))
    (check,) = result.checks
    assert check.verdict == "inconclusive" and result.verdict == "inconclusive"
    assert "a change worse than it is not ruled out" in check.reason
    assert check.more_rounds is not None and check.more_rounds > 6


def test_a_small_real_loss_within_the_threshold_passes() -> None:
    head = [b * f for b, f in zip(BASE, [0.95, 0.96, 0.94, 0.95, 0.96, 0.95], strict=True)]
    result = ab(ab_run(BASE, head))
    (check,) = result.checks
    assert result.metrics["throughput"].interval_excludes_one
    assert check.verdict == "pass"
    assert check.reason.endswith(
        "within the 10% threshold, and the interval rules out a change worse than it"
    )


def test_the_same_rounds_pass_and_show_what_they_could_have_detected() -> None:
    head = [b * f for b, f in zip(BASE, [1.01, 0.99, 1.02, 0.98, 1.0, 1.01], strict=True)]
    result = ab(ab_run(BASE, head))
    assert not result.failed and result.verdict == "pass"
    throughput = result.metrics["throughput"]
    assert throughput.ratio is not None
    assert throughput.detectable == pytest.approx(1 - throughput.ratio / 1.02)
    assert paired.rounds_to_resolve(throughput, 0.10, 0.05) is None  # finer than 10 %


def test_rounds_to_resolve_scales_with_the_square_of_the_reach() -> None:
    metric = paired.PairedMetric("throughput", [], [], [], [1.0] * 6, 1.0, 0.8, 1.2, 0.97, 1, 0.2)
    expected = math.ceil(6 * (math.log(1.2) / math.log(1.1)) ** 2)
    assert paired.rounds_to_resolve(metric, 0.10, 0.05) == expected == 22


def test_latency_up_is_worse_and_connections_equal_in_every_round_pass() -> None:
    head = [b / 1.3 for b in BASE]  # p99 = 40000 / rps: up by 30 % in every round
    gate = Gate((Threshold("p99", 0.20, "--fail-on"), Threshold("connections_peak", 0.1, "t")))
    result = ab(ab_run(BASE, head), gate)
    p99, peak = result.checks
    assert p99.failed and p99.ratio == pytest.approx(1.3)
    assert p99.rule.startswith("fail when the estimate is above ×1.20 (20% worse)")
    assert peak.verdict == "pass" and peak.ratio == 1.0
    assert "no worse, within the 10% threshold" in peak.reason


def test_a_failed_round_fails_the_gate_unless_missing_is_allowed() -> None:
    head: list[float | None] = [b * 0.98 for b in BASE]
    head[2] = None
    result = ab(ab_run(BASE, head))
    assert result.missing == [
        "head (head c=32 w=1 pool=4..4) failed (app 'x' exited (code 1)) in round 3"
    ]
    assert result.failed and result.missing_fails
    allowed = ab(ab_run(BASE, head), allow_missing=True)
    assert not allowed.failed
    assert allowed.metrics["throughput"].rounds == [1, 2, 4, 5, 6]
    (check,) = allowed.checks
    assert "not judged: 5 usable rounds cannot reach α=0.05 (6+ needed)" in check.reason
    assert check.verdict == "inconclusive" and allowed.verdict == "inconclusive"
    assert "--allow-missing: 1 round(s) left out, 5 paired" in allowed.warnings


def test_a_variant_that_served_nothing_fails_the_gate() -> None:
    run = ab_run(BASE, [b * 0.98 for b in BASE])
    for r in run.results:
        if r.key.startswith("head") and r.repeat == 4:
            assert r.requests is not None
            r.requests = r.requests.model_copy(update={"ok": 0, "errors": 120, "total": 120})
            r.throughput_rps = 0.0
    result = ab(run)
    assert result.failed
    assert result.missing == [
        "head (head c=32 w=1 pool=4..4) served nothing (no 2xx response) in round 5"
    ]


def test_no_gate_nothing_fails_even_with_a_failed_round() -> None:
    head: list[float | None] = [b * 0.5 for b in BASE]
    head[0] = None
    result = ab(ab_run(BASE, head), Gate())
    assert result.missing and not result.failed and not result.checks


def test_zero_on_one_side_is_no_ratio_and_fails_where_up_is_bad() -> None:
    peaks = ([0, 0, 0, 0, 0, 0], [0, 0, 3, 0, 0, 0])
    gate = Gate((Threshold("connections_peak", 0.25, "t"),))
    result = ab(ab_run(BASE, BASE, peaks=peaks), gate)
    (check,) = result.checks
    assert check.failed
    assert check.reason == "conns peak: base measured 0 in round 3: no ratio: worse, fails"
    both_zero = ab(ab_run(BASE, BASE, peaks=(peaks[0], peaks[0])), gate)
    assert both_zero.metrics["connections_peak"].ratio == 1.0
    assert not both_zero.failed


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("base", "base c=32 w=1 pool=4..4"),
        ("base c=32 w=1 pool=4..4", "base c=32 w=1 pool=4..4"),
        ("pool=1..1", "pool c=32 w=1 pool=1..1"),
        ("connect", "connect c=32 w=1"),
    ],
)
def test_select_takes_a_key_or_words_only_one_variant_has(name: str, key: str) -> None:
    run = run_of(
        entry("base"), entry("pool", pool=1), entry("pool", pool=4), entry("connect", pool=None)
    )
    assert paired.select(run, name, "--base") == key


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "--base 'nope': no such variant in the result (variants: 'base c=32 w=1"),
        ("pool", "--base 'pool' matches several variants ('pool c=32 w=1 pool=1..1'; 'pool"),
        ("", "--base '': no such variant"),
    ],
)
def test_select_unknown_or_ambiguous_is_bad_input(name: str, message: str) -> None:
    run = run_of(entry("base"), entry("pool", pool=1), entry("pool", pool=4))
    with pytest.raises(BadInput, match=re_escape(message)):
        paired.select(run, name, "--base")


def re_escape(text: str) -> str:
    return re.escape(text)


def test_bad_input_one_round_same_variant_rounds_that_do_not_pair() -> None:
    with pytest.raises(BadInput, match="1 round: nothing to pair"):
        ab(ab_run([1000], [900]))
    with pytest.raises(BadInput, match="--base and --head are the same variant"):
        paired.compare_paired(ab_run(BASE, BASE), base="base", head="base", gate=Gate())
    run = ab_run(BASE, BASE)
    run.results = [r for r in run.results if not (r.key.startswith("head") and r.repeat == 2)]
    with pytest.raises(BadInput, match=re_escape(
        "r.json: the rounds do not pair: 'base c=32 w=1 pool=4..4' ran rounds 1, 2, 3, 4, 5, 6, "
        "'head c=32 w=1 pool=4..4' rounds 1, 2, 4, 5, 6"
    )):  # fmt: skip
        ab(run)
    twice = ab_run(BASE, BASE)
    twice.results[2].repeat = 0  # a second round 1 of base: two files pasted together?
    with pytest.raises(BadInput, match="has round 1 twice"):
        ab(twice)


def test_an_interrupted_last_round_is_left_out() -> None:
    run = ab_run([*BASE, 1000.0], [*BASE, 1000.0])
    run.results.pop()  # round 7 never got its second side
    run.interrupted = True
    result = ab(run)
    assert result.rounds == 6
    assert "the run was interrupted in round 7: that round is left out" in result.warnings


def test_too_few_rounds_for_alpha_is_bad_input_under_a_gate_only() -> None:
    run = ab_run(BASE[:5], BASE[:5])
    with pytest.raises(BadInput, match=re_escape(
        "r.json: 5 rounds cannot reach α=0.05 with the signed-rank test (its smallest "
        "two-sided p is 0.0625): run 6 or more rounds (--repeat), or raise --alpha"
    )):  # fmt: skip
        ab(run)
    assert ab(run, Gate()).metrics["throughput"].low is None  # shown, without an interval
    assert not ab(run, Gate(THROUGHPUT.thresholds, alpha=0.1)).failed


def test_a_gated_metric_the_result_lacks_is_bad_input() -> None:
    run = ab_run(BASE, BASE)
    for r in run.results:
        r.server = None
    gate = Gate((Threshold("sessions_opened", 0.25, "--fail-on"),))
    with pytest.raises(BadInput, match=re_escape(
        "--fail-on sessions_opened: the result has no sessions opened for "
        "'base c=32 w=1 pool=4..4' and 'head c=32 w=1 pool=4..4'"
    )):  # fmt: skip
        ab(run, gate)


# --- cross-file: a missing or failed variant fails the gate --------------------------------------


def test_cross_file_missing_failed_or_idle_variants_fail_the_gate() -> None:
    base = run_of(entry("pool"), entry("connect", pool=None))
    gate = THROUGHPUT
    vanished = compare.compare(base, run_of(entry("pool")), gate=gate)
    assert vanished.missing == ["connect c=32 w=1: in BASE, missing from NEW"]
    assert vanished.failed and not vanished.verdicts[0].failed
    assert not compare.compare(base, run_of(entry("pool")), gate=gate, allow_missing=True).failed
    assert not compare.compare(base, run_of(entry("pool")), gate=Gate()).failed
    unavailable = run_of(entry("pool"), entry("connect", pool=None, status="unavailable"))
    failed = compare.compare(base, unavailable, gate=gate)
    assert failed.missing == ["connect c=32 w=1: unavailable in NEW"] and failed.failed
    idle = entry("connect", pool=None)
    assert idle.requests is not None
    idle.requests = idle.requests.model_copy(update={"ok": 0, "errors": 50, "total": 50})
    idle.throughput_rps = 0.0
    served = compare.compare(base, run_of(entry("pool"), idle), gate=gate)
    assert served.missing == ["connect c=32 w=1: served nothing in NEW (no 2xx response)"]
    assert served.failed


# --- the command line ---------------------------------------------------------------------------

cli = CliRunner()


def saved(path: Path, run: RunResult) -> str:
    results.save(run, path)
    return str(path)


@pytest.fixture
def ab_files(tmp_path: Path) -> dict[str, str]:
    slower = [b * f for b, f in zip(BASE, [0.84, 0.86, 0.83, 0.85, 0.87, 0.82], strict=True)]
    same = [b * f for b, f in zip(BASE, [1.01, 0.99, 1.02, 0.98, 1.0, 1.01], strict=True)]
    return {
        "slower": saved(tmp_path / "slower.json", ab_run(BASE, slower)),
        "same": saved(tmp_path / "same.json", ab_run(BASE, same, gate={"p99": 0.5})),
        "one": saved(tmp_path / "one.json", ab_run([1000], [900])),
    }


def test_cli_paired_markdown_names_ratio_interval_rounds_and_rule(ab_files: dict[str, str]) -> None:
    out = cli.invoke(
        app,
        ["compare", ab_files["slower"], "--base", "base", "--head", "head",
         "--fail-on", "throughput:10%", "--fail-on", "p99:20%", "--format", "markdown"],
    )  # fmt: skip
    assert out.exit_code == 1, out.output
    text = out.stdout
    assert text.startswith("## connbench compare (A/B): ❌ regression")
    assert "❌ **REGRESSION: 1 of 2 checks failed**" in text
    assert "- ❌ **throughput ×0.845 (-15.5%), 96.9% interval ×0.820..×0.870, 6 rounds:" in text
    assert (
        "  - rounds (head/base): 1: ×0.840 · 2: ×0.860 · 3: ×0.830 · 4: ×0.850 · 5: ×0.870 · "
        "6: ×0.820"
    ) in text
    assert (
        "  - rule: fail when the estimate is below ×0.90 (10% worse) and the interval's high end "
        "is below ×0.950"
    ) in text
    # Latency up by 1/0.845: within 20 %, but the interval reaches beyond it: not a pass.
    assert "- ⚠️ **p99 ×1.184 (+18.4%)" in text
    assert "**Inconclusive checks** (neither pass nor fail: more rounds needed)" in text
    assert "**Smallest change these rounds could have detected**" in text
    assert "- throughput: 2.9% (the interval's reach from the estimate, over 6 rounds)\n" in text
    assert "Order: base first in round 1, 3, 5; head first in round 2, 4, 6." in text


def test_cli_paired_inconclusive_exits_5_and_says_how_many_rounds(
    ab_files: dict[str, str],
) -> None:
    args = ["compare", ab_files["slower"], "--base", "base", "--head", "head"]
    out = cli.invoke(app, [*args, "--fail-on", "p99:20%", "--format", "markdown"])
    assert out.exit_code == 5, out.output
    assert out.stdout.startswith("## connbench compare (A/B): ⚠️ inconclusive")
    assert "⚠️ **INCONCLUSIVE: 1 of 1 check undecided after 6 rounds (about " in out.stdout
    assert "rounds** in all would likely decide it (now 6)" in out.stdout
    table = cli.invoke(app, [*args, "--fail-on", "p99:20%"])
    assert table.exit_code == 5 and "? inconclusive p99 ×1.184" in table.stdout


def test_cli_paired_passes_the_same_and_uses_the_recorded_gate(ab_files: dict[str, str]) -> None:
    out = cli.invoke(app, ["compare", ab_files["same"], "--base", "base", "--head", "head"])
    assert out.exit_code == 0, out.output
    assert "no regression (1 check passed)" in out.stdout  # p99 from the scenario's [gate]
    assert "smallest detectable change: p99:" in out.stdout
    data = json.loads(
        cli.invoke(
            app, ["compare", ab_files["same"], "--base", "base", "--head", "head",
                  "--format", "json"],
        ).stdout
    )  # fmt: skip
    (comparison,) = data["comparisons"]
    assert data["failed"] is False and comparison["checks"][0]["metric"] == "p99"
    assert comparison["metrics"]["throughput"]["rounds"] == [1, 2, 3, 4, 5, 6]
    rows = list(csv.DictReader(io.StringIO(cli.invoke(
        app, ["compare", ab_files["same"], "--base", "base", "--head", "head", "--format", "csv"]
    ).stdout)))  # fmt: skip
    assert [r["metric"] for r in rows][:2] == ["throughput", "p50"]
    assert rows[3]["gate"] == "pass" and rows[0]["gate"] == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base", "nope", "--head", "head"], "--base 'nope': no such variant in the result"),
        (["--base", "base", "--head", "nope"], "--head 'nope': no such variant"),
        (["--base", "base"], "--base and --head go together"),
        (["--base", "base", "--head", "head", "--ignore", "pool"], "--ignore matches variants"),
        (["--base", "base", "--head", "base"], "--base and --head are the same variant"),
        (["--base", "base", "--head", "head", "--fail-on", "throughput:ten"],
         "--fail-on: expected a percentage"),
    ],
)  # fmt: skip
def test_cli_paired_bad_input_is_one_line_exit_2(
    ab_files: dict[str, str], args: list[str], message: str
) -> None:
    assert_one_line_exit_2(cli.invoke(app, ["compare", ab_files["same"], *args]), message)


def test_cli_paired_bad_files_are_one_line_exit_2(ab_files: dict[str, str]) -> None:
    ab_args = ["--base", "base", "--head", "head"]
    two = cli.invoke(app, ["compare", ab_files["same"], ab_files["slower"], *ab_args])
    assert_one_line_exit_2(two, "--base/--head judge one RESULT file, got 2")
    one = cli.invoke(app, ["compare", ab_files["one"], *ab_args])
    assert_one_line_exit_2(one, "one.json: 1 round: nothing to pair")
    lacking = cli.invoke(app, ["compare", ab_files["same"], *ab_args, "--fail-on", "p999:10%"])
    assert lacking.exit_code == 0  # the hand-made result has a p99.9: the next one has not
    run = results.load(Path(ab_files["same"]))
    for r in run.results:
        r.server = None
    bare = saved(Path(ab_files["same"]).with_name("bare.json"), run)
    lacks = cli.invoke(app, ["compare", bare, *ab_args, "--fail-on", "sessions_opened:10%"])
    assert_one_line_exit_2(lacks, "--fail-on sessions_opened: the result has no sessions opened")
    alone = cli.invoke(app, ["compare", ab_files["same"]])
    assert_one_line_exit_2(alone, "compare needs a BASE and at least one NEW result file (or one")


def test_cli_cross_file_missing_variant_fails_unless_allowed(tmp_path: Path) -> None:
    base = saved(tmp_path / "b.json", run_of(entry("pool"), entry("connect", pool=None)))
    new = saved(tmp_path / "n.json", run_of(entry("pool")))
    gate = ["--fail-on", "throughput:10%"]
    out = cli.invoke(app, ["compare", base, new, *gate, "--format", "markdown"])
    assert out.exit_code == 1, out.output
    assert "❌ **REGRESSION: 1 variant(s) missing or failed in NEW**" in out.stdout
    assert "- ❌ connect c=32 w=1: in BASE, missing from NEW" in out.stdout
    allowed = cli.invoke(app, ["compare", base, new, *gate, "--allow-missing"])
    assert allowed.exit_code == 0, allowed.output
