"""Hostile input to the scenario parser and the flags: one line, exit 2, never a traceback and
never a hang, whatever the bytes. Property-based (Hypothesis) where a list of cases would only
cover what we thought of, and a bound per number that sizes memory, processes or time.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from connbench.cli import app
from connbench.infra import postgres
from connbench.model import scenario
from connbench.model.errors import BadInput
from connbench.model.scenario import BOUNDS, MAX_RUNS, MAX_SWEEP, build

from .conftest import examples, run_cli, script_module
from .helpers import assert_one_line_exit_2

cli = CliRunner()
FAST = settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _check_refused_or_sane(path: Path | None, overrides: dict[str, Any]) -> None:
    """``build`` either refuses with one short line (BadInput), or gives a bounded scenario."""
    try:
        chosen = build(path, overrides)
    except BadInput as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 1_000, message
        return
    assert max(chosen.concurrency) <= BOUNDS["concurrency"]
    assert chosen.duration_s <= BOUNDS["duration_s"]
    assert len(chosen.variants()) * chosen.repeat <= MAX_RUNS


def _cli_run_refuses(*args: str) -> None:
    """For input ``build`` refuses: the CLI says it in one line and exits 2."""
    result = cli.invoke(app, ["run", *args])
    assert_one_line_exit_2(result, "")


# --- random bytes --------------------------------------------------------------------------


@FAST
@given(data=st.binary(max_size=2_000))
def test_random_bytes_as_a_scenario_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.toml"
    path.write_bytes(data)
    _check_refused_or_sane(path, {})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00name = 'x'", "not UTF-8 text (byte 0xff at offset 0)"),
        (b"concurrency = 8\n\x80", "not UTF-8 text (byte 0x80 at offset 16)"),
        (b"concurrency = " + b"[" * 100_000, "not valid TOML"),
        (b"concurrency = " + b"9" * 10_000, "not valid TOML"),
        (b"[[[", "not valid TOML"),
        (b"concurrency = 8\nconcurrency = 9\n", "not valid TOML"),
        (b"x" * (scenario.MAX_FILE_BYTES + 1), "larger than 1,048,576 bytes"),
    ],
    ids=["bom-ish", "late-byte", "deep-nesting", "huge-int", "brackets", "dup-key", "huge-file"],
)
def test_unreadable_scenario_files_are_one_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    result = cli.invoke(app, ["run", str(path)])
    assert_one_line_exit_2(result, message)


def test_a_device_that_never_ends_is_not_read_to_the_end() -> None:
    assert_one_line_exit_2(cli.invoke(app, ["run", "/dev/zero"]), "larger than")


def test_a_directory_is_not_a_scenario(tmp_path: Path) -> None:
    assert_one_line_exit_2(cli.invoke(app, ["run", str(tmp_path)]), "cannot read scenario file")


# --- well-formed TOML, wrong shapes ----------------------------------------------------------

scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=30),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 1, 1)),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    )


values = st.recursive(scalars, _containers, max_leaves=8)


# The A/B action's TOML writer (it writes scenario files): inline tables and arrays.
toml_value = script_module("ab_scenario").toml_value


@FAST
@given(
    document=st.dictionaries(
        st.one_of(st.sampled_from(sorted(scenario.PARSERS)), st.text(max_size=10)),
        values,
        min_size=1,
        max_size=4,
    )
)
def test_wrong_shapes_in_a_scenario_file(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "shapes.toml"
    path.write_text("\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in document.items()))
    _check_refused_or_sane(path, {})


BOUNDED = {
    "concurrency": "concurrency",
    "duration_s": "duration_s",
    "warmup_s": "warmup_s",
    "timeout_s": "timeout_s",
    "pool_max": "pool_max",
    "workers": "workers",
    "pgbouncer_pool_size": "pgbouncer_pool_size",
    "repeat": "repeat",
    "rate": "rate",
}


@FAST
@given(key=st.sampled_from(sorted(BOUNDED)), excess=st.integers(1, 10**30), as_text=st.booleans())
def test_numbers_beyond_their_bound_are_refused_from_a_file_or_a_flag(
    tmp_path: Path, key: str, excess: int, as_text: bool
) -> None:
    value = int(BOUNDS[key]) + excess
    path = tmp_path / "big.toml"
    path.write_text(f"{key} = {json.dumps(str(value)) if as_text else value}\n")
    for source, overrides in ((path, {}), (None, {key: str(value)})):
        bound = re.escape(f"at most {BOUNDS[key]:,g} (connbench's bound on {key})")
        with pytest.raises(BadInput, match=bound):
            build(source, overrides)


FLAG_KEYS = [key for key in scenario.PARSERS if key not in ("server", "gate", "fail_if")]


@FAST
@given(key=st.sampled_from(FLAG_KEYS), text=st.text(max_size=60))
def test_random_text_for_any_flag(key: str, text: str) -> None:
    _check_refused_or_sane(None, {key: text})


@FAST
@given(
    flag=st.sampled_from(
        [
            "--concurrency",
            "--duration",
            "--warmup",
            "--timeout",
            "--pool-min",
            "--pool-max",
            "--workers",
            "--rate",
            "--repeat",
            "--max-connections",
            "--pgbouncer-pool-size",
            "--fault",
            "--topology",
            "--engine",
            "--postgres",
            "--strategy",
        ]
    ),  # fmt: skip
    text=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40).filter(
        lambda t: "\x00" not in t
    ),
)
def test_the_cli_says_one_line_for_any_refused_flag(flag: str, text: str) -> None:
    key = {
        "--duration": "duration_s",
        "--warmup": "warmup_s",
        "--timeout": "timeout_s",
        "--strategy": "strategies",
    }.get(flag, flag[2:].replace("-", "_"))
    overrides: dict[str, Any] = (
        {"server": {"max_connections": text}} if key == "max_connections" else {key: text}
    )
    try:
        build(None, overrides)
    except BadInput:
        _cli_run_refuses(flag, text)


# --- bounds: checked before anything starts, the message names the bound ---------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "10001"], "at most 10,000 (connbench's bound on concurrency)"),
        (["--concurrency", "99999999999999999999999"], "at most 10,000"),
        (["--concurrency", "9" * 100_000], "at most 10,000 (connbench's bound on concurrency)"),
        (["--concurrency", "1" + "0" * 30 + "x"], "expected a positive whole number of at most"),
        (["--duration", "86401"], "at most 86,400 (connbench's bound on duration_s)"),
        (["--duration", "1e9"], "bound on duration_s"),
        (["--warmup", "3601"], "bound on warmup_s"),
        (["--timeout", "1e300"], "bound on timeout_s"),
        (["--repeat", "1001"], "bound on repeat"),
        (["--rate", "1e12"], "at most 1e+09 (connbench's bound on rate)"),
        (["--workers", "65"], "bound on workers"),
        (["--pool-min", "10001", "--pool-max", "10001"], "bound on pool_min"),
        (["--pool-max", "10001"], "bound on pool_max"),
        (["--pgbouncer-pool-size", "10001"], "bound on pgbouncer_pool_size"),
        (["--max-connections", "10001"], "bound on max_connections"),
        (["--concurrency", ",".join(map(str, range(1, MAX_SWEEP + 2)))], "at most 64 values"),
        (
            ["--concurrency", ",".join(map(str, range(1, 41))), "--pool-max",
             ",".join(map(str, range(40, 80))), "--repeat", "10"],
            "16,000 runs (variants x repeat): at most 10,000",
        ),
        (["--pool-min", "0"], "pool_min 0 needs a pool_max of at least 1"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, str) else None,
)  # fmt: skip
@pytest.mark.timeout(30)  # a bound parsed in the time it takes, never a hang
def test_every_sizing_number_has_a_bound(args: list[str], message: str) -> None:
    assert_one_line_exit_2(cli.invoke(app, ["run", *args]), message)


def test_bounds_apply_to_scenario_files_too(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("concurrency = [8, 100000]\n")
    assert_one_line_exit_2(
        cli.invoke(app, ["run", str(path)]),
        f"{path}: concurrency: at most 10,000 (connbench's bound on concurrency)",
    )
    path.write_text("[server]\nmax_connections = 1000000\n")
    assert_one_line_exit_2(cli.invoke(app, ["run", str(path)]), "bound on max_connections")
    path.write_text("[server]\nshared_buffers = [1, 2]\n")
    assert_one_line_exit_2(cli.invoke(app, ["run", str(path)]), "shared_buffers: expected")


def test_pool_min_zero_is_valid_with_a_pool_max() -> None:
    # psycopg_pool accepts min_size=0 when max_size > 0: the pool then opens on demand.
    assert build(None, {"pool_min": "0", "pool_max": "2"}).effective_pool == (0, (2,))


def test_a_long_bad_value_is_quoted_short() -> None:
    result = cli.invoke(app, ["run", "--engine", "x" * 100_000])
    assert_one_line_exit_2(result, "--engine: expected one of")
    assert len(result.stderr) < 300


@pytest.mark.parametrize("command", ["serve", "calibrate"])
def test_serve_and_calibrate_take_postgres(command: str) -> None:
    args = [command, "pool"] if command == "serve" else [command]
    result = cli.invoke(app, [*args, "--postgres", "mysql://x"])
    assert_one_line_exit_2(result, "--postgres: unknown backend")


def test_a_dsn_whose_user_may_not_create_a_table(pg: postgres.Postgres, tmp_path: Path) -> None:
    with pg.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS connbench_nocreate")
        conn.execute("CREATE ROLE connbench_nocreate LOGIN PASSWORD 'n0create'")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    dsn = make_conninfo(pg.dsn, user="connbench_nocreate", password="n0create")
    result = run_cli("run", "--postgres", dsn, "-o", str(tmp_path / "r.json"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "may not create connbench's table" in lines[0], lines
    assert "n0create" not in result.stdout + result.stderr
