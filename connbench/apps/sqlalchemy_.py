"""sqlalchemy: SQLAlchemy's ``create_async_engine`` (psycopg driver) with its default pool.

The engine holds a ``QueuePool``: ``pool_size=5`` connections kept, and up to
``max_overflow=10`` more opened when all five are busy. An overflow connection is closed when
it comes back while five are already idle, so a burst above five requests costs new server
sessions. An ``AsyncSession`` dependency with ``yield`` commits after the path operation and
closes the session, which returns its connection to the pool.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from connbench.apps.common import (
    DATABASE_URL,
    PREPARE_THRESHOLD,
    VISIT_LOGGED,
    VISITS_TABLE,
    add_health_and_errors,
)

engine = create_async_engine(
    DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1),
    # Off behind a transaction-mode PgBouncer (see connbench.apps.common).
    connect_args={"prepare_threshold": PREPARE_THRESHOLD},
)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
INSERT_VISIT = text(f'INSERT INTO "{VISITS_TABLE}" DEFAULT VALUES')


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
add_health_and_errors(app)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session, session.begin():
        yield session


@app.get("/visit/")
async def visit(session: Annotated[AsyncSession, Depends(get_session)]) -> dict[str, str]:
    await session.execute(INSERT_VISIT)
    return VISIT_LOGGED
