"""The built-in strategies' apps are forked from a fork server that imported their libraries
once (see :mod:`connbench.infra.forkserver`): on the real thing, a real PostgreSQL and real
uvicorn apps over HTTP. What is checked is what a fork could get wrong that a cold start
cannot: whose child the app is and what ``ps`` calls it, what it inherits (the environment of
an earlier variant, the server's channel), how its end is reported, what is left when the
server is killed, and who can reach the server.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from psycopg.conninfo import conninfo_to_dict

from connbench.apps import INSTRUMENT_ENV, STATS_PATH, STRATEGIES
from connbench.infra import appserver, forkserver, postgres, procs
from connbench.model import results

from .conftest import ROOT, WIDE
from .processes import Connbench, all_gone, connected_to, descendants, temp_dirs_made_by, wait_for

pytestmark = pytest.mark.integration
QUICK = ["--warmup", "0.2", "--concurrency", "4", "--pool-min", "2", "--pool-max", "2"]
QUICK += ["--no-charts"]


def _password(pg: postgres.Postgres) -> bytes:
    return str(conninfo_to_dict(pg.dsn)["password"]).encode()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of ``pid``'s sockets, as /proc/net/unix names them."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.add(link[len("socket:[") : -1])
    return found


@contextmanager
def _server(tmp_path: Path) -> Iterator[tuple[forkserver.ForkServer, list[str]]]:
    warnings: list[str] = []
    with forkserver.started(tmp_path / "forkserver.log", warnings.append) as server:
        yield server, warnings
    assert server.pid is not None and not psutil.pid_exists(server.pid)  # stopped and reaped


def _app(
    stack: ExitStack, pg: postgres.Postgres, tmp_path: Path, server: forkserver.ForkServer
) -> appserver.App:
    config = appserver.AppConfig(pool_min=1, pool_max=2, instrument=True)
    log = tmp_path / f"app-{len(list(tmp_path.iterdir()))}.log"
    return stack.enter_context(
        appserver.start(STRATEGIES["pool"], pg.dsn, pg.table, config, log, forks=server)
    )


def test_a_strategy_app_is_forked_reads_as_uvicorn_and_holds_nothing_of_the_server(
    pg: postgres.Postgres, tmp_path: Path
) -> None:
    with _server(tmp_path) as (server, warnings), ExitStack() as stack:
        app = _app(stack, pg, tmp_path, server)
        assert isinstance(app.proc, forkserver.Forked)
        me = psutil.Process(app.pid)
        assert me.ppid() == server.pid  # forked by the server, not started by us
        assert me.pid == os.getsid(me.pid)  # a session of its own: stopped as one group
        cmdline = " ".join(me.cmdline())
        assert "uvicorn connbench.apps.pool:app --host 127.0.0.1 --port" in cmdline
        assert httpx.get(app.visit_url, timeout=10).status_code == 200
        # The password reaches the app through the channel only: in no command line, and not
        # in the environment of the server, which every app of the run is forked from.
        password = _password(pg)
        for pid in (app.pid, server.pid):
            assert password not in _read(f"/proc/{pid}/cmdline")
        assert server.pid is not None
        assert password not in _read(f"/proc/{server.pid}/environ")
        # The server's channel stays in the server: an app cannot ask it to fork anything.
        assert not _socket_inodes(server.pid) & _socket_inodes(app.pid)
        assert sorted(int(fd) for fd in os.listdir(f"/proc/{app.pid}/fd"))[:3] == [0, 1, 2]
        assert os.readlink(f"/proc/{app.pid}/fd/0") == os.devnull
    assert warnings == []


def test_what_one_variant_is_given_the_next_is_not(pg: postgres.Postgres, tmp_path: Path) -> None:
    """Each app is forked from the clean server, never from the app before it: a variable
    the first was given (timing switched on) is not there for the second."""
    with _server(tmp_path) as (server, warnings):
        seen: list[int] = []
        for extra in ({INSTRUMENT_ENV: "1"}, {}):
            env = {**appserver.database_env(pg.dsn), **extra}
            log = tmp_path / f"app-{len(seen)}.log"
            with appserver.serve(
                lambda port: appserver.uvicorn_argv(
                    STRATEGIES["pool"].app_path,
                    port,
                    1,
                    ["-m", "connbench.infra.ready_uvicorn", STRATEGIES["pool"].app_path],
                ),
                procs.child_env(env),
                "uvicorn (test)",
                log,
                lambda url, proc: None,
                ready_signal=True,
                spawner=server,
            ) as (url, proc):
                assert psutil.Process(proc.pid).ppid() == server.pid
                seen.append(httpx.get(f"{url}{STATS_PATH}", timeout=10).status_code)
        assert seen == [200, 404]
    assert warnings == []


def test_a_forked_app_that_is_killed_is_reported_with_its_signal(
    pg: postgres.Postgres, tmp_path: Path
) -> None:
    with _server(tmp_path) as (server, warnings), ExitStack() as stack:
        app = _app(stack, pg, tmp_path, server)
        assert app.exit_code() is None
        os.kill(app.pid, signal.SIGKILL)
        assert app.proc.wait(timeout=30) == -signal.SIGKILL
        assert app.exit_code() == -signal.SIGKILL
        app2 = _app(stack, pg, tmp_path, server)  # the server goes on serving
        os.kill(app2.pid, signal.SIGTERM)  # uvicorn stops, then re-raises the signal
        assert app2.proc.wait(timeout=30) == -signal.SIGTERM
    assert warnings == []


def test_the_channel_is_no_file_and_has_no_name(pg: postgres.Postgres, tmp_path: Path) -> None:
    """The server is reached through a socketpair it inherited: no path in the filesystem and
    no abstract name, so no other process (another local user's) can connect to it."""
    with _server(tmp_path) as (server, _), ExitStack() as stack:
        _app(stack, pg, tmp_path, server)
        assert server.pid is not None
        inodes = _socket_inodes(server.pid)
        assert inodes  # its end of the channel
        named = {}
        for line in _read("/proc/net/unix").decode().splitlines()[1:]:
            fields = line.split()
            if fields[6] in inodes and len(fields) > 7:
                named[fields[6]] = fields[7]
        assert named == {}
        # Nor is anything of it in the filesystem where the run keeps its files.
        assert not [p for p in tmp_path.rglob("*") if p.is_socket()]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **WIDE, "TMPDIR": str(tmp_path)}


