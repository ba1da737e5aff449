"""Bounds on input and on what an app leaves behind: request targets and headers checked at
parse time, a log's tail read from its end, SQL under a timeout, HTTP/1.0 bodies ended by a
close, an app's whole process tree stopped. Real servers, real sockets."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connbench import runner
from connbench.cli import app
from connbench.infra import postgres, procs, userapp
from connbench.measure import load
from connbench.model import appspec, results
from connbench.model.errors import ScenarioError
from connbench.model.scenario import build

from .conftest import RecordingReporter, run_cli, serving_in_thread
from .helpers import assert_one_line_exit_2

cli = CliRunner()


# --- request targets and headers: refused at parse time, whichever way they came ---------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--path", "/ok/\r\nX: y"], "has the character '\\r'"),
        (["--path", "/visit/ HTTP/1.1"], "has the character ' '"),
        (["--path", "/a\x00b"], "has the character '\\x00'"),
        (["--path", "/caf\u00e9"], "has the character"),
        (["--path", "/a%zz"], "a bad percent-escape"),
        (["--path", "/a#frag"], "has the character '#'"),
        (["--ready-path", "/health\n"], "has the character '\\n'"),
        (["--header", "X-A: b\r\nX-Injected: 1"], "header X-A: its value may hold only"),
        (["--header", "X-A: b\x1b[2J"], "found '\\x1b'"),
        (["--header", "X A: b"], "bad header name 'X A'"),
        (["--header", "X\r\nA: b"], "bad header name"),
    ],
)
def test_request_targets_and_headers_with_control_characters_exit_2(
    flags: list[str], message: str
) -> None:
    result = cli.invoke(app, ["run", "--app", "a=m:x", *flags])
    assert_one_line_exit_2(result, message)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('path = "/ok/\\r\\nX: y"', "path: a path may hold only URL characters"),
        ('ready_path = "/a b"', "ready_path: a path may hold only URL characters"),
        ('headers = { "X-A" = "b\\r\\nC: d" }', "header X-A: its value may hold only"),
        ('headers = { "X-A:B" = "c" }', "bad header name 'X-A:B'"),
        ('env = { "A=B" = "c" }', "a name without '='"),
        ('env = { A = "x\\u0000y" }', "a value without NUL"),
        ('env = { A = ["x"] }', "env: 'A': expected a string value"),
        ("headers = { X-A = { b = 1 } }", "header 'X-A': expected a string value"),
        ('count_sql = "SELECT 1\\u0000"', "may not hold a NUL character"),
    ],
)
def test_the_same_rules_hold_in_a_scenario_file(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'[[app]]\nname = "a"\napp = "m:x"\n{table}\n')
    with pytest.raises(ScenarioError, match="s.toml: app: app 'a': ") as caught:
        build(path, {})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_target_url_with_a_newline_is_refused_without_quoting_its_password() -> None:
    result = cli.invoke(
        app,
        ["run", "--postgres", "postgresql://u@h/d", "--target", "t=http://u:pw@h:1/a\r\nX: y"],
    )
    assert_one_line_exit_2(result, "a URL may not hold spaces or control characters")
    assert "pw" not in result.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:1/a#frag", "#fragment is never sent"),
        ("http://h<x>:1/a", "bad host 'h<x>'"),
        ("http://h:1/a%g1", "a bad percent-escape"),
        ("http://h:1/a\tb", "found '\\t'"),
    ],
)
def test_target_urls_are_checked_as_paths_are(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        appspec.parse_target(f"t={url}")
    assert message in str(caught.value)


def test_query_strings_and_percent_escapes_are_kept_as_written() -> None:
    assert appspec.parse_path("/v/%41?q=a%2Fb&x=1+2") == "/v/%41?q=a%2Fb&x=1+2"
    spec = appspec.parse_target("t=http://127.0.0.1:8/a%41/?k=%7e")
    assert spec.path == "/a%41/?k=%7e"
    assert appspec.parse_header("X-A:  b\tc ") == ("X-A", "b\tc")


def test_a_body_over_a_mebibyte_is_refused() -> None:
    big = '"' + "x" * appspec.MAX_BODY_BYTES + '"'
    result = cli.invoke(app, ["run", "--app", "a=m:x", "--body", big])
    assert_one_line_exit_2(result, "at most 1,048,576 bytes as JSON")


def test_a_missing_app_directory_is_named() -> None:
    result = cli.invoke(app, ["run", "--app", "a=m:x@/nonexistent/connbench-dir"])
    assert_one_line_exit_2(result, "directory '/nonexistent/connbench-dir' does not exist")


# --- a log's tail: from its end, a bounded read ------------------------------------------------


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_a_huge_log_costs_its_tail_not_its_size(tmp_path: Path) -> None:
    """A 256 MiB log (sparse: no disk) then 30 lines: the tail reads tens of KiB."""
    log = tmp_path / "app.log"
    with log.open("wb") as f:
        f.truncate(256 << 20)
        f.seek(0, os.SEEK_END)
        f.write(b"".join(f"line {n}\n".encode() for n in range(30)))
    before = _bytes_read()
    tail = procs.log_tail(log)
    read = _bytes_read() - before
    assert tail.splitlines() == [f"line {n}" for n in range(10, 30)]
    assert read <= 2 * procs.LOG_TAIL_BYTES, f"{read:,} bytes read for a 20-line tail"


def test_a_short_log_and_a_single_huge_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"one\ntwo\n")
    assert procs.log_tail(log) == "one\ntwo"
    log.write_bytes(b"x" * (procs.LOG_TAIL_BYTES * 3))  # one line, no newline: its end, cut
    assert len(procs.log_tail(log)) == procs.LOG_TAIL_BYTES
    assert procs.log_tail(tmp_path / "none.log") == "(no log)"


# --- HTTP/1.0: a body ended by the server closing the connection -------------------------------


class _Http10(http.server.BaseHTTPRequestHandler):
    """Answers every GET as HTTP/1.0 without Content-Length, then closes."""

    protocol_version = "HTTP/1.0"
    body = b'{"ok": true}'

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        pass


class _Truncated(_Http10):
    """Promises 100 bytes, sends 5, closes: a broken response, not a complete one."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        self.wfile.write(b"short")


@contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    with serving_in_thread(server) as url:
        yield url


CONFIG = load.LoadConfig(concurrency=2, duration_s=1.0, warmup_s=0.0, timeout_s=5.0)


@pytest.mark.parametrize("engine", ["httptools", "aiohttp", "httpx"])
def test_a_body_ended_by_close_is_a_complete_response(engine: str) -> None:
    with _serving(_Http10) as url:
        raw = load.run_sync(url, load.LoadConfig(**{**CONFIG.__dict__, "engine": engine}))
    assert raw.all_ok > 0 and not raw.all_errors_by_kind, (raw.all_ok, raw.all_errors_by_kind)


class _Huge(_Http10):
    """A 32 MiB body behind a Content-Length, HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    body = b"x" * (32 << 20)

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.mark.parametrize("engine", ["httptools", "aiohttp", "httpx"])
def test_a_huge_body_is_read_not_kept(engine: str) -> None:
    config = load.LoadConfig(1, duration_s=0.5, warmup_s=0.0, timeout_s=30.0, engine=engine)
    with _serving(_Huge) as url:
        tracemalloc.start()
        try:
            raw = load.run_sync(url, config)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert raw.all_ok > 0 and not raw.all_errors_by_kind
    assert peak < 16 << 20, f"{peak:,} bytes at the peak for 32 MiB bodies"


def test_the_readiness_probe_reads_the_status_not_the_body() -> None:
    with _serving(_Huge) as url:
        spec = appspec.parse_target(f"t={url}")
        tracemalloc.start()
        try:
            userapp.probe(spec, spec.url or "")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 16 << 20, f"{peak:,} bytes at the peak for a 32 MiB body"


@pytest.mark.parametrize("engine", ["httptools", "aiohttp", "httpx"])
def test_a_body_cut_short_by_close_is_still_an_error(engine: str) -> None:
    with _serving(_Truncated) as url:
        raw = load.run_sync(url, load.LoadConfig(**{**CONFIG.__dict__, "engine": engine}))
    assert raw.all_ok == 0 and sum(raw.all_errors_by_kind.values()) > 0


# --- an app's process tree: nothing of it outlives it ------------------------------------------

DAEMON = """
import os, sys, time
middle = os.fork()
if middle == 0:
    {detach}
    sleeper = os.fork()
    if sleeper == 0:
        os.execve({sleep!r}, ["sleep", "300"], {env})
    with open(sys.argv[1], "w") as f:
        f.write(str(sleeper))
    os._exit(0)
