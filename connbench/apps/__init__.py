"""One FastAPI app per connection strategy; each module holds exactly its pattern.

``STRATEGIES`` maps the public name (part of connbench's interface) to the module that
uvicorn serves and a one-line description.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where an app serves its timing totals when connbench switches them on (see instrument.py).
STATS_PATH = "/_connbench/stats"
# The environment connbench gives a strategy's app (connbench.infra.appserver writes it,
# common.py and instrument.py read it): one name each, so the two sides cannot drift apart.
DATABASE_URL_ENV = "DATABASE_URL"  # own apps are given it too
TABLE_ENV = "CONNBENCH_TABLE"
POOL_MIN_ENV = "CONNBENCH_POOL_MIN"
POOL_MAX_ENV = "CONNBENCH_POOL_MAX"
PREPARE_THRESHOLD_ENV = "CONNBENCH_PREPARE_THRESHOLD"  # a number, or "none": never prepare
INSTRUMENT_ENV = "CONNBENCH_INSTRUMENT"  # "1": time requests (see instrument.py)
# SQLAlchemy's QueuePool defaults, which the sqlalchemy and sqlmodel apps keep.
SQLALCHEMY_POOL_SIZE = 5
SQLALCHEMY_MAX_OVERFLOW = 10
SQLALCHEMY_POOL = f"QueuePool {SQLALCHEMY_POOL_SIZE} + overflow {SQLALCHEMY_MAX_OVERFLOW}"


@dataclass(frozen=True)
class Strategy:
    name: str
    module: str
    summary: str
    pooled: bool  # holds connections across requests (vs. one server session per request)
    uses_pool: bool = False  # opens a pool, whether or not it serves requests from it
    # Plain ``def`` path operations: FastAPI runs them in its thread pool, whose 40 threads
    # (per worker) bound how many requests are served at once.
    sync: bool = False
    # A pool sized by the library's defaults rather than by --pool-min/--pool-max: the most
    # connections it holds per worker, and how (SQLAlchemy's QueuePool: 5 kept + 10 overflow).
    fixed_pool: int | None = None
    fixed_pool_basis: str = ""

    @property
    def app_path(self) -> str:
        return f"connbench.apps.{self.module}:app"


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy(
            "connect",
            "connect",
            "path operation opens a connection, commits, rolls back on error, closes in finally",
            pooled=False,
        ),
        Strategy(
            "context",
            "context",
            "path operation uses `async with await AsyncConnection.connect(...)`",
            pooled=False,
        ),
        Strategy(
            "depends",
            "depends",
            "a dependency returns a new connection; the path operation commits and closes it",
            pooled=False,
        ),
        Strategy(
            "yield",
            "yield_",
            "a dependency with yield opens a connection; commit / rollback / close after yield",
            pooled=False,
        ),
        Strategy(
            "yield-context",
            "yield_context",
            "a dependency yields inside the connection's context manager (commits late)",
            pooled=False,
        ),
        Strategy(
            "pool",
            "pool",
            "AsyncConnectionPool opened in the lifespan; a dependency yields pool.connection()",
            pooled=True,
            uses_pool=True,
        ),
        Strategy(
            "pool-nocheck",
            "pool_nocheck",
            "the pool with psycopg_pool's default: connections lent without a check",
            pooled=True,
            uses_pool=True,
        ),
        Strategy(
            "pool-unused",
            "pool_unused",
            "the common mistake: a pool is opened in the lifespan, yet each request connects",
            pooled=False,
            uses_pool=True,
        ),
        Strategy(
            "sync-connect",
            "sync_connect",
            "`connect` with a plain def path operation and a sync Connection (thread pool)",
            pooled=False,
            sync=True,
        ),
        Strategy(
            "sync-pool",
            "sync_pool",
            "`pool` with a def path operation that borrows from a sync ConnectionPool itself",
            pooled=True,
            uses_pool=True,
            sync=True,
        ),
        Strategy(
            "sqlalchemy",
            "sqlalchemy_",
            "create_async_engine (psycopg) with its default QueuePool; AsyncSession dependency",
            pooled=True,
            fixed_pool=SQLALCHEMY_POOL_SIZE + SQLALCHEMY_MAX_OVERFLOW,
            fixed_pool_basis=SQLALCHEMY_POOL,
        ),
        Strategy(
            "sqlalchemy-nullpool",
            "sqlalchemy_nullpool",
            "`sqlalchemy` with NullPool: a new connection for every session",
            pooled=False,
        ),
        Strategy(
            "asyncpg-pool",
            "asyncpg_pool",
            "asyncpg.create_pool in the lifespan; a dependency acquires and opens a transaction",
            pooled=True,
            uses_pool=True,
        ),
        Strategy(
            "sqlmodel",
            "sqlmodel_",
            "FastAPI's SQL databases tutorial: sync engine, Session dependency, def operations",
            pooled=True,
            sync=True,
            fixed_pool=SQLALCHEMY_POOL_SIZE + SQLALCHEMY_MAX_OVERFLOW,
            fixed_pool_basis=SQLALCHEMY_POOL,
        ),
    ]
}
