"""The server ``connbench run`` starts before it imports the runner (see
:func:`connbench.infra.postgres.start_early`), on a real embedded PostgreSQL. What is checked is
what an early start could get wrong that a start in the runner cannot: the postmaster is a
child of this process, started by another thread; one that is taken is the run's server,
started once; one that no run takes (bad input after it, Ctrl-C while it starts) goes with
its temp dir.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import psutil
import pytest

from connbench.infra import postgres
from connbench.model import files

from .conftest import ROOT
from .processes import Connbench, all_gone, descendants, temp_dirs_made_by, wait_for

pytestmark = pytest.mark.integration
EMBEDDED = postgres.parse_backend("embedded")


def _postmasters(pid: int) -> dict[int, psutil.Process]:
    """``pid``'s PostgreSQL servers, by PID: its children running ``postgres -D``."""
    found = {}
    for child in descendants(pid):
        try:
            if child.ppid() == pid and "postgres -D" in " ".join(child.cmdline()):
                found[child.pid] = child
        except psutil.Error:
            continue
    return found


def _temp_dir(server: psutil.Process) -> Path:
    """The temp dir holding ``server``'s data directory (``-D DIR/data``)."""
    argv = server.cmdline()
    return Path(argv[argv.index("-D") + 1]).parent


def test_an_early_server_once_taken_is_the_runs_and_goes_with_it() -> None:
    before = set(_postmasters(os.getpid()))  # the session's own server, say
    settings = {"max_connections": "37"}
    with postgres.early_closed():
        postgres.start_early("embedded", settings)
        early = postgres.take_early(EMBEDDED, settings)
        assert early is not None
        assert postgres.take_early(EMBEDDED, settings) is None  # taken once
        with early as pg:
            servers = {pid: p for pid, p in _postmasters(os.getpid()).items() if pid not in before}
            assert list(servers) == [pg.server_pid]  # one server, started on its thread
            (server,) = servers.values()
            where = _temp_dir(server)
            assert stat.S_IMODE(where.stat().st_mode) == files.PRIVATE_DIR_MODE
            assert pg.settings["max_connections"] == "37"
            assert pg.count_rows() == 0
            with pg.connect() as conn:  # the password works over TCP, as a run's apps use it
                assert conn.execute("SELECT 1").fetchone() == (1,)
    assert all_gone([server])
    assert not where.exists()


@pytest.mark.parametrize("moment", ["starting", "up"])
def test_an_early_server_no_run_takes_is_stopped_and_removed(moment: str) -> None:
    before = set(_postmasters(os.getpid()))

    def started() -> list[psutil.Process]:
        return [p for pid, p in _postmasters(os.getpid()).items() if pid not in before]

    with postgres.early_closed():
        postgres.start_early("embedded", {})
        if moment == "up":
            wait_for(lambda: bool(started()), 60, what="the early server spawned")
            time.sleep(0.5)
    servers = started()
    assert all_gone(servers)
    # Whether or not it had spawned when told to close, it was: close waits for the start.
    assert not [p for p in servers if _temp_dir(p).exists()]


def _watched(run: Connbench) -> list[psutil.Process]:
    """Every descendant of ``run`` seen while it ran (polled): what must be gone after it."""
    seen: dict[int, psutil.Process] = {}
    while run.poll() is None:
        for proc in descendants(run.pid):
            seen.setdefault(proc.pid, proc)
        time.sleep(0.02)
    return list(seen.values())


def _postmaster_among(processes: list[psutil.Process]) -> bool:
    for proc in processes:
        try:
            if "postgres -D" in " ".join(proc.cmdline()):
                return True
        except psutil.Error:
            return True  # gone by now: it was one (a postgres backend, or the postmaster)
    return False


def test_a_run_refused_after_the_early_start_leaves_nothing(tmp_path: Path) -> None:
    # A result that would replace its own scenario file is refused by the runner, once it is
    # imported: after the early start began.
    scenario = tmp_path / "s.toml"
    scenario.write_text('strategies = ["pool"]\nduration_s = 1\n')
    with Connbench(
        "run", str(scenario), "-o", str(scenario),
        cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)},
    ) as run:  # fmt: skip
        seen = _watched(run)
        assert run.wait(60) == 2, run.said()
    assert "is the scenario file" in run.stderr and "Traceback" not in run.stderr
    assert seen and _postmaster_among(seen), "no early start to check"
    assert all_gone(seen)
    assert not temp_dirs_made_by(run.process, Path("/tmp"), tmp_path)


def _default_sigint() -> None:  # in the child: whatever the test runner inherited
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_the_early_server_starts_leaves_nothing(tmp_path: Path) -> None:
    # SIGINT as a terminal gives it: under a harness started in the background (SIGINT then
    # inherited ignored) a Ctrl-C this early was lost, and the run went on to its end (fixed
    # in cli._interrupted; inherited ignored, the exit is now sometimes -2, not 130: open).
    with Connbench(
        "run", "-s", "pool", "-d", "30", "-o", str(tmp_path / "r.json"),
        cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)}, preexec_fn=_default_sigint,
    ) as run:  # fmt: skip
        # Its temp dir made: the cluster is being copied, before any variant starts.
        wait_for(
            lambda: any(p.name.startswith("connbench-pg-") for p in temp_dirs_made_by(
                run.process, Path("/tmp"), tmp_path)),
            60, run, what="the early server's temp dir",
        )  # fmt: skip
        seen = descendants(run.pid)
        run.proc.send_signal(signal.SIGINT)
        seen += _watched(run)
        code = run.wait(60)
    assert code == 130, run.said()
    assert "Traceback" not in run.stderr
    assert all_gone(seen)
    assert not temp_dirs_made_by(run.process, Path("/tmp"), tmp_path)
    assert not (tmp_path / "r.json").exists() or "interrupted" in (tmp_path / "r.json").read_text()
