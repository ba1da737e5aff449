"""Predicted server connections: pure arithmetic on the strategy's pattern."""

from typing import Any

import pytest

from connbench.analyse import capacity
from connbench.apps import STRATEGIES
from connbench.model.scenario import Variant


def predict(
    strategy: str,
    *,
    concurrency: int = 32,
    workers: int = 1,
    pool_max: int | None = 4,
    topology: str = "direct",
    pgbouncer_pool: int = 20,
) -> capacity.Prediction:
    uses_pool = STRATEGIES[strategy].uses_pool
    variant = Variant(
        strategy=strategy,
        concurrency=concurrency,
        workers=workers,
        pool_min=pool_max if uses_pool else None,
        pool_max=pool_max if uses_pool else None,
        topology=topology,
    )
    return capacity.predict(STRATEGIES[strategy], variant, pgbouncer_pool)


@pytest.mark.parametrize(
    ("strategy", "kwargs", "connections", "basis"),
    [
        ("pool", {}, 4, "pool_max 4"),
        ("pool", {"workers": 2}, 8, "2 workers × pool_max 4"),  # a pool per worker
        ("sync-pool", {"workers": 3, "pool_max": 5}, 15, "3 workers × pool_max 5"),
        ("connect", {}, 32, "concurrency 32"),
        ("connect", {"workers": 4}, 32, "concurrency 32"),  # requests, not workers, bound it
        ("sync-connect", {"concurrency": 64}, 40, "min(concurrency 64, 40 threads)"),
        ("sync-connect", {"concurrency": 64, "workers": 2}, 64,
         "min(concurrency 64, 2 workers × 40 threads)"),
        ("pool-unused", {}, 36, "concurrency 32 + pool_max 4"),
        # SQLAlchemy's QueuePool: 5 kept + 10 overflow, whatever --pool-max says.
        ("sqlalchemy", {"pool_max": 50}, 15, "QueuePool 5 + overflow 10"),
        ("sqlalchemy", {"workers": 2}, 30, "2 workers × QueuePool 5 + overflow 10"),
        ("sqlmodel", {}, 15, "QueuePool 5 + overflow 10"),
        ("sqlalchemy-nullpool", {}, 32, "concurrency 32"),
        ("asyncpg-pool", {"pool_max": 6}, 6, "pool_max 6"),
    ],
)  # fmt: skip
def test_direct(strategy: str, kwargs: dict[str, Any], connections: int, basis: str) -> None:
    prediction = predict(strategy, **kwargs)
    assert (prediction.connections, prediction.basis) == (connections, basis)


@pytest.mark.parametrize(
    ("strategy", "kwargs", "connections"),
    [
        # Transaction mode: only transactions in flight hold a server connection.
        ("connect", {"topology": "pgbouncer-transaction"}, 20),
        ("connect", {"topology": "pgbouncer-transaction", "concurrency": 8}, 8),
        ("pool", {"topology": "pgbouncer-transaction", "workers": 2}, 8),
        ("pool", {"topology": "pgbouncer-transaction", "concurrency": 2}, 2),
        ("pool-unused", {"topology": "pgbouncer-transaction", "concurrency": 8}, 8),
        # Session mode: every open client connection pins one, idle pool included.
        ("pool-unused", {"topology": "pgbouncer-session", "concurrency": 8}, 12),
        ("pool", {"topology": "pgbouncer-session", "concurrency": 2}, 4),
        ("connect", {"topology": "pgbouncer-session", "pgbouncer_pool": 5}, 5),
        ("sqlalchemy", {"topology": "pgbouncer-transaction", "concurrency": 8}, 8),
        ("sqlmodel", {"topology": "pgbouncer-session", "concurrency": 64}, 15),
    ],
)
def test_through_pgbouncer(strategy: str, kwargs: dict[str, Any], connections: int) -> None:
    assert predict(strategy, **kwargs).connections == connections


def test_basis_names_pgbouncer_pool() -> None:
    prediction = predict("connect", topology="pgbouncer-transaction")
    assert prediction.basis == "min(concurrency 32, PgBouncer pool 20)"


def test_fit_counts_connbench_own_sessions() -> None:
    prediction = predict("pool", workers=2, pool_max=24)  # 48
    assert prediction.fits(50)
    assert not prediction.fits(49)
    assert capacity.warning("k", prediction, 50) is None
    message = capacity.warning("k", prediction, 49)
    assert message == (
        "k: up to 48 server connections (2 workers × pool_max 24) plus connbench's own 2, "
        "but max_connections is 49: expect 'too many clients' errors"
    )
    assert prediction.to_dict(49) == {
        "connections": 48,
        "basis": "2 workers × pool_max 24",
        "max_connections": 49,
        "fits": False,
    }


def test_pgbouncer_gets_room_for_every_client() -> None:
    """PgBouncer admits every client the app can open (500 requests + 2 idle pools of 4),
    while the server behind it sees only PgBouncer's pool."""
    unused = STRATEGIES["pool-unused"]
    variant = Variant("pool-unused", 500, 2, 4, 4, topology="pgbouncer-transaction")
    assert capacity.max_client_conn(unused, variant) == 500 + 8 + 10
    assert capacity.predict(unused, variant, 20) == capacity.Prediction(
        20, "min(concurrency 500, PgBouncer pool 20)"
    )
    small = Variant("connect", 4, 1, None, None, topology="pgbouncer-session")
    assert capacity.max_client_conn(STRATEGIES["connect"], small) == 100
    assert capacity.predict(STRATEGIES["connect"], small, 20).basis == (
        "min(concurrency 4, PgBouncer pool 20)"
    )


def test_a_variant_names_its_rate_and_topology() -> None:
    """Keyword-only: a topology cannot land in ``rate`` by position (as it once did here)."""
    positional: tuple[Any, ...] = ("connect", 4, 1, None, None, "pgbouncer-session")
    with pytest.raises(TypeError):
        Variant(*positional)
