"""Bounds on input and on what an app leaves behind: request targets and headers checked at
parse time, a log's tail read from its end, SQL under a timeout, HTTP/1.0 bodies ended by a
close, an app's whole process tree stopped. Real servers, real sockets."""

from __future__ import annotations

import http.server
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connbench.cli import app
from connbench.infra import procs
from connbench.measure import load
from connbench.model import appspec
from connbench.model.errors import ScenarioError
from connbench.model.scenario import build

from .conftest import serving_in_thread
from .test_cli import assert_one_line_exit_2

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


@pytest.mark.parametrize("engine", ["httptools", "aiohttp", "httpx"])
def test_a_body_cut_short_by_close_is_still_an_error(engine: str) -> None:
    with _serving(_Truncated) as url:
        raw = load.run_sync(url, load.LoadConfig(**{**CONFIG.__dict__, "engine": engine}))
    assert raw.all_ok == 0 and sum(raw.all_errors_by_kind.values()) > 0
