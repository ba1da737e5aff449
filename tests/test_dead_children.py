"""The fault suite: kill -9 each child connbench runs (the app, the postmaster, PgBouncer) in the
middle of a measurement, on the real thing, and expect what the README promises: that variant
saved as failed with the cause and its numbers so far, the next variant run on a server started
again, exit 1 with one line, nothing left running and no temp directory left behind.

Short runs (3 s windows): the kill lands about a second into the first variant's window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from connbench.infra import pgbouncer, postgres
from connbench.model import results

from .conftest import ROOT, connbench_cmd
from .processes import (
    all_gone,
    connected_to,
    descendants,
    postmasters,
    temp_dirs_made_by,
    wait_for,
)

RUN = ["--duration", "3", "--warmup", "0.2", "--concurrency", "4", "--pool-min", "2"]
RUN += ["--pool-max", "2", "--no-charts"]


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        connbench_cmd("run", "--strategy", "pool,connect", *RUN, "-o", str(out), *args),
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return proc, out


def _child(pid: int, name_part: str) -> psutil.Process:
    """The live descendant of ``pid`` with ``name_part`` in its command line (the first one)."""
    for proc in descendants(pid):
        try:
            if name_part in " ".join(proc.cmdline()):
                return proc
        except psutil.Error:
            continue
    raise AssertionError(f"no {name_part!r} under {pid}")


def _finish(proc: subprocess.Popen[str], children: list[psutil.Process]) -> tuple[str, str]:
    run = psutil.Process(proc.pid)  # before it is reaped: its PID may be another's after
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "Traceback" not in stdout + stderr
    wait_for(lambda: all_gone(children), 10)
    assert not temp_dirs_made_by(run, Path("/tmp"), Path(os.environ.get("TMPDIR", "/tmp")))
    return stdout, stderr


def _one_failure_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("connbench: ")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("connbench: 1 of 2 runs failed; pool "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("victim", "name_part", "topology"),
    [
        ("the app's uvicorn", "uvicorn connbench.apps.pool", "direct"),
        ("PostgreSQL's postmaster", "postgres -D", "direct"),
        ("PgBouncer", "pgbouncer.ini", "pgbouncer-transaction"),
    ],
)
@pytest.mark.integration
def test_a_child_killed_mid_run_fails_its_variant_and_the_run_goes_on(
    tmp_path: Path, victim: str, name_part: str, topology: str
) -> None:
    if topology != "direct" and pgbouncer.unavailable(topology):
        pytest.skip(pgbouncer.unavailable(topology) or "")
    proc, out = _start(tmp_path, "--topology", topology)
    wait_for(lambda: connected_to("connbench.apps.pool", proc.pid), 90, proc)
    time.sleep(1.0)  # a second of the window measured
    children = descendants(proc.pid)
    if name_part == "postgres -D":
        (postmaster,) = postmasters(proc.pid)
        target = psutil.Process(postmaster)
    else:
        target = _child(proc.pid, name_part)
    target.send_signal(signal.SIGKILL)
    stdout, stderr = _finish(proc, children)

    assert proc.returncode == 1, stderr
    line = _one_failure_line(stderr)
    assert victim in line and "SIGKILL" in line, line
    saved = results.load(out)
    killed, after = saved.results
    assert killed.status == "failed"
    assert killed.failure is not None and victim in killed.failure
    assert f"(pid {target.pid}) was killed by SIGKILL" in killed.failure
    assert killed.requests is not None and killed.requests.ok > 0  # kept what was measured
    assert killed.timeseries is not None and killed.timeseries.ok
    # The next variant ran: on a server started again, through a new PgBouncer.
    assert after.status == "ok", after.failure
    assert after.requests is not None and after.requests.ok > 0
    assert saved.interrupted is False


@pytest.mark.integration
def test_an_external_server_that_dies_stops_the_run_cleanly(tmp_path: Path) -> None:
    # A server of our own, handed to connbench as a DSN: connbench cannot start it again.
    with postgres.start(postgres.parse_backend("embedded")) as external:
        proc, out = _start(tmp_path, "--postgres", external.dsn)
        wait_for(lambda: connected_to("connbench.apps.pool", proc.pid), 90, proc)
        time.sleep(1.0)
        children = descendants(proc.pid)
        assert external.server_pid is not None
        os.kill(external.server_pid, signal.SIGKILL)
        stdout, stderr = _finish(proc, children)
    assert proc.returncode == 1, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("connbench: ")]
    assert len(lines) == 1 and "no longer answers" in lines[0], stderr
    assert external.dsn not in stdout + stderr  # the DSN's password stays out of it
    saved = results.load(out)
    (killed,) = saved.results  # connect never started
    assert killed.status == "failed"
    assert killed.failure and "PostgreSQL" in killed.failure
    assert killed.requests is not None and killed.requests.total > 0
