"""An orders service as a team would write it: ``POST /orders/`` behind a bearer token, each
order written through a pool of PostgreSQL connections held for the app's lifetime.

It is the app of the README's CI recipe: its request, setup and count SQL and the gate on its
connection figures are in ``scenario.toml`` beside it, so the workflow line stays short::

    connbench run examples/orders/scenario.toml

connbench gives it ``DATABASE_URL`` (a database of its own, created for the run); the token it
accepts comes from ``ORDERS_API_TOKEN`` (the scenario's ``env``), the one it is sent from the
scenario's ``headers``.
"""

import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

DATABASE_URL = os.environ["DATABASE_URL"]
API_TOKEN = os.environ["ORDERS_API_TOKEN"]


class Order(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(gt=0, le=1000)


def authorised(authorization: str = Header(default="")) -> None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token, API_TOKEN):
        raise HTTPException(status_code=401, detail="bearer token required")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One pool for the app's life: a fixed number of server connections, reused by requests.
    async with AsyncConnectionPool(DATABASE_URL, min_size=4, max_size=4, open=False) as pool:
        await pool.open(wait=True)
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/orders/", status_code=201, dependencies=[Depends(authorised)])
async def create_order(order: Order, request: Request) -> dict[str, int | str]:
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO orders (sku, qty) VALUES (%s, %s) RETURNING id", [order.sku, order.qty]
        )
        row = await cur.fetchone()
    return {"id": row[0] if row else 0, "sku": order.sku, "qty": order.qty}
