"""The command line: bad input gets one clear line and exit code 2, never a traceback."""

import csv
import io
import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connbench.apps import STRATEGIES
from connbench.cli import app
from connbench.model import results

from .conftest import ROOT, entry, run_cli, run_of
from .helpers import assert_one_line_exit_2

runner = CliRunner()


def test_strategies_lists_every_name() -> None:
    result = runner.invoke(app, ["strategies"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == list(STRATEGIES)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("connbench ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--strategy", "nope"], "--strategy: unknown strategy 'nope'"),
        (["run", "--concurrency", "0"], "--concurrency: expected a positive whole number"),
        (["run", "--concurrency", "abc"], "--concurrency: expected a positive whole number"),
        (["run", "--duration", "-5"], "--duration: expected a number of seconds > 0"),
        (["run", "--postgres", "mysql://x"], "--postgres: unknown backend"),
        (
            ["run", "--max-connections", "0"],
            "--max-connections: max_connections: expected a positive whole number, got '0'",
        ),
        (["run", "no-such-file.toml"], "no-such-file.toml: cannot read scenario file"),
        (["show", "no-such-file.json"], "no-such-file.json: cannot read result file"),
        (["serve", "nope"], "--strategy: unknown strategy 'nope'"),
        # One --postgres option for every command (serve and calibrate once took --postgres-).
        (["serve", "pool", "--postgres", "mysql://x"], "--postgres: unknown backend"),
        (["calibrate", "--postgres", "mysql://x"], "--postgres: unknown backend"),
        (["run", "--fault", "crash@2"], "--fault: expected KIND@SECOND"),
        (["run", "--fault", "terminate@12"], "--fault: terminate@12 is not inside"),
        (
            ["run", "--fault", "restart@2", "--postgres", "docker"],
            "--fault: restart is only supported on the servers connbench starts",
        ),
        (["run", "--app", "mine"], "--app: expected NAME=MODULE:ATTR[@DIR], got 'mine'"),
        (["run", "--app", "mine=main"], "--app: expected MODULE:ATTR (e.g. examples.myapp"),
        (["run", "--app", "1x=a:b"], "--app: app name '1x': expected a letter"),
        (["run", "--app", "pool=a:b"], "app name 'pool' is a strategy's name"),
        (["run", "--app", "a=m:x", "--app", "a=m:y"], "app name 'a' given twice"),
        (["run", "--target", "t"], "--target: expected NAME=URL, got 't'"),
        (["run", "--target", "t=ftp://x/"], "--target: expected an http:// or https:// URL"),
        (["run", "--target", "t=http://x:99999/"], "--target: bad port"),
        (["run", "--target", "t=http://127.0.0.1:8000/"], "--target: needs --postgres DSN"),
        (["run", "--path", "/x/"], "--path: applies to --app and --target only"),
        (["run", "--app", "a=m:x", "--fault", "terminate@2"], "--fault: not supported with"),
        (
            ["run", "--target", "t=https://h/", "--postgres", "postgresql://u@h/d"],
            "--target t: an https:// URL needs --engine aiohttp or httpx",
        ),
        (["run", "--app", "a=m:x", "--path", "x"], "--path: expected a path starting with '/'"),
        (["run", "--app", "a=m:x", "--body", "{bad"], "--body: expected JSON"),
        (["run", "--app", "a=m:x", "--method", "BREW"], "--method: expected one of GET"),
        (["run", "--app", "a=m:x", "--header", "nocolon"], "--header: expected 'Name: value'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    assert_one_line_exit_2(runner.invoke(app, args), message)


def test_malformed_scenario_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("concurrency = 'many'\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert (
        f"{path}: concurrency: expected a positive whole number "
        "(or a comma-separated list of them), got 'many'" in result.stderr
    )


def test_malformed_result_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 2, "results": "x"}))
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 2
    assert "missing" in result.stderr


@pytest.mark.integration
def test_unreachable_dsn_through_the_real_entry_point(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        dsn = f"postgresql://me:topsecret@127.0.0.1:{port}/db"
        out = run_cli("run", "--postgres", dsn, "-o", str(tmp_path / "r.json"), cwd=ROOT)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"connbench: error: cannot connect to postgresql://me@127.0.0.1:{port}/db: "
    )
    assert "Connection refused" in lines[0]
    assert "topsecret" not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


# --- compare, formats, limits: on results built by hand ------------------------------------------


