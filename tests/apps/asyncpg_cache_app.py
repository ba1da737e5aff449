"""An asyncpg app whose queries take parameters, so asyncpg prepares them (its statement cache,
100 by default); ``STATEMENT_CACHE_SIZE=0`` turns the cache off, as transaction pooling needs."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request

CACHE = int(os.environ.get("STATEMENT_CACHE_SIZE", "100"))  # asyncpg's default


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=3, max_size=3, statement_cache_size=CACHE
    ) as pool:
        await pool.execute("CREATE TABLE IF NOT EXISTS hits (id bigserial PRIMARY KEY, n int)")
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/visit/")
async def visit(request: Request) -> dict[str, int]:
    pool = request.app.state.pool
    await pool.execute("INSERT INTO hits (n) VALUES ($1)", 1)
    total = await pool.fetchval("SELECT count(*) FROM hits WHERE n = $1", 1)
    return {"hits": int(total)}
