"""Serve one strategy's app with uvicorn in its own process group, and wait until it answers.

uvicorn binds 127.0.0.1 on a port that was free a moment before; if another process takes it
in between, the start is retried on a new port. (Handing uvicorn a pre-bound socket with
``--fd`` would close that gap, but uvicorn then treats the socket as a unix socket and never
sets TCP_NODELAY: Nagle's algorithm put 40 ms on every response, measured here.)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from connbench.apps import STATS_PATH, Strategy
from connbench.infra import procs
from connbench.model.errors import ProcessError

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
BIND_ATTEMPTS = 3


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
    proc: subprocess.Popen[bytes]
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


def uvicorn_argv(strategy: Strategy, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        strategy.app_path,
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
    strategy: Strategy, dsn: str, table: str, config: AppConfig, log_path: Path
) -> Iterator[App]:
    """Start the app on ``dsn`` (its DATABASE_URL), wait for ``GET /health``, yield it; stop
    the process group on exit.

    Raises :class:`~connbench.model.errors.ProcessError` with the log tail when uvicorn exits
    or does not answer within ``READY_TIMEOUT_S``.
    """
    threshold = config.prepare_threshold
    env = procs.child_env(
        {
            "DATABASE_URL": dsn,
            "CONNBENCH_TABLE": table,
            "CONNBENCH_POOL_MIN": str(config.pool_min),
            "CONNBENCH_POOL_MAX": str(config.pool_max),
            "CONNBENCH_PREPARE_THRESHOLD": "none" if threshold is None else str(threshold),
            "CONNBENCH_INSTRUMENT": "1" if config.instrument else "0",
        }
    )
    # A fixed port gets one attempt: retrying would not free it.
    attempts = BIND_ATTEMPTS if config.port is None else 1
    for attempt in range(attempts):
        port = config.port or procs.free_port()
        with procs.Child(
            uvicorn_argv(strategy, port, config.workers),
            name=f"uvicorn ({strategy.name})",
            log_path=log_path,
            env=env,
            stop_timeout_s=STOP_TIMEOUT_S,
        ) as child:
            proc = child.proc
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_healthy(url, strategy, proc, log_path)
            except ProcessError:
                lost_port = "address already in use" in procs.log_tail(log_path).lower()
                if lost_port and attempt + 1 < attempts:
                    continue
                raise
            yield App(strategy, url, proc, log_path, instrumented=config.instrument)
            return


def _wait_healthy(
    url: str, strategy: Strategy, proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    with httpx.Client(timeout=1.0) as client:

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
