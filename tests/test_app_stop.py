"""A built-in strategy's app stops as soon as its stop signal arrives, and still the way uvicorn
stops (see :func:`connbench.infra.launch.stop_promptly`): on a real PostgreSQL, the real
``pool`` app under ``connbench.infra.ready_uvicorn``, a real signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import psycopg
import pytest

from connbench.apps import STRATEGIES, TABLE_ENV
from connbench.infra import appserver, postgres, procs

from .conftest import ROOT
from .processes import wait_for

pytestmark = pytest.mark.integration
# uvicorn's tick made 30 s long: only the signal itself can end the wait in time.
RUN = (
    "import runpy, sys; from connbench.infra import launch; launch.TICK_S = 30.0; "
    "runpy.run_module('connbench.infra.ready_uvicorn', run_name='__main__')"
)


def _app_sessions(pg: postgres.Postgres) -> int:
    with pg.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid() AND application_name = %s",
            [pg.app_name],
        ).fetchone()
    return int(row[0]) if row else 0


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_the_stop_signal_ends_the_ticks_wait_and_the_pool_is_closed(
    pg: postgres.Postgres,
) -> None:
    port = procs.free_port()
    argv = appserver.uvicorn_argv(
        STRATEGIES["pool"].app_path, port, 1, ["-c", RUN, STRATEGIES["pool"].app_path]
    )
    env = procs.child_env({**appserver.database_env(pg.app_dsn()), TABLE_ENV: pg.table})
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/visit/"
        wait_for(lambda: _up(url), 60, proc, what="the app serving")
        assert _app_sessions(pg) >= 1  # its pool's
        time.sleep(0.2)  # into a 30 s tick
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=20)
        took_s = time.monotonic() - started
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    said = proc.communicate()[0]  # its output, and the pipe closed
    assert code == -signal.SIGTERM, said  # uvicorn's own end: shut down, then the signal again
    assert took_s < 20, took_s  # not the tick's 30 s (a loaded machine may take seconds)
    assert "Traceback" not in said
    wait_for(lambda: _app_sessions(pg) == 0, 10, what="the app's sessions closed")
    with psycopg.connect(pg.dsn) as conn:  # the server is none the worse
        assert conn.execute("SELECT 1").fetchone() == (1,)
