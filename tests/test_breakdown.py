"""Where the time goes: the arithmetic over the app's totals, and the bar that shows it."""

from pathlib import Path

import pytest
from rich.console import Console

from connbench.analyse import breakdown, stats
from connbench.model import results
from connbench.model.results import StrategyResult
from connbench.present import run as run_view

from .conftest import made, scenario_of

ROOT = Path(__file__).resolve().parent.parent


def totals(requests: int, **ms: float) -> dict[str, object]:
    timing = {
        "requests": requests,
        "until_response_ms": 0.0,
        "after_response_ms": 0.0,
        "connect_ms": 0.0,
        "connects": 0,
        "pool_wait_ms": 0.0,
        "query_ms": 0.0,
        "queries": 0,
    }
    timing.update(ms)
    return {"timing": timing, "pool": None}


def test_breakdown_is_the_difference_between_the_edges_per_request() -> None:
    start = totals(100, until_response_ms=5000, connect_ms=3000, query_ms=1000, connects=100,
                   queries=200, after_response_ms=50)  # fmt: skip
    end = totals(300, until_response_ms=15000, connect_ms=9000, query_ms=3000, connects=300,
                 queries=600, after_response_ms=250)  # fmt: skip
    out = breakdown.breakdown(start, end, latency_mean_ms=60.0)
    assert out["requests"] == 200
    assert out["in_app_ms"] == 50.0
    assert out["connect_ms"] == 30.0
    assert out["query_ms"] == 10.0
    assert out["pool_wait_ms"] == 0.0
    assert out["rest_of_app_ms"] == 10.0
    assert out["outside_app_ms"] == 10.0  # the client waited 60, the app took 50
    assert out["after_response_ms"] == 1.0
    assert out["connects_per_request"] == 1.0
    assert out["queries_per_request"] == 2.0
    assert out["pool"] is None


def test_pool_statistics_counters_over_the_window_gauges_at_its_end() -> None:
    start, end = totals(10), totals(20, pool_wait_ms=40, queries=10)
    start["pool"] = {"pool_size": 4, "requests_num": 100, "requests_wait_ms": 500}
    end["pool"] = {"pool_size": 3, "requests_num": 110, "requests_wait_ms": 540,
                   "connections_lost": 2}  # fmt: skip
    out = breakdown.breakdown(start, end, latency_mean_ms=None)
    assert out["pool"] == {"pool_size": 3, "requests_num": 10, "requests_wait_ms": 40,
                           "connections_lost": 2}  # fmt: skip
    assert out["pool_wait_ms"] == 4.0
    assert "outside_app_ms" not in out  # no client latency to compare with


def test_no_timed_database_call_means_no_breakdown() -> None:
    # Only requests and app time, no query or connect timed (a sync strategy): no breakdown
    # rather than one that puts everything in "rest of app".
    assert breakdown.breakdown(totals(1), totals(9, until_response_ms=80), latency_mean_ms=12) == {}


@pytest.mark.parametrize(
    ("start", "end"), [(None, totals(5)), (totals(5), None), (totals(5), totals(5)), ({}, {})]
)
def test_no_breakdown_without_totals_or_requests(
    start: dict[str, object] | None, end: dict[str, object] | None
) -> None:
    assert breakdown.breakdown(start, end, latency_mean_ms=1.0) == {}


def test_bar_stacks_the_parts_in_order_and_keeps_the_total() -> None:
    bar = run_view._bar({"connect_ms": 3.4, "query_ms": 3.4, "outside_app_ms": 3.2}, scale=1.0)
    plain = Console(no_color=True, width=80)
    with plain.capture() as captured:
        plain.print(bar, end="")
    assert captured.get() == "█" * 10
    assert bar.index("magenta") < bar.index("cyan") < bar.index("bright_black")


@pytest.mark.integration
def test_summary_and_table_carry_the_median_breakdown(tmp_path: Path) -> None:
    def run(repeat: int, connect_ms: float) -> StrategyResult:
        return made(
            "connect", repeat=repeat, variant={"key": "connect c=8"},
            requests={"ok": 10}, breakdown={"connect_ms": connect_ms, "latency_mean_ms": 9.0},
        )  # fmt: skip

    (summary,) = stats.aggregate([run(0, 1.0), run(1, 5.0), run(2, 3.0)])
    assert summary.breakdown["connect_ms"] == 3.0
    saved = results.new_run(scenario_of())
    saved.results = [run(0, 1.0)]
    saved.summary = stats.aggregate(saved.results)
    console = Console(width=200, record=True)
    run_view.render_run(console, saved)
    assert "where the time goes" in console.export_text()


def test_strategy_files_hold_no_measurement_code() -> None:
    helpers = {"__init__.py", "common.py", "instrument.py"}
    for path in sorted((ROOT / "connbench" / "apps").glob("*.py")):
        if path.name not in helpers:
            text = path.read_text()
            assert "instrument" not in text and "_connbench" not in text, path.name
