"""Absolute limits on a run, k6-style: ``--fail-if "p99_ms>50"``. Pure: no I/O, no printing.

An expression names the *failing* condition (k6's thresholds name the passing one). Each is
checked on every variant's medians over its repeats, as ``stats.aggregate`` computed them;
``error_rate`` is the exception, errors over all requests of all repeats, as k6 computes a
rate (a median would hide one repeat that failed badly). A variant that measured nothing fails
every limit: a run that served no request must not pass a CI check.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from connbench.model.result_types import VariantSummary

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
LATENCIES = ("mean", "p50", "p90", "p99", "p999", "max")
METRICS = (
    "throughput_rps",
    *(f"{name}_ms" for name in LATENCIES),
    "error_rate",
    "connections_peak",
    "connections_mean",
    "sessions_opened",
    "sessions_per_ok_response",
)
_EXPRESSION = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Limit:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse(text: str) -> Limit:
    """``"p99_ms>50"`` -> Limit; raises ValueError saying what is wrong (with the text)."""
    found = _EXPRESSION.match(text)
    if not found:
        raise ValueError(
            f"cannot read {text!r}: expected METRIC<NUMBER or METRIC>NUMBER (also <=, >=), "
            "such as 'p99_ms>50'"
        )
    metric, op, number = found.groups()
    if metric not in METRICS:
        raise ValueError(f"{text!r}: unknown metric {metric!r} (known: {', '.join(METRICS)})")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r}: {number!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: {number!r} is not a finite number")
    return Limit(metric, op, value)


def observed(summary: VariantSummary, metric: str) -> float | None:
    """The value a limit is checked against, from a ``stats.aggregate`` summary."""
    if metric == "throughput_rps":
        value = summary.throughput_rps.median
    elif metric.endswith("_ms"):
        spread = summary.latency_ms.get(metric.removesuffix("_ms"))
        value = spread.median if spread else None
    else:
        value = getattr(summary, metric)
    return None if value is None else float(value)


@dataclass(frozen=True)
class LimitVerdict:
    limit: str  # the expression, normalised: "p99_ms>50"
    variant: str
    value: float | None
    failed: bool
    reason: str


def check(limits: Sequence[Limit], summaries: Sequence[VariantSummary]) -> list[LimitVerdict]:
    """One verdict per limit and variant, limit-major."""
    out = []
    for limit in limits:
        for summary in summaries:
            value = observed(summary, limit.metric)
            runs = summary.runs_measured
            basis = (
                "over all requests"
                if limit.metric == "error_rate"
                else f"median of {runs} repeats"
                if runs > 1
                else "one run"
            )
            if value is None:
                failed, reason = True, f"{limit.metric} not measured ({summary.status})"
            elif OPERATORS[limit.op](value, limit.value):
                failed, reason = True, f"{limit.metric} = {value:g} ({basis}): {limit} is true"
            else:
                failed, reason = False, f"{limit.metric} = {value:g} ({basis})"
            out.append(LimitVerdict(str(limit), summary.key, value, failed, reason))
    return out
