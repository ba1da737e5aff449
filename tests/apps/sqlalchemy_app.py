"""A user's app written with SQLAlchemy from libpq's PG* variables (not DATABASE_URL), with
NullPool: one server session per request, and no application_name at all."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

engine = create_async_engine(
    URL.create(
        "postgresql+psycopg",
        username=os.environ["PGUSER"],
        password=os.environ["PGPASSWORD"],
        host=os.environ["PGHOST"],
        port=int(os.environ["PGPORT"]),
        database=os.environ["PGDATABASE"],
    ),
    poolclass=NullPool,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/orders/")
async def order(payload: dict[str, int]) -> dict[str, int]:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO orders (qty) VALUES (:qty)"), payload)
    return payload
