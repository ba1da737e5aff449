"""What every strategy app shares, so that each app file shows only its own pattern.

- Settings come from the environment that connbench gives the uvicorn process.
- ``GET /health`` answers without touching the database (readiness only).
- A database error becomes a JSON 503 naming its SQLSTATE, so the load generator can count
  "too many clients" apart from other failures instead of seeing an anonymous 500.
- When connbench asks for it, :mod:`connbench.apps.instrument` times where requests spend
  their time (off otherwise).
"""

from __future__ import annotations

import os
import sys

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg import sql

from connbench.apps import (
    DATABASE_URL_ENV,
    POOL_MAX_ENV,
    POOL_MIN_ENV,
    PREPARE_THRESHOLD_ENV,
    TABLE_ENV,
    instrument,
)

DATABASE_URL = os.environ.get(DATABASE_URL_ENV, "")
VISITS_TABLE = os.environ.get(TABLE_ENV, "visits")
# psycopg_pool's own defaults: min_size=4, max_size=min_size.
POOL_MIN = int(os.environ.get(POOL_MIN_ENV) or 4)
POOL_MAX = int(os.environ.get(POOL_MAX_ENV) or POOL_MIN)
# psycopg prepares a statement on the server once a connection has run it 5 times. Behind
# PgBouncer in transaction mode the next transaction may run on another server connection,
# where that statement does not exist, so there it must be off: None. Every pool passes it on
# (kwargs=); a connection opened per request runs one statement and is never prepared.
_PREPARE = os.environ.get(PREPARE_THRESHOLD_ENV) or "5"
PREPARE_THRESHOLD = None if _PREPARE == "none" else int(_PREPARE)

INSERT_VISIT = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(VISITS_TABLE))
VISIT_LOGGED = {"message": "Visit logged"}


def add_health_and_errors(app: FastAPI) -> None:
    """Add ``/health`` and the database-error handler to ``app`` (and the timing, if on)."""
    if instrument.ENABLED:
        instrument.install(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        sqlstate = sqlstate_of(exc)
        try:
            name = psycopg.errors.lookup(sqlstate).__name__ if sqlstate else type(exc).__name__
        except KeyError:
            name = type(exc).__name__
        return JSONResponse(
            status_code=503,
            content={"error": "database", "sqlstate": sqlstate, "name": name},
        )

    for error in _database_errors():
        app.add_exception_handler(error, database_error)


def _database_errors() -> list[type[Exception]]:
    """The database errors of psycopg, and of SQLAlchemy and asyncpg where an app uses them."""
    found: list[type[Exception]] = [psycopg.Error]
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError

        found.append(DBAPIError)
    if "asyncpg" in sys.modules:
        import asyncpg

        found.extend([asyncpg.PostgresError, asyncpg.InterfaceError])
    return found


# A failed or lost *connection* often carries no SQLSTATE in psycopg (the server's FATAL
# arrives before a session exists, or the socket closes before it is read), so the
# best-known ones are recognised by their message.
_CONNECT_FAILURES = {
    "too many clients": "53300",
    "remaining connection slots are reserved": "53300",
    "the database system is starting up": "57P03",
    "the database system is shutting down": "57P03",
    "the database system is in recovery mode": "57P03",
    "terminating connection due to administrator command": "57P01",
    "server closed the connection unexpectedly": "08006",
    "the connection is lost": "08006",
    "Connection refused": "08001",
}


def sqlstate_of(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    if isinstance(orig, BaseException):
        exc = orig
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg and asyncpg alike
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate
    message = str(exc)
    for needle, sqlstate in _CONNECT_FAILURES.items():
        if needle in message:
            return sqlstate
    return None
