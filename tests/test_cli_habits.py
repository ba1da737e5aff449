"""The habits of wrk, k6, hyperfine and pgbench users: flags, help, start-up, narrow terminals,
progress in a pipe, exit codes a script can act on, CI summaries."""

from __future__ import annotations

import io
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from connbench import cli
from connbench.analyse import compare
from connbench.cli import app
from connbench.measure import calibrate, faults
from connbench.measure.load import Progress
from connbench.model import metrics, results, scenario
from connbench.model.result_types import Calibration, LimitRecord, OpenModel
from connbench.model.results import RunResult, StrategyResult
from connbench.present import progress as progress_view
from connbench.present import run as run_view
from connbench.present import run_cells

from .conftest import ROOT, entry, made, run_cli, run_of
from .processes import serving

runner = CliRunner()


# --- flags, durations, help -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("10", 10.0), (2.5, 2.5)],
)
def test_durations_take_units_from_flags_and_files(
    tmp_path: Path, text: str | float, seconds: float
) -> None:
    from_flag = scenario.build(None, {"duration_s": str(text), "warmup_s": str(text)})
    assert (from_flag.duration_s, from_flag.warmup_s) == (seconds, seconds)
    path = tmp_path / "s.toml"
    value = f'"{text}"' if isinstance(text, str) else str(text)
    path.write_text(f"duration_s = {value}\ntimeout_s = {value}\n")
    from_file = scenario.build(path, {})
    assert (from_file.duration_s, from_file.timeout_s) == (seconds, seconds)


