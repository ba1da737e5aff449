"""Own apps through PgBouncer, in transaction and session mode, as their own role (its SCRAM
secret in PgBouncer's auth file): an asyncpg app with its default statement cache fails in
transaction mode, with the cause named; with statement_cache_size=0 it passes."""

from __future__ import annotations

import pytest

from connbench import runner
from connbench.infra import pgbouncer, postgres
from connbench.model import results
from connbench.model.scenario import build

from .conftest import RecordingReporter, part

pytestmark = pytest.mark.skipif(pgbouncer.binary() is None, reason="pgbouncer not installed")


@pytest.fixture(scope="module")
def bounced(tmp_path_factory: pytest.TempPathFactory, pg: postgres.Postgres) -> results.RunResult:
    scenario_file = tmp_path_factory.mktemp("bounced") / "b.toml"
    scenario_file.write_text(
        """
topology = ["pgbouncer-transaction", "pgbouncer-session"]
concurrency = 6
duration_s = 2
warmup_s = 0.5

[[app]]
name = "cached"
app = "tests.apps.asyncpg_cache_app:app"
count_sql = "SELECT count(*) FROM hits"

[[app]]
name = "uncached"
app = "tests.apps.asyncpg_cache_app:app"
count_sql = "SELECT count(*) FROM hits"
env = { STATEMENT_CACHE_SIZE = "0" }
"""
    )
    out = scenario_file.with_suffix(".json")
    runner.execute(build(scenario_file, {"postgres": pg.dsn}), RecordingReporter(), out)
    return results.load(out)


def _run(run: results.RunResult, name: str, topology: str) -> results.StrategyResult:
    return next(r for r in run.results if r.strategy == name and r.variant.topology == topology)


def test_default_statement_cache_fails_in_transaction_mode_with_the_cause(
    bounced: results.RunResult,
) -> None:
    cached = _run(bounced, "cached", "pgbouncer-transaction")
    assert part(cached.requests).errors > 0
    [named] = [w for w in cached.warnings if "prepared statement" in w]
    assert "pgbouncer-transaction shares server connections between clients" in named
    assert "statement_cache_size=0" in named


@pytest.mark.parametrize(
    ("name", "topology"),
    [
        ("uncached", "pgbouncer-transaction"),
        ("uncached", "pgbouncer-session"),
        ("cached", "pgbouncer-session"),
    ],
)
def test_what_pgbouncer_allows_passes_through_it(
    bounced: results.RunResult, name: str, topology: str
) -> None:
    result = _run(bounced, name, topology)
    assert result.status == "ok", result.failure
    assert part(result.requests).errors == 0 and part(result.integrity).ok is True
    server = part(result.server)
    assert server.pgbouncer is not None and server.pgbouncer.mode == topology.split("-")[1]
    # The app's sessions are PgBouncer's server connections to its database, at most its pool,
    # and PgBouncer's own view is of the app's pool.
    assert 1 <= part(server.connections_peak) <= 20
    assert (server.pgbouncer.samples or 0) > 3 and server.pgbouncer.transactions
    assert not [w for w in result.warnings if "prepared statement" in w]
