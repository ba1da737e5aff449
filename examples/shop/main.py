"""An orders service with three endpoints, run by connbench with a request mix.

Behind a bearer token (``Authorization: Bearer dev-token``), ``POST /orders/`` inserts an order for a customer (a foreign key to the seeded ``customers``
table, a unique ``ref``), ``GET /customers/{id}/orders`` reads, ``GET /health`` checks the
database. Its tables come from ``seed.sql`` (connbench runs it as ``setup_sql`` before the app
starts). From the repository's root::

    connbench run examples/shop/scenario.toml
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

DATABASE_URL = os.environ["DATABASE_URL"]
TOKEN = os.environ.get("ORDERS_TOKEN", "dev-token")


def authorised(authorization: str = Header(default="")) -> None:
    if authorization != f"Bearer {TOKEN}":
        raise HTTPException(status_code=401, detail="bad or missing bearer token")


class NewOrder(BaseModel):
    customer_id: int
    ref: uuid.UUID
    qty: int = Field(gt=0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncConnectionPool(DATABASE_URL, min_size=4, max_size=4, open=False) as pool:
        await pool.open(wait=True)
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/orders/", status_code=201, dependencies=[Depends(authorised)])
async def create_order(order: NewOrder, request: Request) -> dict[str, int]:
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO orders (customer_id, ref, qty) VALUES (%s, %s, %s) RETURNING id",
            [order.customer_id, order.ref, order.qty],
        )
        row = await cur.fetchone()
    return {"id": row[0] if row else 0}


@app.get("/customers/{customer_id}/orders", dependencies=[Depends(authorised)])
async def customer_orders(customer_id: int, request: Request) -> dict[str, int]:
    async with request.app.state.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), coalesce(sum(qty), 0) FROM orders WHERE customer_id = %s",
            [customer_id],
        )
        row = await cur.fetchone()
    return {"orders": row[0], "qty": row[1]} if row else {"orders": 0, "qty": 0}


@app.get("/health")
async def health(request: Request) -> dict[str, str]:
    async with request.app.state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    return {"status": "ok"}
