from rich.console import Console

from connbench.analyse import stats
from connbench.model import results
from connbench.present import run as run_view

from .conftest import made, scenario_of


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