os.waitpid(middle, 0)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for init is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _pid_in(path: Path) -> int:
    procs.wait_until(
        lambda: path.exists() and path.read_text() != "", what="a daemon", timeout_s=30
    )
    return int(path.read_text())


@pytest.mark.parametrize(
    ("detach", "env"),
    [("os.setsid()", "os.environ"), ("os.setpgid(0, 0)", "{}")],
    ids=["new-session-same-environment", "new-group-empty-environment"],
)
@pytest.mark.integration
def test_a_childs_daemon_is_killed_and_named_when_it_stops(
    tmp_path: Path, detach: str, env: str
) -> None:
    script = DAEMON.format(detach=detach, env=env, sleep=shutil.which("sleep"))
    pid_file, strays = tmp_path / "pid", list[str]()
    child = procs.Child(
        [sys.executable, "-c", script, str(pid_file)],
        name="app x",
        log_path=tmp_path / "log",
        env=procs.child_env({}),
        strays=strays,
    )
    sleeper = None
    try:
        with child:
            sleeper = _pid_in(pid_file)
            # Its pid is written when it is forked, before its exec: until then it is named
            # "python", and the stop found it so once (a race of the test, not of the stop).
            procs.wait_until(lambda: _name(sleeper) == "sleep", what="its exec", timeout_s=30)
            assert _running(sleeper) and os.getpgid(sleeper) != child.proc.pid
        assert not _running(sleeper)
        assert strays == [
            "app x left 1 process(es) running after it stopped, outside its process group; "
            f"killed: pid {sleeper} (sleep)"
        ]
    finally:
        if sleeper is not None and _running(sleeper):
            os.kill(sleeper, signal.SIGKILL)


@pytest.mark.integration
def test_a_child_that_leaves_nothing_behind_is_not_warned_about(tmp_path: Path) -> None:
    strays: list[str] = []
    with procs.Child(
        ["sleep", "60"], name="s", log_path=tmp_path / "log", env=procs.child_env({}), strays=strays
    ):
        pass
    assert strays == []


def test_an_own_app_that_daemonizes_leaves_nothing_running(
    tmp_path: Path, pg: postgres.Postgres
) -> None:
    pid_file = tmp_path / "stray.pid"
    scenario_file = tmp_path / "s.toml"
    scenario_file.write_text(
        f"""
[[app]]
name = "daemonizing"
app = "tests.apps.bad_apps:daemonizing_app"
path = "/ok/"
env = {{ STRAY_PID_FILE = "{pid_file}" }}
"""
    )
    out = tmp_path / "r.json"
    short = {"duration_s": "1", "warmup_s": "0.2", "concurrency": "2", "postgres": pg.dsn}
    sleeper = None
    try:
        runner.execute(build(scenario_file, short), RecordingReporter(), out)
        sleeper = int(pid_file.read_text())
        assert not _running(sleeper)
        [result] = results.load(out).results
        assert result.status == "ok", result.failure
        assert f"killed: pid {sleeper} (sleep)" in "\n".join(result.warnings)
    finally:
        if sleeper is not None and _running(sleeper):
            os.kill(sleeper, signal.SIGKILL)


