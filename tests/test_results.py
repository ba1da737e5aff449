"""The result file: typed, validated on save and load, old versions migrated, schema shipped."""

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from connbench.analyse import stats
from connbench.cli import app
from connbench.model import results
from connbench.model.errors import ResultFileError
from connbench.model.result_types import LimitRecord

from .conftest import ROOT, made, scenario_of

FIXTURES = Path(__file__).parent / "fixtures"
# Saved by the code of the day before the typed model (schema 5), and the committed CI baseline
# (schema 3): each must still load and render.
OLD_RESULTS = sorted(FIXTURES.glob("result-v*.json")) + [ROOT / "results" / "baseline-ci.json"]


def sample_run() -> results.RunResult:
    run = results.new_run(scenario_of(concurrency=[4]))
    run.results.append(made("pool", throughput_rps=123.0, latency_ms={"p99": 2.5}, timeseries={}))
    return run


def test_round_trip(tmp_path: Path) -> None:
    run = sample_run()
    path = results.save(run, tmp_path / "r.json")
    assert results.load(path) == run
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left


def test_environment_is_recorded() -> None:
    env = sample_run().environment
    assert env.cpu_count is not None and env.cpu_count >= 1
    assert env.python.startswith("3.")
    assert env.packages["psycopg"]
    assert env.packages["fastapi"]


def test_default_path_is_under_results() -> None:
    path = results.default_path(sample_run())
    assert path.parent == Path("results")
    assert path.name.startswith("t-") and path.suffix == ".json"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"schema_version": 99}', "schema_version 99 is not supported"),
        ('{"schema_version": true}', "schema_version true is not supported"),
        ('{"schema_version": 2}', "created_at: missing"),
        ("[" * 100_000, "nested too deep"),
        ('{"schema_version": 6, "results": ' + "[" * 100_000 + "]" * 100_000 + "}", "too deep"),
        (
            '{"schema_version": 1}',
            rf"schema_version 1 is not supported \(this connbench reads versions 2 to "
            rf"{results.SCHEMA_VERSION}\)",
        ),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ResultFileError, match=message):
        results.load(path)


def _document(**changes: Any) -> dict[str, Any]:
    data = results.to_dict(sample_run())
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Nested fields were not checked before the typed model: these loaded and broke later.
        (
            lambda d: d["summary"][0]["throughput_rps"].update(median="abc"),
            'summary.0.throughput_rps.median: expected a number, got "abc"',
        ),
        (
            lambda d: d["results"][0]["latency_ms"].update(p99=None),
            "results.0.latency_ms.p99: expected a number, got null",
        ),
        (
            lambda d: d["results"][0]["latency_ms"].pop("p50"),
            "results.0.latency_ms.p50: missing",
        ),
        (
            lambda d: d["results"][0].update(bogus=1),
            "results.0.bogus: unknown field",
        ),
        (
            lambda d: d["results"][0].update(status="great"),
            "results.0.status: expected 'ok', 'failed', 'interrupted' or 'unavailable', "
            'got "great"',
        ),
        (
            lambda d: d["environment"].update(
                postgres={
                    "backend": "embedded",
                    "version": "16",
                    "dsn": "-",
                    "settings": {"max_connections": "100"},
                }
            ),
            'environment.postgres.settings.max_connections: expected a whole number, got "100"',
        ),  # fmt: skip
        (lambda d: d.update(results={}), "results: expected a list, got {}"),
        (
            lambda d: d["results"][0].update(throughput_rps=float("nan")),
            "results.0.throughput_rps: expected a finite number, got NaN",
        ),
        (
            lambda d: d["results"][0]["timeseries"]["ok"].append(float("inf")),
            "results.0.timeseries.ok.0: expected a finite number, got Infinity",
        ),
        (lambda d: d["results"].append(7), "results.1: expected an object, got 7"),
    ],
)
def test_a_wrong_shape_is_one_line_naming_the_field(
    tmp_path: Path, change: Any, message: str
) -> None:
    run = sample_run()
    run.summary = stats.aggregate(run.results)
    data = results.to_dict(run)
    change(data)
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError) as caught:
        results.load(path)
    assert str(caught.value) == f"{path}: {message}"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="cannot read result file"):
        results.load(tmp_path / "nope.json")


