"""The metric registry: one entry per metric, every name of it accepted everywhere."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from connbench.analyse import compare, limits, stats
from connbench.analyse.compare import Gate, Threshold
from connbench.model import checks, metrics, scenario
from connbench.model.errors import ScenarioError

from .conftest import entry, part, run_of

ROOT = Path(__file__).resolve().parent.parent
SPELLINGS = [(m, s) for m in metrics.METRICS for s in m.spellings]


@pytest.mark.parametrize(("metric", "spelling"), SPELLINGS)
def test_every_name_is_accepted_by_limits_gates_and_scenarios(
    metric: metrics.Metric, spelling: str, tmp_path: Path
) -> None:
    assert str(limits.parse(f"{spelling}>5")) == f"{metric.key}>5"
    assert checks.parse_fail_on(f"{spelling}:10%") == (metric.name, 0.10)
    path = tmp_path / "s.toml"
    path.write_text(f'fail_if = ["{spelling}<1"]\n[gate]\n"{spelling}" = "5%"\n')
    built = scenario.build(path, {})
    assert built.gate == {metric.name: 0.05}
    assert [str(limit) for limit in built.fail_if] == [f"{metric.key}<1"]


def test_names_are_unique() -> None:
    spellings = [s for _, s in SPELLINGS]
    assert len(spellings) == len(set(spellings))


def test_an_unknown_metric_is_one_line_listing_the_known_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        checks.parse_fail_on("latency:10%")
    message = str(info.value)
    assert "\n" not in message and message.startswith("unknown metric 'latency' (known: ")
    assert all(s in message for _, s in SPELLINGS)
    with pytest.raises(ValueError, match=re.escape("unknown metric 'latency' (known: ")):
        limits.parse("latency>5")
    path = tmp_path / "s.toml"
    path.write_text("[gate]\nlatency = '5%'\n")
    with pytest.raises(ScenarioError, match="gate: latency: unknown metric 'latency'"):
        scenario.build(path, {})


def test_a_summary_and_a_repeat_read_the_same_metric() -> None:
    """What a limit reads from the summary is the median of what each repeat gives."""
    runs = [entry(repeat=i, rps=r, p99=p) for i, (r, p) in enumerate([(900, 30), (1000, 60)])]
    (summary,) = stats.aggregate(runs)
    measured = 0
    for metric in metrics.METRICS:
        if metric.key == "error_rate":
            continue  # over all requests, not a median of repeats (see limits)
        per_repeat = stats.values(runs, metric)
        expected = statistics.median(per_repeat) if per_repeat else None
        assert metric.summary_value(summary) == pytest.approx(expected), metric.name
        measured += bool(per_repeat)
    assert measured >= 8  # throughput, four latencies, three server figures


def test_a_gate_on_a_metric_outside_the_comparison_table() -> None:
    base = run_of(*(entry(repeat=i, p99=40) for i in range(5)))
    new = run_of(*(entry(repeat=i, p99=40) for i in range(5)))
    for run, slowest in [*((r, 500.0) for r in new.results), *((r, 100.0) for r in base.results)]:
        part(run.latency_ms).max = slowest
    base.summary, new.summary = stats.aggregate(base.results), stats.aggregate(new.results)
    gate = Gate((Threshold("max", 0.5, "test"),))
    (variant,) = compare.compare(base, new, gate=gate).variants
    (verdict,) = variant.verdicts
    assert verdict.metric == "max" and verdict.failed
    assert "mean" not in variant.metrics  # not gated, not a comparison row


def test_the_readme_lists_every_name() -> None:
    readme = (ROOT / "docs" / "usage.md").read_text()
    table = readme[readme.index("## Metrics") :]
    for _, spelling in SPELLINGS:
        assert f"`{spelling}`" in table, spelling
