"""Serve one strategy's app with uvicorn in its own process group, and wait until it answers.

uvicorn binds 127.0.0.1 on a port that was free a moment before; if another process takes it
in between, the start is retried on a new port. (Handing uvicorn a pre-bound socket with
``--fd`` would close that gap, but uvicorn then treats the socket as a unix socket and never
sets TCP_NODELAY: Nagle's algorithm put 40 ms on every response, measured here.)
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from psycopg.conninfo import conninfo_to_dict

from connbench.apps import (
    DATABASE_URL_ENV,
    INSTRUMENT_ENV,
    POOL_MAX_ENV,
    POOL_MIN_ENV,
    PREPARE_THRESHOLD_ENV,
    STATS_PATH,
    TABLE_ENV,
    Strategy,
)
from connbench.infra import launch, procs
from connbench.model.errors import ProcessError

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
BIND_ATTEMPTS = 3


# The apps connbench starts answer plain HTTP on 127.0.0.1, and so their clients (readiness,
# timing totals) load no CA bundle (36 ms a client, twice in every app's start and window)
# and read no proxy settings (an HTTP_PROXY in the environment would take loopback requests
# elsewhere). An https URL would fail here, never be trusted: the context trusts no CA.
@functools.cache
def _trusts_nothing() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def loopback_client(timeout_s: float) -> httpx.Client:
    """An HTTP client for an app connbench started (see above)."""
    return httpx.Client(timeout=timeout_s, verify=_trusts_nothing(), trust_env=False)


def loopback_async_client(timeout_s: float) -> httpx.AsyncClient:
    """:func:`loopback_client`, async."""
    return httpx.AsyncClient(timeout=timeout_s, verify=_trusts_nothing(), trust_env=False)


@dataclass(frozen=True)
class AppConfig:
    pool_min: int
    pool_max: int
    workers: int = 1
    prepare_threshold: int | None = 5  # psycopg's default; None turns prepared statements off
    instrument: bool = False  # time requests inside the app (connbench.apps.instrument)
    port: int | None = None  # a fixed port (serve --port); None: a free one


@dataclass(frozen=True)
class App:
    strategy: Strategy
    url: str
    proc: procs.Process  # a Popen, or an app forked from the fork server
    log_path: Path
    instrumented: bool = False  # serves timing totals (AppConfig.instrument)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def visit_url(self) -> str:
        return f"{self.url}/visit/"

    async def read_stats(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        """The app's timing totals and pool statistics (see :mod:`connbench.apps.instrument`),
        or None when it does not answer them within ``client``'s timeout."""
        try:
            resp = await client.get(f"{self.url}{STATS_PATH}")
            data = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def exit_code(self) -> int | None:
        """None while the app runs; its exit code once it has stopped on its own."""
        return self.proc.poll()

    def log_tail(self) -> str:
        return procs.log_tail(self.log_path)


# libpq's variables for what a DSN holds: an app that builds its own connection from them
# (asyncpg and psycopg read them too) reaches the same database as DATABASE_URL.
LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "application_name": "PGAPPNAME",
}
_URL_PARTS = {"host", "port", "user", "password", "dbname"}


