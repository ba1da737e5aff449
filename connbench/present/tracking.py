"""Results as the performance-tracking tools read them: github-action-benchmark and Bencher.

- ``github-action-benchmark``: the JSON array its ``customSmallerIsBetter`` and
  ``customBiggerIsBetter`` tools read, ``[{"name", "unit", "value", "range", "extra"}]``. The
  tool takes one direction per file, so the format takes one too:
  ``github-action-benchmark`` (and ``github-action-benchmark:smaller``) holds every tracked
  metric where lower is better (latency, errors, connections, sessions, CPU), and
  ``github-action-benchmark:bigger`` the ones where higher is (throughput).
- ``bmf``: Bencher Metric Format, ``{"<benchmark>": {"<measure>": {"value", "lower_value",
  "upper_value"}}}``, every direction in one document (Bencher knows each measure's).

A benchmark is a variant, named by its key (``pool c=32 w=1 pool=4..4``), which stays the same
from run to run; a measure is a metric of the registry, named with its unit (``p99_ms``). The
value is the median over the repeats, the interval their min..max; a single run has no
interval. Comparing two variants of one A/B run (``compare --base --head``) gives instead each
metric's head/base ratio with its paired interval.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from connbench.analyse import trend
from connbench.analyse.paired import PairedComparison
from connbench.model import metrics
from connbench.model.metrics import Metric
from connbench.model.results import RunResult
from connbench.present.common import json_text

GITHUB_ACTION_BENCHMARK = "github-action-benchmark"
BMF = "bmf"
SMALLER, BIGGER = f"{GITHUB_ACTION_BENCHMARK}:smaller", f"{GITHUB_ACTION_BENCHMARK}:bigger"
FORMATS = (GITHUB_ACTION_BENCHMARK, SMALLER, BIGGER, BMF)


@dataclass(frozen=True)
class Point:
    """One metric of one benchmark: its value and, with repeats, its interval."""

    benchmark: str
    metric: Metric
    measure: str  # its name in the export: the registry key, or key + "_ratio"
    unit: str
    value: float
    lower: float | None
    upper: float | None
    range_text: str  # how the interval was made, for github-action-benchmark's "range"
    extra: str


def _checkout(run: RunResult) -> str:
    git = run.environment.git
    if git is None:
        return ""
    return f"commit {git.commit[:12]}" + (" (with local changes)" if git.dirty else "")


def run_points(run: RunResult) -> Iterator[Point]:
    """Every tracked metric of every variant that measured it (median and min..max)."""
    context = "; ".join(t for t in (_checkout(run), f"at {run.created_at}") if t)
    for figure in trend.figures(run):
        metric, low, high = figure.metric, figure.low, figure.high
        what = "errors over all requests" if metric.name == "error_rate" else "median"
        span = f"{low:.6g}..{high:.6g}" if low is not None and high is not None else ""
        yield Point(
            benchmark=figure.variant,
            metric=metric,
            measure=metric.key,
            unit=metric.unit_stated,
            value=figure.value,
            lower=low,
            upper=high,
            range_text=f"{span} (min..max of {figure.repeats} repeats)" if span else "",
            extra=f"{what} of {figure.repeats} repeat(s); {context}",
        )


def paired_points(comparison: PairedComparison) -> Iterator[Point]:
    """Each compared metric's head/base ratio (Hodges-Lehmann) and its paired interval."""
    benchmark = f"{comparison.head} vs {comparison.base}"
    for name, paired in comparison.metrics.items():
        if paired.ratio is None:
            continue
        metric = metrics.lookup(name)
        interval = paired.low is not None and paired.high is not None
        confidence = f"{paired.confidence:.1%} " if paired.confidence is not None else ""
        yield Point(
            benchmark=benchmark,
            metric=metric,
            measure=f"{metric.key}_ratio",
            unit="x (head/base)",
            value=paired.ratio,
            lower=paired.low,
            upper=paired.high,
            range_text=f"{paired.low:.4g}..{paired.high:.4g} ({confidence}interval)"
            if interval
            else "",
            extra=f"head/base over {len(paired.ratios)} rounds of {comparison.label}",
        )


def _number(value: float) -> float | int:
    """A whole number as an integer (JSON ``4``, not ``4.0``), anything else rounded to 6
    significant digits: no float noise in files that are diffed and charted."""
    rounded = float(f"{value:.6g}")
    return int(rounded) if rounded.is_integer() else rounded


def github_action_benchmark(points: Sequence[Point], fmt: str) -> str:
    """The array one github-action-benchmark tool reads: ``:bigger`` holds the metrics where
    higher is better (``customBiggerIsBetter``), else those where lower is."""
    bigger = fmt == BIGGER
    entries = []
    for point in points:
        if point.metric.higher_is_better != bigger:
            continue
        entry: dict[str, Any] = {
            "name": f"{point.benchmark}: {point.measure}",
            "unit": point.unit,
            "value": _number(point.value),
        }
        if point.range_text:
            entry["range"] = point.range_text
        entry["extra"] = point.extra
        entries.append(entry)
    return json_text(entries)


def bmf(points: Sequence[Point]) -> str:
    """Bencher Metric Format: benchmark -> measure -> value, with lower and upper values."""
    document: dict[str, dict[str, dict[str, float | int]]] = {}
    for point in points:
        metric: dict[str, float | int] = {"value": _number(point.value)}
        if point.lower is not None and point.upper is not None:
            metric["lower_value"] = _number(point.lower)
            metric["upper_value"] = _number(point.upper)
        document.setdefault(point.benchmark, {})[point.measure] = metric
    return json_text(document)


def format_points(points: Sequence[Point], fmt: str) -> str:
    return bmf(points) if fmt == BMF else github_action_benchmark(points, fmt)


def format_run(run: RunResult, fmt: str) -> str:
    return format_points(list(run_points(run)), fmt)


def format_paired(comparison: PairedComparison, fmt: str) -> str:
    return format_points(list(paired_points(comparison)), fmt)
