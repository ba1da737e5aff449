"""One FastAPI app per connection strategy; each module holds exactly its pattern.

``STRATEGIES`` maps the public name (part of connbench's interface) to the module that
uvicorn serves and a one-line description.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where an app serves its timing totals when connbench switches them on (see instrument.py).
STATS_PATH = "/_connbench/stats"


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
    ]
}
