"""Paired A/B verdicts inside one interleaved result. Pure: no I/O, no printing.

Two variants measured in the same run, round by round, with the order alternating (A B,
B A, ...), share whatever the machine was doing in each round: drift between rounds moves
both alike, and the head/base **ratio of each round** is free of it. So the gate judges
those ratios, not two piles of repeats.

The statistics, on the log of the per-round ratios ``d`` (so that 0.8 and 1.25 are the same
distance from 1):

- **Estimate**: the Hodges-Lehmann estimate, the median of the Walsh averages
  ``(d_i + d_j) / 2, i <= j``, shown as a ratio (``exp``). Robust: one wild round moves it
  little, and it is the estimate that matches the interval below.
- **Interval**: the exact distribution-free interval that goes with Wilcoxon's signed-rank
  test (the Walsh averages between the k-th smallest and the k-th largest, k from the exact
  null distribution of the signed-rank statistic), so its confidence is exact and stated as
  achieved (6 rounds at alpha 0.05: 96.9 %). It needs no normality and no random seed. It
  excludes 1 exactly when the exact two-sided signed-rank test gives p <= alpha. Tied
  rounds make its confidence approximate; zero differences stay in the Walsh averages.
- **The rule**: a check fails when the estimate is worse than its threshold **and** the
  interval excludes no change (ratio 1). The threshold says what size of change matters;
  the interval, that this one is not noise. Neither alone: a threshold alone fails on noise
  (a worse-than-10 % estimate from rounds that straddle 1), an interval alone fails on real
  changes too small to care about.
- **The smallest detectable change**: how far the interval reaches from the estimate on the
  side of "no change". Every round shifted by the same factor shifts the estimate and the
  interval with it, so a true change smaller than that reach would leave 1 inside the
  interval: these rounds could not have told it from noise. It shrinks like 1/sqrt(rounds).

A variant that failed, was unavailable or served nothing in a round fails the gate (unless
missing rounds are allowed, when those rounds are left out), and so does a gate whose rounds
are too few for the interval to ever exclude 1 (fewer than :func:`min_rounds`): the input
says so before anything is measured against it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from connbench.analyse import sequential
from connbench.analyse.compare import Gate, resolve_gate
from connbench.model import metrics
from connbench.model.errors import BadInput
from connbench.model.metrics import Metric
from connbench.model.results import RunResult, StrategyResult
from connbench.model.scenario import select_variant

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
SIGNED_RANK, SEQUENTIAL = "signed-rank", "sequential"

# --- the statistics -----------------------------------------------------------------------------


def signed_rank_counts(n: int) -> list[int]:
    """``counts[t]``: how many of the ``2**n`` sign patterns of the ranks 1..n have positive
    ranks summing to ``t`` (the exact null distribution of Wilcoxon's T+, no ties)."""
    counts = [1] + [0] * (n * (n + 1) // 2)
    top = 0
    for rank in range(1, n + 1):
        top += rank
        for total in range(top, rank - 1, -1):
            counts[total] += counts[total - rank]
    return counts


def min_rounds(alpha: float) -> int:
    """The fewest pairs with which the signed-rank test (and its interval) can reach ``alpha``
    two-sided: ``2 / 2**n <= alpha`` (6 at 0.05, 8 at 0.01)."""
    n = 1
    while Fraction(2, 1 << n) > Fraction(alpha):
        n += 1
    return n


def walsh_averages(d: Sequence[float]) -> list[float]:
    """Every ``(d[i] + d[j]) / 2`` for ``i <= j``, sorted."""
    return sorted((d[i] + d[j]) / 2 for i in range(len(d)) for j in range(i, len(d)))


def hodges_lehmann(d: Sequence[float]) -> float:
    """The Hodges-Lehmann estimate of the centre of ``d``: the median of its Walsh averages."""
    if not d:
        raise ValueError("hodges_lehmann needs at least one value")
    return statistics.median(walsh_averages(d))


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    confidence: float  # achieved, e.g. 0.96875 for 6 pairs at alpha 0.05


def shift_interval(d: Sequence[float], alpha: float) -> Interval | None:
    """The exact ``1 - alpha`` (or more) interval for the centre of ``d`` that goes with the
    signed-rank test; None when ``len(d)`` is below :func:`min_rounds` (no such interval)."""
    n = len(d)
    if n < min_rounds(alpha):
        return None
    counts = signed_rank_counts(n)
    every = 1 << n
    # The largest k with P(T+ <= k - 1) <= alpha / 2: the k-th smallest and k-th largest
    # Walsh averages bound the interval, whose confidence is 1 - 2 P(T+ <= k - 1).
    k, tail = 0, 0
    while 2 * (tail + counts[k]) <= alpha * every:
        tail += counts[k]
        k += 1
    walsh = walsh_averages(d)
    return Interval(walsh[k - 1], walsh[-k], 1 - 2 * tail / every)


def signed_rank_p(d: Sequence[float]) -> float:
    """Exact two-sided p of Wilcoxon's signed-rank test that ``d`` is centred on 0.

    Zero differences are dropped (Wilcoxon's convention); tied magnitudes get mid-ranks and
    the exact permutation distribution of those ranks, so ties are handled exactly. 1.0 when
    every difference is zero.
    """
    nonzero = sorted((abs(v), v > 0) for v in d if v != 0)
    m = len(nonzero)
    if not m:
        return 1.0
    ranks2: list[int] = []  # doubled mid-ranks: integers
    i = 0
    while i < m:
        j = i
        while j + 1 < m and nonzero[j + 1][0] == nonzero[i][0]:
            j += 1
        ranks2.extend([i + j + 2] * (j - i + 1))
        i = j + 1
    total = sum(ranks2)
    observed = sum(r for r, (_, positive) in zip(ranks2, nonzero, strict=True) if positive)
    # counts[s]: sign patterns whose positive doubled ranks sum to s.
    counts = [1] + [0] * total
    for rank in ranks2:
        for s in range(total, rank - 1, -1):
            counts[s] += counts[s - rank]
    deviation = abs(2 * observed - total)  # |T+ - T-|, doubled ranks
    as_far = sum(c for s, c in enumerate(counts) if abs(2 * s - total) >= deviation)
    return min(1.0, as_far / (1 << m))


# --- A/B inside one result -----------------------------------------------------------------------


def select(run: RunResult, name: str, flag: str) -> str:
    """The key of the variant ``name`` means: its whole key, or words of it that only one
    variant has (``head``, ``connect``, ``pool=1..1``). Raises :class:`BadInput` otherwise."""
    try:
        return select_variant(list(dict.fromkeys(r.key for r in run.results)), name, flag)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


@dataclass
class PairedMetric:
    """One metric, head against base, round by round."""

    metric: str
    rounds: list[int]  # 1-based round numbers of the pairs used
    base_values: list[float]
    head_values: list[float]
    ratios: list[float]  # head / base per round
    ratio: float | None  # the estimate (Hodges-Lehmann, as a ratio); None: not comparable
    low: float | None  # the interval, as ratios; None when the rounds are too few
    high: float | None
    confidence: float | None
    p_value: float | None  # exact two-sided signed-rank p on the log ratios
    detectable: float | None  # smallest change (a fraction) the interval could tell from none
    not_comparable: str | None = None  # why there is no ratio (a round measured 0)
    method: str = SIGNED_RANK  # or SEQUENTIAL: the confidence sequence, valid at every round
    spread: float | None = None  # sd of the per-round log ratios

    @property
    def worse_by(self) -> float | None:
        """The estimate's change in the bad direction (positive: worse)."""
        if self.ratio is None:
            return None
        change = self.ratio - 1
        return -change if metrics.lookup(self.metric).higher_is_better else change

    @property
    def interval_excludes_one(self) -> bool:
        return self.low is not None and self.high is not None and not self.low <= 1 <= self.high


@dataclass
class PairedCheck:
    """One gated metric's verdict: pass, fail or inconclusive."""

    metric: str
    failed: bool  # verdict == FAIL
    threshold: float
    threshold_source: str
    ratio: float | None
    low: float | None
    high: float | None
    confidence: float | None
    detectable: float | None
    rounds: int
    reason: str
    rule: str
    verdict: str = PASS
    more_rounds: int | None = None  # inconclusive: about how many rounds in all would decide


@dataclass
class PairedComparison:
    """Variant ``head`` against variant ``base`` of one result, round by round."""

    label: str  # the result file
    base: str  # variant keys
    head: str
    gate: Gate
    alpha: float
    rounds: int  # rounds in the result
    metrics: dict[str, PairedMetric]
    checks: list[PairedCheck] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # failed / unavailable / served nothing
    allow_missing: bool = False
    order: str = ""  # which side ran first, round by round
    warnings: list[str] = field(default_factory=list)
    method: str = SIGNED_RANK
    max_rounds: int | None = None  # sequential: the budget the run was given
    slices: int = 1  # turns a side in each round (--slices; 1: each side after the other)

    @property
    def missing_fails(self) -> bool:
        return bool(self.gate.thresholds) and bool(self.missing) and not self.allow_missing

    @property
    def failed(self) -> bool:
        return self.missing_fails or any(c.failed for c in self.checks)

    @property
    def verdict(self) -> str:
        """FAIL when a check failed (or a round is missing), else INCONCLUSIVE when a check
        could not decide, else PASS."""
        if self.failed:
            return FAIL
        if any(c.verdict == INCONCLUSIVE for c in self.checks):
            return INCONCLUSIVE
        return PASS


def _by_round(runs: list[StrategyResult], key: str, label: str) -> dict[int, StrategyResult]:
    out: dict[int, StrategyResult] = {}
    for run in runs:
        if run.key != key:
            continue
        if run.repeat in out:
            raise BadInput(f"{label}: {key!r} has round {run.repeat + 1} twice: not one A/B run")
        out[run.repeat] = run
    return out


def _problem(run: StrategyResult | None) -> str | None:
    """Why this round of a variant has no figures to pair, or None."""
    if run is None:
        return "missing"
    if run.status in ("failed", "unavailable"):
        return f"{run.status}" + (f" ({run.failure.splitlines()[0]})" if run.failure else "")
    if run.status == "interrupted":
        return "interrupted"
    if run.requests is None or not run.requests.ok:
        return "served nothing (no 2xx response)"
    return None


def _spans(numbers: Sequence[int]) -> str:
    return ", ".join(str(n + 1) for n in numbers)


def _rounds_of(
    run: RunResult, label: str, base: str, head: str
) -> tuple[list[int], dict[int, StrategyResult], dict[int, StrategyResult], list[str]]:
    """The round numbers both sides ran, each side by round, and warnings.

    Raises :class:`BadInput` when the rounds do not pair: different rounds on the two sides
    (in a fixed-duration closed loop the request counts always differ; what must match is
    that each round has both), unless the run was interrupted and only its last round is
    incomplete; or fewer than two rounds.
    """
    a, b = _by_round(run.results, base, label), _by_round(run.results, head, label)
    warnings = []
    rounds = sorted(a.keys() | b.keys())
    lone = sorted(a.keys() ^ b.keys())
    if lone:
        if run.interrupted and lone == [rounds[-1]]:
            warnings.append(
                f"the run was interrupted in round {lone[0] + 1}: that round is left out"
            )
            rounds = rounds[:-1]
        else:
            raise BadInput(
                f"{label}: the rounds do not pair: {base!r} ran rounds {_spans(sorted(a))}, "
                f"{head!r} rounds {_spans(sorted(b))} (both must run every round of one A/B run)"
            )
    if len(rounds) < 2:
        raise BadInput(
            f"{label}: {len(rounds)} round: nothing to pair (run both variants in one "
            "invocation with --repeat 6 or more)"
        )
    return rounds, a, b, warnings


def paired_metric(
    metric: Metric,
    pairs: Sequence[tuple[int, float, float]],
    alpha: float,
    method: str = SIGNED_RANK,
) -> PairedMetric:
    """The per-round ratios of ``(round, base, head)`` pairs, their estimate and interval:
    Hodges-Lehmann and the exact signed-rank interval, or (``SEQUENTIAL``) the mean log ratio
    and the confidence sequence of :mod:`connbench.analyse.sequential`."""
    rounds = [r + 1 for r, _, _ in pairs]
    xs = [x for _, x, _ in pairs]
    ys = [y for _, _, y in pairs]
    out = PairedMetric(metric.name, rounds, xs, ys, [], None, None, None, None, None, None)
    out.method = method
    for r, x, y in pairs:
        if x == 0 and y == 0:
            out.ratios.append(1.0)
        elif x == 0 or y == 0:
            side = "base" if x == 0 else "head"
            out.not_comparable = f"{side} measured 0 in round {r + 1}: no ratio"
            out.ratios = []
            return out
        else:
            out.ratios.append(y / x)
    if not out.ratios:
        return out
    d = [math.log(r) for r in out.ratios]
    out.p_value = signed_rank_p(d)
    out.spread = statistics.stdev(d) if len(d) > 1 else None
    bounds: tuple[float, float] | None = None
    if method == SEQUENTIAL:
        centre = math.fsum(d) / len(d)
        cs = sequential.interval(d, alpha)
        if cs is not None:
            bounds, out.confidence = (cs.low, cs.high), 1 - alpha
    else:
        centre = hodges_lehmann(d)
        interval = shift_interval(d, alpha)
        if interval is not None:
            bounds, out.confidence = (interval.low, interval.high), interval.confidence
    out.ratio = math.exp(centre)
    if bounds is not None:
        out.low, out.high = math.exp(bounds[0]), math.exp(bounds[1])
        # The reach towards "no change": above the estimate when lower is bad, below else.
        if metric.higher_is_better:
            out.detectable = 1 - math.exp(centre - bounds[1])
        else:
            out.detectable = math.exp(centre - bounds[0]) - 1
    return out


def rounds_to_resolve(paired: PairedMetric, threshold: float, alpha: float) -> int | None:
    """About how many rounds would bring the smallest detectable change down to
    ``threshold`` (it shrinks like 1/sqrt(rounds)); None when it already is."""
    if paired.detectable is None or paired.detectable <= threshold:
        return None
    scale = math.log1p(paired.detectable) / math.log1p(threshold)
    return max(min_rounds(alpha), math.ceil(len(paired.ratios) * scale**2))


def _percent(value: float) -> str:
    return f"{value:+.1%}"


def describe(paired: PairedMetric) -> str:
    """``throughput ×0.842 (-15.8%), 96.9% interval ×0.801..×0.879, 6 rounds``."""
    label = metrics.lookup(paired.metric).label
    if paired.ratio is None:
        return f"{label}: {paired.not_comparable or 'no rounds to compare'}"
    text = f"{label} ×{paired.ratio:.3f} ({_percent(paired.ratio - 1)})"
    if paired.low is not None and paired.high is not None and paired.confidence is not None:
        kind = "confidence sequence" if paired.method == SEQUENTIAL else "interval"
        text += f", {paired.confidence:.1%} {kind} ×{paired.low:.3f}..×{paired.high:.3f}"
    return text + f", {len(paired.ratios)} rounds"


def limits(metric: Metric, threshold: float) -> tuple[float, float]:
    """(the threshold, half of it) as ratios on the bad side: (0.90, 0.95) for a 10 %
    threshold where higher is better, (1.10, 1.05) where lower is."""
    sign = -1 if metric.higher_is_better else 1
    return 1 + sign * threshold, 1 + sign * threshold / 2


def verdict_of(ratio: float, low: float, high: float, threshold: float, metric: Metric) -> str:
    """The rule, on an estimate and its interval (ratios, head/base):

    - FAIL when the estimate is worse than ``threshold`` and the interval rules out a change
      of less than half of it (its better end is worse than ``threshold / 2``);
    - PASS when the interval rules out a change worse than ``threshold`` (its worse end is
      not beyond it);
    - INCONCLUSIVE otherwise.

    With an interval that covers the true ratio with probability ``1 - alpha`` (at every
    round, for the confidence sequence), a true change of at most half the threshold fails
    with probability at most alpha, and a true change worse than the threshold passes with
    probability at most alpha. Half, not "no change": a change just inside the threshold
    (5 % against 10 %) is real, so an interval that merely excludes ×1 would fail it whenever
    the estimate strays beyond the threshold; with rounds added until the gate decides, it
    strays sooner or later.
    """
    worst, half = limits(metric, threshold)
    if metric.higher_is_better:
        if ratio < worst and high < half:
            return FAIL
        return PASS if low >= worst else INCONCLUSIVE
    if ratio > worst and low > half:
        return FAIL
    return PASS if high <= worst else INCONCLUSIVE


def rule_text(metric: Metric, threshold: float) -> str:
    """The rule a check applies, in words."""
    worst, half = limits(metric, threshold)
    side, end, other = (
        ("below", "low", "high") if metric.higher_is_better else ("above", "high", "low")
    )
    return (
        f"fail when the estimate is {side} ×{worst:.2f} ({threshold:.0%} worse) and the "
        f"interval's {other} end is {side} ×{half:.3f} (it rules out a change of less than "
        f"{threshold / 2:.0%}); pass when its {end} end is not {side} ×{worst:.2f} (it rules "
        "out a change worse than the threshold); otherwise inconclusive"
    )


def _rounds_to_decide(
    paired: PairedMetric, metric: Metric, threshold: float, alpha: float
) -> int | None:
    """About how many rounds in all would decide a check that is inconclusive now, if the
    estimate and the per-round spread stay as they are; None when no affordable number would
    (the estimate sits on a boundary)."""
    if paired.ratio is None or paired.low is None or paired.high is None:
        return None
    worst, half = limits(metric, threshold)
    centre = math.log(paired.ratio)
    bad_side = (paired.worse_by or 0) > threshold
    # The interval must shrink to the boundary the estimate is on the far side of.
    target = math.log(half) if bad_side else math.log(worst)
    distance = abs(centre - target)
    if distance <= 0:
        return None
    n = len(paired.ratios)
    if paired.method == SEQUENTIAL:
        if not paired.spread:
            return None
        return sequential.rounds_for(distance, paired.spread, alpha, start=n + 1)
    reach = (math.log(paired.high) - math.log(paired.low)) / 2
    if reach <= 0:
        return None
    return max(n + 1, math.ceil(n * (reach / distance) ** 2))


def _check(paired: PairedMetric, threshold: float, source: str, alpha: float) -> PairedCheck:
    metric = metrics.lookup(paired.metric)
    rule = rule_text(metric, threshold)

    def check(verdict: str, reason: str, more: int | None = None) -> PairedCheck:
        return PairedCheck(
            metric=metric.name,
            failed=verdict == FAIL,
            threshold=threshold,
            threshold_source=source,
            ratio=paired.ratio,
            low=paired.low,
            high=paired.high,
            confidence=paired.confidence,
            detectable=paired.detectable,
            rounds=len(paired.ratios),
            reason=reason,
            rule=rule,
            verdict=verdict,
            more_rounds=more,
        )

    if paired.ratio is None:
        if paired.not_comparable is None:
            return check(INCONCLUSIVE, f"{metric.label}: no rounds with both sides measured")
        # From 0 to something: worse where lower is better; a 0 head where higher is better.
        rose = paired.not_comparable.startswith("base")
        worse = rose != metric.higher_is_better
        return check(
            FAIL if worse else PASS,
            f"{metric.label}: {paired.not_comparable}: "
            + ("worse, fails" if worse else "better, passes"),
        )
    what = describe(paired)
    worse_by = paired.worse_by or 0.0
    beyond = worse_by > threshold
    if paired.low is None or paired.high is None:
        needed = sequential.min_rounds(alpha) if paired.method == SEQUENTIAL else min_rounds(alpha)
        return check(
            INCONCLUSIVE,
            f"{what}: not judged: {len(paired.ratios)} usable rounds cannot reach α={alpha:g} "
            f"({needed}+ needed)",
            needed,
        )
    verdict = verdict_of(paired.ratio, paired.low, paired.high, threshold, metric)
    if verdict == FAIL:
        return check(
            FAIL,
            f"{what}: worse than the {threshold:.0%} threshold, and the interval rules out a "
            f"change of less than {threshold / 2:.0%}",
        )
    if verdict == PASS:
        where = "within the" if worse_by > 0 else "no worse, within the"
        return check(
            PASS,
            f"{what}: {where} {threshold:.0%} threshold, and the interval rules out a change "
            "worse than it",
        )
    bad_end, good_end = (
        (paired.low, paired.high) if metric.higher_is_better else (paired.high, paired.low)
    )
    more = _rounds_to_decide(paired, metric, threshold, alpha)
    if beyond:
        why = (
            f"worse than the {threshold:.0%} threshold, but the interval reaches "
            f"×{good_end:.3f}: a change of less than {threshold / 2:.0%} is not ruled out"
        )
    else:
        why = (
            f"the interval reaches ×{bad_end:.3f}, beyond the {threshold:.0%} threshold: a "
            "change worse than it is not ruled out"
        )
    return check(INCONCLUSIVE, f"{what}: inconclusive: {why}", more)


def _order(a: dict[int, StrategyResult], rounds: Sequence[int]) -> str:
    """Who ran first in each round, as ``base first in 1, 3, 5; head first in 2, 4, 6``."""
    first: dict[str, list[int]] = {"base": [], "head": []}
    for r in rounds:
        position = a[r].position
        if position is None:
            return ""
        first["base" if position == 0 else "head"].append(r)
    return "; ".join(f"{side} first in round {_spans(rs)}" for side, rs in first.items() if rs)


def compare_paired(
    run: RunResult,
    *,
    base: str,
    head: str,
    gate: Gate,
    label: str = "RESULT",
    allow_missing: bool = False,
    method: str | None = None,
) -> PairedComparison:
    """Judge variant ``head`` against variant ``base`` of ``run`` round by round.

    ``base`` and ``head`` are names as :func:`select` takes them. Raises :class:`BadInput`
    for names that are unknown or the same variant, rounds that do not pair, a single round,
    too few rounds for the gate's alpha, and a gated metric the result does not have.
    ``method``: SIGNED_RANK or SEQUENTIAL; by default SEQUENTIAL where the run added rounds
    until the gate decided (``--repeat auto``), whose stopping the fixed interval ignores.
    """
    if method is None:
        method = SEQUENTIAL if run.scenario.sequential else SIGNED_RANK
    base_key = select(run, base, "--base")
    head_key = select(run, head, "--head")
    if base_key == head_key:
        raise BadInput(f"--base and --head are the same variant ({base_key!r})")
    rounds, a, b, warnings = _rounds_of(run, label, base_key, head_key)
    alpha = gate.alpha
    if gate.thresholds and method == SIGNED_RANK and len(rounds) < min_rounds(alpha):
        raise BadInput(
            f"{label}: {len(rounds)} rounds cannot reach α={alpha:g} with the signed-rank "
            f"test (its smallest two-sided p is {2 / 2 ** len(rounds):.3g}): run "
            f"{min_rounds(alpha)} or more rounds (--repeat), or raise --alpha"
        )
    missing = []
    usable = []
    for r in rounds:
        problems = [
            f"{side} ({key}) {problem} in round {r + 1}"
            for side, key, runs in (("base", base_key, a), ("head", head_key, b))
            if (problem := _problem(runs.get(r))) is not None
        ]
        missing.extend(problems)
        if not problems:
            usable.append(r)
    if missing and allow_missing:
        warnings.append(
            f"--allow-missing: {len(rounds) - len(usable)} round(s) left out, {len(usable)} paired"
        )
    paired: dict[str, PairedMetric] = {}
    gated = {t.metric for t in gate.thresholds}
    for metric in (m for m in metrics.METRICS if m.compared or m.name in gated):
        pairs = []
        for r in usable:
            x, y = metric.run_value(a[r]), metric.run_value(b[r])
            if x is not None and y is not None:
                pairs.append((r, x, y))
        paired[metric.name] = paired_metric(metric, pairs, alpha, method)
    for threshold in gate.thresholds:
        if usable and not paired[threshold.metric].base_values:
            raise BadInput(
                f"{threshold.source} {threshold.metric}: the result has no "
                f"{metrics.lookup(threshold.metric).label} for {base_key!r} and {head_key!r}"
            )
    comparison = PairedComparison(
        label=label,
        base=base_key,
        head=head_key,
        gate=gate,
        alpha=alpha,
        rounds=len(rounds),
        metrics=paired,
        missing=missing,
        allow_missing=allow_missing,
        order=_order(a, rounds) if a else "",
        warnings=warnings,
        method=method,
        max_rounds=run.scenario.repeat if run.scenario.sequential else None,
        slices=run.scenario.slices,
    )
    comparison.checks = [
        _check(paired[t.metric], t.fraction, t.source, alpha) for t in gate.thresholds
    ]
    return comparison


def judge_run(run: RunResult, label: str = "RESULT") -> PairedComparison | None:
    """The A/B gate the run was given (``--base``/``--head`` and its gate), on what it has
    measured so far; None when it was given none."""
    scenario = run.scenario
    if scenario.base is None or scenario.head is None:
        return None
    return compare_paired(
        run,
        base=scenario.base,
        head=scenario.head,
        gate=resolve_gate(run, label),
        label=label,
    )


def decided(comparison: PairedComparison) -> bool:
    """Whether more rounds could change nothing: every check passed or failed, or a side
    failed a round (which fails the gate whatever comes after)."""
    return comparison.missing_fails or all(c.verdict != INCONCLUSIVE for c in comparison.checks)


def check_budget(rounds: int, alpha: float) -> None:
    """Raise :class:`BadInput` when ``rounds`` can never decide at ``alpha``."""
    least = sequential.min_rounds(alpha)
    if rounds < least:
        raise BadInput(
            f"--max-rounds {rounds}: the sequential gate cannot decide anything before round "
            f"{least} at α={alpha:g}: give {least} or more (40 is usual)"
        )


def round_line(comparison: PairedComparison) -> str:
    """One line after a round of a sequential run: each check's estimate, interval, verdict."""
    parts = []
    for check in comparison.checks:
        label = metrics.lookup(check.metric).label
        if check.ratio is None:
            parts.append(f"{label} {check.verdict}")
            continue
        interval = "" if check.low is None else f" [×{check.low:.3f}..×{check.high:.3f}]"
        parts.append(f"{label} ×{check.ratio:.3f}{interval} {check.verdict}")
    budget = f" of at most {comparison.max_rounds}" if comparison.max_rounds else ""
    missing = "; a side failed a round" if comparison.missing_fails else ""
    return f"A/B gate after round {comparison.rounds}{budget}: " + "; ".join(parts) + missing


@dataclass(frozen=True)
class Step:
    """The estimate and interval of one metric over the first ``rounds`` rounds."""

    rounds: int
    ratio: float
    low: float | None
    high: float | None
    verdict: str | None  # of the check on this metric, had the run stopped here


def interval_path(
    comparison: PairedComparison, metric_name: str, threshold: float | None = None
) -> list[Step]:
    """How the interval of ``metric_name`` narrowed round by round: the comparison's own
    method on the first 2, 3, ... of its paired rounds. With the sequential method each step
    is what the run saw when it judged after that round; with the signed-rank interval each
    is a fixed-sample interval over that prefix (valid alone, not as a rule for stopping)."""
    paired = comparison.metrics[metric_name]
    metric = metrics.lookup(metric_name)
    pairs = list(
        zip((r - 1 for r in paired.rounds), paired.base_values, paired.head_values, strict=True)
    )
    steps = []
    for n in range(2, len(pairs) + 1):
        prefix = paired_metric(metric, pairs[:n], comparison.alpha, comparison.method)
        if prefix.ratio is None:
            break
        verdict = None
        if threshold is not None and prefix.low is not None and prefix.high is not None:
            verdict = verdict_of(prefix.ratio, prefix.low, prefix.high, threshold, metric)
        steps.append(Step(n, prefix.ratio, prefix.low, prefix.high, verdict))
    return steps
