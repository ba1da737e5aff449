"""sync-pool: ``pool`` with a plain ``def`` path operation and a sync ``ConnectionPool``.

The pool is opened and closed in the lifespan. FastAPI runs the path operation in its thread
pool (40 threads per worker), and the path operation borrows the connection itself, so the
thread that takes a connection is the one that uses and returns it.

Why not ``pool``'s dependency with ``yield``: FastAPI would run it in one thread and the path
operation in another. With more requests in flight than threads, every thread can end up
waiting for a connection while the requests holding the connections wait for a thread, until
the pool's 30 s timeout (seen here at 64 concurrent requests: nothing served).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from psycopg_pool import ConnectionPool

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
    with ConnectionPool(
        DATABASE_URL,
        min_size=POOL_MIN,
        max_size=POOL_MAX,
        kwargs={"prepare_threshold": PREPARE_THRESHOLD},
        # Test a connection before lending it, so a restarted server costs one retry,
        # not an error per stale connection.
        check=ConnectionPool.check_connection,
        open=False,
    ) as pool:
        pool.open(wait=True)
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)
add_health_and_errors(app)


@app.get("/visit/")
def visit(request: Request) -> dict[str, str]:
    with request.app.state.pool.connection() as conn:
        conn.execute(INSERT_VISIT)
    return VISIT_LOGGED
