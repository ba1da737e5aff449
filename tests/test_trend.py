"""`connbench report --trend`: each metric over many results, by commit or date, with the
repeats' interval and the points where a gate failed; opened in a real Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from connbench import runner
from connbench.analyse import stats, trend
from connbench.infra import postgres
from connbench.model import results
from connbench.model.result_types import GitCheckout, LimitRecord
from connbench.model.results import RunResult
from connbench.model.scenario import build
from connbench.present import html

from .browser import needs_chromium, open_in_chromium
from .conftest import RecordingReporter, entry, run_cli, run_of
from .helpers import XSS

KEY = "pool c=32 w=1 pool=4..4"


def dated(run: RunResult, second: int, commit: str | None = None) -> RunResult:
    run.created_at = f"2026-12-01T10:00:{second:02d}+00:00"
    if commit:
        run.environment.git = GitCheckout(commit=commit * 40, dirty=False)
    return run


def five(peak: int, **scenario: object) -> RunResult:
    return run_of(
        *(entry("pool", repeat=i, rps=1000 + 10 * i, peak=peak) for i in range(5)), **scenario
    )


def test_results_are_laid_out_by_date_with_their_commit() -> None:
    runs = [
        ("c.json", dated(five(4), 30, "c")),
        ("a.json", dated(five(4), 10, "a")),
        ("b.json", dated(five(4), 20)),
    ]
    points = trend.trend(runs)
    throughput = [p for p in points if p.figure.metric.name == "throughput"]
    assert [(p.index, p.label, p.commit) for p in throughput] == [
        (1, "a.json", "a" * 40),
        (2, "b.json", None),
        (3, "c.json", "c" * 40),
    ]
    first = throughput[0].figure
    assert (first.value, first.low, first.high, first.repeats) == (1020, 1000, 1040, 5)
    assert all(not p.failed for p in points)


def test_a_gate_failure_against_the_result_before_is_marked() -> None:
    gate = {"connections_peak": 0.25, "alpha": 0.05}
    runs = [
        ("1.json", dated(five(4, gate=gate), 1)),
        ("2.json", dated(five(4, gate=gate), 2)),
        ("3.json", dated(five(25, gate=gate), 3)),  # a connection per request: caught
        ("4.json", dated(five(25, gate=gate), 4)),  # no worse than the one before
    ]
    failed = [(p.index, p.figure.metric.name) for p in trend.trend(runs) if p.failed]
    assert failed == [(3, "connections_peak")]


def test_a_crossed_limit_is_marked_on_its_metric() -> None:
    run = dated(five(4), 1)
    run.limits = [
        LimitRecord(limit="p99_ms>10", variant=KEY, value=40.0, failed=True, reason="p99 = 40"),
        LimitRecord(limit="throughput_rps<1", variant=KEY, value=1020, failed=False, reason="ok"),
    ]
    failed = {p.figure.metric.name: p.failed for p in trend.trend([("x.json", run)]) if p.failed}
    assert failed == {"p99": ["limit: p99 = 40"]}


def test_trend_page_escapes_what_results_hold() -> None:
    run = dated(five(4), 1)
    for result in run.results:
        result.variant.key = XSS
    run.summary = stats.aggregate(run.results)
    page = html.trend_report([(XSS, run)])
    assert "<img src=x" not in page and "<script>alert" not in page


@pytest.mark.integration
def test_report_trend_command_writes_the_page(tmp_path: Path) -> None:
    for n in range(2):
        results.save(dated(five(4), n), tmp_path / f"r{n}.json")
    done = run_cli("report", "r0.json", "r1.json", "--trend", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "trend.html" in done.stdout
    assert "connbench trend" in (tmp_path / "trend.html").read_text()


# --- five real results, opened in Chromium ------------------------------------------------------


@pytest.fixture(scope="module")
def real_results(
    tmp_path_factory: pytest.TempPathFactory, pg: postgres.Postgres
) -> list[tuple[str, RunResult]]:
    """Five real runs of the pool on the session's PostgreSQL, two repeats each, from this
    checkout (so each records its commit); the fourth crosses a limit on its connections."""
    out = tmp_path_factory.mktemp("trend")
    loaded = []
    for n in range(5):
        limit = "connections_peak>3" if n == 3 else "connections_peak>50"
        scenario = build(
            None,
            {
                "strategies": ["pool"],
                "concurrency": "4",
                "repeat": "2",
                "duration_s": "1",
                "warmup_s": "0.3",
                "postgres": pg.dsn,
                "fail_if": [limit],
            },
        )
        path = out / f"r{n}.json"
        runner.execute(scenario, RecordingReporter(), path)
        run = results.load(path)
        run.summary = stats.aggregate(run.results)
        loaded.append((str(path), run))
    return loaded


@needs_chromium
def test_trend_of_five_real_results_draws_in_chromium(
    real_results: list[tuple[str, RunResult]], tmp_path: Path
) -> None:
    for _, run in real_results:
        assert run.environment.git is not None  # run inside this repository's checkout
    page = html.trend_report(real_results)
    visit, shot = open_in_chromium(page, tmp_path, "trend")
    charted = {p.figure.metric.name for p in trend.trend(real_results)}
    assert len(visit.state) == len(charted) >= 10
    peak = next(c for c in visit.state if any("most seen at once" in t for t in c["titles"]))
    assert peak["red"]  # the crossed limit of the fourth result
    throughput = next(c for c in visit.state if any("2xx responses" in t for t in c["titles"]))
    assert not throughput["red"]
    keep = os.environ.get("CONNBENCH_KEEP_SCREENSHOTS")
    if keep:
        shutil.copy(shot, Path(keep) / "trend.png")
