"""The PostgreSQL backends, each against a real server."""

import os
import socket
from pathlib import Path

import psycopg
import pytest

from connbench.infra import ledger, postgres
from connbench.model import dsn
from connbench.model.backend import DEFAULT_DOCKER_IMAGE, DOCKER_IMAGE_ENV
from connbench.model.errors import BadInput, MissingDependency, PostgresError

from .conftest import VISITS_TABLE_PREFIX
from .processes import all_gone


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("embedded", "embedded"),
        ("local", "local"),
        ("docker", "docker"),
        ("docker:postgres:15", "docker"),
        ("postgresql://u@localhost/db", "external"),
        ("host=localhost dbname=x", "external"),
    ],
)
def test_parse_backend(value: str, kind: str) -> None:
    assert postgres.parse_backend(value).kind == kind
    assert postgres.parse_backend("docker:postgres:15").image == "postgres:15"


def test_display_hides_password() -> None:
    shown = dsn.display("postgresql://bob:s3cret@db.example:6432/app?sslmode=require")
    assert shown == "postgresql://bob@db.example:6432/app"
    assert "s3cret" not in dsn.display("host=h user=bob password=s3cret dbname=app")


@pytest.mark.integration
def test_embedded_server_is_loopback_only_and_settings_apply() -> None:
    with postgres.start(
        postgres.parse_backend("embedded"), settings={"max_connections": "25"}
    ) as pg:
        assert pg.settings["max_connections"] == "25"
        with pg.connect() as conn:
            row = conn.execute("SHOW listen_addresses").fetchone()
            assert row is not None and row[0] == "127.0.0.1"
            row = conn.execute("SHOW data_directory").fetchone()
            assert row is not None
            datadir = row[0]
        assert os.path.isdir(datadir)
        pid = pg.server_pid
    assert not os.path.exists(os.path.dirname(datadir)), "temp dir left behind"
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.integration
def test_local_backend_uses_binaries_on_path() -> None:
    try:
        postgres.local_bindir()
    except MissingDependency as exc:
        pytest.skip(f"no local PostgreSQL binaries: {exc}")
    with postgres.start(postgres.parse_backend("local")) as pg:
        assert pg.backend == "local"
        assert pg.count_rows() == 0


def test_local_backend_without_binaries_says_so(tmp_path: Path) -> None:
    with pytest.raises(MissingDependency, match="local: no PostgreSQL binaries"):
        postgres.local_bindir(path=str(tmp_path), search=())


def test_external_touches_only_its_own_table(pg: postgres.Postgres) -> None:
    with pg.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users_data (id int)")
        conn.execute("INSERT INTO users_data VALUES (1)")
    with postgres.start(postgres.parse_backend(pg.dsn)) as ext:
        assert ext.backend == "external"
        assert ext.table == ledger.table_name(ext.run_id)
        table = ext.table
        with ext.connect() as conn:
            conn.execute(
                psycopg.sql.SQL("INSERT INTO {} DEFAULT VALUES").format(
                    psycopg.sql.Identifier(ext.table)
                )
            )
        assert ext.count_rows() == 1
        assert ext.version == pg.version
    with pg.connect() as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        # Its own table gone, and no other of connbench's (named as the package names them: a
        # prefix written here would pass whatever connbench leaves once it is renamed).
        assert table not in tables
        assert not any(t.startswith(VISITS_TABLE_PREFIX) for t in tables), tables
        row = conn.execute("SELECT count(*) FROM users_data").fetchone()
        assert row is not None and row[0] == 1
        conn.execute("DROP TABLE users_data")


def test_unreachable_dsn_is_bad_input_without_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        dsn = f"postgresql://bob:hunter2@127.0.0.1:{port}/app"
        with pytest.raises(BadInput) as info, postgres.start(postgres.parse_backend(dsn)):
            pass
    message = str(info.value)
    assert message.startswith(f"cannot connect to postgresql://bob@127.0.0.1:{port}/app")
    assert "hunter2" not in message


def test_external_rejects_server_settings(pg: postgres.Postgres) -> None:
    with (
        pytest.raises(BadInput, match="cannot be changed on an external server"),
        postgres.start(postgres.parse_backend(pg.dsn), settings={"max_connections": "10"}),
    ):
        pass