def database_url(dsn: str) -> str:
    """``dsn`` (a URL or ``key=value`` conninfo) as a ``postgresql://`` URL, the form every
    client library takes (SQLAlchemy and asyncpg read no conninfo); other keys as a query."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    auth = quote(params.get("user", ""), safe="")
    if "password" in params:
        auth += ":" + quote(params["password"], safe="")
    netloc = (auth + "@" if auth else "") + params.get("host", "")
    if "port" in params:
        netloc += f":{params['port']}"
    query = urlencode({k: v for k, v in params.items() if k not in _URL_PARTS})
    db = quote(params.get("dbname", ""), safe="")
    return f"postgresql://{netloc}/{db}" + (f"?{query}" if query else "")


def database_env(dsn: str) -> dict[str, str]:
    """What an app is given to reach ``dsn``: ``DATABASE_URL`` and libpq's ``PG*`` variables.

    Through the environment only, never the command line, where any local user can read it.
    """
    params = conninfo_to_dict(dsn)
    env = {DATABASE_URL_ENV: database_url(dsn)}
    env.update({var: str(params[key]) for key, var in LIBPQ_ENV.items() if params.get(key)})
    return env


def uvicorn_argv(
    app_path: str,
    port: int,
    workers: int,
    launcher: list[str] | None = None,
    python: str | None = None,
) -> list[str]:
    """uvicorn's command line for ``app_path``; ``launcher`` replaces ``-m uvicorn APP``,
    ``python`` connbench's own interpreter."""
    return [
        python or sys.executable,
        *(launcher or ["-m", "uvicorn", app_path]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--timeout-graceful-shutdown",
        "5",
    ]


@contextmanager
def start(
    strategy: Strategy,
    dsn: str,
    table: str,
    config: AppConfig,
    log_path: Path,
    forks: procs.Spawner | None = None,
) -> Iterator[App]:
    """Start the app on ``dsn`` (its DATABASE_URL), wait for ``GET /health``, yield it; stop
    the process group on exit. With ``forks`` (the run's fork server), an app of one worker
    is forked from it rather than started cold, when it can be (see
    :mod:`connbench.infra.forkserver`).

    Raises :class:`~connbench.model.errors.ProcessError` with the log tail when uvicorn exits
    or does not answer within ``READY_TIMEOUT_S``.
    """
    threshold = config.prepare_threshold
    env = procs.child_env(
        {
            **database_env(dsn),
            TABLE_ENV: table,
            POOL_MIN_ENV: str(config.pool_min),
            POOL_MAX_ENV: str(config.pool_max),
            PREPARE_THRESHOLD_ENV: "none" if threshold is None else str(threshold),
            INSTRUMENT_ENV: "1" if config.instrument else "0",
        }
    )
    # uvicorn saying when the app is ready (one process: a worker uvicorn spawns cannot
    # inherit the pipe, so several are polled for).
    signalled = config.workers == 1
    launcher = ["-m", "connbench.infra.ready_uvicorn", strategy.app_path]
    with serve(
        lambda port: uvicorn_argv(
            strategy.app_path, port, config.workers, launcher if signalled else None
        ),
        env,
        f"uvicorn ({strategy.name})",
        log_path,
        lambda url, proc: _wait_healthy(url, strategy, proc, log_path),
        port=config.port,
        ready_signal=signalled,
        spawner=forks if signalled else None,
    ) as (url, proc):
        yield App(strategy, url, proc, log_path, instrumented=config.instrument)


@contextmanager
def serve(
    argv: Callable[[int], list[str]],
    env: dict[str, str],
    name: str,
    log_path: Path,
    wait_ready: Callable[[str, procs.Process], None],
    port: int | None = None,
    strays: list[str] | None = None,
    ready_signal: bool = False,
    spawner: procs.Spawner | None = None,
) -> Iterator[tuple[str, procs.Process]]:
    """Run ``argv(port)`` on ``port`` (default: a free one) in its own process group until
    ``wait_ready(url, proc)`` returns; yield the URL and process, stop the group on exit (and
    what it left outside, named in ``strays``: see :class:`procs.Child`). A start that lost a
    free port to another process is retried on a new one; ``wait_ready``'s errors propagate.

    With ``ready_signal`` (``argv`` runs :mod:`connbench.infra.ready_uvicorn` or
    :mod:`connbench.infra.launch`, with one process),
    ``wait_ready`` is called once the launcher has said the app is ready, or has exited:
    the app's own signal, not a poll, ends the wait. ``spawner``: see :class:`procs.Child`."""
    # A fixed port gets one attempt: retrying would not free it.
    attempts = BIND_ATTEMPTS if port is None else 1
    fixed = port
    for attempt in range(attempts):
        port = fixed or procs.free_port()
        read_fd, write_fd = os.pipe() if ready_signal else (-1, -1)
        extra = {launch.READY_FD_ENV: str(write_fd)} if ready_signal else {}
        child = procs.Child(
            argv(port),
            name=name,
            log_path=log_path,
            env={**env, **extra},
            stop_timeout_s=STOP_TIMEOUT_S,
            strays=strays,
            pass_fds=(write_fd,) if ready_signal else (),
            spawner=spawner,
        )
        try:
            try:
                child.spawn()
            finally:
                if ready_signal:
                    os.close(write_fd)  # the child's copy is the only one: EOF if it dies
            url = f"http://127.0.0.1:{port}"
            try:
                if ready_signal:
                    _wait_signal(read_fd, name, url, child.proc, log_path)
                wait_ready(url, child.proc)
            except ProcessError:
                lost_port = "address already in use" in procs.log_tail(log_path).lower()
                if lost_port and attempt + 1 < attempts:
                    continue
                raise
            finally:
                if ready_signal:
                    os.close(read_fd)
                    read_fd = -1
            yield url, child.proc
            return
        finally:
            child.stop()
            if read_fd >= 0:
                os.close(read_fd)


def _wait_signal(read_fd: int, name: str, url: str, proc: procs.Process, log_path: Path) -> None:
    """Block until the launcher writes to the pipe that the app is ready, or the pipe closes
    without it (the process is exiting: wait for that, so that the readiness check which
    follows reports it with its log). Raises :class:`ProcessError` with the log tail when
    neither happens within ``READY_TIMEOUT_S``."""

    def said() -> bool:
        return bool(select.select([read_fd], [], [], procs.POLL_INTERVAL_S)[0])

    started = time.monotonic()
    procs.wait_until(
        said,
        what=f"{name} at {url}",
        timeout_s=READY_TIMEOUT_S,
        log_path=log_path,
        interval_s=0,
    )
    if os.read(read_fd, len(launch.READY)) != launch.READY:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, READY_TIMEOUT_S - (time.monotonic() - started)))


def _wait_healthy(url: str, strategy: Strategy, proc: procs.Process, log_path: Path) -> None:
    with loopback_client(1.0) as client:

        def healthy() -> bool:
            try:
                return client.get(f"{url}/health").status_code == 200
            except httpx.HTTPError:
                return False

        procs.wait_until(
            healthy,
            what=f"app {strategy.name!r} at {url}",
            timeout_s=READY_TIMEOUT_S,
            proc=proc,
            log_path=log_path,
        )
