"""Compare saved results variant by variant, and gate on regressions. Pure: no I/O, no printing.

A gated metric fails only when its change is both

- **beyond its threshold** in the bad direction (throughput down; latency, connections or
  sessions up), comparing the medians over each side's repeats, and
- **statistically significant**: a two-sided Mann-Whitney U test on the per-repeat values of
  the two sides gives p <= alpha.

When the samples are too small for the test ever to reach alpha (one run on a side; or 3 + 3
repeats, whose smallest possible p is 0.10), significance cannot be judged: the verdict says so
and the threshold alone decides, as it would without repeats.

What the test cannot see: it weighs the difference between the two files against the spread
of repeats *within* each file. Drift between the baseline's run and this one (another machine,
a neighbour's load) moves every repeat of one side alike and looks significant. The threshold
is the guard against that: set it above the spread of A/A comparisons on the machine
(``benchmarks/gate_check.py`` measures it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from connbench.analyse import stats
from connbench.model import defaults, metrics, scenario
from connbench.model.checks import gate_metric, parse_alpha
from connbench.model.checks import parse_fail_on as parse_fail_on  # parsed in the model
from connbench.model.checks import parse_percent as parse_percent
from connbench.model.errors import BadInput, ResultFileError
from connbench.model.metrics import Metric, amount
from connbench.model.results import RunResult, StrategyResult
from connbench.model.scenario import Variant

DEFAULT_ALPHA = defaults.ALPHA
EXACT_MAX_N = 40  # pooled sample size up to which the U test's p is exact


# Variant dimensions --ignore may leave out of the matching key.
DIMENSIONS = scenario.DIMENSIONS


@dataclass(frozen=True)
class Threshold:
    metric: str
    fraction: float  # 0.10: fail when 10 % worse
    source: str  # where it was set: "--fail-on", or the scenario behind a result


@dataclass(frozen=True)
class Gate:
    thresholds: tuple[Threshold, ...] = ()
    alpha: float = DEFAULT_ALPHA


def resolve_gate(
    new: RunResult,
    new_label: str,
    fail_on: Sequence[tuple[str, float]] = (),
    alpha: float | None = None,
) -> Gate:
    """The gate for comparing against ``new``: the ``[gate]`` its scenario recorded, with
    ``--fail-on`` thresholds replacing it metric by metric and ``--alpha`` overriding its level.

    Raises :class:`ResultFileError` when the recorded gate does not validate.
    """
    recorded = new.scenario.gate
    where = new.scenario.source or "its scenario"
    thresholds: dict[str, Threshold] = {}
    recorded_alpha = DEFAULT_ALPHA
    for key, value in recorded.items():
        try:
            if key == "alpha":
                recorded_alpha = parse_alpha(value)
                continue
            fraction = float(value)
            if isinstance(value, bool) or not fraction > 0:
                raise ValueError("expected a fraction above 0")
            name = gate_metric(key)
            thresholds[name] = Threshold(name, fraction, f"{where} [gate]")
        except (TypeError, ValueError) as exc:
            raise ResultFileError(f"{new_label}: scenario.gate.{key}: {exc}") from None
    for name, fraction in fail_on:
        thresholds[name] = Threshold(name, fraction, "--fail-on")
    return Gate(tuple(thresholds.values()), recorded_alpha if alpha is None else alpha)


# --- the test ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UTest:
    p_value: float
    min_p_value: float  # the smallest p these samples could give (ties included)
    exact: bool


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> UTest:
    """Two-sided Mann-Whitney U test of ``x`` against ``y`` (each needs at least one value).

    Exact up to :data:`EXACT_MAX_N` values in all: the permutation distribution of ``x``'s rank
    sum over every way to split the pooled mid-ranks, so ties are handled exactly too. Beyond,
    the normal approximation with tie and continuity corrections.
    """
    n1, n2 = len(x), len(y)
    if not n1 or not n2:
        raise ValueError("mann_whitney_u needs at least one value on each side")
    pooled = sorted([(v, 0) for v in x] + [(v, 1) for v in y])
    n = n1 + n2
    # Doubled mid-ranks: integers, so sums and deviations compare exactly.
    ranks2: list[int] = []
    ties: list[int] = []
    i = 0
    while i < n:
        j = i
        while j + 1 < n and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        ranks2.extend([i + j + 2] * (j - i + 1))  # 2 x the mean of ranks i+1 .. j+1
        ties.append(j - i + 1)
        i = j + 1
    observed = sum(r for r, (_, side) in zip(ranks2, pooled, strict=True) if side == 0)
    expected = n1 * (n + 1)  # 2 x n1 (n + 1) / 2
    if n <= EXACT_MAX_N:
        return _exact(ranks2, n1, abs(observed - expected), expected)
    return _normal(n1, n2, ties, abs(observed - expected) / 2)


def _exact(ranks2: list[int], n1: int, deviation: int, expected: int) -> UTest:
    # counts[k][s]: how many k-subsets of the ranks seen so far have doubled rank sum s.
    counts: list[dict[int, int]] = [{0: 1}] + [{} for _ in range(n1)]
    for seen, rank in enumerate(ranks2, 1):
        for k in range(min(seen, n1), 0, -1):
            into = counts[k]
            for total, ways in counts[k - 1].items():
                into[total + rank] = into.get(total + rank, 0) + ways
    distribution = counts[n1]
    every = sum(distribution.values())
    extreme = max(abs(s - expected) for s in distribution)
    as_far = sum(w for s, w in distribution.items() if abs(s - expected) >= deviation)
    farthest = sum(w for s, w in distribution.items() if abs(s - expected) == extreme)
    return UTest(as_far / every, farthest / every, exact=True)


def _normal(n1: int, n2: int, ties: list[int], deviation: float) -> UTest:
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sigma == 0:
        return UTest(1.0, 1.0, exact=False)

    def p_for(dev: float) -> float:
        return min(1.0, math.erfc(max(dev - 0.5, 0.0) / sigma / math.sqrt(2)))

    return UTest(p_for(deviation), p_for(n1 * n2 / 2.0), exact=False)


def repeats_needed(alpha: float) -> int:
    """The fewest repeats per side (no ties) with which the U test can reach ``alpha``."""
    n = 1
    while 2 / math.comb(2 * n, n) > alpha:
        n += 1
    return n


# --- comparing ----------------------------------------------------------------------------------


@dataclass
class MetricChange:
    metric: str
    base: float | None  # median over BASE's repeats
    new: float | None
    change: float | None  # (new - base) / base; None when either is missing or base is 0
    base_values: list[float]
    new_values: list[float]
    base_cv: float | None
    new_cv: float | None
    p_value: float | None  # None unless both sides have two values or more
    min_p_value: float | None

    @property
    def worse_by(self) -> float | None:
        """The change in the bad direction (positive: worse), for the gate."""
        if self.change is None:
            return None
        return metrics.lookup(self.metric).worse_by(self.change)


@dataclass
class Verdict:
    variant: str
    metric: str
    failed: bool
    significance: str  # significant | not significant | not judged
    change: float | None
    threshold: float
    threshold_source: str
    p_value: float | None
    alpha: float
    n_base: int
    n_new: int
    reason: str
    # pass | fail | inconclusive: worse than the threshold, but not significant (the repeats
    # cannot tell it from noise: more repeats, or an A/B run, would)
    verdict: str = "pass"


@dataclass
class VariantComparison:
    key: str  # what the two sides were matched on
    base_key: str
    new_key: str
    strategy: str
    base_status: str
    new_status: str
    metrics: dict[str, MetricChange]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(v.failed for v in self.verdicts)


@dataclass(frozen=True)
class Difference:
    what: str
    base: str
    new: str


@dataclass
class Comparison:
    """BASE against one NEW result."""

    base_label: str
    new_label: str
    gate: Gate
    ignored: tuple[str, ...]
    variants: list[VariantComparison]
    only_in_base: list[str]
    only_in_new: list[str]
    environment: list[Difference]
    warnings: list[str]
    missing: list[str] = field(default_factory=list)  # vanished, failed or served nothing in NEW
    allow_missing: bool = False

    @property
    def verdicts(self) -> list[Verdict]:
        return [v for variant in self.variants for v in variant.verdicts]

    @property
    def nothing_matched(self) -> bool:
        """A gate with nothing to check fails: a renamed variant must not pass silently."""
        return bool(self.gate.thresholds) and not self.variants

    @property
    def missing_fails(self) -> bool:
        """Under a gate, a variant BASE had and NEW lost (or could not serve) is a regression."""
        return bool(self.gate.thresholds) and bool(self.missing) and not self.allow_missing

    @property
    def failed(self) -> bool:
        return self.nothing_matched or self.missing_fails or any(v.failed for v in self.verdicts)

    @property
    def inconclusive(self) -> bool:
        """Nothing failed, but a check could not tell its change from noise."""
        return not self.failed and any(v.verdict == "inconclusive" for v in self.verdicts)


def compare(
    base: RunResult,
    new: RunResult,
    *,
    gate: Gate,
    ignore: Sequence[str] = (),
    base_label: str = "BASE",
    new_label: str = "NEW",
    allow_missing: bool = False,
) -> Comparison:
    """Match ``new``'s variants to ``base``'s (on ``variant.key``, less any ``ignore``d
    dimension), measure each metric's change and judge the gate's thresholds.

    A variant of ``base`` that ``new`` lacks, or that failed, was unavailable or served
    nothing in ``new``, is listed in ``missing``: under a gate that fails it, unless
    ``allow_missing``.

    Raises :class:`BadInput` when ignoring dimensions makes two variants of one file the same.
    """
    base_groups = _groups(base, ignore, base_label)
    new_groups = _groups(new, ignore, new_label)
    variants = []
    for key, base_runs in base_groups.items():
        new_runs = new_groups.get(key)
        if new_runs is None:
            continue
        changes = {m.name: _change(m, base_runs, new_runs) for m in _compared(gate)}
        variant = VariantComparison(
            key=key,
            base_key=base_runs[0].key,
            new_key=new_runs[0].key,
            strategy=new_runs[0].strategy,
            base_status=stats.variant_status(base_runs),
            new_status=stats.variant_status(new_runs),
            metrics=changes,
        )
        variant.verdicts = [
            _verdict(variant.new_key, changes[t.metric], t, gate.alpha) for t in gate.thresholds
        ]
        variants.append(variant)
    warnings = []
    for label, run in ((base_label, base), (new_label, new)):
        if run.interrupted:
            warnings.append(f"{label} was interrupted: its numbers are partial")
    for variant in variants:
        for label, status in ((base_label, variant.base_status), (new_label, variant.new_status)):
            if status != "ok":
                warnings.append(f"{label}: {variant.key} {status}")
    only_in_base = [runs[0].key for k, runs in base_groups.items() if k not in new_groups]
    missing = [f"{key}: in BASE, missing from NEW" for key in only_in_base]
    for variant in variants:
        served = sum(r.requests.ok for r in stats.measured(new_groups[variant.key]) if r.requests)
        if variant.new_status in ("failed", "unavailable"):
            missing.append(f"{variant.new_key}: {variant.new_status} in NEW")
        elif not served:
            missing.append(f"{variant.new_key}: served nothing in NEW (no 2xx response)")
    return Comparison(
        base_label=base_label,
        new_label=new_label,
        gate=gate,
        ignored=tuple(ignore),
        variants=variants,
        only_in_base=only_in_base,
        only_in_new=[runs[0].key for k, runs in new_groups.items() if k not in base_groups],
        environment=environment_differences(base, new),
        warnings=warnings,
        missing=missing,
        allow_missing=allow_missing,
    )


def match_key(run: StrategyResult, ignore: Sequence[str]) -> str:
    """The variant's key without the ``ignore``d dimensions (its plain key when none)."""
    variant = Variant.from_dict(run.variant.model_dump())
    if not ignore or variant is None:
        return run.key  # a variant written by hand: nothing to take apart
    return variant.key_without(ignore)


