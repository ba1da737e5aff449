"""The paired A/B verdict as a page: ``compare RESULT --base --head --format html``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from connbench.analyse import paired
from connbench.analyse.compare import Gate, Threshold
from connbench.cli import app
from connbench.model import results
from connbench.present import html

from .browser import needs_chromium, open_in_chromium
from .helpers import BASE, ab_run

cli = CliRunner()
SLOWER = [0.84, 0.86, 0.83, 0.85, 0.87, 0.82, 0.86, 0.84]
GATE = Gate((Threshold("throughput", 0.10, "--fail-on"), Threshold("p99", 0.20, "--fail-on")))


def slower_run() -> results.RunResult:
    base = [*BASE, 1000.0, 980.0]
    return ab_run(base, [b * f for b, f in zip(base, SLOWER, strict=True)])


def test_the_page_has_the_verdict_each_check_and_the_rounds(tmp_path: Path) -> None:
    run = slower_run()
    comparison = paired.compare_paired(run, base="base", head="head", gate=GATE, label="ab.json")
    page = html.report([("ab.json", run)], paired=[comparison])
    assert "A/B: ab.json: head &#x27;head c=32 w=1 pool=4..4&#x27;" in page
    assert 'id="ab-verdict">✗ <strong>REGRESSION: 1 of 2 checks failed</strong>' in page
    assert "fail: throughput ×" in page
    steps = paired.interval_path(comparison, "throughput", 0.10)
    assert [s.rounds for s in steps] == list(range(2, 9))
    assert steps[0].low is None and steps[-1].verdict == "fail"  # 2 rounds: no interval yet
    assert steps[-1].ratio == comparison.metrics["throughput"].ratio


def test_compare_format_html_exits_like_the_table(tmp_path: Path) -> None:
    path = tmp_path / "ab.json"
    results.save(slower_run(), path)
    args = ["compare", str(path), "--base", "base", "--head", "head", "--format", "html"]
    failed = cli.invoke(app, [*args, "--fail-on", "throughput:10%"])
    assert failed.exit_code == 1, failed.output
    assert failed.stdout.startswith("<!doctype html>") or "<html" in failed.stdout[:200]
    undecided = cli.invoke(app, [*args, "--fail-on", "p99:20%"])
    assert undecided.exit_code == 5
    assert "? <strong>INCONCLUSIVE: 1 of 1 check undecided" in undecided.stdout


@needs_chromium
@pytest.mark.integration
def test_the_page_draws_in_chromium(tmp_path: Path) -> None:
    run = slower_run()
    comparison = paired.compare_paired(run, base="base", head="head", gate=GATE, label="ab.json")
    visit, _ = open_in_chromium(
        html.report([("ab.json", run)], paired=[comparison]), tmp_path, "ab"
    )
    titles = {title for chart in visit.state for title in chart["titles"]}
    assert {"throughput: head/base, round by round", "p99: head/base, round by round"} <= titles
    ab_chart = next(
        c for c in visit.state if "throughput: head/base, round by round" in c["titles"]
    )
    assert ab_chart["red"]  # the threshold's rule