def test_a_fault_second_takes_units_too() -> None:
    assert faults.parse("terminate@1500ms").at_s == 1.5
    assert faults.parse("restart@3s").at_s == 3.0
    with pytest.raises(ValueError, match="KIND@SECOND"):
        faults.parse("restart@3x")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "-c", "0"], "--concurrency: expected a positive whole number"),
        (["run", "-d", "5x"], "--duration: expected a number of seconds > 0 or a duration"),
        (["run", "-d", "0ms"], "--duration: expected a number of seconds > 0"),
        (["run", "-w", "-1s"], "--warmup: expected a number of seconds >= 0"),
        (["run", "-r", "0"], "--repeat: expected a positive whole number"),
        (["run", "-R", "0"], "--rate: expected requests per second > 0"),
        (["run", "-s", "nope"], "--strategy: unknown strategy 'nope'"),
        (["run", "--progress", "often"], "--progress: expected a number of seconds >= 0"),
        (["serve", "pool", "--port", "70000"], "--port: expected 1 to 65535, got 70000"),
    ],
)
def test_short_flags_reach_their_long_names(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_h_and_V() -> None:
    assert runner.invoke(app, ["-V"]).stdout.strip().startswith("connbench ")
    for args in (["-h"], ["run", "-h"], ["compare", "-h"], ["serve", "-h"]):
        out = runner.invoke(app, args, prog_name="connbench")
        assert out.exit_code == 0, out.output
        assert out.stdout.startswith("Usage: connbench")


def _options(help_text: str) -> str:
    """The option groups of a command's help (everything below its description)."""
    return help_text[help_text.index("\n\n", help_text.index("Usage:")) :]


def test_help_says_what_each_flag_takes() -> None:
    text = runner.invoke(app, ["run", "-h"], env={"COLUMNS": "200"}).stdout
    options = _options(text)
    assert "<str>" not in options and "<bool>" not in options and "TEXT" not in options
    assert re.search(r"-c, --concurrency INTEGER\[,\.\.\.\]\s+Concurrent requests; INTEGER or a "
                     r"comma list", options)  # fmt: skip
    assert re.search(r"-d, --duration DURATION\s+Measured time per variant: 500ms, 30s", options)
    for flag in ("-w, --warmup", "-r, --repeat", "-R, --rate", "-o, --output", "-s, --strategy",
                 "-P, --progress", "--summary FILE"):  # fmt: skip
        assert flag in options
    serve = runner.invoke(app, ["serve", "-h"], env={"COLUMNS": "200"}).stdout
    assert "-p, --port PORT" in serve
    assert "sweeps" not in serve  # serve takes one topology
    assert "--postgres BACKEND" in serve


def test_compare_help_names_every_metric_and_dimension_without_a_doubled_word() -> None:
    text = " ".join(runner.invoke(app, ["compare", "-h"], env={"COLUMNS": "200"}).stdout.split())
    assert not re.search(r"\b(\w+) \1\b", text), re.search(r"\b(\w+) \1\b", text)
    assert f"Metrics: {metrics.known()}." in text
    assert f"without this part of their key: {', '.join(compare.DIMENSIONS)} " in text


def test_exit_codes_are_one_table_in_help_and_the_docs() -> None:
    text = runner.invoke(app, ["-h"]).stdout
    readme = (ROOT / "docs" / "reliability.md").read_text()
    flat = " ".join(text.split())  # a long meaning is wrapped under itself
    for code, meaning in cli.EXIT_CODES:
        assert f" {code} {meaning}" in flat, code
        assert f"| {code} | {meaning} |" in readme, code
    assert cli.EXIT_PRECEDENCE in text and cli.EXIT_PRECEDENCE in readme


@pytest.mark.parametrize(
    "command", ["", "run", "compare", "show", "report", "serve", "calibrate", "worker"]
)
def test_help_fits_80_columns(command: str) -> None:
    text = runner.invoke(app, [*command.split(), "-h"], env={"COLUMNS": "80"}).stdout
    assert "Usage:" in text
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert not too_long, too_long


def test_run_help_is_in_groups_and_has_examples() -> None:
    text = runner.invoke(app, ["run", "-h"], env={"COLUMNS": "80"}).stdout
    sections = re.findall(r"^(\S[^:]*):$", text, re.MULTILINE)
    assert sections[:8] == [
        "Arguments", "Load", "Pool and server", "Your app or a running one",
        "Locust (--engine locust)", "Output", "Gate", "Options",
    ]  # fmt: skip
    # every flag of run is in a group of its own kind, none left in the catch-all
    catch_all = text[text.index("\nOptions:") : text.index("Examples:")]
    assert catch_all.split() == ["Options:", "-h,", "--help", "Show", "this", "message", "and",
                                 "exit."]  # fmt: skip
    assert "connbench run -s pool,connect -d 30s" in text


@pytest.mark.integration
def test_shell_completion_is_on() -> None:
    # What a shell's completion script asks (click's protocol), whatever shell runs the tests.
    binary = Path(sys.executable).parent / "connbench"
    env = {**os.environ, "_CONNBENCH_COMPLETE": "complete_bash", "COMP_CWORD": "2"}
    out = subprocess.run(
        [str(binary)], env=env | {"COMP_WORDS": "connbench run --concu"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["--concurrency"]
    assert "--install-completion" in runner.invoke(app, ["-h"]).stdout


@pytest.mark.integration
def test_importing_the_cli_pulls_in_no_heavy_module() -> None:
    # What `connbench --help` costs is importing connbench.cli; the heavy modules are
    # imported by the commands that use them.
    heavy = ("aiohttp", "psycopg", "httpx", "uvicorn", "fastapi", "pgserver", "hdrh",
             "rich.progress", "rich.table", "psutil")  # fmt: skip
    probe = f"import sys, connbench.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # ... and the probe can fail: importing the runner does pull them in.
    probe = probe.replace("connbench.cli", "connbench.runner")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "httpx" in out.stdout and "psycopg" in out.stdout


# --- narrow terminals ----------------------------------------------------------------------------


def _rich_run() -> RunResult:
    """A run with what makes tables wide: a sweep, repeats, PgBouncer, long names, a
    calibration, breakdowns, per-second series (20 s), a sync strategy, a failure."""
    entries: list[StrategyResult] = []
    names = ("pool", "pool-nocheck", "pool-unused", "yield-context", "sync-pool", "connect")
    series = {
        "t_s": [float(i) for i in range(20)], "ok": [1000.0 + i for i in range(20)],
        "errors": [0.0] * 20, "p50_ms": [20.0] * 20, "p99_ms": [50.0] * 20,
        "connections": [4.0] * 20,
    }  # fmt: skip
    breakdown = {
        "requests": 1000, "latency_mean_ms": 1234.5, "in_app_ms": 1134.5, "connect_ms": 800.0,
        "pool_wait_ms": 1.0, "query_ms": 300.0, "rest_of_app_ms": 1.5, "outside_app_ms": 100.0,
        "after_response_ms": 2.0, "connects_per_request": 1.0, "queries_per_request": 2.0,
    }  # fmt: skip
    for strategy in names:
        pooled = strategy in ("pool", "pool-nocheck", "pool-unused", "sync-pool")
        for concurrency in (8, 128):
            for topology in ("direct", "pgbouncer-transaction"):
                for repeat in range(2):
                    base = entry(
                        strategy, repeat, rps=1234.5 + repeat * 100, p99=1234.5,
                        pool=4 if pooled else None, concurrency=concurrency, peak=128,
                        topology=topology,
                    )  # fmt: skip
                    fields = base.model_dump(exclude={"strategy", "status"})
                    fields["server"] |= {"sessions_per_ok_response": 1.0, "sessions_opened": 99}
                    entries.append(
                        made(
                            strategy,
                            **fields
                            | {
                                "integrity": {
                                    "ok": True,
                                    "rows_inserted": 12345,
                                    "ok_responses": 12345,
                                },
                                "cpu_percent": {"app": 99.0, "postgres": 88.0},
                                "generator": {
                                    "engine": "httptools",
                                    "cpu_percent": 9.0,
                                    "loop_cpu_percent": 9.0,
                                    "saturated": False,
                                },
                                "timeseries": series,
                                "breakdown": None if strategy == "sync-pool" else breakdown,
                            },
                        )  # fmt: skip
                    )
    entries.append(entry("depends", status="failed", pool=None))
    run = run_of(*entries, concurrency=[8, 128], topology=["direct", "pgbouncer-transaction"])
    run.calibration = Calibration.model_validate(
        {
            "concurrency": 8, "duration_s": 5.0, "generator_rps": 9000.0,
            "generator_cpu_percent": 5.0, "wrk_rps": None, "pgbench_tps": 8000.0,
            "pgbench_connect_tps": 100.0,
            "by_concurrency": {
                "8": {"pgbench_tps": 8000.0, "pgbench_connect_tps": 100.0},
                "128": {"pgbench_tps": 9000.0, "pgbench_connect_tps": 1000.0},
            },
        }
    )  # fmt: skip
    return run


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.integration
def test_show_fits_the_width_and_never_cuts_a_name(tmp_path: Path, width: int) -> None:
    run = _rich_run()
    path = tmp_path / "wide.json"
    results.save(run, path)
    out = runner.invoke(app, ["show", str(path)], env={"COLUMNS": str(width)})
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in out.stdout
    rows = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    results_table = lines[: next(i for i, line in enumerate(lines) if line.startswith("└"))]
    first_cells = [line.split("│")[1].strip() for line in results_table if line.startswith("│")]
    assert "" not in first_cells  # no cell wrapped a row of the results onto a second line
    for summary in run.summary:  # every variant's name, whole, in the tables
        assert summary.strategy in rows
        if summary.status == "ok":  # and its label in the charts and the breakdown
            assert run_cells.row_label(run, summary.variant) in out.stdout
    assert f"left out at {width} columns" in out.stdout  # and it says what it dropped


@pytest.mark.integration
def test_piped_output_defaults_to_100_columns(tmp_path: Path) -> None:
    path = tmp_path / "wide.json"
    results.save(_rich_run(), path)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run(
        [sys.executable, "-m", "connbench", "show", str(path)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert max(len(line) for line in out.stdout.splitlines()) == cli.DEFAULT_WIDTH


def test_sparklines_shrink_to_fit_keeping_spikes() -> None:
    assert run_view.sparkline([0, 0, 10, 0, 0, 0], width=3) == "▁█▁"
    assert len(run_view.sparkline(list(range(60)), width=12)) == 12


# --- the run's footers, the breakdown, calibration ------------------------------------------------


@pytest.mark.integration
def test_footer_pool_only_when_a_pool_ran_and_limits_pluralised() -> None:
    run = run_of(entry("connect", pool=None))
    run.limits = [LimitRecord(limit="p99_ms>50", variant="connect c=32 w=1", value=20.0,
                              failed=False, reason="p99_ms = 20")]  # fmt: skip
    console = Console(width=200, record=True, file=io.StringIO())
    run_view.render_run(console, run)
    text = console.export_text()
    assert "pool 4..4" not in text
    assert "limits (1 check): all passed" in text
    pooled = run_of(entry("pool"))
    console = Console(width=200, record=True, file=io.StringIO())
    run_view.render_run(console, pooled)
    assert "pool 4..4" in console.export_text()


@pytest.mark.integration
def test_the_breakdown_says_which_strategies_it_leaves_out() -> None:
    run = _rich_run()
    console = Console(width=200, record=True, file=io.StringIO())
    run_view.render_run(console, run, explain=True)
    text = " ".join(console.export_text().split())
    assert "Not broken down: sync-pool c=8, sync-pool c=8 via=pgb-txn," in text
    assert "(sync strategies: their psycopg calls are not timed)" in text


def test_outside_app_is_never_negative() -> None:
    from connbench.analyse import breakdown

    def totals(n: int, until: float) -> dict[str, Any]:
        return {"timing": {"requests": n, "until_response_ms": until, "connect_ms": 0,
                           "pool_wait_ms": 0, "query_ms": until / 2, "after_response_ms": 0,
                           "connects": 0, "queries": n}}  # fmt: skip

    # The app's mean (12 ms) above the client's (10.2 ms): the edges' skew, not time.
    out = breakdown.breakdown(totals(0, 0), totals(10, 120), latency_mean_ms=10.2)
    assert out["outside_app_ms"] == 0.0


@pytest.mark.integration
def test_calibration_is_read_at_the_variants_own_concurrency() -> None:
    run = _rich_run()
    by_key = {s.key: s for s in run.summary}
    calibration = run.calibration
    assert calibration is not None

    def cell(key: str, calibration: Calibration) -> str:  # the "vs pgbench" cell, unstyled
        return run_cells._reference(by_key[key], calibration, lambda text, style: text)

    median = by_key["connect c=8 w=1"].throughput_rps.median  # 1,284.5
    assert median is not None
    assert cell("connect c=8 w=1", calibration) == f"{median / 100:.0%} of pgbench -C"
    assert cell("connect c=128 w=1", calibration) == "128% of pgbench -C"
    assert cell("pool c=128 w=1 pool=4..4", calibration) == "14% of pgbench"
    # Measured at another concurrency only: no figure rather than a misleading one.
    old = calibration.model_copy(update={"concurrency": 32, "by_concurrency": None})
    assert cell("pool c=128 w=1 pool=4..4", old) == "-"
    assert calibrate.pgbench_threads(32, reconnect=True) == 32
    assert calibrate.pgbench_threads(32, reconnect=False) == min(32, os.cpu_count() or 1)


# --- progress ------------------------------------------------------------------------------------


def test_progress_lines_name_the_variant_every_time() -> None:
    buffer = io.StringIO()
    reporter = progress_view.ConsoleReporter(Console(file=buffer, width=100), every_s=5.0)
    key = "pool c=32 w=1 pool=4..4 #2"
    reporter.strategy_started(key, 3, 6, total_s=12.0)
    for tick in range(1, 49):  # every 0.25 s, 400 req/s
        t = tick * 0.25
        phase = "warmup" if t < 2 else "measure"
        reporter.progress(Progress(phase, t, int(400 * t), 3, 42.5 if t >= 3 else None, 4))
    done = entry("pool", 1, rps=400.0, p99=42.5)
    reporter.strategy_finished(done)
    lines = buffer.getvalue().splitlines()
    assert lines == [
        f"{key} (3/6) measure   5.0 s: 400 req/s, p99 42.5 ms so far, 3 errors, 4 server conns",
        f"{key} (3/6) measure  10.0 s: 400 req/s, p99 42.5 ms so far, 3 errors, 4 server conns",
        f"{key}: 400 req/s, p99 42.5 ms",
    ]


def test_no_periodic_lines_with_progress_0() -> None:
    buffer = io.StringIO()
    reporter = progress_view.ConsoleReporter(Console(file=buffer, width=100), every_s=0)
    reporter.strategy_started("pool c=32 w=1 pool=4..4", 1, 1, total_s=12.0)
    for tick in range(1, 49):
        reporter.progress(Progress("measure", tick * 0.25, tick * 100, 0))
    assert buffer.getvalue() == ""


# --- exit codes, summaries, result files ---------------------------------------------------------


def _invalid(run: RunResult) -> RunResult:
    run.results[0].open_model = OpenModel(
        rate_rps=100.0, offered=100, sent_late=0, not_sent=50, in_flight_at_end=0,
        schedule_lag_ms_p99=None, latency_uncorrected_ms=None, valid=False,
        invalid_reasons=["could not hold the rate"],
    )  # fmt: skip
    run.summary[0].valid = False
    return run


@pytest.mark.integration
def test_exit_code_precedence() -> None:
    assert cli._run_exit_code(run_of(entry())) == 0
    crossed = run_of(entry())
    crossed.limits = [LimitRecord(limit="p99_ms>1", variant="k", value=2.0, failed=True,
                                  reason="r")]  # fmt: skip
    assert cli._run_exit_code(crossed) == cli.EXIT_LIMITS
    assert cli._run_exit_code(_invalid(crossed)) == cli.EXIT_INVALID
    failed = _invalid(run_of(entry(), entry("connect", status="failed", pool=None)))
    assert cli._run_exit_code(failed) == cli.EXIT_FAILED
    failed.interrupted = True
    assert cli._run_exit_code(failed) == cli.EXIT_INTERRUPTED
    saturated = run_of(entry())
    saturated.summary[0].generator_saturated = True
    assert cli._run_exit_code(saturated) == cli.EXIT_INVALID


@pytest.mark.integration
def test_an_open_model_run_that_cannot_hold_its_rate_exits_4(tmp_path: Path) -> None:
    # One connection cannot carry 20,000 requests a second: the rate is not held.
    out = run_cli("run", "-s", "pool", "-c", "1", "-R", "20000", "-d", "1500ms", "-w", "0",
                  "-o", str(tmp_path / "r.json"), "--format", "json", cwd=ROOT)  # fmt: skip
    assert out.returncode == cli.EXIT_INVALID, out.stderr
    assert "connbench: invalid measurement: pool c=1 w=1 pool=4..4 rate=20000: could not " \
           "hold the offered rate" in out.stderr  # fmt: skip


@pytest.mark.integration
def test_summary_is_appended_whatever_the_exit_code(tmp_path: Path) -> None:
    base, slow = tmp_path / "base.json", tmp_path / "slow.json"
    results.save(run_of(*(entry(repeat=i, rps=1000 + i) for i in range(5))), base)
    gate = {"throughput": 0.10}
    results.save(run_of(*(entry(repeat=i, rps=500 + i) for i in range(5)), gate=gate), slow)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    out = runner.invoke(app, ["compare", str(base), str(slow), "--summary", str(summary)])
    assert out.exit_code == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n## connbench compare: ❌ regression")
    bad = runner.invoke(app, ["compare", str(base), str(slow), "--summary", str(tmp_path)])
    assert bad.exit_code == 2 and "--summary: cannot write" in bad.stderr


@pytest.mark.integration
def test_result_files_are_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = results.save(run_of(entry()), tmp_path / "r.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.integration
def test_one_warning_says_what_differs_and_whether_it_matters() -> None:
    base, new = run_of(entry()), run_of(entry())
    new.environment = new.environment.model_copy(
        update={"cpu_count": 64, "cpu_model": "Other CPU", "platform": "Linux-9"}
    )
    comparison = compare.compare(base, new, gate=compare.Gate())
    console = Console(width=300, record=True, file=io.StringIO())
    from connbench.present import compare as compare_view

    compare_view.render_compare(console, [comparison])
    line = " ".join(console.export_text().split())
    assert line.count("warning:") == 1
    assert f"machine (cpu_model {base.environment.cpu_model} → Other CPU; cpu_count " in line
    assert "): matters, throughput and latency move with the machine" in line
    assert "software (platform " in line and "): minor, versions and kernel" in line


# --- serve --port ------------------------------------------------------------------------------


@pytest.mark.integration
def test_serve_on_a_fixed_port(tmp_path: Path) -> None:
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        taken = run_cli("serve", "pool", "--port", str(port), cwd=ROOT, timeout=60)
        assert taken.returncode == 2 and f"--port: 127.0.0.1:{port} is not free" in taken.stderr
    with serving("pool", "-p", str(port)) as served:
        assert (served.strategy, served.url) == ("pool", f"http://127.0.0.1:{port}/visit/")
        assert httpx.get(served.url).status_code == 200
    assert served.process.returncode == cli.EXIT_INTERRUPTED
