"""The real thing: embedded PostgreSQL, uvicorn subprocesses, HTTP load. Short durations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from connbench import runner
from connbench.apps import STRATEGIES, Strategy
from connbench.model import results
from connbench.model.scenario import build

from .conftest import ROOT, RecordingReporter, connbench_cmd, part, run_cli
from .processes import (
    Connbench,
    all_gone,
    connected_to,
    descendants,
    postmasters,
    running,
    serving,
    temp_dirs_made_by,
    wait_for,
)

PER_REQUEST = [name for name, s in STRATEGIES.items() if not s.pooled]


@pytest.fixture(scope="module")
def all_strategies(tmp_path_factory: pytest.TempPathFactory) -> results.RunResult:
    scenario = build(
        None,
        {
            "strategies": ["all"],
            "concurrency": "8",
            "duration_s": "1.5",
            "warmup_s": "0.5",
            "pool_min": "2",
            "pool_max": "3",
        },
    )
    out = tmp_path_factory.mktemp("run") / "all.json"
    reporter = RecordingReporter()
    run, path = runner.execute(scenario, reporter, out)
    assert path == out
    assert [r.strategy for r in reporter.finished] == list(STRATEGIES)
    assert {p.phase for p in reporter.progress_seen} >= {"warmup", "measure"}
    return results.load(out)


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.integration
def test_strategy_serves_and_rows_match_responses(
    all_strategies: results.RunResult, name: str
) -> None:
    result = next(r for r in all_strategies.results if r.strategy == name)
    assert result.status == "ok", result.failure
    assert part(result.requests).ok > 0
    assert part(result.requests).errors == 0, result.requests
    assert result.throughput_rps > 0
    assert (
        0
        < part(result.latency_ms).p50
        <= part(result.latency_ms).p99
        <= part(result.latency_ms).max
    )
    assert part(result.integrity).ok is True
    assert part(result.integrity).rows_inserted == part(result.integrity).ok_responses
    assert part(result.server).samples > 5
    assert part(result.generator).engine == "httptools"
    assert part(part(result.cpu_percent).app) > 0
    assert len(part(result.timeseries).ok) == 2


@pytest.mark.parametrize("name", PER_REQUEST)
@pytest.mark.integration
def test_per_request_strategies_open_a_session_per_response(
    all_strategies: results.RunResult, name: str
) -> None:
    result = next(r for r in all_strategies.results if r.strategy == name)
    ok = part(result.integrity).ok_responses
    extra = 3 if name == "pool-unused" else 0  # its idle pool's sessions
    assert part(result.server).sessions_opened == pytest.approx(ok + extra, abs=2)


@pytest.mark.parametrize(
    "name", [name for name, s in STRATEGIES.items() if s.pooled and s.fixed_pool is None]
)
@pytest.mark.integration
def test_pool_stays_within_its_size(all_strategies: results.RunResult, name: str) -> None:
    result = next(r for r in all_strategies.results if r.strategy == name)
    assert 2 <= part(part(result.server).connections_peak) <= 3
    assert 2 <= part(part(result.server).sessions_opened) <= 3
    assert part(result.integrity).ok_responses > 10 * part(part(result.server).sessions_opened)


@pytest.mark.parametrize("name", [name for name, s in STRATEGIES.items() if s.fixed_pool])
@pytest.mark.integration
def test_library_sized_pool_stays_within_its_defaults(
    all_strategies: results.RunResult, name: str
) -> None:
    """SQLAlchemy's QueuePool ignores --pool-max: 5 kept, 10 overflow, whatever we ask."""
    result = next(r for r in all_strategies.results if r.strategy == name)
    server = part(result.server)
    assert result.variant.pool_max is None  # no pool sweep for it: it would change nothing
    assert 1 <= part(server.connections_peak) <= part(STRATEGIES[name].fixed_pool)
    assert part(server.predicted).connections == 15
    # Overflow connections are closed and reopened under load, yet most requests reuse one.
    assert part(server.sessions_per_ok_response) < 0.5


# Their queries go through SQLAlchemy's cursors, asyncpg or sync psycopg, which the app's
# timing does not wrap: no breakdown rather than one that calls query time "rest of app".
UNTIMED_QUERIES = [
    "sync-connect", "sync-pool", "sqlalchemy", "sqlalchemy-nullpool", "asyncpg-pool", "sqlmodel",
]  # fmt: skip


