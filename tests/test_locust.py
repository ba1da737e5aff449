"""The Locust engine: a real master and real workers on loopback, against real apps."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from connbench.cli import app
from connbench.infra import procs
from connbench.measure import locust_engine
from connbench.measure.load import LoadConfig, _Window
from connbench.model import results, scenario
from connbench.model.errors import ProcessError, ScenarioError
from tests.conftest import ROOT, connbench_cmd, docs_text, run_cli
from tests.processes import all_gone, descendants, wait_for

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="Locust is not installed (make test does)"
)


def _locust_workers(pid: int) -> list[psutil.Process]:
    found = []
    for proc in descendants(pid):
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


def test_locustfile_is_python_and_holds_nothing_of_the_request() -> None:
    text = locust_engine.locustfile(concurrency=8, timeout_s=2.5, rate_rps=400.0)
    compile(text, "locustfile.py", "exec")
    assert "RATE_PER_USER = 50.0" in text  # 400/s over 8 users
    closed = locust_engine.locustfile(concurrency=8, timeout_s=2.5)
    assert "RATE_PER_USER = None" in closed
    # Nothing of the request is in it, whatever it is: any worker can download the file.
    assert "Bearer" not in text and "/visit/" not in text


def _report(samples: object, pid: object = 7) -> dict[str, object]:
    return {
        "event": "samples",
        "worker": "w1",
        "data": {"pid": pid, "host": "h", "samples": samples},
    }


def test_follow_reads_whole_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    follow = locust_engine._Follow(path)
    follow.read()  # no file yet: nothing, no error
    spawned = {"event": "spawned", "t": 100.0, "users": 4}
    now = time.time()
    batch = _report([[now, 2.5, None, None], [now + 0.5, 3.0, None, "http_500"]])
    whole = json.dumps(spawned) + "\n" + json.dumps(batch) + "\n"
    path.write_text(whole + '{"event": "work')  # the master is mid-line
    follow.read()
    assert follow.spawned_at == 100.0
    assert follow.by_worker["w1"]["requests"] == 2
    assert follow.received == 2
    assert follow.errors == 1  # the http_500
    with path.open("a") as f:
        f.write('ers", "t": 102.0, "states": {"w1": "missing"}}\n')
    follow.read()
    assert follow.lost == {"w1": 102.0}


@pytest.mark.parametrize(
    ("samples", "pid", "says"),
    [
        ([["x", 1.0, None, None]], 7, "not a number"),
        ([[1e300, 1.0, None, None]], 7, "from ours"),  # would size the buckets to 1e300
        ([["NOW", float("nan"), None, None]], 7, "nan"),
        ([["NOW", -1.0, None, None]], 7, "response time"),
        ([["NOW", 1e12, None, None]], 7, "response time"),
        ([["NOW", 1.0, None]], 7, "not [time"),
        ([["NOW", 1.0, None, "\x1b]0;pwned\x07"]], 7, "error kind"),
        ([["NOW", 1.0, None, ["a"]]], 7, "error kind"),
        ("many", 7, "not a list"),
        ([], "7", "pid is str"),
        ([["NOW", True, None, None]], 7, "not a number"),
    ],
)
def test_a_malformed_report_is_the_workers_fault(
    tmp_path: Path, samples: object, pid: object, says: str
) -> None:
    now = time.time()
    if isinstance(samples, list):
        samples = [[now if v == "NOW" else v for v in s] for s in samples]
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(_report(samples, pid)) + "\n")
    with pytest.raises(ProcessError, match=r"Locust worker w1 .*malformed") as caught:
        locust_engine._Follow(path).read()
    assert says in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_samples_are_folded_as_they_come_not_kept(tmp_path: Path) -> None:
    """Flat memory: what waits to be folded is the last few seconds, whatever the run's length."""
    path = tmp_path / "samples.jsonl"
    follow = locust_engine._Follow(path)
    config = LoadConfig(concurrency=1, duration_s=100.0, warmup_s=0.0, timeout_s=1.0)
    window = _Window(config, asyncio.Event())
    window.clock = time.time_ns
    t0 = time.time() - 50
    window.t0 = window.start_ns = int(t0 * 1e9)
    window.end_ns = window.start_ns + int(100e9)
    follow.window = window
    with path.open("w") as f:
        for second in range(50):  # 50 s of samples, 100 a second, one report a second
            batch = [[t0 + second + i / 100, 1.0, None, None] for i in range(100)]
            f.write(json.dumps(_report(batch)) + "\n")
    follow.read()
    follow.fold(time.time())
    assert len(follow.pending) <= 4 * 100  # the hold: ~3 s of samples
    assert window.window_ok + len(follow.pending) == 5000
    late = _report([[t0 + 1.5, 2.0, None, None]])  # a worker's report that came late
    with path.open("a") as f:
        f.write(json.dumps(late) + "\n")
    follow.read()
    follow.fold(time.time(), final=True)
    assert not follow.pending
    assert window.window_ok == 5001 and window.sent == 5001


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


