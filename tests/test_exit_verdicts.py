"""Exit codes are decided in connbench/analyse/verdicts.py (pure), worded in present/verdicts.py:
their precedence, each reason said, and compare's and the paired gate's codes."""

from __future__ import annotations

from collections.abc import Sequence

from connbench.analyse import compare, paired, verdicts
from connbench.analyse.compare import Gate, Threshold
from connbench.model.result_types import LimitRecord
from connbench.model.results import RunResult, StrategyResult
from connbench.present.verdicts import run_lines

from .conftest import entry, run_of

THROUGHPUT = Gate((Threshold("throughput", 0.10, "--fail-on"),))
BASE = (1000.0, 1100.0, 900.0, 1050.0, 950.0, 1000.0)


def _ab(factors: Sequence[float]) -> tuple[RunResult, paired.PairedComparison]:
    """Six interleaved rounds of base and head (head = base x factor), and their paired gate."""
    entries: list[StrategyResult] = []
    for r, (rps, factor) in enumerate(zip(BASE, factors, strict=True)):
        pair = [entry("base", r, rps=rps), entry("head", r, rps=rps * factor)]
        for position, side in enumerate(pair[:: -1 if r % 2 else 1]):
            side.position = position
        entries.extend(pair)
    run = run_of(*entries)
    gate = paired.compare_paired(run, base="base", head="head", gate=THROUGHPUT, label="r.json")
    return run, gate


def _crossed(run: RunResult) -> RunResult:
    run.limits = [LimitRecord(limit="p99_ms>1", variant="k", value=2.0, failed=True, reason="r")]
    return run


def _invalid(run: RunResult) -> RunResult:
    run.summary[0].generator_saturated = True
    return run


def test_a_clean_run_is_0_and_says_nothing() -> None:
    verdict = verdicts.run_verdict(run_of(entry()))
    assert verdict.code == verdicts.EXIT_OK and run_lines(verdict) == []


def test_every_reason_is_said_and_the_first_in_precedence_wins() -> None:
    run, gate = _ab([0.84, 0.86, 1.02, 0.85, 0.87, 0.82])  # undecided
    assert gate.verdict == "inconclusive"
    verdict = verdicts.run_verdict(run, gate)
    assert verdict.code == verdicts.EXIT_INCONCLUSIVE
    assert [line.split(":")[0] for line in run_lines(verdict)] == ["A/B gate"]
    verdict = verdicts.run_verdict(_crossed(run), gate)
    assert verdict.code == verdicts.EXIT_LIMITS
    assert run_lines(verdict)[1:] == ["limits crossed: p99_ms>1"]
    verdict = verdicts.run_verdict(_invalid(run), gate)
    assert verdict.code == verdicts.EXIT_INVALID
    assert run_lines(verdict)[-1] == (
        "invalid measurement: base c=32 w=1 pool=4..4: the load generator was saturated"
    )
    assert len(run_lines(verdict)) == 3


def test_a_regression_failure_or_interruption_says_only_itself() -> None:
    run, gate = _ab([0.84, 0.86, 0.83, 0.85, 0.87, 0.82])  # a real loss
    verdict = verdicts.run_verdict(_invalid(_crossed(run)), gate)
    assert verdict.code == verdicts.EXIT_FAILED
    assert run_lines(verdict) == ["A/B gate: REGRESSION: 1 of 1 check failed"]
    failed = run_of(entry(), entry("connect", status="failed", pool=None))
    failed.results[1].failure = "app exited (code 1)\nthe log tail"
    verdict = verdicts.run_verdict(failed, gate)
    assert verdict.code == verdicts.EXIT_FAILED
    assert run_lines(verdict) == ["1 of 2 runs failed; connect c=32 w=1: app exited (code 1)"]
    failed.interrupted = True
    verdict = verdicts.run_verdict(failed, gate)
    assert verdict.code == verdicts.EXIT_INTERRUPTED == verdicts.unsaved_exit(failed)
    assert run_lines(verdict) == ["interrupted; partial result saved"]
    assert verdicts.unsaved_exit(run_of(entry())) == verdicts.EXIT_FAILED


def test_the_paired_gate_and_compare_codes() -> None:
    assert verdicts.paired_exit(_ab([0.84, 0.86, 0.83, 0.85, 0.87, 0.82])[1]) == 1
    assert verdicts.paired_exit(_ab([0.84, 0.86, 1.02, 0.85, 0.87, 0.82])[1]) == 5
    assert verdicts.paired_exit(_ab([0.99, 1.01, 1.0, 0.99, 1.02, 1.0])[1]) == 0
    base = run_of(*[entry("pool", r, rps=1000 + r) for r in range(5)],
                  *[entry("connect", r, pool=None) for r in range(5)])  # fmt: skip
    same = compare.compare(base, base, gate=THROUGHPUT)
    gone = compare.compare(base, run_of(*base.results[:5]), gate=THROUGHPUT)  # connect missing
    assert verdicts.compare_exit([same]) == 0
    assert verdicts.compare_exit([same, gone]) == verdicts.EXIT_FAILED


def test_the_precedence_line_is_the_order_applied() -> None:
    codes = ", ".join(str(code) for code in verdicts.PRECEDENCE)
    assert verdicts.EXIT_PRECEDENCE == f"When several apply, the first of {codes} wins."
    assert {code for code, _ in verdicts.EXIT_CODES} == {0, 2, *verdicts.PRECEDENCE}