def test_bare_docker_uses_the_image_make_docker_engine_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DOCKER_IMAGE_ENV, "localhost/postgres:15-local")
    assert postgres.parse_backend("docker").image == "localhost/postgres:15-local"
    assert postgres.parse_backend("docker:postgres:17").image == "postgres:17"
    monkeypatch.delenv(DOCKER_IMAGE_ENV)
    assert postgres.parse_backend("docker").image == DEFAULT_DOCKER_IMAGE
    monkeypatch.setenv(DOCKER_IMAGE_ENV, "Not An/Image")
    with pytest.raises(BadInput, match=f"^{DOCKER_IMAGE_ENV}: 'Not An/Image' is not an image"):
        postgres.parse_backend("docker")


@pytest.mark.parametrize(
    "image",
    ["postgres", "localhost/postgres:15-local", "ghcr.io/org/pg:16.2", "localhost:5000/a/b_c:x",
     "postgres@sha256:" + "0" * 64],
)  # fmt: skip
def test_docker_image_references(image: str) -> None:
    assert postgres.parse_backend(f"docker:{image}").image == image


@pytest.mark.parametrize("image", ["Bad:Image", "../x", "a b", "x:", "-x", "x@sha256:00"])
def test_docker_bad_image_reference_is_one_line_before_any_engine(image: str) -> None:
    # The engine's answer to these would be a 404 on a rewritten URL, or worse: say it here.
    with pytest.raises(BadInput, match="^--postgres docker:IMAGE: '.*' is not an image"):
        postgres.parse_backend(f"docker:{image}")


def test_docker_without_engine_is_one_clear_error() -> None:
    if postgres.docker_available():
        pytest.skip("a Docker engine answers here")
    with pytest.raises(MissingDependency, match="docker: no Docker engine answers"):
        with postgres.start(postgres.parse_backend("docker")):
            pass


@pytest.mark.integration
def test_embedded_runs_from_a_private_copy_when_its_install_is_out_of_reach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As root with the venv under a 0700 directory, the postgres user cannot run the wheel's
    binaries in place; connbench runs a copy (which must still find its vendored libraries)."""
    if os.geteuid() != 0:
        pytest.skip("the copy is only made when running as root")
    original = postgres.embedded_bindir()
    real_usable_by = postgres._usable_by
    monkeypatch.setattr(postgres, "_usable_by", lambda b, u: b != original and real_usable_by(b, u))
    with postgres.start(postgres.parse_backend("embedded")) as pg:
        assert pg.bindir is not None and pg.bindir != original
        assert pg.count_rows() == 0


@pytest.mark.integration
def test_a_server_whose_parent_is_killed_goes_even_with_a_client_connected() -> None:
    """connbench killed with SIGKILL runs no cleanup: the kernel's parent-death signal must
    stop its PostgreSQL, and SIGTERM would not (a "smart" shutdown waits for every client,
    such as an app that is still connected)."""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    script = (
        "import sys, time; from connbench.infra import postgres\n"
        "with postgres.start(postgres.parse_backend('embedded')) as pg:\n"
        "    print(pg.server_pid, flush=True); print(pg.dsn, flush=True); time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    server: psutil.Process | None = None  # its PID alone may be another's once it is gone
    try:
        assert owner.stdout is not None
        server = psutil.Process(int(owner.stdout.readline()))
        client = psycopg.connect(owner.stdout.readline().strip(), autocommit=True)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 30
        while not all_gone([server]) and time.monotonic() < deadline:
            time.sleep(0.2)
        gone = all_gone([server])
        client.close()
        assert gone, "the orphaned PostgreSQL still runs while a client is connected"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        if server is not None and not all_gone([server]):  # the failing case: do not leave it
            server.send_signal(signal.SIGINT)


def test_container_cpu_is_read_only_from_that_containers_cgroup() -> None:
    # This process is no container's: whatever its cgroup, it must not be read as one.
    assert postgres.container_cpu_reader(os.getpid(), "0123456789abcdef") is None
    assert postgres.container_cpu_reader(None, "0123456789abcdef") is None
    assert postgres.container_cpu_reader(2**22 + 1, "0123456789abcdef") is None  # no such pid


def test_a_container_published_beyond_loopback_is_refused() -> None:
    def attrs(*ips: str) -> dict[str, object]:
        ports = [{"HostIp": ip, "HostPort": "5999"} for ip in ips]
        return {"NetworkSettings": {"Ports": {"5432/tcp": ports}}}

    assert postgres._published_port(attrs("127.0.0.1"), "img") == 5999
    assert postgres._published_port({"NetworkSettings": {"Ports": {}}}, "img") is None
    for ips in (("0.0.0.0",), ("127.0.0.1", "::"), ("",)):
        with pytest.raises(PostgresError, match="not on 127.0.0.1 only"):
            postgres._published_port(attrs(*ips), "img")
