"""pool-unused: the common mistake. A pool is opened in the lifespan, and then ignored.

The dependency still calls ``AsyncConnection.connect`` for every request, so the app pays for
a new server session per request *and* keeps the pool's idle sessions open on the server.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
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


async def get_connection() -> AsyncIterator[AsyncConnection]:
    # The mistake: app.state.pool is right there, but this opens a new connection anyway.
    async with await AsyncConnection.connect(DATABASE_URL) as conn:
        yield conn


@app.get("/visit/")
async def visit(conn: Annotated[AsyncConnection, Depends(get_connection)]) -> dict[str, str]:
    await conn.execute(INSERT_VISIT)
    return VISIT_LOGGED