@pytest.mark.parametrize("name", UNTIMED_QUERIES)
@pytest.mark.integration
def test_sync_strategies_have_no_breakdown_rather_than_a_wrong_one(
    all_strategies: results.RunResult, name: str
) -> None:
    assert next(r for r in all_strategies.results if r.strategy == name).breakdown is None


@pytest.mark.integration
def test_pool_unused_keeps_its_idle_pool(all_strategies: results.RunResult) -> None:
    result = next(r for r in all_strategies.results if r.strategy == "pool-unused")
    assert part(result.server).by_state_peak.get("idle", 0) >= 2


# Queries the app runs before its response: execute and commit, or only execute when the commit
# comes after the response (a yield dependency's exit, the pool's connection() context).
QUERIES_BEFORE_RESPONSE = {
    "connect": 2, "context": 2, "depends": 2,
    "yield": 1, "yield-context": 1, "pool": 1, "pool-nocheck": 1, "pool-unused": 1,
}  # fmt: skip


@pytest.mark.parametrize("name", list(QUERIES_BEFORE_RESPONSE))
@pytest.mark.integration
def test_breakdown_says_where_each_strategy_spends_its_time(
    all_strategies: results.RunResult, name: str
) -> None:
    parts = part(next(r for r in all_strategies.results if r.strategy == name).breakdown)
    assert parts.requests > 0
    assert parts.query_ms > 0
    assert parts.queries_per_request == pytest.approx(QUERIES_BEFORE_RESPONSE[name], abs=0.15)
    if STRATEGIES[name].pooled:  # connections come from the pool, none opened per request
        assert parts.connects_per_request == 0 and parts.connect_ms == 0
        assert parts.pool_wait_ms > 0
        assert part(parts.pool)["requests_num"] > 0
    else:  # a connection per request, and no pool lends one
        assert parts.connects_per_request == pytest.approx(1.0, abs=0.15)
        assert parts.connect_ms > 0
        assert parts.pool_wait_ms == 0
    if name == "pool-unused":  # its pool is there, and never asked for anything
        pool = part(parts.pool)
        assert pool["pool_size"] == 2 and pool.get("requests_num", 0) == 0
    elif not STRATEGIES[name].uses_pool:
        assert parts.pool is None


@pytest.mark.integration
def test_result_records_environment_and_scenario(all_strategies: results.RunResult) -> None:
    server = part(all_strategies.environment.postgres)
    assert server.backend == "embedded"
    assert server.version.startswith("16")
    assert server.settings.max_connections == 100  # a number: it was saved as "100"
    assert server.dsn.startswith("postgresql://connbench@127.0.0.1:")  # no password
    assert all_strategies.scenario.pool_max_effective == [3]
    assert [s.strategy for s in all_strategies.summary] == list(STRATEGIES)
    assert all_strategies.interrupted is False


@pytest.mark.integration
def test_repeats_are_interleaved_and_summarized(tmp_path: Path) -> None:
    scenario = build(
        None,
        {"strategies": ["pool,connect"], "repeat": "2", "duration_s": "0.5", "warmup_s": "0.2",
         "concurrency": "4"},
    )  # fmt: skip
    run, path = runner.execute(scenario, RecordingReporter(), tmp_path / "r.json")
    # Interleaved, the order reversed every other round (A B, B A): neither always goes first.
    assert [(r.strategy, r.repeat, r.position) for r in run.results] == [
        ("pool", 0, 0), ("connect", 0, 1), ("connect", 1, 0), ("pool", 1, 1),
    ]  # fmt: skip
    assert path == tmp_path / "r.json"  # saved where asked (None: nothing measured)
    saved = results.load(path)
    assert [s.key for s in saved.summary] == ["pool c=4 w=1 pool=4..4", "connect c=4 w=1"]
    assert [r.position for r in saved.results] == [0, 1, 0, 1]
    pool = saved.summary[0]
    assert pool.runs == 2
    pools = [r for r in run.results if r.strategy == "pool"]
    assert pool.throughput_rps.values == [r.throughput_rps for r in pools]
    assert pool.integrity_ok is True


