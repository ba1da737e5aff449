"""The Locust engine: a real master and real workers on loopback, against real apps."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from connbench.cli import app
from connbench.measure import locust_engine
from connbench.model import results, scenario
from connbench.model.errors import ScenarioError
from tests.conftest import ROOT, connbench_cmd, run_cli
from tests.test_end_to_end import _all_gone, _descendants, _wait_for

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="Locust is not installed (make test does)"
)


def _locust_workers(pid: int) -> list[psutil.Process]:
    found = []
    for proc in _descendants(pid):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if "locust" in cmdline and "--worker" in cmdline:
            found.append(proc)
    return found


def _users_connected(worker: psutil.Process) -> bool:
    try:
        conns = worker.net_connections(kind="tcp")
    except psutil.Error:
        return False
    return sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED) > 1  # + the master


# --- the generated locustfile ----------------------------------------------------------------


def test_locustfile_is_python_and_carries_the_request() -> None:
    text = locust_engine.locustfile(
        locust_engine.Request(path="/items/", method="POST", body='{"a": 1}', headers={"X": "y"}),
        concurrency=8,
        timeout_s=2.5,
        rate_rps=400.0,
    )
    compile(text, "locustfile.py", "exec")
    assert "PATH = '/items/'" in text
    assert "METHOD = 'POST'" in text
    assert "HEADERS = {'X': 'y'}" in text
    assert "RATE_PER_USER = 50.0" in text  # 400/s over 8 users
    closed = locust_engine.locustfile(locust_engine.Request(), concurrency=8, timeout_s=2.5)
    assert "RATE_PER_USER = None" in closed


def test_follow_reads_whole_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    follow = locust_engine._Follow(path)
    follow.read()  # no file yet: nothing, no error
    spawned = {"event": "spawned", "t": 100.0, "users": 4}
    batch = {
        "event": "samples",
        "worker": "w1",
        "pid": 7,
        "host": "h",
        "samples": [[101.0, 2.5, None, None], [101.5, 3.0, None, "http_500"]],
    }
    whole = json.dumps(spawned) + "\n" + json.dumps(batch) + "\n"
    path.write_text(whole + '{"event": "work')  # the master is mid-line
    follow.read()
    assert follow.spawned_at == 100.0
    assert follow.by_worker["w1"]["requests"] == 2
    assert len(follow.samples) == 2
    assert follow.errors == 1  # the http_500
    with path.open("a") as f:
        f.write('ers", "t": 102.0, "states": {"w1": "missing"}}\n')
    follow.read()
    assert follow.lost == {"w1": 102.0}


def test_missing_locust_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "locust" else real(name, *a),
    )
    with pytest.raises(ScenarioError, match=r"pip install 'connbench\[locust\]'"):
        scenario.build(None, {"engine": "locust"})
    outcome = CliRunner().invoke(app, ["run", "--engine", "locust", "--duration", "1"])
    assert outcome.exit_code == 2
    assert "connbench[locust]" in outcome.output
    assert "Traceback" not in outcome.output


def test_worker_needs_host_and_port() -> None:
    outcome = CliRunner().invoke(app, ["worker", "--master", "nohost"])
    assert outcome.exit_code == 2
    assert "HOST:PORT" in outcome.output


# --- real runs ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_two_local_workers_give_full_results(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = run_cli(
        "run", "--strategy", "pool,connect", "--engine", "locust", "--locust-workers", "2",
        "--duration", "2", "--warmup", "1", "--no-charts", "-o", str(out),
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    saved = results.load(out)
    assert saved.environment.packages["locust"] == locust_engine.version()
    by_name = {r.strategy: r for r in saved.results}
    for name in ("pool", "connect"):
        run = by_name[name]
        assert run.status == "ok"
        assert run.requests is not None and run.requests.ok > 0
        assert run.integrity is not None and run.integrity.ok  # rows = 2xx over the whole run
        assert run.server is not None
        assert (run.server.connections_peak or 0) >= 1  # the sampler watched the same window
        assert run.generator is not None and run.generator.engine == "locust"
        locust = run.generator.locust
        assert locust is not None and locust.local_workers == 2
        assert len(locust.workers) == 2
        assert all(w.requests > 0 and w.local for w in locust.workers)
        assert locust.workers_lost == 0
    pool, connect = by_name["pool"], by_name["connect"]
    assert pool.server is not None and (pool.server.connections_peak or 0) <= 4
    assert connect.server is not None and connect.integrity is not None
    assert connect.server.sessions_opened == connect.integrity.rows_inserted


@pytest.mark.integration
def test_a_worker_killed_mid_run_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        connbench_cmd(
            "run", "--strategy", "pool", "--engine", "locust", "--locust-workers", "2",
            "--duration", "6", "--warmup", "1", "--no-charts", "-o", str(out),
        ),
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: len(_locust_workers(proc.pid)) == 2, 60, proc)
        # Load under way: each worker holds its users' connections besides the master's, and
        # has had time to ship a report or two (every second).
        _wait_for(lambda: all(_users_connected(w) for w in _locust_workers(proc.pid)), 60, proc)
        time.sleep(2.5)
        everything = _descendants(proc.pid)
        victim = _locust_workers(proc.pid)[0]
        victim.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert _all_gone(everything), "a Locust process outlived the run"
    (run,) = results.load(out).results
    assert run.status == "ok"
    assert run.generator is not None and run.generator.locust is not None
    locust = run.generator.locust
    assert locust.workers_lost == 1
    (lost,) = [w for w in locust.workers if w.lost_after_s is not None]
    assert lost.pid == victim.pid
    assert lost.exit_code == -signal.SIGKILL
    assert lost.requests > 0
    (survivor,) = [w for w in locust.workers if w.lost_after_s is None]
    assert survivor.requests > lost.requests  # it went on to the end
    assert any("Locust worker" in w and "went on" in w for w in run.warnings)
    assert "Locust worker" in stdout + stderr
