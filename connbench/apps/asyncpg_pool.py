"""asyncpg-pool: an ``asyncpg`` pool created in the lifespan; requests acquire from it.

asyncpg speaks PostgreSQL's protocol itself (no libpq). ``pool.acquire()`` lends a connection
and takes it back; ``connection.transaction()`` commits on success and rolls back on error.
asyncpg caches prepared statements per connection: behind a transaction-mode PgBouncer the
next transaction may land on a server connection that never prepared them, so there the cache
is turned off (``statement_cache_size=0``).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import asyncpg
from fastapi import Depends, FastAPI, Request

from connbench.apps.common import (
    DATABASE_URL,
    POOL_MAX,
    POOL_MIN,
    PREPARE_THRESHOLD,
    VISIT_LOGGED,
    VISITS_TABLE,
    add_health_and_errors,
)

INSERT_VISIT = f'INSERT INTO "{VISITS_TABLE}" DEFAULT VALUES'


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with asyncpg.create_pool(
        DATABASE_URL,
        min_size=POOL_MIN,
        max_size=POOL_MAX,
        statement_cache_size=0 if PREPARE_THRESHOLD is None else 100,
    ) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)
add_health_and_errors(app)


async def get_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        yield conn


@app.get("/visit/")
async def visit(conn: Annotated[asyncpg.Connection, Depends(get_connection)]) -> dict[str, str]:
    await conn.execute(INSERT_VISIT)
    return VISIT_LOGGED
