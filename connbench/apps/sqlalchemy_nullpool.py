"""sqlalchemy-nullpool: ``sqlalchemy`` with ``poolclass=NullPool``: no pool at all.

Every session checks out a brand-new connection and closes it when it is done, so each request
pays for a server session, as ``connect`` does, behind SQLAlchemy's API. People reach for it
to sit behind PgBouncer, or after reading that pools and serverless do not mix.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from connbench.apps.common import (
    DATABASE_URL,
    PREPARE_THRESHOLD,
    VISIT_LOGGED,
    VISITS_TABLE,
    add_health_and_errors,
)

engine = create_async_engine(
    DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1),
    poolclass=NullPool,
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
