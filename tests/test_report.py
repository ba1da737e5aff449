from dataclasses import replace

import pytest
from rich.console import Console

from connbench.analyse import stats
from connbench.apps import STRATEGIES
from connbench.model import results
from connbench.model.result_types import Calibration, Spread
from connbench.present import compare as compare_view
from connbench.present import run as run_view
from connbench.present import run_cells
from connbench.present.common import rich_mark

from .conftest import entry, made, run_of, scenario_of


def test_sparkline_scales_to_the_top() -> None:
    assert run_view.sparkline([0, 50, 100]) == "▁▅█"
    assert run_view.sparkline([0, 0]) == "▁▁"
    assert run_view.sparkline([]) == ""
    assert run_view.sparkline([10, 20], top=40) == "▃▅"


def test_show_draws_the_typical_repeat_and_marks_failures() -> None:
    run = results.new_run(scenario_of(concurrency=[8]))
    for repeat, rps in enumerate([100.0, 200.0, 150.0]):
        run.results.append(
            made(
                "pool",
                variant={"key": "pool c=8"},
                repeat=repeat,
                requests={"ok": 10, "errors": 0},
                throughput_rps=rps,
                latency_ms={"p50": 1.0, "p99": 2.0},
                integrity={"ok": True, "rows_inserted": 10, "ok_responses": 10},
                timeseries={"ok": [rps, rps], "errors": [0, 0], "p99_ms": [2, 2],
                            "connections": [4, 4]},
            )
        )  # fmt: skip
    run.results.append(made("connect", "failed", failure="boom"))
    run.summary = stats.aggregate(run.results)
    console = Console(width=200, record=True)
    run_view.render_run(console, run)
    text = console.export_text()
    assert "median of 3 interleaved repeats" in text
    assert "max 150" in text  # the repeat closest to the median is drawn
    assert "failed" in text


CEILINGS = Calibration(
    concurrency=32,
    duration_s=5.0,
    generator_rps=None,
    generator_cpu_percent=None,
    wrk_rps=None,
    pgbench_tps=1000.0,
    pgbench_connect_tps=500.0,
)


def _bounced_run() -> results.RunResult:
    run = run_of(
        entry("pool", topology="pgbouncer-transaction"),
        entry("pool-unused", pool=4),
        topology=["direct", "pgbouncer-transaction"],
        pgbouncer_pool_size=7,
        concurrency=[32],
    )
    run.calibration = CEILINGS
    return run


def test_the_context_line_is_the_same_in_every_format() -> None:
    """The Markdown context once lacked the PgBouncer part the table showed."""
    run = _bounced_run()
    console = Console(width=400, record=True)
    run_view.render_run(console, run)
    shown = console.export_text()
    markdown = run_view.run_markdown(run)
    line = next(part for part in markdown.splitlines() if part.startswith("concurrency "))
    assert "via direct,pgbouncer-transaction (PgBouncer pool 7)" in line
    assert line in shown


def test_the_ceiling_follows_the_strategy_not_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """A strategy that opens a pool yet connects per request is held to pgbench -C."""
    unused = STRATEGIES["pool-unused"]
    monkeypatch.setitem(STRATEGIES, "pool-idle", replace(unused, name="pool-idle"))
    run = run_of(entry("pool", rps=800), entry("pool-unused", rps=400), entry("pool-idle", rps=400))
    run.calibration = CEILINGS
    rows = {
        cells[1].strip(): cells[3].strip()
        for cells in (line.split("|") for line in run_view.run_markdown(run).splitlines())
        if len(cells) > 3 and cells[1].strip().startswith("pool")
    }
    assert rows == {
        "pool": "80% of pgbench",
        "pool-unused": "80% of pgbench -C",
        "pool-idle": "80% of pgbench -C",
    }


def test_unstable_marks_follow_the_stability_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The yellow ±CV mark (runs and comparisons) and the 'unstable' warning share
    stats.UNSTABLE_CV: no second threshold hard-coded in the presentation."""
    spread = Spread.model_validate(stats.spread([1000, 1070, 930]))
    assert spread.cv is not None and 0.05 < spread.cv < stats.UNSTABLE_CV
    assert "yellow" not in run_cells._cv(spread)
    assert "yellow" not in compare_view._spread_cell(1e3, spread.cv, "req/s", rich_mark)
    monkeypatch.setattr(stats, "UNSTABLE_CV", 0.05)
    assert "yellow" in run_cells._cv(spread)
    assert "yellow" in compare_view._spread_cell(1e3, spread.cv, "req/s", rich_mark)
