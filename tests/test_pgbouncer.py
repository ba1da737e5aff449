"""PgBouncer's lifecycle against the real embedded PostgreSQL (``make test`` installs it)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from connbench.infra import pgbouncer, postgres
from connbench.measure import sampler
from connbench.model.errors import ProcessError

from .processes import serving


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    if pgbouncer.binary() is None:
        pytest.skip(f"pgbouncer is not installed ({pgbouncer.INSTALL_HINT}; make test does it)")


def _app_sessions(pg: postgres.Postgres) -> list[tuple[str, str]]:
    with pg.connect() as conn:
        rows = conn.execute(
            "SELECT application_name, state FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend' AND application_name <> 'connbench-sampler'"
        ).fetchall()
    return [(str(name), str(state)) for name, state in rows]


def test_runs_unprivileged_on_loopback_and_leaves_nothing(pg: postgres.Postgres) -> None:
    password = str(conninfo_to_dict(pg.dsn)["password"])
    with pgbouncer.start(pg, "transaction", pool_size=2, max_client_conn=100) as bouncer:
        proc = psutil.Process(bouncer.pid)
        if os.geteuid() == 0:
            assert proc.username() != "root"  # PgBouncer refuses root
        listening = [c.laddr for c in proc.net_connections() if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", bouncer.port)]
        config = Path(proc.cmdline()[-1])
        tmp = config.parent
        assert password not in config.read_text()
        assert bouncer.auth == "scram-secret"  # the password itself is not written down
        assert password not in (tmp / "userlist.txt").read_text()
        assert bouncer.version.startswith("1.")
        assert password not in repr(bouncer)
        with psycopg.connect(bouncer.dsn) as conn:
            row = conn.execute("SELECT current_setting('application_name')").fetchone()
        assert row == ("connbench-app",)
    assert not tmp.exists()
    assert not psutil.pid_exists(bouncer.pid) or proc.status() == psutil.STATUS_ZOMBIE


def test_idle_server_connections_keep_the_apps_name_in_session_mode(
    pg: postgres.Postgres,
) -> None:
    # DISCARD ALL resets application_name when a session-mode client leaves; the sampler
    # counts app sessions by that name, so PgBouncer must log in with it.
    with pgbouncer.start(pg, "session", pool_size=2, max_client_conn=100) as bouncer:
        with psycopg.connect(bouncer.dsn) as conn:
            conn.execute("SELECT 1")
        with pgbouncer.admin_connect(bouncer.admin_dsn) as admin:
            pools = admin.execute("SHOW POOLS").fetchall()
        assert _app_sessions(pg) == [("connbench-app", "idle")]
        assert pools  # the admin console answers simple statements
    with pg.connect() as conn:
        assert sampler.wait_for_app_sessions_to_end(conn) == 0  # gone with PgBouncer


def test_route_turns_prepared_statements_off_in_transaction_mode(pg: postgres.Postgres) -> None:
    for topology, threshold in [
        ("direct", 5),
        ("pgbouncer-session", 5),
        ("pgbouncer-transaction", None),
    ]:
        with pgbouncer.route(pg, topology, pool_size=2, max_client_conn=100) as route:
            assert route.prepare_threshold == threshold
            assert (route.bouncer is None) == (topology == "direct")
            with psycopg.connect(route.dsn) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_missing_binary_is_unavailable_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg: postgres.Postgres
) -> None:
    monkeypatch.setenv("CONNBENCH_PGBOUNCER", str(tmp_path / "no-pgbouncer"))
    assert pgbouncer.binary() is None
    expected = "pgbouncer is not installed (apt-get install pgbouncer)"
    assert pgbouncer.unavailable("pgbouncer-session") == expected
    assert pgbouncer.unavailable("direct") is None
    with pytest.raises(ProcessError, match="apt-get install pgbouncer"):
        with pgbouncer.start(pg, "session", pool_size=1, max_client_conn=100):
            pass


def test_config_is_loopback_only_and_holds_no_secret() -> None:
    text = pgbouncer.config_text(
        server={"host": "127.0.0.1", "port": "5432", "dbname": "my db"},
        mode="transaction",
        port=6432,
        pool_size=7,
        max_client_conn=150,
        auth_file=Path("/x/userlist.txt"),
        admin_user="connbench",
    )
    assert (
        "connbench = host=127.0.0.1 port=5432 dbname='my db' application_name=connbench-app" in text
    )
    for line in (
        "listen_addr = 127.0.0.1",
        "unix_socket_dir =\n",
        "pool_mode = transaction",
        "default_pool_size = 7",
        "max_client_conn = 150",
        "auth_type = scram-sha-256",
    ):
        assert line in text  # fmt: skip
    assert pgbouncer.userlist_text('we"ird', "SCRAM-SHA-256$4096:abc") == (
        '"we""ird" "SCRAM-SHA-256$4096:abc"\n'
    )


@pytest.mark.integration
def test_serve_runs_the_runners_variant_through_pgbouncer(tmp_path: Path) -> None:
    """`serve` reuses the runner's per-variant step: PgBouncer, then the app behind it."""
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
    with serving(
        "pool", "--topology", "pgbouncer-transaction", "--pool-min", "2", "--pool-max", "2",
        env=env,
    ) as served:  # fmt: skip
        said = served.process.stdout
        assert served.strategy == "pool" and "(transaction mode) on 127.0.0.1:" in said, said
        for _ in range(5):
            assert httpx.get(served.url, timeout=10).status_code == 200
        served.process.stop(signal.SIGINT)
    out, err = served.process.stdout, served.process.stderr
    assert served.process.returncode == 130, err
    assert "stopped" in out and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # logs, PgBouncer's files: all gone
