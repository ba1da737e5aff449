"""The command line: bad input gets one clear line and exit code 2, never a traceback."""

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connbench.apps import STRATEGIES
from connbench.cli import app

from .conftest import ROOT, run_cli

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
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("connbench: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_malformed_scenario_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("concurrency = 'many'\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert (
        f"{path}: concurrency: expected a positive whole number "
        "(or a comma-separated list of them), got 'many'"
        in result.stderr
    )


def test_malformed_result_file(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 2, "results": "x"}))
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 2
    assert "missing" in result.stderr


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
