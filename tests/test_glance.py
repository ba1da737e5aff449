"""Output that reads at a glance: warnings one line per kind with the fix, only about figures
shown; a tail the run can support; rows on one line at 80 and 100 columns; footnotes on ask."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from connbench.analyse import advice, compare, stats
from connbench.analyse.compare import Gate, Threshold
from connbench.cli import app
from connbench.model import results
from connbench.model.results import RunResult
from connbench.model.scenario import Scenario
from connbench.present import html, html_names, run_cells
from connbench.present import run as run_view
from connbench.present.common import rich_mark
from connbench.present.compare import render_compare
from tests.conftest import entry, made, run_of

runner = CliRunner()
ALL = (
    "connect", "context", "depends", "yield", "yield-context", "pool", "pool-nocheck",
    "pool-unused", "sync-connect", "sync-pool", "sqlalchemy", "sqlalchemy-nullpool",
    "asyncpg-pool", "sqlmodel",
)  # fmt: skip


def _quick_like(few: tuple[str, ...] = ()) -> RunResult:
    """Every strategy once, as the quick scenario measures them: sessions per 2xx, a peak
    against its prediction; those in ``few`` served too few requests for a p99."""
    entries = []
    for name in ALL:
        pooled = "pool" in name
        base = entry(name, rps=69.0 if name in few else 2311.0, pool=4 if pooled else None)
        fields = base.model_dump(exclude={"strategy", "status"})
        fields["server"] |= {"sessions_per_ok_response": 1.0, "sessions_opened": 1315}
        ok = 276 if name in few else 9000
        fields["requests"] = {"ok": ok, "total": ok}
        fields["integrity"] = {"ok_responses": ok, "rows_inserted": ok, "requests_sent": ok}
        result = made(name, **fields)
        result.warnings = stats.warnings(result)  # as the runner records them
        entries.append(result)
    run = run_of(*entries)
    for summary in run.summary:
        if summary.strategy in few:
            assert any(advice.few_requests(w) == "p99" for w in summary.warnings)
    return run


def test_warnings_of_one_kind_are_one_line_with_the_count_and_the_fix() -> None:
    pairs = [(f"s{i}", f"p99 rests on {100 + i} requests (want >= 1000)") for i in range(14)]
    pairs += [("s1", "p999 rests on 1861 requests (want >= 10000)")]
    pairs += [("s2", "integrity: 3 rows inserted for 4 successful responses")]
    pairs += [("s3", "unstable: throughput varies by 31% (CV) over 5 repeats")]
    pairs += [("s4", "unstable: throughput varies by 12% (CV) over 5 repeats")]
    lines = advice.grouped(pairs, shown=("p50", "p99"))
    assert lines == [
        "p99 rests on fewer than 1,000 requests in 14 variants (s0 100, s1 101, s2 102, "
        "+11 more): measure longer, e.g. -d 30s",
        "s2: integrity: 3 rows inserted for 4 successful responses",
        "throughput varies by 10 % or more (CV) between repeats in 2 variants (s3 31%, s4 12%): "
        "more or longer repeats (-r 10, -d 30s), or a quieter machine",
    ]
    # p999 is not shown in the run table: its warning is not said (the JSON keeps it)
    assert not any("p999" in line for line in lines)
    assert any("p999" in line for line in advice.grouped(pairs, shown=("p999",)))


def test_a_repeated_warning_keeps_its_kind() -> None:
    pairs = [("a", "p99 rests on 318 requests (want >= 1000) (in 3 of 5 repeats)")]
    assert advice.grouped(pairs)[0].startswith("p99 rests on fewer than 1,000 requests in 1 ")


def test_the_tail_is_p90_where_a_variant_cannot_support_a_p99() -> None:
    supported = _quick_like()
    assert run_cells.tail_percentile(supported) == "p99"
    assert run_view.tail_note(supported) is None
    short = _quick_like(few=("connect", "sqlalchemy-nullpool"))
    assert run_cells.tail_percentile(short) == "p90"
    note = run_view.tail_note(short) or ""
    assert note.startswith("p90 shown, not p99: p99 rests on fewer than 1,000 requests in 2 ")
    assert "-d 30s" in note
    headers, _ = run_cells.run_rows(short, rich_mark)
    assert "p90 ms" in headers and "p99 ms" not in headers
    # nothing is said twice: the note replaces the warning
    assert not any("p99" in line for line in run_view.warning_lines(short))
    assert "p90 ms" in run_view.run_markdown(short)


@pytest.mark.parametrize("width", [80, 100])
def test_every_row_is_one_line_at_80_and_100_columns(width: int) -> None:
    run = _quick_like(few=("connect",))
    console = Console(width=width, record=True, file=io.StringIO())
    run_view.render_run(console, run, charts=False)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    body = [line for line in lines if line.startswith("│")]
    first = [line.split("│")[1].strip() for line in body]
    assert first.count("") == 0, "a row wrapped onto a second line"
    assert [name for name in first if name in ALL] == list(ALL)
    assert "warning:" not in text  # the quick scenario's only warning became the p90 note


def test_footnotes_only_when_asked() -> None:
    run = _quick_like()
    plain = Console(width=100, record=True, file=io.StringIO())
    run_view.render_run(plain, run, charts=False)
    explained = Console(width=100, record=True, file=io.StringIO())
    run_view.render_run(explained, run, charts=False, explain=True)
    said = " ".join(explained.export_text().split())
    assert "CPU columns" not in plain.export_text()
    assert "CPU columns" in said
    assert "sessions/2xx: server sessions opened per successful response" in said


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_machine_formats_say_their_warnings_on_stderr(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "r.json"
    results.save(_quick_like(few=("connect",)), path)
    out = runner.invoke(app, ["show", str(path), "--format", fmt])
    assert out.exit_code == 0, out.output
    assert "p99 rests on fewer than 1,000 requests in 1 variant (connect" in out.stderr
    assert "connbench: warning" not in out.stdout  # the data stays clean
    if fmt == "json":
        json.loads(out.stdout)


@pytest.mark.parametrize("width", [80, 100])
def test_compare_fits_the_width_and_says_what_it_dropped(width: int) -> None:
    def five(rps: float) -> RunResult:
        kinds = ("pool", "connect", "sqlalchemy-nullpool")
        return run_of(
            *(
                entry(s, repeat=i, rps=rps + i, p99=1234.5, concurrency=128, topology=via)
                for s in kinds
                for via in ("direct", "pgbouncer-transaction")
                for i in range(5)
            )
        )

    gate = Gate((Threshold("throughput", 0.10, "test"), Threshold("p99", 0.25, "test")))
    comparison = compare.compare(five(1000.0), five(800.0), gate=gate)
    console = Console(width=width, record=True, file=io.StringIO())
    render_compare(console, [comparison])
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("└"))]
    keys = [line.split("│")[1].strip() for line in table if line.startswith("│")]
    assert {v.key for v in comparison.variants} <= set(keys)  # every key whole, on one line
    assert f"compare: left out at {width} columns" in "\n".join(lines)


def test_twenty_variants_take_twenty_colours() -> None:
    colours = html_names.Colours()
    assert len({colours.of_series(f"s{i}") for i in range(20)}) == 20
    every = [*ALL, "mine", "theirs"]
    page = html_names.Colours()
    assert len({page.of_series(name) for name in every}) == len(every)


def test_the_scenario_block_shows_what_the_user_set_on_one_line_each() -> None:
    scenario = Scenario(name="q", duration_s=4.0).to_dict()
    scenario["app"] = [
        {"name": "mine", "app": "x.main:app", "count_sql": "SELECT\n  count(*)", "env": {}}
    ]
    facts = dict(html.scenario_facts(scenario))
    assert facts["duration_s"] == "4.0"
    assert facts["app mine"] == "app: x.main:app · count_sql: SELECT count(*)"
    for internal in ("locust_bind", "expect_workers", "pool_min_effective", "timeout_s"):
        assert internal not in facts  # Locust did not run; the rest is the default
    assert "\n" not in "".join(facts.values()) and "{" not in "".join(facts.values())


def test_the_report_is_written_as_the_result_is(tmp_path: Path) -> None:
    """Through the result's checks and writer: its mode, never onto a device or a FIFO."""
    base = _quick_like()
    results.save(base, tmp_path / "a.json")
    done = runner.invoke(app, ["report", str(tmp_path / "a.json"), "-o", str(tmp_path / "a.html")])
    assert done.exit_code == 0, done.output
    json_mode = (tmp_path / "a.json").stat().st_mode & 0o777
    assert (tmp_path / "a.html").stat().st_mode & 0o777 == json_mode
    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    refused = runner.invoke(app, ["report", str(tmp_path / "a.json"), "-o", str(fifo)])
    assert refused.exit_code == 2 and "is a FIFO" in refused.stderr, refused.output