def _groups(run: RunResult, ignore: Sequence[str], label: str) -> dict[str, list[StrategyResult]]:
    groups: dict[str, list[StrategyResult]] = {}
    for entry in run.results:
        groups.setdefault(match_key(entry, ignore), []).append(entry)
    for key, entries in groups.items():
        keys = list(dict.fromkeys(e.key for e in entries))
        if len(keys) > 1:
            raise BadInput(
                f"{label}: {' and '.join(repr(k) for k in keys)} are the same variant once "
                f"{', '.join(ignore)} is ignored (matched as {key!r}): ignore fewer dimensions"
            )
    return groups


def _compared(gate: Gate) -> list[Metric]:
    """Every comparison's metrics, then any other the gate checks."""
    gated = {t.metric for t in gate.thresholds}
    return [m for m in metrics.METRICS if m.compared or m.name in gated]


def _change(
    metric: Metric, base_runs: list[StrategyResult], new_runs: list[StrategyResult]
) -> MetricChange:
    xs, ys = stats.values(base_runs, metric), stats.values(new_runs, metric)
    x, y = stats.spread(xs), stats.spread(ys)
    base, new = x["median"], y["median"]
    change = (new - base) / base if base and new is not None else None
    test = mann_whitney_u(xs, ys) if len(xs) >= 2 and len(ys) >= 2 else None
    return MetricChange(
        metric=metric.name,
        base=base,
        new=new,
        change=change,
        base_values=xs,
        new_values=ys,
        base_cv=x["cv"] if len(xs) > 1 else None,
        new_cv=y["cv"] if len(ys) > 1 else None,
        p_value=test.p_value if test else None,
        min_p_value=test.min_p_value if test else None,
    )


