"""The reasons of a verdict (:mod:`connbench.analyse.verdicts`) in words: one line each, for
stderr after a run."""

from __future__ import annotations

from connbench.analyse.verdicts import RunVerdict
from connbench.present import paired as paired_view


def run_lines(verdict: RunVerdict) -> list[str]:
    """Why a finished run exits as it does, one line per reason (none for a clean run)."""
    if verdict.interrupted:
        return ["interrupted; partial result saved"]
    if verdict.failed:
        first = verdict.failed[0]
        cause = (first.failure or "failed").strip().splitlines()[0]
        return [f"{len(verdict.failed)} of {verdict.runs} runs failed; {first.key}: {cause}"]
    lines = []
    if verdict.gate is not None:
        lines.append(f"A/B gate: {paired_view.summary(verdict.gate)}")
    if verdict.crossed:
        lines.append(f"limits crossed: {', '.join(verdict.crossed)}")
    lines += [f"invalid measurement: {key}: {reason}" for key, reason in verdict.invalid]
    return lines