# --- setup_sql and count_sql: under a statement timeout ----------------------------------------


@pytest.fixture
def short_sql_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(userapp, "SQL_TIMEOUTS_S", {"setup_sql": 0.5, "count_sql": 0.5})
    monkeypatch.setattr(userapp, "CANCEL_GRACE_S", 0.5)


@pytest.mark.usefixtures("short_sql_timeouts")
@pytest.mark.parametrize(
    "query",
    ["SELECT pg_sleep(20)", "SET statement_timeout = 0; SELECT pg_sleep(20)"],
    ids=["sleep", "lifts-the-timeout"],
)
def test_sql_that_runs_too_long_fails_in_one_line(pg: postgres.Postgres, query: str) -> None:
    spec = appspec.parse_app("a=m:x")
    with pg.connect() as conn:
        with pytest.raises(userapp.AppFailed) as caught:
            userapp.run_sql(spec, conn, "count_sql", query)
        assert str(caught.value) == (
            "app a: count_sql did not finish within 0.5 s (connbench's statement timeout)"
        )
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection goes on


@pytest.mark.usefixtures("short_sql_timeouts")
def test_a_hanging_count_sql_fails_the_check_in_one_line_not_a_hang(
    tmp_path: Path, pg: postgres.Postgres
) -> None:
    # The check before measuring runs count_sql too: a query that hangs stops the run there,
    # in seconds, with its cause (a variant measured after it would fail the same way).
    scenario = build(
        None,
        {
            "app": ["a=tests.apps.bad_apps:ok_app"],
            "path": "/ok/",
            "count_sql": "SELECT pg_sleep(3600)",
            "duration_s": "1",
            "warmup_s": "0",
            "concurrency": "2",
            "postgres": pg.dsn,
        },
    )
    out = tmp_path / "r.json"
    with pytest.raises(runner.CheckFailed) as failed:
        runner.execute(scenario, RecordingReporter(), out)
    assert "app a: count_sql did not finish within 0.5 s (connbench's statement timeout)" in str(
        failed.value
    )
    assert not out.exists() or not results.load(out).results  # nothing was measured


# --- a result file over the bound: refused, not read -------------------------------------------


def test_show_refuses_a_huge_result_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(results.MAX_RESULT_BYTES + 1)  # sparse: no disk
    before = _bytes_read()
    result = cli.invoke(app, ["show", str(huge)])
    assert _bytes_read() - before < 1 << 20
    assert_one_line_exit_2(result, "larger than 64 MiB, connbench's bound on a result file")


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.integration
def test_show_of_a_pipe_or_a_device_ends_in_one_line(tmp_path: Path, kind: str) -> None:
    """A FIFO nobody writes to is read as empty (not waited on); /dev/zero is cut at the bound."""
    path = Path("/dev/zero")
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    done = run_cli("show", str(path), cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def _peak_rss_since_reset() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM in /proc/self/status")


def test_count_sql_fetches_its_first_row_only(pg: postgres.Postgres) -> None:
    """5 million rows would cost about 190 MB fetched whole; the first row is all it needs."""
    spec = appspec.parse_app("a=m:x")
    with pg.connect() as conn:
        Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
        before = _peak_rss_since_reset()
        got = userapp.run_sql(spec, conn, "count_sql", "SELECT generate_series(7, 5000000)")
        grown = _peak_rss_since_reset() - before
        assert got == 7 and conn.execute("SELECT 1").fetchone() == (1,)
        # Several statements cannot be streamed: run whole, as before (the first result).
        assert userapp.run_sql(spec, conn, "count_sql", "SELECT 41; SELECT 42") == 41
    assert grown < 64 << 20, f"the peak grew by {grown:,} bytes"
