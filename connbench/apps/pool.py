"""pool: one ``AsyncConnectionPool`` for the app, opened and closed in the lifespan.

Requests borrow a connection and give it back; the server sees a fixed set of sessions
(between ``min_size`` and ``max_size``) however many requests arrive. ``pool.connection()``
commits on success and rolls back on error before returning the connection.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from connbench.apps.common import (
    DATABASE_URL,
    INSERT_VISIT,
    POOL_MAX,
    POOL_MIN,
    PREPARE_THRESHOLD,
    VISIT_LOGGED,
    add_health_and_errors,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncConnectionPool(
        DATABASE_URL,
        min_size=POOL_MIN,
        max_size=POOL_MAX,
        kwargs={"prepare_threshold": PREPARE_THRESHOLD},
        # Test a connection before lending it, so a restarted server costs one retry,
        # not an error per stale connection.
        check=AsyncConnectionPool.check_connection,
        open=False,
    ) as pool:
        await pool.open(wait=True)
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)
add_health_and_errors(app)


async def get_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.pool.connection() as conn:
        yield conn


@app.get("/visit/")
async def visit(conn: Annotated[AsyncConnection, Depends(get_connection)]) -> dict[str, str]:
    await conn.execute(INSERT_VISIT)
    return VISIT_LOGGED