def test_an_ab_run_is_judged_round_by_round(pg: object, tmp_path: Path) -> None:
    """One short A/B run through the CLI: pool against connect in 4 alternating rounds, then
    the paired gate on a figure that cannot flip with the machine's speed (sessions opened:
    the pool's few against one per request)."""
    from connbench.infra.postgres import Postgres

    assert isinstance(pg, Postgres)
    out = tmp_path / "ab.json"
    proc = subprocess.run(
        connbench_cmd(
            "run", "--strategy", "pool,connect", "--repeat", "4", "--duration", "0.5",
            "--warmup", "0", "--concurrency", "4", "--postgres", pg.dsn, "-o", str(out),
            "--format", "json",
        ),
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = results.load(out)
    assert [(r.strategy, r.repeat, r.position) for r in run.results] == [
        ("pool", 0, 0), ("connect", 0, 1), ("connect", 1, 0), ("pool", 1, 1),
        ("pool", 2, 0), ("connect", 2, 1), ("connect", 3, 0), ("pool", 3, 1),
    ]  # fmt: skip

    def gate(base: str, head: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            connbench_cmd(
                "compare", str(out), "--base", base, "--head", head, "--fail-on",
                "sessions_opened:25%", "--alpha", "0.125", "--format", "markdown",
            ),
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    worse = gate("pool", "connect")
    assert worse.returncode == 1, worse.stderr
    assert "❌ **REGRESSION: 1 of 1 check failed**" in worse.stdout
    assert "- ❌ **sessions opened ×" in worse.stdout
    assert "87.5% interval" in worse.stdout  # 4 rounds at α=0.125: 1 - 2/16
    assert "Order: base first in round 1, 3; head first in round 2, 4." in worse.stdout
    better = gate("connect", "pool")
    assert better.returncode == 0, better.stderr
    assert "✅ **no regression (1 check passed)**" in better.stdout
    too_few = subprocess.run(
        connbench_cmd("compare", str(out), "--base", "pool", "--head", "connect",
                      "--fail-on", "throughput:10%"),
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert too_few.returncode == 2
    assert "4 rounds cannot reach α=0.05 with the signed-rank test" in too_few.stderr


@pytest.mark.integration
def test_app_that_never_starts_is_reported_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = Strategy("broken", "no_such_module", "an app that cannot be imported", pooled=False)
    monkeypatch.setitem(STRATEGIES, "broken", broken)
    scenario = build(None, {"strategies": ["broken", "pool"], "duration_s": "0.5", "warmup_s": "0"})
    run, _ = runner.execute(scenario, RecordingReporter(), tmp_path / "r.json")
    failed, ok = run.results
    assert failed.status == "failed"
    assert "app 'broken'" in (failed.failure or "")
    assert "no_such_module" in (failed.failure or "")  # the log tail names the cause
    assert ok.status == "ok" and part(ok.requests).ok > 0


@pytest.mark.integration
def test_too_many_clients_is_counted_as_the_database_error(tmp_path: Path) -> None:
    scenario = build(
        None,
        {
            "strategies": ["connect"],
            "concurrency": "24",
            "duration_s": "1.5",
            "warmup_s": "0.3",
            "server": {"max_connections": "8"},
        },
    )
    reporter = RecordingReporter()
    run, _ = runner.execute(scenario, reporter, tmp_path / "r.json")
    # Said before the run: 24 concurrent requests, one session each, cannot fit in 8.
    assert (
        "connect c=24 w=1: up to 24 server connections (concurrency 24) plus connbench's own 2, "
        "but max_connections is 8: expect 'too many clients' errors"
    ) in reporter.notes
    (result,) = run.results
    assert part(part(result.server).predicted).model_dump() == {
        "connections": 24,
        "basis": "concurrency 24",
        "max_connections": 8,
        "fits": False,
    }
    assert part(result.requests).errors_by_kind.get("db:TooManyConnections", 0) > 0
    assert part(result.integrity).ok is True  # refused requests insert nothing
    assert part(part(result.server).connections_peak) <= 8


@pytest.mark.integration
def test_workers_each_hold_a_pool_and_the_prediction_says_so(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = run_cli(
        "run", "--strategy", "pool", "--workers", "2", "--pool-min", "3",
        "--duration", "1.5", "--warmup", "0.5", "-o", str(out),
        cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (result,) = results.load(out).results
    assert result.status == "ok" and part(result.integrity).ok is True
    predicted = part(part(result.server).predicted)
    assert predicted.connections == 6
    assert predicted.basis == "2 workers × pool_max 3"
    assert predicted.fits is True
    # Each worker opens its own pool: more than one pool's worth, never more than predicted.
    assert 3 < part(part(result.server).connections_peak) <= 6
    assert f"{part(result.server).connections_peak}/6" in proc.stdout


@pytest.mark.parametrize("moment", ["measuring", "starting", "after-restart"])
@pytest.mark.integration
def test_ctrl_c_leaves_nothing_behind_and_keeps_what_was_measured(
    tmp_path: Path, moment: str
) -> None:
    tmp = tmp_path / "tmp"  # root-only (0700 parents): postgres falls back to /tmp
    tmp.mkdir()
    out = tmp_path / "r.json"
    fault = ["--fault", "restart@1"] if moment == "after-restart" else []
    with Connbench(
        "run", "--strategy", "pool,connect", "--duration", "30", "--warmup", "0.5",
        "-o", str(out), *fault, env={**os.environ, "TMPDIR": str(tmp)},
    ) as proc:  # fmt: skip
        if moment == "measuring":
            # Load has begun once clients are connected to the pool app; let it measure a while
            # (waiting for the process alone was not enough on a loaded machine).
            wait_for(lambda: connected_to("connbench.apps.pool", proc.pid), 60, proc)
            time.sleep(3.0)
        elif moment == "after-restart":
            # The restarted server is a new child: it must go as well as the first one did.
            wait_for(lambda: len(postmasters(proc.pid)) == 1, 60, proc)
            (first,) = postmasters(proc.pid)
            wait_for(lambda: bool(postmasters(proc.pid) - {first}), 60, proc)
            time.sleep(1.0)
        else:
            # The run has begun (its first line) and its server is up: PostgreSQL starts
            # while the runner is imported, so a server alone may come before the run does
            # (a Ctrl-C then keeps no result: nothing was begun; test_early_postgres.py).
            proc.wait_for_line(r"starting PostgreSQL", 60)
            wait_for(lambda: running("postgres -D", proc.pid), 60, proc)
        children = descendants(proc.pid)
        assert children
        made = temp_dirs_made_by(proc.process, Path("/tmp"))
        assert made
        proc.stop(signal.SIGINT)
    stderr = proc.stderr
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr

    wait_for(lambda: all_gone(children), 10)
    assert list(tmp.iterdir()) == [], "temp files left behind in TMPDIR"
    left = {p for p in made if p.exists()} | temp_dirs_made_by(proc.process, Path("/tmp"))
    assert not left, "temp files left behind in /tmp"
    saved = results.load(out)
    assert saved.interrupted is True
    if moment != "starting":
        (pool,) = saved.results  # connect never started
        assert pool.status == "interrupted"
        assert part(pool.requests).ok > 0
        assert 0 < pool.duration_s < 30
        integrity = part(pool.integrity)
        if moment == "after-restart":
            # A restart may cut a commit that runs after the response (see the README): the
            # rows are still counted, and any gap is reported as such, not hidden.
            rows, ok = integrity.rows_inserted, integrity.ok_responses
            assert rows is not None and ok > 0
            lost, unacked = part(integrity.lost_writes), part(integrity.unacknowledged_writes)
            assert rows + lost - unacked == ok
            assert integrity.ok is (rows == ok)
        else:
            assert integrity.ok is True
    if moment == "after-restart":
        assert part(saved.results[0].fault).took_s is not None


def test_cli_run_against_a_dsn_never_shows_the_password(pg: object, tmp_path: Path) -> None:
    from connbench.infra.postgres import Postgres

    assert isinstance(pg, Postgres)
    password = str(dict(p.split("=", 1) for p in pg.dsn.split())["password"])
    out = tmp_path / "r.json"
    proc = subprocess.run(
        connbench_cmd(
            "run", "--strategy", "pool", "--duration", "0.5", "--warmup", "0",
            "--postgres", pg.dsn, "-o", str(out),
        ),
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pool" in proc.stdout and "req/s" in proc.stdout
    assert password not in proc.stdout + proc.stderr + out.read_text()
    saved = results.load(out)
    assert part(saved.environment.postgres).backend == "external"


@pytest.mark.integration
def test_open_model_measures_from_the_intended_time_and_flags_an_unheld_rate(
    tmp_path: Path,
) -> None:
    scenario = build(
        None,
        {"strategies": ["pool"], "rate": "100,100000", "concurrency": "4", "duration_s": "1",
         "warmup_s": "0.2"},
    )  # fmt: skip
    run, _ = runner.execute(scenario, RecordingReporter(), tmp_path / "r.json")
    easy, impossible = run.results
    assert easy.variant.rate == 100
    easy_model = part(easy.open_model)
    assert easy_model.not_sent == 0  # the rate was held
    # The one thing that may make it invalid is the machine: on a busy one the generator's
    # timers fire late, and the verdict must say so rather than pass it.
    assert easy_model.valid == (not easy_model.invalid_reasons)
    assert all("timers fired late" in reason for reason in easy_model.invalid_reasons)
    # The schedule, not the server, sets the pace (the pool app serves several hundred a
    # second here); late timers may squeeze a few more into the window, not many.
    assert easy.throughput_rps <= 150
    assert part(easy.cpu_percent).app is not None  # the window ran to its end
    assert part(impossible.open_model).valid is False
    assert part(impossible.open_model).not_sent > 0
    assert any("could not hold the offered rate" in w for w in impossible.warnings)
    # Queueing behind busy connections is latency too: corrected >= uncorrected.
    assert (
        part(impossible.latency_ms).p99
        >= part(part(impossible.open_model).latency_uncorrected_ms).p99
    )
    assert part(easy.integrity).ok and part(impossible.integrity).ok


def _ignore_sigint() -> None:  # in the child: as a shell starts a background job
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("stop", "inherited"),
    [
        (signal.SIGINT, "default"),
        # Started in the background by a script: SIGINT arrives ignored, and Ctrl-C (kill -INT)
        # must still stop it (it used to serve on, holding its PostgreSQL up with it).
        (signal.SIGINT, "ignored"),
        (signal.SIGTERM, "default"),
    ],
    ids=["sigint", "sigint-inherited-ignored", "sigterm"],
)
@pytest.mark.integration
def test_serve_answers_until_ctrl_c(stop: signal.Signals, inherited: str) -> None:
    import httpx

    with serving("pool", preexec_fn=_ignore_sigint if inherited == "ignored" else None) as served:
        assert served.url.startswith("http://127.0.0.1:"), served.url
        response = httpx.get(served.url, timeout=10)
        assert response.status_code == 200
        assert response.json() == {"message": "Visit logged"}
        pid = served.process.pid
        children = descendants(pid)
        made = temp_dirs_made_by(served.process.process, Path("/tmp"))
        assert made
        served.process.stop(stop)
    assert served.process.returncode == 130, served.process.stderr
    wait_for(lambda: all_gone(children), 10)
    assert not {p for p in made if p.exists()}, "temp dirs left behind"


def test_limits_exit_3_and_compare_reads_the_real_result(pg: object, tmp_path: Path) -> None:
    from connbench.infra.postgres import Postgres

    assert isinstance(pg, Postgres)
    out = tmp_path / "r.json"
    proc = subprocess.run(
        connbench_cmd(
            "run", "--strategy", "pool,connect", "--duration", "0.5", "--warmup", "0",
            "--repeat", "2", "--concurrency", "4", "--postgres", pg.dsn, "-o", str(out),
            # Always true and always false whatever the machine's speed: no timing asserted.
            "--fail-if", "throughput_rps<1e9", "--fail-if", "error_rate>0.5", "--format", "json",
        ),
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "connbench: limits crossed: throughput_rps<1e+09" in proc.stderr
    printed = json.loads(proc.stdout)  # stdout holds the JSON alone: progress went to stderr
    verdicts = {(v["limit"], v["variant"]): v["failed"] for v in printed["limits"]}
    assert verdicts == {
        ("throughput_rps<1e+09", "pool c=4 w=1 pool=4..4"): True,
        ("throughput_rps<1e+09", "connect c=4 w=1"): True,
        ("error_rate>0.5", "pool c=4 w=1 pool=4..4"): False,
        ("error_rate>0.5", "connect c=4 w=1"): False,
    }
    assert [v.model_dump() for v in results.load(out).limits] == printed["limits"]
    same = subprocess.run(
        connbench_cmd("compare", str(out), str(out), "--fail-on", "throughput:10%",
                      "--format", "markdown"),
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert "✅ **no regression (2 checks passed)**" in same.stdout
    assert "(Mann-Whitney U p=1 > α=0.05, n=2+2)" not in same.stdout  # 2+2 cannot reach α
    assert "significance not judged (n=2+2: the smallest possible p is 0.33" in same.stdout
