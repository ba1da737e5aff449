"""How many server connections a variant can hold at once, against ``max_connections``.

Pure functions. The prediction is an upper bound worked out from the strategy's pattern:

- a pool holds up to ``pool_max`` sessions in *each* uvicorn worker (every worker imports the
  app and opens its own pool); a pool the library sizes itself (SQLAlchemy's ``QueuePool``:
  5 kept + 10 overflow) holds that many, whatever ``--pool-max`` says;
- a per-request strategy holds one session per request in flight: up to ``concurrency``, and
  for a ``def`` app up to FastAPI's thread pool (40 threads) per worker;
- through PgBouncer the server sees at most PgBouncer's pool of them. In session mode every
  client connection pins a server connection while it is open; in transaction mode only
  transactions in flight hold one, so an app pool's idle connections cost the server nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from connbench.apps import Strategy
from connbench.model.scenario import Variant
from connbench.model.sessions import HELD_WHILE_MEASURING

THREADS_PER_WORKER = 40  # anyio's default thread limiter, which FastAPI's thread pool uses
OWN_SESSIONS = len(HELD_WHILE_MEASURING)  # connbench's own while an app runs
CLIENT_HEADROOM = 10  # PgBouncer client slots beyond the app's: admin console, stragglers


@dataclass(frozen=True)
class Prediction:
    connections: int  # the most server sessions the variant can hold at once
    basis: str  # how that was worked out, for a reader: "min(concurrency 32, PgBouncer pool 20)"

    def fits(self, max_connections: int) -> bool:
        return self.connections + OWN_SESSIONS <= max_connections

    def to_dict(self, max_connections: int | None) -> dict[str, object]:
        return {
            "connections": self.connections,
            "basis": self.basis,
            "max_connections": max_connections,
            "fits": None if max_connections is None else self.fits(max_connections),
        }


@dataclass(frozen=True)
class Term:
    value: int
    label: str


def _least(*terms: Term) -> Term:
    if len(terms) == 1:
        return terms[0]
    return Term(min(t.value for t in terms), "min(" + ", ".join(t.label for t in terms) + ")")


def _workers(variant: Variant) -> str:
    return f"{variant.workers} workers × " if variant.workers > 1 else ""


def _pool(strategy: Strategy, variant: Variant) -> Term:
    if strategy.fixed_pool is not None:
        return Term(
            variant.workers * strategy.fixed_pool,
            f"{_workers(variant)}{strategy.fixed_pool_basis}",
        )
    pool_max = variant.pool_max or 0
    return Term(variant.workers * pool_max, f"{_workers(variant)}pool_max {pool_max}")


def _requests(strategy: Strategy, variant: Variant) -> Term:
    """Requests the app can be serving at once."""
    load = Term(variant.concurrency, f"concurrency {variant.concurrency}")
    if not strategy.sync:
        return load
    threads = variant.workers * THREADS_PER_WORKER
    return _least(load, Term(threads, f"{_workers(variant)}{THREADS_PER_WORKER} threads"))


def app_sessions(strategy: Strategy, variant: Variant) -> Term:
    """Sessions the app itself can hold open at once, to the server or to PgBouncer."""
    if strategy.pooled:
        return _pool(strategy, variant)
    per_request = _requests(strategy, variant)
    if not strategy.uses_pool:
        return per_request
    pool = _pool(strategy, variant)  # held idle beside the per-request sessions
    return Term(per_request.value + pool.value, f"{per_request.label} + {pool.label}")


def _in_transaction(strategy: Strategy, variant: Variant) -> Term:
    """Sessions that can be in a transaction at once."""
    if strategy.pooled:
        return _least(_pool(strategy, variant), _requests(strategy, variant))
    return _requests(strategy, variant)


def predict(strategy: Strategy, variant: Variant, pgbouncer_pool_size: int) -> Prediction:
    """The most server sessions ``variant`` can hold at once, and how that was worked out."""
    if variant.topology == "pgbouncer-session":
        demand = app_sessions(strategy, variant)
    elif variant.topology == "pgbouncer-transaction":
        demand = _in_transaction(strategy, variant)
    else:
        term = app_sessions(strategy, variant)
        return Prediction(term.value, term.label)
    term = _least(demand, Term(pgbouncer_pool_size, f"PgBouncer pool {pgbouncer_pool_size}"))
    return Prediction(term.value, term.label)


def max_client_conn(strategy: Strategy, variant: Variant) -> int:
    """PgBouncer's ``max_client_conn`` for the variant: the app's sessions and some headroom."""
    return max(100, app_sessions(strategy, variant).value + CLIENT_HEADROOM)


def warning(key: str, prediction: Prediction, max_connections: int) -> str | None:
    """A line for the user when the prediction does not fit, else None."""
    if prediction.fits(max_connections):
        return None
    return (
        f"{key}: up to {prediction.connections} server connections ({prediction.basis}) "
        f"plus connbench's own {OWN_SESSIONS}, but max_connections is {max_connections}: "
        "expect 'too many clients' errors"
    )