def _uvicorns(
    pid: int, seen: dict[int, tuple[int, str]], found: list[psutil.Process] | None = None
) -> None:
    """Note each of ``pid``'s descendants (the apps, the fork server): its parent, command,
    the last seen (between its fork and its exec a child shows its parent's command line:
    the fork server, spawned first thing, was once seen only so); in ``found``, the process
    itself (its PID alone may be another's once it has ended)."""
    for proc in descendants(pid):
        try:
            cmdline = " ".join(proc.cmdline())
            if cmdline:
                if found is not None and proc.pid not in seen:
                    found.append(proc)
                seen[proc.pid] = (proc.ppid(), cmdline)
        except psutil.Error:
            continue


def test_a_run_forks_its_strategy_app_and_starts_an_own_app_cold(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    seen: dict[int, tuple[int, str]] = {}
    found: list[psutil.Process] = []
    with Connbench(
        "run", "--strategy", "pool", "--app", "mine=examples.myapp.main:app",
        "--duration", "1.5", *QUICK, "--count-sql", "SELECT count(*) FROM items",
        "-o", str(out), cwd=ROOT, env=_env(tmp_path),
    ) as run:  # fmt: skip
        while run.poll() is None:
            _uvicorns(run.pid, seen, found)
            time.sleep(0.05)
        assert run.wait(60) == 0, run.said()
    servers = [pid for pid, (_, cmd) in seen.items() if "connbench.infra.forkserver" in cmd]
    assert len(servers) == 1, seen
    pool = [ppid for ppid, cmd in seen.values() if "uvicorn connbench.apps.pool:app" in cmd]
    mine = [ppid for ppid, cmd in seen.values() if "examples.myapp.main:app" in cmd]
    assert pool == servers, seen  # forked from the fork server
    assert mine and set(mine) == {run.pid}, seen  # a user's app runs as it really does
    assert all(r.status == "ok" for r in results.load(out).results)
    assert all_gone(found)
    assert not temp_dirs_made_by(run.process, tmp_path)


def test_a_killed_fork_server_fails_only_its_app_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with Connbench(
        "run", "--strategy", "pool,connect", "--duration", "3", *QUICK, "-o", str(out),
        cwd=ROOT, env=_env(tmp_path),
    ) as run:  # fmt: skip
        wait_for(lambda: connected_to("connbench.apps.pool", run.pid), 90, run)
        time.sleep(1.0)  # a second of the window measured
        children = descendants(run.pid)
        (server,) = [p for p in children if "connbench.infra.forkserver" in " ".join(p.cmdline())]
        (app,) = [p for p in children if "uvicorn connbench.apps.pool" in " ".join(p.cmdline())]
        server.send_signal(signal.SIGKILL)
        seen: dict[int, tuple[int, str]] = {}
        while run.poll() is None:
            _uvicorns(run.pid, seen)
            time.sleep(0.05)
        assert run.wait(120) == 1, run.said()
    said = " ".join((run.stdout + run.stderr).split())
    assert "Traceback" not in said
    assert f"connbench's fork server (pid {server.pid}) was killed by SIGKILL" in said
    killed, after = results.load(out).results
    assert killed.status == "failed" and f"(pid {app.pid}) was killed by SIGKILL" in str(
        killed.failure
    )
    assert killed.requests is not None and killed.requests.ok > 0  # kept what was measured
    assert after.status == "ok", after.failure  # the next app started cold, and ran
    connect = [ppid for ppid, cmd in seen.values() if "uvicorn connbench.apps.connect" in cmd]
    assert connect and set(connect) == {run.pid}, seen
    wait_for(lambda: all_gone(children), 10)
    assert not temp_dirs_made_by(run.process, tmp_path)


def test_a_killed_run_takes_its_fork_server_and_app_along(tmp_path: Path) -> None:
    with Connbench(
        "run", "--strategy", "pool", "--duration", "30", *QUICK, "-o", str(tmp_path / "r.json"),
        cwd=ROOT, env=_env(tmp_path),
    ) as run:  # fmt: skip
        wait_for(lambda: connected_to("connbench.apps.pool", run.pid), 90, run)
        children = descendants(run.pid)
        assert any("connbench.infra.forkserver" in " ".join(p.cmdline()) for p in children)
        os.kill(run.pid, signal.SIGKILL)  # connbench alone, as a crash: no cleanup of its own
        run.wait(30)
        # The app's parent is the fork server, whose parent is connbench: each dies with its
        # parent (the app after uvicorn's graceful stop, 5 s at most).
        wait_for(lambda: all_gone(children), 30, what="the run's processes gone")


def test_a_server_that_died_before_any_app_lets_them_start_cold(
    pg: postgres.Postgres, tmp_path: Path
) -> None:
    with _server(tmp_path) as (server, warnings), ExitStack() as stack:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        app = _app(stack, pg, tmp_path, server)
        assert not isinstance(app.proc, forkserver.Forked)  # a Popen: started cold, as before
        assert psutil.Process(app.pid).ppid() == os.getpid()
        assert httpx.get(app.visit_url, timeout=10).status_code == 200
        _app(stack, pg, tmp_path, server)  # said once, not for every app
    assert warnings == [
        f"connbench's fork server (pid {server.pid}) was killed by SIGKILL; the next apps are "
        "started cold"
    ]


def test_a_fork_server_started_before_the_scenario_is_read_goes_when_not_needed(
    tmp_path: Path,
) -> None:
    # The command line starts the fork server before it reads the scenario (its imports are
    # the longest step before the first app): bad input, or a run of own apps only, stops
    # it then, and leaves neither it nor its temp dir.
    with Connbench(
        "run", "--strategy", "pool", "--duration", "1x", cwd=ROOT, env=_env(tmp_path)
    ) as bad:
        assert bad.wait(60) == 2, bad.said()
    assert not temp_dirs_made_by(bad.process, tmp_path)
    seen: dict[int, tuple[int, str]] = {}
    found: list[psutil.Process] = []
    out = tmp_path / "r.json"
    with Connbench(
        "run", "--app", "mine=examples.myapp.main:app", "--duration", "1", *QUICK,
        "--count-sql", "SELECT count(*) FROM items", "-o", str(out), cwd=ROOT, env=_env(tmp_path),
    ) as run:  # fmt: skip
        wait_for(lambda: connected_to("examples.myapp.main", run.pid), 60, run)
        _uvicorns(run.pid, seen, found)
        assert run.wait(60) == 0, run.said()
    running = [cmd for _, cmd in seen.values() if "connbench.infra.forkserver" in cmd]
    assert not running, f"a fork server ran beside the own app: {seen}"
    assert all_gone(found)
    assert not temp_dirs_made_by(run.process, tmp_path)
