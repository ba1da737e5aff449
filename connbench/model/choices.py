"""The values some settings may take, and the parts of a variant's key, in a module that imports
nothing: the model checks values against them and ``--help`` lists them (it must answer at once,
so it cannot import the scenario model, which pulls in psycopg)."""

from __future__ import annotations

# How the app reaches the server: directly, or through PgBouncer in one of its pool modes
# (connbench.infra.pgbouncer runs it).
TOPOLOGIES = ("direct", "pgbouncer-transaction", "pgbouncer-session")
# A topology as a variant's label and the tables' "via" column name it (100 columns are narrow).
TOPOLOGY_LABELS = {"pgbouncer-transaction": "pgb-txn", "pgbouncer-session": "pgb-session"}
# The load generator's HTTP clients (connbench.measure.load implements them).
ENGINES = ("httptools", "aiohttp", "httpx", "locust")
# The dimensions of a variant, as its key names them and ``compare --ignore`` can drop them.
DIMENSIONS = ("strategy", "concurrency", "workers", "pool", "topology", "rate")


def listed(values: tuple[str, ...], default: str, last: str = " or ") -> str:
    """``direct (default), pgbouncer-transaction or pgbouncer-session``: the default first."""
    *others, final = [value for value in values if value != default]
    return (
        f"{default} (default), {', '.join(others)}{last}{final}"
        if others
        else (f"{default} (default) or {final}")
    )
