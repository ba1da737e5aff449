"""An app of your own, the way connbench runs it: a complete example of the contract.

connbench starts it with uvicorn and gives it, through the environment, ``DATABASE_URL`` (a
``postgresql://`` URL) and libpq's ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD`` and
``PGDATABASE`` for a database of its own, created for the run and dropped afterwards. The app
creates what it needs (here in its lifespan; or give ``setup_sql``). connbench then sends every
request to ``--path`` (default ``/visit/``), and, with ``count_sql``, checks that the rows
written match the 2xx responses. From the repository's root::

    connbench run --strategy pool --app mine=examples.myapp.main:app
    connbench run examples/myapp/scenario.toml      # POST /items/ with a JSON body, count_sql
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

DATABASE_URL = os.environ["DATABASE_URL"]


class Item(BaseModel):
    name: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncConnectionPool(DATABASE_URL, min_size=2, max_size=8, open=False) as pool:
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS items ("
                "id bigserial PRIMARY KEY, name text NOT NULL, "
                "created timestamptz NOT NULL DEFAULT now())"
            )
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/visit/")
async def visit(request: Request) -> dict[str, str]:
    async with request.app.state.pool.connection() as conn:
        await conn.execute("INSERT INTO items (name) VALUES ('visit')")
    return {"message": "Visit logged"}


@app.post("/items/", status_code=201)
async def create_item(item: Item, request: Request) -> dict[str, int | str]:
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO items (name) VALUES (%s) RETURNING id", [item.name]
        )
        row = await cur.fetchone()
    return {"id": row[0] if row else 0, "name": item.name}
