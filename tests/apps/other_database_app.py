"""An app that, at start-up, creates a table in a database other than its own (``other_db``,
which the test makes): its role then owns an object connbench does not reach, and the role
cannot be dropped. (Named here, not in the app's env: env values are masked in every output,
and the test reads the name in connbench's warning.)"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from psycopg.conninfo import make_conninfo

OTHER_DB = "other_db"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    other = make_conninfo(os.environ["DATABASE_URL"], dbname=OTHER_DB)
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS left_by_app (id int)")
    conn_ = await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"], autocommit=True)
    async with conn_:
        app.state.conn = conn_
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/visit/")
async def visit(request: Request) -> dict[str, str]:
    await request.app.state.conn.execute("SELECT 1")
    return {"message": "ok"}