def test_saving_validates_and_writes_nothing_when_wrong(tmp_path: Path) -> None:
    run = sample_run()
    run.results[0].warnings.append(3)  # type: ignore[arg-type]  # a list grows unchecked
    with pytest.raises(ResultFileError, match=r"not saved: results\.0\.warnings\.0"):
        results.save(run, tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", OLD_RESULTS, ids=lambda p: p.name)
def test_results_of_older_versions_load_typed(path: Path) -> None:
    assert json.loads(path.read_text())["schema_version"] < results.SCHEMA_VERSION
    run = results.load(path)
    assert run.schema_version == results.SCHEMA_VERSION
    assert run.environment.postgres is not None
    assert run.environment.postgres.settings.max_connections == 100  # was the string "100"
    assert run.environment.postgres.settings.fsync is True  # was "on"
    for result in run.results:
        series = result.timeseries
        assert series is not None and series.interval_s == 1.0
        assert series.t_s == [float(i) for i in range(len(series.ok))]
    # And they save as this version.
    assert results.parse(results.to_dict(run), "again") == run


def test_version_5_becomes_regular() -> None:
    (faulted, *_) = results.load(FIXTURES / "result-v5-fault-calibrate.json").results
    assert faulted.fault is not None and faulted.fault.kind == "terminate"
    assert faulted.breakdown is not None and faulted.breakdown.pool is not None
    assert faulted.open_model is None  # was {}: a closed-loop run has no open model
    assert faulted.timeseries is not None
    assert set(faulted.timeseries.connections_by_state) >= {"active", "idle in transaction"}
    open_model = results.load(FIXTURES / "result-v5-open-pgbouncer.json").results[1]
    assert open_model.open_model is not None and open_model.open_model.rate_rps == 200.0
    assert open_model.server is not None and open_model.server.pgbouncer is not None
    assert open_model.cpu_percent is not None and open_model.cpu_percent.pgbouncer is not None


def test_version_2_files_still_load(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "result-v5-fault-calibrate.json").read_text())
    data["schema_version"] = 2
    for result in data["results"]:  # what versions 3 to 5 added
        for key in ("fault", "breakdown"):
            del result[key]
        del result["variant"]["topology"]
    del data["limits"], data["calibration"]
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(data))
    loaded = results.load(path)
    assert loaded.results[0].fault is None
    assert loaded.results[0].variant.topology == "direct"
    assert loaded.limits == [] and loaded.calibration is None


def test_limits_round_trip(tmp_path: Path) -> None:
    run = sample_run()
    run.limits = [
        LimitRecord(limit="p99_ms>50", variant="pool", value=2.5, failed=False, reason="x")
    ]
    path = results.save(run, tmp_path / "r.json")
    assert results.load(path).limits == run.limits


def test_a_failed_run_saves_null_parts(tmp_path: Path) -> None:
    run = sample_run()
    run.results.append(made("connect", "failed", failure="boom"))
    saved = json.loads(results.save(run, tmp_path / "r.json").read_text())
    failed = saved["results"][1]
    assert failed["requests"] is None and failed["latency_ms"] is None
    assert saved["calibration"] is None


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert results.SCHEMA_PATH.read_text() == results.json_schema_text()
    schema = json.loads(results.SCHEMA_PATH.read_text())
    assert schema["properties"]["schema_version"]["const"] == results.SCHEMA_VERSION
    settings = schema["$defs"]["PostgresSettings"]["properties"]["max_connections"]
    assert {"type": "integer"} in settings["anyOf"]


def test_every_migration_step_is_there() -> None:
    assert list(results.MIGRATIONS) == list(range(2, results.SCHEMA_VERSION))


def test_connbench_schema_prints_it() -> None:
    printed = CliRunner().invoke(app, ["schema"])
    assert printed.exit_code == 0
    assert printed.stdout == results.SCHEMA_PATH.read_text()


@pytest.mark.parametrize("path", OLD_RESULTS, ids=lambda p: p.name)
def test_the_schema_describes_what_connbench_saves(tmp_path: Path, path: Path) -> None:
    """An independent validator agrees with the model: what we save fits the published
    schema, and a wrong shape does not."""
    schema = json.loads(results.SCHEMA_PATH.read_text())
    saved = json.loads(results.save(results.load(path), tmp_path / "r.json").read_text())
    jsonschema.validate(saved, schema)
    saved["environment"]["postgres"]["settings"]["max_connections"] = "100"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(saved, schema)


def test_a_field_name_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    document = json.loads((FIXTURES / "result-v5-fault-calibrate.json").read_text())
    document["results"][0]["server"]["predicted"]["\nx" + "y" * 100] = 1
    path = tmp_path / "x.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ResultFileError) as raised:
        results.load(path)
    message = str(raised.value)
    assert "\n" not in message
    assert "\\nx" in message and "..." in message


def test_the_environment_is_read_without_starting_a_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # platform.platform() runs `uname -p` on Linux (its processor), a child that inherits our
    # environment: a PGPASSWORD the user gave us would sit in it, where only apps may hold it.
    import platform
    import subprocess

    monkeypatch.setattr(platform, "_uname_cache", None)  # as in a fresh process
    monkeypatch.setattr(platform, "_platform_cache", {})

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_child)
    env = results.environment()
    monkeypatch.undo()
    assert env.platform == platform.platform(), "the same text as platform.platform()"
