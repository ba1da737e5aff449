"""Redaction and escaping are properties of every output (issue 16, findings 3, 4, 9, 10, 12).

Every sink is scanned: stdout and stderr of a run in each --format, the --summary file, the
HTML report and the saved result, for an own app that prints its DATABASE_URL and an
``[[app]] env`` API_KEY while it dies; a target URL's userinfo goes on the wire as an
Authorization header in every engine and is shown nowhere; result strings carrying terminal
escapes or Markdown reach no terminal raw and open no markup.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

from connbench.infra import postgres
from connbench.model import appspec, dsn, results
from connbench.model.scenario import build
from connbench.present import sink

from .conftest import ROOT, made, run_cli, run_of

# The API key as the scenario file spells it (TOML escapes: \" \u0045 \\) and as parsed.
KEY_MARK = "LEAKYKEY"  # in every spelling of the key: found anywhere, the key leaked
KEY_TOML = r'"tok\"q\u0045-LEAKYKEY-\\b"'
KEY = 'tok"qE-LEAKYKEY-\\b'
FORMATS = ("table", "markdown", "csv", "json", "html")


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    dsn.forget_all()
    yield
    dsn.forget_all()


# --- every sink, for an app that prints its secrets and dies ----------------------------------


@pytest.fixture(scope="module")
def leaky_runs(
    tmp_path_factory: pytest.TempPathFactory, pg: postgres.Postgres
) -> dict[str, tuple[subprocess.CompletedProcess[str], Path]]:
    tmp = tmp_path_factory.mktemp("leaky")
    runs = {}
    for fmt in FORMATS:
        leak = tmp / f"{fmt}.url"
        scenario = tmp / f"{fmt}.toml"
        scenario.write_text(
            f"duration_s = 2\nwarmup_s = 0.3\nconcurrency = 4\n\n[[app]]\n"
            f'name = "leaky"\napp = "tests.apps.leaky_app:app"\n'
            f"env = {{ API_KEY = {KEY_TOML}, LEAK_FILE = {json.dumps(str(leak))} }}\n"
        )
        out = tmp / f"{fmt}.json"
        done = run_cli(
            "run", str(scenario), "--postgres", pg.dsn, "--format", fmt, "--no-charts",
            "-o", str(out), "--html", "--summary", str(tmp / f"{fmt}.md"), cwd=ROOT,
        )  # fmt: skip
        runs[fmt] = done, out
    return runs


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_secret_of_a_dying_app_reaches_any_output(
    leaky_runs: dict[str, tuple[subprocess.CompletedProcess[str], Path]],
    pg: postgres.Postgres,
    fmt: str,
) -> None:
    done, out = leaky_runs[fmt]
    assert done.returncode == 1, done.stderr  # the app died: a failed run
    url = out.with_suffix(".url").read_text()
    password = str(conninfo_to_dict(url)["password"])
    assert len(password) >= 16
    sinks = {
        "stdout": done.stdout,
        "stderr": done.stderr,
        "saved result": out.read_text(),
        "--summary": out.with_suffix(".md").read_text(),
        "--html": out.with_suffix(".html").read_text(),
    }
    # The app did tell them: they were there to leak.
    assert "connecting to" in done.stdout + done.stderr + sinks["saved result"]
    secrets = (password, quote(password, safe=""), KEY_MARK, str(pg.dsn))
    for where, text in sinks.items():
        for secret in secrets:
            assert secret not in text, (fmt, where, secret)
        assert "\x1b" not in text and "\x07" not in text, (fmt, where)
        # No URI shows a password, whoever made it.
        assert not re.search(r"://[^\s:/@'\"]+:(?!\*\*\*@)[^\s'\"]*@", text), (fmt, where)
    saved = json.loads(sinks["saved result"])
    assert "LEAKY" not in saved["scenario"]["source_text"]
    assert saved["scenario"]["app"][0]["env"] == ["API_KEY", "LEAK_FILE"]


# --- a target URL's userinfo: a header on the wire, shown nowhere -----------------------------


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str | None, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.seen.append((self.headers.get("Host"), self.headers.get("Authorization")))
        body = b'{"message": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[tuple[str | None, str | None]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    _Recorder.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Recorder.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


ENGINES = ["httptools", "aiohttp", "httpx", "locust"]


@pytest.mark.parametrize("engine", ENGINES)
def test_target_userinfo_is_a_basic_header_and_shown_nowhere(
    recorder: tuple[int, list[tuple[str | None, str | None]]],
    pg: postgres.Postgres,
    tmp_path: Path,
    engine: str,
) -> None:
    port, seen = recorder
    out = tmp_path / "r.json"
    locust = ["--locust-workers", "1"] if engine == "locust" else []
    done = run_cli(
        "run", "--target", f"t=http://alice:pw%2Fs3cr3t@127.0.0.1:{port}/visit/",
        "--postgres", pg.dsn, "--engine", engine, *locust, "--duration", "1", "--warmup", "0.2",
        "--concurrency", "2", "--format", "json", "--html", "-o", str(out), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    basic = "Basic " + base64.b64encode(b"alice:pw/s3cr3t").decode()
    assert len(seen) > 10
    assert set(seen) == {(f"127.0.0.1:{port}", basic)}, set(seen)
    for text in (done.stdout, done.stderr, out.read_text(), out.with_suffix(".html").read_text()):
        assert "s3cr3t" not in text and "alice:" not in text
        assert base64.b64encode(b"alice:pw/s3cr3t").decode() not in text
    assert json.loads(out.read_text())["scenario"]["target"][0]["url"] == (
        f"http://127.0.0.1:{port}"
    )


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(500, "Oops \x1b]0;pwned\x07\x1b[2J\x9b31m")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_target_reason_phrase_reaches_no_terminal_raw(
    pg: postgres.Postgres, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = run_cli(
            "run", "--target", f"t=http://127.0.0.1:{server.server_address[1]}/",
            "--postgres", pg.dsn, "--duration", "1", "-o", str(tmp_path / "r.json"), cwd=ROOT,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert done.returncode == 1, done.stderr
    # The check before measuring fails it: said on stderr, the escape sequences made visible.
    assert "answered 500 Oops" in done.stderr and "\\x1b]0;pwned" in done.stderr
    for text in (done.stdout, done.stderr):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), text


def test_target_userinfo_is_parsed_out_of_the_url() -> None:
    spec = appspec.parse_target("t=http://al%40ice:p%3Aw@h.example:81/x")
    assert spec.url == "http://h.example:81" and spec.path == "/x"
    assert spec.request_headers == (
        ("Authorization", "Basic " + base64.b64encode(b"al@ice:p:w").decode()),
    )
    assert "p%3Aw" not in dsn.redact("http://al%40ice:p%3Aw@h.example:81/x")
    assert appspec.parse_target("t=http://h:1/").request_headers == ()


# --- what is a secret, what is not -----------------------------------------------------------


def test_secret_looking_headers_are_masked_and_others_are_not(tmp_path: Path) -> None:
    build(
        None,
        {
            "app": ["a=tests.apps.bad_apps:ok_app"],
            "headers": [
                "Authorization: Bearer tOkEn123",
                "X-Api-Key: k3yk3y",
                "Content-Type: application/json",
                "Accept: */*",
            ],
        },
    )
    out = dsn.redact("sent Bearer tOkEn123, then tOkEn123 and k3yk3y as application/json */*")
    assert "tOkEn123" not in out and "k3yk3y" not in out
    assert out.endswith("as application/json */*")


def test_a_header_without_its_colon_is_not_echoed_whole() -> None:
    with pytest.raises(ValueError) as caught:
        appspec.parse_header("Authorization Bearer tOkEn123")
    assert "tOkEn123" not in str(caught.value) and "'Authorization'..." in str(caught.value)


def test_env_values_in_any_toml_spelling_leave_the_saved_file_text(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        '# a comment with a quote " in it\n'
        "[[app]]\n"
        'name = "a"\n'
        'app = "tests.apps.bad_apps:ok_app"\n'
        f'env = {{ K = {KEY_TOML}, L = \'lit-LEAKYKEY\', M = """multi\n-LEAKYKEY""", '
        'N = "\\u0041BC", P = "a\\\\bcd" }\n'
    )
    saved = build(scenario, {}).to_dict()["source_text"]
    assert KEY_MARK not in saved and "u0041BC" not in saved and "bcd" not in saved
    assert saved.count('"***"') == 5 and 'name = "a"' in saved
    # ... and every output masks the parsed values from now on.
    assert dsn.redact(f"key={KEY} abc={'a' + chr(92) + 'bcd'}") == "key=*** abc=***"


def test_a_dsn_without_a_password_and_urls_are_left_alone() -> None:
    dsn.remember("postgresql://pgadmin@host/db")
    dsn.remember("https://docs.example/docs")
    for text in (
        "postgresql://pgadmin@host/db",
        "see https://docs.example/docs and https://docs.example/x",
        "mail me@example.org, 12:30",
        "--app: expected NAME=MODULE:ATTR[@DIR], got 'mine'",
    ):
        assert dsn.redact(text) == text
    assert (
        dsn.redact("DATABASE_URL=postgresql://u:pw@h/db") == "DATABASE_URL=postgresql://u:***@h/db"
    )


@pytest.mark.integration
def test_redaction_is_linear_on_a_megabyte_of_pathological_text() -> None:
    # The benchmark's inputs, in a child with a deadline: the quadratic redaction took 40 s
    # on 40 KB of them, hours on a megabyte. (Its timings are printed, not judged here.)
    done = subprocess.run(
        [sys.executable, "benchmarks/redaction.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "u:p@h masks" in done.stdout


# --- terminal and Markdown injection ----------------------------------------------------------

HOSTILE = (
    "\x1b]0;pwned\x07\x1b[2J\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\\x9b31m\r"
    "\n# Heading\n<details open><summary>x</summary><img src=https://evil.example/i.png>"
    "![i](https://evil.example/i.png) [link](https://evil.example) www.evil.example"
)


@pytest.fixture
def hostile_results(tmp_path: Path) -> tuple[Path, Path]:
    entry = made(
        "pool",
        "failed",
        variant={"key": "pool c=32 " + HOSTILE.replace("=", "-")},
        failure="died " + HOSTILE,
        warnings=["warned " + HOSTILE],
        requests={"ok": 10, "errors": 1, "total": 11, "errors_by_kind": {HOSTILE: 1}},
    )
    base, new = tmp_path / "a.json", tmp_path / "b.json"
    for path in (base, new):
        results.save(run_of(entry, name="n " + HOSTILE, description=HOSTILE), path)
    return base, new


@pytest.mark.parametrize(
    "args",
    [
        ("show", "{a}"),
        ("show", "{a}", "--format", "csv"),
        ("show", "{a}", "--format", "markdown"),
        ("compare", "{a}", "{b}"),
        ("compare", "{a}", "{b}", "--format", "markdown"),
        ("compare", "{a}", "{b}", "--format", "csv"),
    ],
)
@pytest.mark.integration
def test_result_strings_reach_no_terminal_raw(
    hostile_results: tuple[Path, Path], args: tuple[str, ...]
) -> None:
    base, new = hostile_results
    argv = [arg.format(a=base, b=new) for arg in args]
    done = run_cli(*argv, cwd=ROOT, env_extra={"COLUMNS": "200"})
    assert done.returncode in (0, 1), done.stderr
    for text in (done.stdout, done.stderr):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), (argv, text[:500])
    assert "pwned" in done.stdout  # shown, escaped: not hidden
    if "markdown" in args:
        _assert_inert_markdown(done.stdout)


def _assert_inert_markdown(text: str) -> None:
    assert "<details open>" not in text and "<img" not in text and "<summary>x" not in text
    assert "](https://evil" not in text and "https://evil" not in text
    assert "www.evil" not in text
    assert not any(line.startswith("# Heading") for line in text.splitlines())


def test_markdown_text_escapes_every_way_into_markup() -> None:
    out = sink.markdown_text(HOSTILE)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out
    _assert_inert_markdown(out)


def test_console_escapes_controls_and_keeps_its_own_styles() -> None:
    console = sink.SafeConsole(force_terminal=True, width=80, record=False)
    with console.capture() as captured:
        console.print("[red]failed[/red] " + "\x1b[2Jclear\x07", highlight=False)
    out = captured.get()
    assert "\x1b[2J" not in out and "\x07" not in out and "\\x1b[2Jclear" in out
    with console.capture() as captured:
        console.print("[red]failed[/red]", highlight=False)
    assert "\x1b[31m" in captured.get()  # rich's own colour codes still reach a terminal


# --- nothing writes to an output but through the sink ----------------------------------------

WRITERS = re.compile(
    r"sys\.std(?:out|err)\.write|typer\.echo\(|(?<![.\w])print\(|\bConsole\(|\.write_text\(|"
    r"\bfh\.write\("
)
# Each writes what no result string reaches: connbench's own code (a locustfile, pgbench's
# script), a failure inside the app's own process (its log), or a page made safe by
# html.report.
ALLOWED = {
    ("connbench/cli.py", "sys.stdout.write(text)  # code, not a report"),
    ("connbench/cli.py", "output.write_text(text)"),
    ("connbench/cli.py", "fh.write(page)  # redacted by html_view.report"),
    ("connbench/cli.py", 'fh.write(sink.text(markdown) + "\\n")'),
    ("connbench/measure/calibrate.py", "script.write_text("),
    ("connbench/measure/locust_engine.py", "file.write_text("),
    ("connbench/infra/launch.py", "print(FAILED + message"),
    # A forked app's sys.exit("message"), said on its own stderr (its log) as Python would.
    ("connbench/infra/forkserver.py", "print(value, file=sys.stderr)"),
    ("connbench/infra/userapp.py", "\"print(' '.join(missing) or '-', sys.prefix)\""),  # code
}


def test_every_output_goes_through_the_sink() -> None:
    found = []
    for path in sorted((ROOT / "connbench").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name.startswith(("connbench/present/sink.py", "connbench/apps/")):
            continue  # the sink itself; the apps are servers, run by uvicorn
        for line in path.read_text().splitlines():
            if WRITERS.search(line) and not line.lstrip().startswith("#"):
                if not any(name == n and allowed in line for n, allowed in ALLOWED):
                    found.append(f"{name}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_sinks_json_formats_are_the_tracking_formats() -> None:
    from connbench.present import sink, tracking

    assert set(sink.JSON_FORMATS) == set(tracking.FORMATS)
