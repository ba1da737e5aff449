"""pool-nocheck: the ``pool`` app with psycopg_pool's default of lending connections unchecked.

It saves ``pool``'s round trip per request (the check). The price comes when the server drops
connections (a restart, an administrator, an idle-session timeout, a failover): the pool lends
them out dead, each fails a request, and only then does the pool replace it.
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
