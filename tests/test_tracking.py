"""Results as github-action-benchmark and Bencher read them (``--format
github-action-benchmark[:bigger|:smaller]`` and ``--format bmf``), checked against the shapes
the two tools document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from connbench.cli import app
from connbench.model import metrics, results
from connbench.model.result_types import GitCheckout
from connbench.model.results import RunResult, StrategyResult
from connbench.present import tracking

from .conftest import made, run_of
from .helpers import ab_run, assert_one_line_exit_2

runner = CliRunner()

# The shapes as the tools document them. github-action-benchmark's README ("Examples",
# custom tools): an array of objects with "name", "unit" and "value" required, "range" and
# "extra" optional strings. Bencher's published https://bencher.dev/bmf.json: benchmark ->
# measure -> {"value" required, "lower_value", "upper_value"}, all numbers.
GITHUB_ACTION_BENCHMARK_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "unit": {"type": "string"},
            "value": {"type": "number"},
            "range": {"type": "string"},
            "extra": {"type": "string"},
        },
        "required": ["name", "unit", "value"],
    },
}
BMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "patternProperties": {
        ".+": {
            "type": "object",
            "patternProperties": {
                ".+": {
                    "type": "object",
                    "properties": {
                        "value": {"type": "number"},
                        "lower_value": {"type": "number"},
                        "upper_value": {"type": "number"},
                    },
                    "required": ["value"],
                }
            },
        }
    },
}
# The documented examples, as the tools' docs give them.
GAB_EXAMPLE = [
    {"name": "My Custom Smaller Is Better Benchmark - CPU Load", "unit": "Percent", "value": 50},
    {
        "name": "My Custom Smaller Is Better Benchmark - Memory Used",
        "unit": "Megabytes",
        "value": 100,
        "range": "3",
        "extra": "Value for Tooltip: 25\nOptional Num #2: 100\nAnything Else!",
    },
]
BMF_EXAMPLE = {
    "benchmark_name": {
        "latency": {"value": 88.0, "lower_value": 87.42, "upper_value": 88.88},
        "throughput": {"value": 5.55, "lower_value": 3.14, "upper_value": 6.30},
    },
    "/bin/sh -c ./my_build_script.sh": {"build-time": {"value": 87.0}},
    "my_binary": {"file-size": {"value": 42.0}},
}

KEY = "pool c=32 w=1 pool=4..4"


def repeat(r: int, rps: float, p99: float, peak: int, sessions: int) -> StrategyResult:
    return made(
        "pool",
        variant={"key": KEY},
        repeat=r,
        requests={"ok": 1000, "errors": 0, "total": 1000},
        throughput_rps=rps,
        latency_ms={"p50": p99 / 3, "p90": p99 / 2, "p99": p99, "p999": p99 * 1.5},
        server={
            "connections_peak": peak,
            "connections_mean": peak - 0.5,
            "sessions_opened": sessions,
            "sessions_per_ok_response": sessions / 1000,
        },
        cpu_percent={"app": 90.0 + r, "postgres": 20.0},
    )


def five_repeats(scale: float = 1.0) -> RunResult:
    return run_of(
        *(
            repeat(r, rps * scale, p99, peak, sessions)
            for r, (rps, p99, peak, sessions) in enumerate(
                [
                    (900, 40, 4, 4),
                    (1000, 35, 4, 4),
                    (800, 50, 5, 6),
                    (950, 38, 4, 4),
                    (870, 45, 4, 5),
                ]
            )
        )
    )


def test_the_schemas_accept_the_documented_examples() -> None:
    # The schemas our output is checked against are the tools' own: their examples pass.
    jsonschema.validate(GAB_EXAMPLE, GITHUB_ACTION_BENCHMARK_SCHEMA)
    jsonschema.validate(BMF_EXAMPLE, BMF_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            [{"name": "x", "unit": "ms", "value": "1"}], GITHUB_ACTION_BENCHMARK_SCHEMA
        )


def test_bmf_has_every_tracked_metric_with_the_repeats_interval() -> None:
    document = json.loads(tracking.format_run(five_repeats(), "bmf"))
    jsonschema.validate(document, BMF_SCHEMA)
    assert list(document) == [KEY]
    measures = document[KEY]
    assert list(measures) == [m.key for m in metrics.TRACKED]
    assert measures["throughput_rps"] == {"value": 900, "lower_value": 800, "upper_value": 1000}
    assert measures["p99_ms"] == {"value": 40, "lower_value": 35, "upper_value": 50}
    assert measures["connections_peak"] == {"value": 4, "lower_value": 4, "upper_value": 5}
    assert measures["sessions_per_ok_response"] == {
        "value": 0.004,
        "lower_value": 0.004,
        "upper_value": 0.006,
    }
    assert measures["error_rate"]["value"] == 0
    for metric in measures.values():
        assert metric["lower_value"] <= metric["value"] <= metric["upper_value"]


def test_github_action_benchmark_splits_the_directions_and_states_units() -> None:
    run = five_repeats()
    smaller = json.loads(tracking.format_run(run, "github-action-benchmark"))
    assert json.loads(tracking.format_run(run, "github-action-benchmark:smaller")) == smaller
    bigger = json.loads(tracking.format_run(run, "github-action-benchmark:bigger"))
    for entries in (smaller, bigger):
        jsonschema.validate(entries, GITHUB_ACTION_BENCHMARK_SCHEMA)
        assert all(entry["unit"] for entry in entries)  # every number says what it is
    assert [e["name"] for e in bigger] == [f"{KEY}: throughput_rps"]
    assert bigger[0] | {"extra": ""} == {
        "name": f"{KEY}: throughput_rps",
        "unit": "req/s",
        "value": 900,
        "range": "800..1000 (min..max of 5 repeats)",
        "extra": "",
    }
    names = {e["name"]: e for e in smaller}
    assert f"{KEY}: throughput_rps" not in names
    assert names[f"{KEY}: p99_ms"]["unit"] == "ms"
    assert names[f"{KEY}: connections_peak"]["unit"] == "connections"
    assert names[f"{KEY}: sessions_per_ok_response"]["unit"] == "sessions/response"
    # Every metric in the file where its direction is the tool's.
    for entry in smaller:
        metric = metrics.lookup(entry["name"].rpartition(": ")[2])
        assert not metric.higher_is_better


def test_names_stay_the_same_from_run_to_run() -> None:
    first = json.loads(tracking.format_run(five_repeats(1.0), "github-action-benchmark:bigger"))
    second = json.loads(tracking.format_run(five_repeats(0.5), "github-action-benchmark:bigger"))
    assert [e["name"] for e in first] == [e["name"] for e in second]
    assert [e["value"] for e in first] != [e["value"] for e in second]


def test_a_single_run_has_no_interval_and_a_failed_variant_no_figures() -> None:
    run = run_of(repeat(0, 900, 40, 4, 4), made("connect", "failed", failure="boom"))
    document = json.loads(tracking.format_run(run, "bmf"))
    assert list(document) == [KEY]
    assert document[KEY]["throughput_rps"] == {"value": 900}
    entries = json.loads(tracking.format_run(run, "github-action-benchmark:bigger"))
    assert "range" not in entries[0]


def test_the_commit_is_in_extra() -> None:
    run = five_repeats()
    run.environment.git = GitCheckout(commit="ab" * 20, dirty=True)
    (entry,) = json.loads(tracking.format_run(run, "github-action-benchmark:bigger"))
    assert f"commit {'ab' * 6} (with local changes)" in entry["extra"]


def write(run: RunResult, path: Path) -> Path:
    results.save(run, path)
    return path


@pytest.mark.parametrize("fmt", tracking.FORMATS)
def test_show_and_compare_write_each_format(tmp_path: Path, fmt: str) -> None:
    base = write(five_repeats(), tmp_path / "base.json")
    new = write(five_repeats(0.5), tmp_path / "new.json")
    shown = runner.invoke(app, ["show", str(new), "--format", fmt])
    assert shown.exit_code == 0, shown.output
    compared = runner.invoke(app, ["compare", str(base), str(new), "--format", fmt])
    assert compared.exit_code == 0, compared.output
    # compare gives NEW's figures, as show gives them: the series a tool tracks goes on.
    assert json.loads(compared.stdout) == json.loads(shown.stdout)
    schema = BMF_SCHEMA if fmt == "bmf" else GITHUB_ACTION_BENCHMARK_SCHEMA
    jsonschema.validate(json.loads(shown.stdout), schema)


def test_compare_with_several_new_files_is_refused(tmp_path: Path) -> None:
    paths = [write(five_repeats(), tmp_path / f"{n}.json") for n in "abc"]
    result = runner.invoke(app, ["compare", *map(str, paths), "--format", "bmf"])
    assert_one_line_exit_2(result, "--format bmf: give one NEW result (got 2)")


def test_an_unknown_format_names_the_tracking_ones() -> None:
    result = runner.invoke(app, ["show", "x.json", "--format", "github-action-benchmark:up"])
    assert_one_line_exit_2(result, "github-action-benchmark:bigger")


def test_paired_compare_gives_the_ratio_and_its_interval(tmp_path: Path) -> None:
    base = [1000.0, 900.0, 1100.0, 950.0, 1050.0, 1000.0]
    head = [b * f for b, f in zip(base, [0.84, 0.86, 0.83, 0.85, 0.87, 0.82], strict=True)]
    path = write(ab_run(base, head), tmp_path / "ab.json")
    args = ["compare", str(path), "--base", "base", "--head", "head", "--format", "bmf"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    jsonschema.validate(document, BMF_SCHEMA)
    ratio = document["head c=32 w=1 pool=4..4 vs base c=32 w=1 pool=4..4"]["throughput_rps_ratio"]
    assert ratio["lower_value"] == pytest.approx(0.82)
    assert ratio["upper_value"] == pytest.approx(0.87)
    assert 0.82 <= ratio["value"] <= 0.87
    bigger = runner.invoke(app, [*args[:-1], "github-action-benchmark:bigger"])
    entries = json.loads(bigger.stdout)
    jsonschema.validate(entries, GITHUB_ACTION_BENCHMARK_SCHEMA)
    assert entries[0]["unit"] == "x (head/base)"
    assert "96.9% interval" in entries[0]["range"]
