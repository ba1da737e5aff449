"""Absolute limits on a run, k6-style: ``--fail-if "p99_ms>50"``. Pure: no I/O, no printing.

An expression names the *failing* condition (k6's thresholds name the passing one). Each is
checked on every variant's medians over its repeats, as ``stats.aggregate`` computed them;
``error_rate`` is the exception, errors over all requests of all repeats, as k6 computes a
rate (a median would hide one repeat that failed badly). A variant that measured nothing fails
every limit: a run that served no request must not pass a CI check.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from connbench.model import metrics
from connbench.model.checks import Limit as Limit  # parsed in the model, judged here
from connbench.model.checks import parse_limit
from connbench.model.result_types import VariantSummary

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
parse = parse_limit  # "p99_ms>50" -> Limit


def observed(summary: VariantSummary, metric: str) -> float | None:
    """The value a limit is checked against, from a ``stats.aggregate`` summary."""
    return metrics.lookup(metric).summary_value(summary)


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
                if metrics.lookup(limit.metric).key == "error_rate"
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
