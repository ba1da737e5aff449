"""Verdicts: what a finished run, a comparison or an A/B gate says, as an exit code a script can
act on. Pure functions over results; the wording is :mod:`connbench.present.verdicts`'s.

The one table of exit codes is here: ``connbench --help`` shows it, docs/reliability.md repeats
it (tests/test_cli_habits.py keeps them equal). Imported by ``connbench --help``: nothing heavy
at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from connbench.analyse.compare import Comparison
    from connbench.analyse.paired import PairedComparison
    from connbench.model.result_types import LimitRecord
    from connbench.model.results import RunResult, StrategyResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2  # ConnbenchError.exit_code of BadInput and its kind
EXIT_LIMITS = 3
EXIT_INVALID = 4
EXIT_INCONCLUSIVE = 5
EXIT_INTERRUPTED = 130
EXIT_CODES = (
    (EXIT_OK, "success"),
    (
        EXIT_FAILED,
        "failed: an app, server or PgBouncer died, or nothing was served; compare: a regression",
    ),
    (EXIT_BAD_INPUT, "bad input: a flag, a scenario or result file, a DSN, a missing tool"),
    (EXIT_LIMITS, "a limit crossed: run --fail-if"),
    (EXIT_INVALID, "invalid measurement: open-model rate not held, or generator saturated"),
    (EXIT_INCONCLUSIVE, "inconclusive: compare's gate could not tell a regression from noise"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C, SIGTERM); what was measured is saved"),
)
# The order run_verdict applies, the first that holds winning.
PRECEDENCE = (EXIT_INTERRUPTED, EXIT_FAILED, EXIT_INVALID, EXIT_LIMITS, EXIT_INCONCLUSIVE)
EXIT_PRECEDENCE = f"When several apply, the first of {', '.join(map(str, PRECEDENCE))} wins."


@dataclass(frozen=True)
class RunVerdict:
    """A finished run's exit code and every reason for it that is said (a reason overruled by
    an earlier one in :data:`PRECEDENCE` is still said, except after an interruption or a
    failure, which say only themselves)."""

    code: int
    runs: int = 0  # the runs the result holds
    interrupted: bool = False
    failed: tuple[StrategyResult, ...] = ()  # unavailable (PgBouncer not installed) is no failure
    gate: PairedComparison | None = None  # the A/B gate, when it failed or was undecided
    crossed: tuple[str, ...] = ()  # the --fail-if limits crossed, each named once
    invalid: tuple[tuple[str, str], ...] = ()  # (key, why) of each invalid measurement


def run_verdict(result: RunResult, gate: PairedComparison | None = None) -> RunVerdict:
    """The verdict on a finished run and the A/B gate it was given (see :data:`EXIT_CODES`)."""
    runs = len(result.results)
    if result.interrupted:
        return RunVerdict(EXIT_INTERRUPTED, runs, interrupted=True)
    failed = tuple(r for r in result.results if r.status == "failed")
    if failed:
        return RunVerdict(EXIT_FAILED, runs, failed=failed)
    if gate is not None and gate.failed:
        return RunVerdict(EXIT_FAILED, runs, gate=gate)
    undecided = gate if gate is not None and gate.verdict == "inconclusive" else None
    crossed = tuple(dict.fromkeys(v.limit for v in limits_failed(result)))
    invalid = tuple(invalid_variants(result))
    code = (
        EXIT_INVALID if invalid
        else EXIT_LIMITS if crossed
        else EXIT_INCONCLUSIVE if undecided
        else EXIT_OK
    )  # fmt: skip
    return RunVerdict(code, runs, gate=undecided, crossed=crossed, invalid=invalid)


def unsaved_exit(result: RunResult) -> int:
    """The exit code of a run whose result could not be saved where it was asked to be."""
    return EXIT_INTERRUPTED if result.interrupted else EXIT_FAILED


def compare_exit(comparisons: Sequence[Comparison]) -> int:
    """1 when any comparison found a regression (or a missing variant), else 5 when any could
    not decide, else 0."""
    if any(c.failed for c in comparisons):
        return EXIT_FAILED
    if any(c.inconclusive for c in comparisons):
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def paired_exit(comparison: PairedComparison) -> int:
    """1 on a regression in the paired A/B comparison, 5 when it is undecided, else 0."""
    if comparison.failed:
        return EXIT_FAILED
    if comparison.verdict == "inconclusive":
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def invalid_variants(run: RunResult) -> list[tuple[str, str]]:
    """(key, why) for each variant whose numbers measure the setup rather than the app: an
    open model whose rate was not held, or a saturated load generator."""
    out = []
    for summary in run.summary:
        reasons = [
            reason
            for result in run.results
            if result.key == summary.key and result.open_model is not None
            for reason in result.open_model.invalid_reasons
        ]
        if summary.generator_saturated and not any("generator" in r for r in reasons):
            reasons.append("the load generator was saturated")
        if reasons or not summary.valid:
            out.append((summary.key, "; ".join(dict.fromkeys(reasons)) or "invalid"))
    return out


def limits_failed(run: RunResult) -> list[LimitRecord]:
    """The --fail-if limits the run's medians crossed, as recorded."""
    return [v for v in run.limits if v.failed]
