"""Where a request's time goes inside the app: opt-in timing that connbench switches on.

Nothing here runs unless the app's environment has ``CONNBENCH_INSTRUMENT=1`` (connbench
sets it for its runs; ``connbench serve`` does not), so the strategy files stay tutorials.
When it is on, :func:`install` adds to the app:

- an ASGI middleware that times each request inside the app, split at the moment its response
  has been sent: what follows (a ``yield`` dependency's exit: commit, close) is time the
  client does not wait for;
- wrappers around psycopg's ``AsyncConnection.connect``, ``execute``, ``commit`` and
  ``rollback`` and psycopg_pool's ``AsyncConnectionPool.getconn`` that add their wall time to
  the request they serve (a pool's own background connects belong to no request);
- ``GET /_connbench/stats``: running totals since the app started, and the pool's
  ``get_stats()`` when the app keeps one in ``app.state.pool``. connbench reads it at both
  edges of the measured window and takes the difference.

All times are wall time, so a wait for the app's busy event loop after the database has
answered counts where the app was waiting. Cost: a few ``perf_counter()`` calls and one
``ContextVar`` lookup per call, microseconds per request.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from time import perf_counter
from typing import Any

from fastapi import FastAPI, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connbench.apps import INSTRUMENT_ENV, STATS_PATH

ENABLED = os.environ.get(INSTRUMENT_ENV) == "1"
UNTIMED_PATHS = (STATS_PATH, "/health")


@dataclass
class _Tally:
    """One request's time so far, in seconds, until its response was sent."""

    connect_s: float = 0.0
    pool_wait_s: float = 0.0
    query_s: float = 0.0
    connects: int = 0
    queries: int = 0
    responded_at: float = 0.0  # perf_counter() once the response's last byte was handed over
    in_pool: bool = False  # inside getconn: the pool's check is waiting, not a query


@dataclass
class Totals:
    """Sums over every timed request since the app started (milliseconds)."""

    requests: int = 0
    until_response_ms: float = 0.0
    after_response_ms: float = 0.0
    connect_ms: float = 0.0
    connects: int = 0
    pool_wait_ms: float = 0.0
    query_ms: float = 0.0
    queries: int = 0

    def add(self, tally: _Tally, started: float, ended: float) -> None:
        responded = tally.responded_at or ended
        self.requests += 1
        self.until_response_ms += 1000.0 * (responded - started)
        self.after_response_ms += 1000.0 * (ended - responded)
        self.connect_ms += 1000.0 * tally.connect_s
        self.connects += tally.connects
        self.pool_wait_ms += 1000.0 * tally.pool_wait_s
        self.query_ms += 1000.0 * tally.query_s
        self.queries += tally.queries


TOTALS = Totals()
_current: ContextVar[_Tally | None] = ContextVar("connbench_request", default=None)


class _TimeRequests:
    """Pure ASGI middleware (no per-request objects beyond the tally and one closure)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTIMED_PATHS:
            await self.app(scope, receive, send)
            return
        tally = _Tally()
        token = _current.set(tally)

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                tally.responded_at = perf_counter()

        started = perf_counter()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            TOTALS.add(tally, started, perf_counter())
            _current.reset(token)


Method = Callable[..., Awaitable[Any]]


def _timed(method: Method, kind: str) -> Method:
    """``method`` adding its wall time to the current request's tally under ``kind``."""

    async def timed(*args: Any, **kwargs: Any) -> Any:
        tally = _current.get()
        if tally is None or tally.responded_at or (tally.in_pool and kind != "pool_wait"):
            return await method(*args, **kwargs)
        started = perf_counter()
        if kind == "pool_wait":
            tally.in_pool = True
        try:
            return await method(*args, **kwargs)
        finally:
            elapsed = perf_counter() - started
            if kind == "connect":
                tally.connect_s += elapsed
                tally.connects += 1
            elif kind == "query":
                tally.query_s += elapsed
                tally.queries += 1
            else:
                tally.in_pool = False
                tally.pool_wait_s += elapsed

    return timed


_patched = False


def _patch_drivers() -> None:
    global _patched
    if _patched:
        return
    _patched = True
    connect = AsyncConnection.__dict__["connect"].__func__  # the classmethod's function
    setattr(AsyncConnection, "connect", classmethod(_timed(connect, "connect")))  # noqa: B010
    for name in ("execute", "commit", "rollback"):
        setattr(AsyncConnection, name, _timed(getattr(AsyncConnection, name), "query"))
    getconn = _timed(AsyncConnectionPool.getconn, "pool_wait")
    setattr(AsyncConnectionPool, "getconn", getconn)  # noqa: B010


def install(app: FastAPI) -> None:
    """Time ``app``'s requests and serve the totals (see the module docstring)."""
    _patch_drivers()
    app.add_middleware(_TimeRequests)

    @app.get(STATS_PATH, include_in_schema=False)
    async def stats(request: Request) -> dict[str, Any]:
        pool = getattr(request.app.state, "pool", None)
        return {
            "timing": asdict(TOTALS),
            "pool": pool.get_stats() if isinstance(pool, AsyncConnectionPool) else None,
        }
