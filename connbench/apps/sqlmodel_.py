"""sqlmodel: the FastAPI documentation's "SQL (Relational) Databases" tutorial, on PostgreSQL.

A sync engine (``create_engine``, psycopg driver, SQLAlchemy's default ``QueuePool``:
5 connections kept, up to 10 more in a burst), a ``Session`` dependency with ``yield``, and
plain ``def`` path operations, which FastAPI runs in its thread pool (40 threads). The session
takes a connection at its first statement and gives it back at ``commit()``.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlmodel import Field, Session, SQLModel, create_engine

from connbench.apps.common import (
    DATABASE_URL,
    PREPARE_THRESHOLD,
    VISIT_LOGGED,
    VISITS_TABLE,
    add_health_and_errors,
)


class Visit(SQLModel, table=True):
    __tablename__ = VISITS_TABLE

    id: int | None = Field(default=None, primary_key=True)
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))


engine = create_engine(
    DATABASE_URL.replace("postgresql://", "postgresql+psycopg://", 1),
    connect_args={"prepare_threshold": PREPARE_THRESHOLD},
)


def get_session() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

app = FastAPI()
add_health_and_errors(app)


@app.get("/visit/")
def visit(session: SessionDep) -> dict[str, str]:
    session.add(Visit())
    session.commit()
    return VISIT_LOGGED