def _saved(path: Path, rps: list[float], **scenario: object) -> str:
    entries = (entry(repeat=i, rps=r, p99=40 * 1000 / r) for i, r in enumerate(rps))
    run = run_of(*entries, **scenario)
    results.save(run, path)
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    gate = {"throughput": 0.10, "p99": 0.25}
    return {
        "base": _saved(tmp_path / "base.json", [1000, 1010, 990, 1005, 995]),
        "same": _saved(tmp_path / "same.json", [1003, 992, 1008, 997, 1001], gate=gate),
        "slow": _saved(tmp_path / "slow.json", [500, 510, 490, 505, 495], gate=gate),
    }


@pytest.mark.integration
def test_compare_passes_the_same_and_fails_a_regression(files: dict[str, str]) -> None:
    same = runner.invoke(app, ["compare", files["base"], files["same"]])
    assert same.exit_code == 0, same.output
    assert "no regression (2 checks passed)" in same.stdout
    slow = runner.invoke(app, ["compare", files["base"], files["slow"], "--format", "markdown"])
    assert slow.exit_code == 1, slow.output
    text = slow.stdout
    assert text.startswith("## connbench compare: ❌ regression")
    assert "**Failed checks**" in text
    assert (
        "- ❌ **pool c=32 w=1 pool=4..4** · throughput -50.0% (1,000 → 500 req/s): worse than "
        "the 10% threshold, significant (Mann-Whitney U p=0.00794 ≤ α=0.05, n=5+5)"
    ) in text
    assert "| pool c=32 w=1 pool=4..4 | throughput req/s | 1,000 ±1% | 500 ±2% |" in text


@pytest.mark.integration
def test_compare_several_files_and_the_fail_on_override(files: dict[str, str]) -> None:
    out = runner.invoke(
        app,
        ["compare", files["base"], files["same"], files["slow"], "--fail-on", "throughput:60%",
         "--fail-on", "p99:150%", "--format", "json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output  # -50 % is within 60 %
    data = json.loads(out.stdout)
    assert data["failed"] is False
    assert [c["new_label"] for c in data["comparisons"]] == [files["same"], files["slow"]]
    verdict = data["comparisons"][1]["variants"][0]["verdicts"][0]
    assert verdict["metric"] == "throughput" and verdict["threshold_source"] == "--fail-on"


@pytest.mark.integration
def test_compare_csv_is_one_row_per_variant(files: dict[str, str]) -> None:
    out = runner.invoke(app, ["compare", files["base"], files["slow"], "--format", "csv"])
    assert out.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 1
    assert rows[0]["gate"] == "fail" and rows[0]["failed_checks"] == "throughput;p99"
    assert float(rows[0]["throughput_change"]) == pytest.approx(-0.5)


@pytest.mark.integration
def test_show_in_every_format(files: dict[str, str]) -> None:
    for fmt in ("table", "markdown", "csv", "json"):
        out = runner.invoke(app, ["show", files["base"], "--format", fmt])
        assert out.exit_code == 0, out.output
        assert "pool" in out.stdout
    out = runner.invoke(app, ["show", files["base"], "--format", "json"])
    assert json.loads(out.stdout)["summary"][0]["throughput_rps"]["median"] == 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "a.json"], "compare needs a BASE and at least one NEW result file"),
        (["compare", "BASE", "NEW", "--fail-on", "speed:10%"], "--fail-on: unknown metric 'speed'"),
        (["compare", "BASE", "NEW", "--fail-on", "p99:10"], "--fail-on: expected a percentage"),
        (["compare", "BASE", "NEW", "--alpha", "5"], "--alpha: expected a significance level"),
        (["compare", "BASE", "NEW", "--ignore", "color"], "--ignore: expected one of strategy"),
        (["compare", "BASE", "no-such.json"], "no-such.json: cannot read result file"),
        (["compare", "BASE", "NEW", "--format", "xml"], "--format: expected one of table"),
        (["show", "BASE", "--format", "pdf"], "--format: expected one of table, markdown"),
        (["run", "--format", "yaml"], "--format: expected one of table"),
        (["run", "--fail-if", "p99_ms=>50"], "--fail-if: cannot read 'p99_ms=>50'"),
        (["run", "--fail-if", "latency>5"], "--fail-if: 'latency>5': unknown metric 'latency'"),
    ],
)
@pytest.mark.integration
def test_bad_compare_and_limit_input_is_one_line_exit_2(
    files: dict[str, str], args: list[str], message: str
) -> None:
    args = [files["base"] if a == "BASE" else files["same"] if a == "NEW" else a for a in args]
    assert_one_line_exit_2(runner.invoke(app, args), message)


@pytest.mark.integration
def test_brackets_in_reasons_survive_the_table(files: dict[str, str]) -> None:
    # The gate's source reads "ci.toml [gate]": rich must print it, not take it for a tag.
    out = runner.invoke(app, ["compare", files["base"], files["same"]])
    assert "[gate]" in out.stdout
