"""Through PgBouncer, end to end: real PostgreSQL, real PgBouncer, real uvicorn, short runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from connbench import runner
from connbench.infra import pgbouncer, postgres
from connbench.model import results
from connbench.model.scenario import build

from .conftest import ROOT, RecordingReporter, part, run_cli

PGBOUNCER_POOL = 4
CONCURRENCY = 8  # more clients than PgBouncer's pool: some have to wait


@pytest.fixture(scope="module")
def bounced(
    tmp_path_factory: pytest.TempPathFactory, pg: postgres.Postgres
) -> tuple[results.RunResult, Path, str]:
    """One run of both strategies through both modes, on the session's server (as a DSN, so
    that the test knows the password to look for)."""
    if pgbouncer.binary() is None:
        pytest.skip(f"pgbouncer is not installed ({pgbouncer.INSTALL_HINT}; make test does it)")
    scenario = build(
        None,
        {
            "strategies": ["pool,connect"],
            "topology": "pgbouncer-transaction,pgbouncer-session",
            "concurrency": str(CONCURRENCY),
            "duration_s": "1",
            "warmup_s": "0.3",
            "pool_min": "3",
            "pgbouncer_pool_size": str(PGBOUNCER_POOL),
            "postgres": pg.dsn,
        },
    )
    out = tmp_path_factory.mktemp("bounced") / "r.json"
    reporter = RecordingReporter()
    runner.execute(scenario, reporter, out)
    shown = "\n".join(reporter.notes) + "".join(str(r.failure) for r in reporter.finished)
    return results.load(out), out, shown


def _result(run: results.RunResult, strategy: str, topology: str) -> results.StrategyResult:
    return next(
        r
        for r in run.results
        if r.strategy == strategy and r.variant.topology == f"pgbouncer-{topology}"
    )


@pytest.mark.parametrize("topology", ["transaction", "session"])
@pytest.mark.parametrize("strategy", ["pool", "connect"])
def test_serves_through_pgbouncer_with_rows_matching_responses(
    bounced: tuple[results.RunResult, Path, str], strategy: str, topology: str
) -> None:
    result = _result(bounced[0], strategy, topology)
    assert result.status == "ok", result.failure
    assert result.variant.key.endswith(f" via=pgbouncer-{topology}")
    assert part(result.requests).ok > 0
    # The pool runs its INSERT far more than psycopg's 5 times per connection: in transaction
    # mode that only works because prepared statements are off.
    assert part(result.requests).errors == 0, result.requests
    assert part(result.integrity).ok is True
    pgb = part(part(result.server).pgbouncer)
    assert pgb.mode == topology
    assert pgb.pool_size == PGBOUNCER_POOL
    assert pgb.auth == "scram-secret"
    assert pgb.samples > 5 and pgb.sampler_failures == 0
    assert part(pgb.transactions) > 0
    assert part(pgb.sv_active_peak) <= PGBOUNCER_POOL
    assert part(result.cpu_percent).pgbouncer is not None


@pytest.mark.parametrize("topology", ["transaction", "session"])
def test_per_request_connections_reuse_pgbouncers_server_pool(
    bounced: tuple[results.RunResult, Path, str], topology: str
) -> None:
    result = _result(bounced[0], "connect", topology)
    # Direct, connect opens a server session per response; through PgBouncer the server
    # sees PgBouncer's few, kept open and reused.
    assert 1 <= part(part(result.server).sessions_opened) <= PGBOUNCER_POOL
    assert part(result.integrity).ok_responses > 5 * PGBOUNCER_POOL
    assert 1 <= part(part(result.server).connections_peak) <= PGBOUNCER_POOL
    predicted = part(part(result.server).predicted)
    assert predicted.connections == PGBOUNCER_POOL
    assert predicted.basis == f"min(concurrency {CONCURRENCY}, PgBouncer pool {PGBOUNCER_POOL})"


@pytest.mark.parametrize("topology", ["transaction", "session"])
def test_pool_through_pgbouncer_stays_within_its_size(
    bounced: tuple[results.RunResult, Path, str], topology: str
) -> None:
    result = _result(bounced[0], "pool", topology)
    assert 1 <= part(part(result.server).connections_peak) <= 3
    assert part(part(result.server).predicted).connections == 3


def test_the_password_is_nowhere_in_the_result(
    bounced: tuple[results.RunResult, Path, str], pg: postgres.Postgres
) -> None:
    run, path, shown = bounced
    password = str(conninfo_to_dict(pg.dsn)["password"])
    text = path.read_text()
    assert password not in text and password not in shown
    assert "SCRAM-SHA-256$" not in text  # nor the secret PgBouncer authenticates with
    assert json.loads(text)["schema_version"] == results.SCHEMA_VERSION
    assert run.scenario.topology == ["pgbouncer-transaction", "pgbouncer-session"]
    assert run.scenario.pgbouncer_pool_size == PGBOUNCER_POOL


@pytest.mark.integration
def test_without_pgbouncer_its_variants_are_unavailable_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    out = tmp_path / "r.json"
    proc = run_cli(
        "run", "--strategy", "pool", "--topology", "direct,pgbouncer-transaction",
        "--duration", "0.5", "--warmup", "0", "-o", str(out),
        cwd=ROOT, env_extra={"CONNBENCH_PGBOUNCER": str(tmp_path / "no-pgbouncer")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "pgbouncer is not installed (apt-get install pgbouncer)" in proc.stdout
    direct, bounced = results.load(out).results
    assert direct.status == "ok" and part(direct.requests).ok > 0
    assert bounced.status == "unavailable"
    assert bounced.failure == "pgbouncer is not installed (apt-get install pgbouncer)"


LIBRARY_STRATEGIES = ["sqlalchemy", "sqlalchemy-nullpool", "asyncpg-pool", "sqlmodel"]


@pytest.fixture(scope="module")
def libraries_bounced(tmp_path_factory: pytest.TempPathFactory) -> results.RunResult:
    if pgbouncer.binary() is None:
        pytest.skip(f"pgbouncer is not installed ({pgbouncer.INSTALL_HINT}; make test does it)")
    scenario = build(
        None,
        {
            "strategies": [",".join(LIBRARY_STRATEGIES)],
            "topology": "pgbouncer-transaction",
            "concurrency": str(CONCURRENCY),
            "duration_s": "1",
            "warmup_s": "0.3",
            "pool_min": "3",
            "pgbouncer_pool_size": str(PGBOUNCER_POOL),
        },
    )
    out = tmp_path_factory.mktemp("libraries") / "r.json"
    runner.execute(scenario, RecordingReporter(), out)
    return results.load(out)


@pytest.mark.parametrize("strategy", LIBRARY_STRATEGIES)
@pytest.mark.integration
def test_library_strategies_serve_through_transaction_mode(
    libraries_bounced: results.RunResult, strategy: str
) -> None:
    """Each runs its INSERT far more than 5 times a connection: in transaction mode that works
    only with prepared statements off (psycopg) or asyncpg's statement cache off."""
    result = next(r for r in libraries_bounced.results if r.strategy == strategy)
    assert result.status == "ok", result.failure
    requests = part(result.requests)
    assert requests.ok > 5 * PGBOUNCER_POOL
    assert requests.errors == 0, requests
    assert part(result.integrity).ok is True
    assert part(part(part(result.server).pgbouncer).sv_active_peak) <= PGBOUNCER_POOL
