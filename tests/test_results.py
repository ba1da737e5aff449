import json
from pathlib import Path

import pytest

from connbench.model import results
from connbench.model.errors import ResultFileError
from connbench.model.results import StrategyResult


def sample_run() -> results.RunResult:
    run = results.new_run({"name": "t", "concurrency": 4})
    run.results.append(
        StrategyResult(strategy="pool", status="ok", throughput_rps=123.0, latency_ms={"p99": 2.5})
    )
    return run


def test_round_trip(tmp_path: Path) -> None:
    run = sample_run()
    path = results.save(run, tmp_path / "r.json")
    assert results.load(path) == run
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left


def test_environment_is_recorded() -> None:
    env = sample_run().environment
    assert env["cpu_count"] >= 1
    assert env["python"].startswith("3.")
    assert env["packages"]["psycopg"]
    assert env["packages"]["fastapi"]


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
        ('{"schema_version": 2}', "missing"),
        (
            '{"schema_version": 1}',
            r"schema_version 1 is not supported \(this connbench reads "
            r"versions 2 to 6\)",
        ),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ResultFileError, match=message):
        results.load(path)


def test_unknown_strategy_keys_are_rejected(tmp_path: Path) -> None:
    data = results.to_dict(sample_run())
    data["results"][0]["bogus"] = 1
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFileError, match=r"results\[0\]: unknown keys \['bogus'\]"):
        results.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="cannot read result file"):
        results.load(tmp_path / "nope.json")


def test_version_2_files_still_load(tmp_path: Path) -> None:
    data = results.to_dict(sample_run())
    data["schema_version"] = 2
    del data["results"][0]["fault"]  # what version 3 added
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(data))
    loaded = results.load(path)
    assert loaded.schema_version == 2
    assert loaded.results[0].fault == {}


def test_limits_round_trip_and_version_2_files_still_load(tmp_path: Path) -> None:
    run = sample_run()
    run.limits = [
        {"limit": "p99_ms>50", "variant": "pool", "value": 2.5, "failed": False, "reason": "x"}
    ]
    path = results.save(run, tmp_path / "r.json")
    assert results.load(path).limits == run.limits
    data = json.loads(path.read_text())
    data["schema_version"] = 2
    del data["limits"]
    path.write_text(json.dumps(data))
    old = results.load(path)
    assert old.schema_version == 2 and old.limits == []