def _verdict(variant: str, change: MetricChange, threshold: Threshold, alpha: float) -> Verdict:
    metric = metrics.lookup(change.metric)
    n_base, n_new = len(change.base_values), len(change.new_values)

    def verdict(failed: bool, significance: str, reason: str, undecided: bool = False) -> Verdict:
        return Verdict(
            variant=variant,
            metric=metric.name,
            failed=failed,
            significance=significance,
            change=change.change,
            threshold=threshold.fraction,
            threshold_source=threshold.source,
            p_value=change.p_value,
            alpha=alpha,
            n_base=n_base,
            n_new=n_new,
            reason=reason,
            verdict="fail" if failed else ("inconclusive" if undecided else "pass"),
        )

    if not n_new:
        return verdict(True, "not judged", f"{metric.label}: NEW measured nothing (failed?)")
    if not n_base:
        return verdict(False, "not judged", f"{metric.label}: BASE measured nothing, not judged")
    moved = f"{change.change:+.1%}" if change.change is not None else "changed"
    base, new = amount(change.base, metric.unit, show_unit=False), amount(change.new, metric.unit)
    what = f"{metric.label} {moved} ({base} → {new})"
    beyond = _beyond(change, metric, threshold)
    significance, why = _significance(change, metric, alpha)
    failed = beyond and significance != "not significant"
    limit = f"the {threshold.fraction:.0%} threshold"
    worse = change.worse_by
    if beyond:
        reason = f"{what}: worse than {limit}, {why}"
        if not failed:
            reason += (
                ": within the noise of the repeats, so inconclusive (more repeats a side, or "
                "an interleaved A/B run, compare --base/--head, would tell)"
            )
    elif worse is not None and worse > 0:
        reason = f"{what}: within {limit}; {why}"
    else:
        reason = f"{what}: no worse; {why}"
    return verdict(failed, significance, reason, undecided=beyond and not failed)


