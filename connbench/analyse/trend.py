"""Figures followed over time: each tracked metric of each variant, per result, in order.

:func:`figures` is what a result says of a variant's tracked metric (its median over the
repeats, their min..max): the tracking-tool exports and the trend page read it. :func:`trend`
lays many results out by date (the commit recorded in each, when there is one), and marks
the points where a gate failed: a ``--fail-if`` limit the result recorded as crossed, or the
``[gate]`` of the result's scenario judging it against the result before it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from connbench.analyse import compare, stats
from connbench.model import checks, metrics
from connbench.model.metrics import Metric
from connbench.model.results import RunResult, StrategyResult


@dataclass(frozen=True)
class Figure:
    """One tracked metric of one variant in one result."""

    variant: str  # its key: the name that stays the same from run to run
    metric: Metric
    value: float  # the median over the repeats (error_rate: errors over all requests)
    low: float | None  # the repeats' min and max; None for a single run
    high: float | None
    repeats: int


def figures(run: RunResult) -> list[Figure]:
    """Every tracked metric of every variant that measured it, in the result's order."""
    groups: dict[str, list[StrategyResult]] = {}
    for result in run.results:
        groups.setdefault(result.key, []).append(result)
    out = []
    for summary in stats.aggregate(run.results):
        for metric in metrics.TRACKED:
            values = stats.values(groups[summary.key], metric)
            if not values:
                continue
            # error_rate is errors over all requests (as a limit reads it); the others medians.
            total = metric.summary_value(summary) if metric.name == "error_rate" else None
            spread = len(values) > 1
            out.append(
                Figure(
                    variant=summary.key,
                    metric=metric,
                    value=total if total is not None else statistics.median(values),
                    low=min(values) if spread else None,
                    high=max(values) if spread else None,
                    repeats=len(values),
                )
            )
    return out


@dataclass
class TrendPoint:
    """A figure at its place in the trend, with why the gate failed there (if it did)."""

    index: int  # 1-based place in date order
    label: str  # the file it came from
    created_at: str
    commit: str | None
    dirty: bool | None
    figure: Figure
    failed: list[str] = field(default_factory=list)


def _commit(run: RunResult) -> tuple[str | None, bool | None]:
    """The measured code's commit: the working directory's, else the one own app's."""
    git = run.environment.git
    if git is None:
        apps = {a.git.commit: a.git for a in run.scenario.app if a.git is not None}
        git = next(iter(apps.values())) if len(apps) == 1 else None
    return (git.commit, git.dirty) if git is not None else (None, None)


def trend(runs: Sequence[tuple[str, RunResult]]) -> list[TrendPoint]:
    """Every result's figures in date order, each marked where a gate failed.

    Raises :class:`ResultFileError` when a result's recorded gate does not validate.
    """
    ordered = sorted(runs, key=lambda item: item[1].created_at)
    points: list[TrendPoint] = []
    previous: RunResult | None = None
    for index, (label, run) in enumerate(ordered, 1):
        failed: dict[tuple[str, str], list[str]] = {}
        for limit in run.limits:
            if limit.failed:
                try:
                    name = metrics.lookup(checks.parse_limit(limit.limit).metric).name
                except ValueError:  # a hand-edited file: the limit says nothing to draw
                    continue
                failed.setdefault((limit.variant, name), []).append(f"limit: {limit.reason}")
        if previous is not None:
            gate = compare.resolve_gate(run, label)
            if gate.thresholds:
                for verdict in compare.compare(previous, run, gate=gate).verdicts:
                    if verdict.failed:
                        failed.setdefault((verdict.variant, verdict.metric), []).append(
                            f"gate against the result before: {verdict.reason}"
                        )
        commit, dirty = _commit(run)
        for figure in figures(run):
            points.append(
                TrendPoint(
                    index=index,
                    label=label,
                    created_at=run.created_at,
                    commit=commit,
                    dirty=dirty,
                    figure=figure,
                    failed=failed.get((figure.variant, figure.metric.name), []),
                )
            )
        previous = run
    return points
