"""A user's app written with asyncpg: a pool sized by its own environment (``[[app]] env``),
and an application_name that is not connbench's (attribution must not depend on it)."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request

POOL_SIZE = int(os.environ["HITS_POOL_SIZE"])  # no default: the scenario's env must reach it


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with asyncpg.create_pool(
        os.environ["DATABASE_URL"],
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        server_settings={"application_name": "someone-else"},
    ) as pool:
        await pool.execute("CREATE TABLE IF NOT EXISTS hits (id bigserial PRIMARY KEY)")
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/visit/")
async def visit(request: Request) -> dict[str, str]:
    await request.app.state.pool.execute("INSERT INTO hits DEFAULT VALUES")
    return {"message": "ok"}