def test_worker_needs_host_and_port(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x" * 32)
    token.chmod(0o600)
    outcome = CliRunner().invoke(app, ["worker", "--master", "nohost", "--token-file", str(token)])
    assert outcome.exit_code == 2
    assert "HOST:PORT" in outcome.output


def test_worker_needs_a_private_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x" * 32)
    token.chmod(0o644)
    for argv, says in [
        (["--master", "h:1"], "--token-file"),
        (["--master", "h:1", "--token-file", str(token)], "chmod 600"),
        (["--master", "h:1", "--token-file", str(tmp_path / "none")], "cannot read"),
    ]:
        outcome = CliRunner().invoke(app, ["worker", *argv])
        assert outcome.exit_code == 2, outcome.output
        assert says in outcome.output
        assert "Traceback" not in outcome.output


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
        wait_for(lambda: len(_locust_workers(proc.pid)) == 2, 60, proc)
        # Load under way: each worker holds its users' connections besides the master's, and
        # has had time to ship a report or two (every second).
        wait_for(lambda: all(_users_connected(w) for w in _locust_workers(proc.pid)), 60, proc)
        time.sleep(2.5)
        everything = descendants(proc.pid)
        victim = _locust_workers(proc.pid)[0]
        victim.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert all_gone(everything), "a Locust process outlived the run"
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


ROGUE = """
import os, socket, time
import locust.runners
from locust import User, constant, events, task

socket.gethostname = lambda: "rogue-host"  # its ZeroMQ identity: rogue-host_<uuid>
locust.runners.WORKER_REPORT_INTERVAL = 0.5


@events.report_to_master.add_listener
def _forge(client_id, data, **kwargs):
    now = time.time()
    fake = [[now - i * 1e-5, 0.01, None, None] for i in range(20000)]  # 40,000 a second
    data["connbench"] = {"pid": os.getpid(), "host": "rogue-host", "samples": fake}
    with open(os.environ["ROGUE_MARK"], "a") as f:
        f.write("forged\\n")


class Idle(User):
    wait_time = constant(1)

    @task
    def nothing(self):
        pass
"""


THIEF = """
import sys
import locust
from locust.rpc import Message, rpc

client = rpc.Client("127.0.0.1", int(sys.argv[1]), "thief_1")
client.send(Message("locustfile", {"version": locust.__version__}, "thief_1"))
sys.stdout.write(client.recv().data["locustfiles"][0]["contents"])
"""


GARBAGE = """
import sys, time
import msgpack, zmq

socket = zmq.Context().socket(zmq.DEALER)
socket.setsockopt(zmq.IDENTITY, sys.argv[2].encode("latin-1"))
socket.connect("tcp://127.0.0.1:" + sys.argv[1])
while True:  # until the test stops it
    forged = [[time.time(), 0.01, None, None]] * 1000
    for frame in (
        b"\\xc1",  # not msgpack
        msgpack.dumps(5),  # not a message
        msgpack.dumps((1, 2, 3, 4, 5)),  # the wrong shape
        msgpack.dumps(("stats", {"connbench": {"samples": forged}}, sys.argv[2])),
    ):
        socket.send(frame)
    time.sleep(0.2)
"""


@pytest.mark.integration
def test_a_worker_without_the_token_is_refused_and_named(tmp_path: Path) -> None:
    """Another local user downloads the locustfile from the master and joins as a plain Locust
    worker shipping fake samples: the file holds nothing of the request, none of her samples
    is counted, and the result names her worker as refused."""
    out, mark = tmp_path / "r.json", tmp_path / "mark"
    (tmp_path / "rogue.py").write_text(ROGUE)
    (tmp_path / "thief.py").write_text(THIEF)
    (tmp_path / "garbage.py").write_text(GARBAGE)
    port = procs.free_port()
    run = subprocess.Popen(
        connbench_cmd(
            "run", "--app", "mine=examples.myapp.main:app", "--path", "/items/",
            "--method", "POST", "--body", '{"name": "b0dy-XYZ"}',
            "--header", "Authorization: Bearer t0ken-XYZ",
            "--count-sql", "SELECT count(*) FROM items",
            "--engine", "locust", "--locust-workers", "1", "--locust-port", str(port),
            "--duration", "4", "--warmup", "1", "--no-charts", "-o", str(out),
        ),
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    hostile_env = {k: v for k, v in os.environ.items() if not k.startswith("CONNBENCH")}
    hostile: list[subprocess.Popen[bytes]] = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "thief.py"), str(port)],
            env=hostile_env, stdout=subprocess.PIPE, start_new_session=True,
        ),
        subprocess.Popen(
            [
                sys.executable, "-m", "locust", "-f", str(tmp_path / "rogue.py"), "--worker",
                "--skip-log-setup", "--master-host", "127.0.0.1", "--master-port", str(port),
            ],
            env=hostile_env | {"ROGUE_MARK": str(mark)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ),
        *(
            subprocess.Popen(
                [sys.executable, str(tmp_path / "garbage.py"), str(port), identity],
                env=hostile_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            # Not UTF-8 (an escape in it); then Markdown and HTML in a readable one.
            for identity in ("garbage_1", "\xff\x1b]0;x\x07", "garbage_<img src=x>**")
        ),
    ]  # fmt: skip
    try:
        stdout, stderr = run.communicate(timeout=180)
        stolen = hostile[0].communicate(timeout=10)[0].decode()
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        for proc in hostile:
            procs.stop_group(proc, signal.SIGTERM, 5.0)
    # The file any worker can download holds nothing of the request.
    assert "class Visitor" in stolen
    for secret in ("t0ken-XYZ", "b0dy-XYZ", "/items/"):
        assert secret not in stolen
    assert run.returncode == 0, stderr + stdout
    assert "Traceback" not in stderr
    (result,) = results.load(out).results
    assert result.status == "ok"
    # Only the run's own samples: 40,000 a second of 0.01 ms were forged.
    assert result.throughput_rps is not None and result.throughput_rps < 5000
    assert result.latency_ms is not None and result.latency_ms.p50 > 0.5
    assert result.integrity is not None and result.integrity.ok  # the body went, privately
    locust = result.generator.locust if result.generator else None
    assert locust is not None
    (own,) = locust.workers
    assert own.local and own.requests > 0 and not own.id.startswith("rogue-host")
    assert result.requests is not None and result.requests.total <= own.requests
    by_id = {refused.id: refused for refused in locust.refused}
    rogue_id = next(id for id in by_id if id.startswith("rogue-host_"))
    # Unreadable messages are dropped, unnamed (the escape's sender).
    assert by_id.keys() == {rogue_id, "garbage_1", "garbage_?img?src?x???"}
    assert by_id[rogue_id].why == "no token" and by_id[rogue_id].messages >= 1
    assert by_id["garbage_1"].samples >= 1000
    assert any("rogue-host_" in w and "refused" in w for w in result.warnings)
    assert "rogue-host_" in stdout + stderr
    assert "\x1b" not in stdout + stderr


# --- the token file, the bind warning, connbench worker ------------------------------------------


def test_a_token_file_is_made_private_or_refused(tmp_path: Path) -> None:
    made = tmp_path / "token"
    token = locust_engine.token_file(made)
    assert made.stat().st_mode & 0o777 == 0o600
    assert locust_engine.token_file(made) == token  # read again, not replaced
    assert len(token) >= locust_engine.TOKEN_MIN_CHARS
    made.chmod(0o640)
    with pytest.raises(ValueError, match="chmod 600"):
        locust_engine.read_token(made)
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(ValueError, match="cannot read"):
        locust_engine.token_file(link)  # neither followed to write nor to read
    if os.getuid() == 0:  # root can give it away
        made.chmod(0o600)
        os.chown(made, 65534, -1)  # nobody's: whoever owns it could change it
        with pytest.raises(ValueError, match="belongs to uid 65534"):
            locust_engine.read_token(made)
    short = tmp_path / "short"
    short.write_text("abc")
    short.chmod(0o600)
    with pytest.raises(ValueError, match="no usable token"):
        locust_engine.read_token(short)


def test_a_master_beyond_loopback_is_announced_and_remote_workers_need_a_token(
    tmp_path: Path,
) -> None:
    base = ["run", "--engine", "locust", "--locust-workers", "0", "--expect-workers", "1"]
    missing = CliRunner().invoke(app, base)
    assert missing.exit_code == 2
    assert "--expect-workers needs --locust-token-file" in missing.output
    shared = tmp_path / "token"
    shared.write_text("x" * 32)
    shared.chmod(0o644)  # others could read it, and join
    outcome = CliRunner().invoke(
        app, [*base, "--locust-bind", "0.0.0.0", "--locust-token-file", str(shared)]
    )
    assert outcome.exit_code == 2
    flat = " ".join(outcome.output.split())
    assert "listens on 0.0.0.0, beyond loopback" in flat
    assert "only workers holding the run's token are counted" in flat
    assert "--locust-token-file: the token file" in flat and "chmod 600" in flat
    assert "Traceback" not in outcome.output
    assert locust_engine.is_loopback("127.0.0.1") and locust_engine.is_loopback("::1")
    assert locust_engine.is_loopback("localhost")
    assert not locust_engine.is_loopback("0.0.0.0") and not locust_engine.is_loopback("*")
    assert not locust_engine.is_loopback("10.0.0.5")


ENV_DUMP = """
import json, os, sys
from locust import User, constant, task

if "--worker" in sys.argv:
    with open({path!r}, "w") as f:
        json.dump(dict(os.environ), f)


class Idle(User):
    wait_time = constant(1)

    @task
    def nothing(self):
        pass
"""


@pytest.mark.integration
def test_connbench_worker_gives_the_masters_code_a_short_environment(tmp_path: Path) -> None:
    """A plain Locust master serves a file that dumps its worker's environment: the caller's
    secrets are not in it."""
    dump = tmp_path / "env.json"
    served = tmp_path / "served.py"
    served.write_text(ENV_DUMP.format(path=str(dump)))
    token = tmp_path / "token"
    locust_engine.token_file(token)
    port = procs.free_port()
    master = subprocess.Popen(
        [
            sys.executable, "-m", "locust", "-f", str(served), "--master", "--headless",
            "--skip-log-setup", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
            "--expect-workers", "1", "--users", "1", "--spawn-rate", "1", "--run-time", "2s",
            "--host", "http://127.0.0.1:9",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    secrets_env = {"PGPASSWORD": "pg-s3cret", "AWS_SECRET_ACCESS_KEY": "aws-s3cret"}
    try:
        worker = run_cli(
            "worker", "--master", f"127.0.0.1:{port}", "--token-file", str(token),
            cwd=tmp_path, env_extra=secrets_env, timeout=120,
        )  # fmt: skip
    finally:
        procs.stop_group(master, signal.SIGTERM, 5.0)
    seen = json.loads(dump.read_text())
    assert "PGPASSWORD" not in seen and not any(k.startswith("AWS_") for k in seen)
    assert "pg-s3cret" not in dump.read_text() and "aws-s3cret" not in dump.read_text()
    assert seen["PATH"] == os.environ["PATH"]
    assert set(seen) - {"PWD", "LC_CTYPE", "_"} <= {
        "PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "TZ",
        locust_engine.TOKEN_ENV,
    }  # fmt: skip
    assert "Traceback" not in worker.stderr


def test_help_and_readme_say_the_worker_runs_the_masters_code() -> None:
    shown = CliRunner().invoke(app, ["worker", "--help"], env={"COLUMNS": "200"})
    flat = " ".join(shown.output.split())
    assert "run the Python code the master sends them" in flat
    assert "not yours" in flat
    readme = " ".join(docs_text().split())
    assert "the workers download the locustfile from the master and run that Python code" in readme


@pytest.mark.integration
def test_remote_workers_with_the_token_file_join(tmp_path: Path) -> None:
    """The remote path end to end: the master waits for `connbench worker --token-file`, whose
    worker downloads the locustfile and proves the token before it is counted."""
    out, token = tmp_path / "r.json", tmp_path / "token"
    locust_engine.token_file(token)
    port = procs.free_port()
    worker = subprocess.Popen(
        connbench_cmd(
            "worker", "--master", f"127.0.0.1:{port}", "--token-file", str(token),
        ),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        done = run_cli(
            "run", "--strategy", "pool", "--engine", "locust", "--locust-workers", "0",
            "--expect-workers", "1", "--locust-port", str(port), "--locust-token-file",
            str(token), "--duration", "2", "--warmup", "1", "--no-charts", "-o", str(out),
            cwd=ROOT,
        )  # fmt: skip
        worker.communicate(timeout=60)  # it exits when the run ends
    finally:
        procs.stop_group(worker, signal.SIGTERM, 5.0)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "remote workers need the token in" in " ".join(done.stdout.split())
    (result,) = results.load(out).results
    assert result.status == "ok" and result.requests is not None and result.requests.ok > 0
    locust = result.generator.locust if result.generator else None
    assert locust is not None and not locust.refused
    (remote,) = locust.workers
    assert not remote.local and remote.requests > 0


CORRUPT = """

@events.report_to_master.add_listener
def _corrupt(client_id, data, **kwargs):  # after _ship: a bug, or a hostile host with the token
    shipped = data.get("connbench")
    if shipped and shipped["samples"]:
        shipped["samples"][0] = ["soon", "fast", None, None]
"""


@pytest.mark.integration
def test_a_worker_with_the_token_sending_malformed_samples_fails_the_variant_by_name(
    tmp_path: Path,
) -> None:
    out, token, corrupt = tmp_path / "r.json", tmp_path / "token", tmp_path / "corrupt.py"
    locust_engine.token_file(token)
    corrupt.write_text(locust_engine.locustfile(concurrency=32, timeout_s=10.0) + CORRUPT)
    port = procs.free_port()
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "locust", "-f", str(corrupt), "--worker", "--skip-log-setup",
            "--master-host", "127.0.0.1", "--master-port", str(port),
        ],
        env=procs.child_env({locust_engine.TOKEN_FILE_ENV: str(token)}),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        done = run_cli(
            "run", "--strategy", "pool", "--engine", "locust", "--locust-workers", "0",
            "--expect-workers", "1", "--locust-port", str(port), "--locust-token-file",
            str(token), "--duration", "3", "--warmup", "1", "--no-charts", "-o", str(out),
            cwd=ROOT,
        )  # fmt: skip
    finally:
        procs.stop_group(worker, signal.SIGTERM, 5.0)
    assert done.returncode == 1, done.stderr + done.stdout
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert "malformed report (a sample's time is str, not a number)" in " ".join(
        done.stderr.split()
    )
    (result,) = results.load(out).results  # the variant is there, failed, with its cause
    assert result.status == "failed" and result.failure is not None
    assert "Locust worker" in result.failure and "malformed" in result.failure


@pytest.mark.integration
def test_a_worker_with_a_wrong_token_is_refused_and_says_so(tmp_path: Path) -> None:
    out, wrong = tmp_path / "r.json", tmp_path / "wrong"
    locust_engine.token_file(wrong)  # a token, not this run's
    port = procs.free_port()
    worker = subprocess.Popen(
        connbench_cmd("worker", "--master", f"127.0.0.1:{port}", "--token-file", str(wrong)),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        done = run_cli(
            "run", "--strategy", "pool", "--engine", "locust", "--locust-port", str(port),
            "--duration", "2", "--warmup", "1", "--no-charts", "-o", str(out), cwd=ROOT,
        )  # fmt: skip
        _, said = worker.communicate(timeout=60)  # it goes, rather than retry for minutes
    finally:
        procs.stop_group(worker, signal.SIGTERM, 5.0)
    assert done.returncode == 0, done.stderr + done.stdout
    assert worker.returncode == 1
    assert "the Locust master refused this worker" in said
    assert "1 of 1 workers failed" in said
    (result,) = results.load(out).results
    locust = result.generator.locust if result.generator else None
    assert locust is not None and len(locust.workers) == 1
    (refused,) = locust.refused
    assert refused.why == "wrong token"