def _beyond(change: MetricChange, metric: Metric, threshold: Threshold) -> bool:
    """Whether the change is worse than the threshold allows."""
    worse = change.worse_by
    if worse is not None:
        return worse > threshold.fraction
    # A median of 0 in BASE: no relative change, so compare the medians directly.
    assert change.base is not None and change.new is not None
    return (change.new < change.base) == metric.higher_is_better and change.new != 0


def _significance(change: MetricChange, metric: Metric, alpha: float) -> tuple[str, str]:
    """(significant | not significant | not judged, why) for the U test on the repeats."""
    n_base, n_new = len(change.base_values), len(change.new_values)
    n = f"n={n_base}+{n_new}"
    decides = ", so the threshold alone decides"
    if n_base < 2 or n_new < 2:
        return "not judged", f"significance not judged ({n}: a single run on a side){decides}"
    if change.min_p_value is not None and change.min_p_value > alpha:
        if len({*change.base_values, *change.new_values}) == 1:
            cause = f"every repeat on both sides gave {amount(change.base, metric.unit)}"
        elif 2 / math.comb(n_base + n_new, n_base) <= alpha:
            cause = f"ties leave the smallest possible p at {change.min_p_value:.2g} > α={alpha:g}"
        else:
            cause = (
                f"the smallest possible p is {change.min_p_value:.2g} > α={alpha:g}; "
                f"{repeats_needed(alpha)}+ repeats a side can reach it"
            )
        return "not judged", f"significance not judged ({n}: {cause}){decides}"
    assert change.p_value is not None
    p = f"Mann-Whitney U p={change.p_value:.3g}"
    if change.p_value <= alpha:
        return "significant", f"significant ({p} ≤ α={alpha:g}, {n})"
    return "not significant", f"not significant ({p} > α={alpha:g}, {n})"


# --- environments ------------------------------------------------------------------------------

ENVIRONMENT_KEYS = (
    "python", "python_implementation", "platform", "machine", "cpu_model", "cpu_count",
    "memory_gib",
)  # fmt: skip
SCENARIO_KEYS = (
    "duration_s", "warmup_s", "timeout_s", "repeat", "engine", "postgres", "concurrency",
    "workers", "pool_min_effective", "pool_max_effective",
)  # fmt: skip


def shown(value: Any) -> str:
    """A recorded value as text: ``-`` for none, a list comma-separated."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _facts(run: RunResult) -> dict[str, str]:
    """What a result's numbers depend on, flattened to comparable text."""
    env = run.environment
    facts = {"connbench version": run.connbench_version}
    facts.update({key: shown(getattr(env, key)) for key in ENVIRONMENT_KEYS})
    for name, version in env.packages.items():
        facts[f"package {name}"] = shown(version)
    pg = env.postgres
    facts["PostgreSQL version"] = shown(pg.version if pg else None)
    facts["PostgreSQL backend"] = shown(pg.backend if pg else None)
    for name, value in (pg.settings.model_dump() if pg else {}).items():
        # As PostgreSQL shows it: fsync on, not True.
        text = ("on" if value else "off") if isinstance(value, bool) else shown(value)
        facts[f"PostgreSQL {name}"] = text
    scenario = run.scenario.model_dump()
    for key in SCENARIO_KEYS:
        facts[f"scenario {key}"] = shown(scenario.get(key))
    return facts


# How much a difference of each kind matters to the comparison, said once per kind.
DIFFERENCE_KINDS = (
    ("machine", ("cpu_model", "cpu_count", "memory_gib", "machine"), True,
     "throughput and latency move with the machine: compare on the runner type the "
     "baseline was made on"),
    ("server", ("PostgreSQL",), True, "a different server or settings change the numbers"),
    ("scenario", ("scenario",), True, "a different measurement, not only a different result"),
    ("software", ("python", "platform", "connbench version", "package"), False,
     "versions and kernel, which rarely move these numbers by themselves"),
)  # fmt: skip


def difference_kinds(
    differences: Sequence[Difference],
) -> list[tuple[str, bool, str, list[Difference]]]:
    """The differences by kind: (kind, whether it matters, why, differences), those that
    matter first."""
    out = []
    left = list(differences)
    for kind, prefixes, matters, why in DIFFERENCE_KINDS:
        mine = [d for d in left if d.what.startswith(prefixes)]
        left = [d for d in left if d not in mine]
        if mine:
            out.append((kind, matters, why, mine))
    if left:
        out.append(("other", True, "not classified", left))
    return sorted(out, key=lambda kind: not kind[1])


def environment_differences(base: RunResult, new: RunResult) -> list[Difference]:
    """Where the two results' machine, software, server or scenario differ."""
    a, b = _facts(base), _facts(new)
    keys = list(dict.fromkeys([*a, *b]))
    return [Difference(k, a.get(k, "-"), b.get(k, "-")) for k in keys if a.get(k) != b.get(k)]
