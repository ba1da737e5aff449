"""PgBouncer between the apps and PostgreSQL: config in a temp dir, start, wait, stop.

Topologies (the ``--topology`` value):

- ``direct`` (default): the app connects to PostgreSQL.
- ``pgbouncer-transaction``, ``pgbouncer-session``: the app connects to a PgBouncer started
  for the variant in that pool mode, which holds at most ``pool_size`` server connections.

PgBouncer listens on 127.0.0.1 only (no unix socket), on a free port, and refuses to run as
root: as root it runs as the same unprivileged OS user as PostgreSQL. Clients authenticate
with SCRAM. Its auth file holds the server's SCRAM secret for the user, read from
``pg_authid`` as an ``auth_query`` would, so PgBouncer logs in to the server with the client's
proof (SCRAM pass-through) and the password itself is never written down; where that secret
cannot be read (an external server, as a non-superuser) the file holds the password (and
PgBouncer then pays a PBKDF2 per client login). Either way the file is 0600 in a private temp
dir removed on exit, and is never printed or saved in results.

Server sessions are tagged ``application_name=connbench-app`` in PgBouncer's own connection
string, as the apps' sessions are. Without it a server session carries the name only while a
client that set it is linked to it: ``DISCARD ALL`` (session mode) resets it when the client
leaves, and the sampler would not see PgBouncer's idle server connections.
"""

from __future__ import annotations

import getpass
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from connbench.infra import procs, tempdirs
from connbench.infra.postgres import CONNECT_TIMEOUT_S, Postgres
from connbench.model.errors import ProcessError
from connbench.model.sessions import APP_NAME

POOL_MODES = {"pgbouncer-transaction": "transaction", "pgbouncer-session": "session"}
PSYCOPG_PREPARE_THRESHOLD = 5  # psycopg's default
READY_TIMEOUT_S = 15.0
INSTALL_HINT = "apt-get install pgbouncer"
DATABASE = "connbench"  # the name apps connect to; PgBouncer maps it to the real database
ADMIN_DATABASE = "pgbouncer"  # PgBouncer's admin console (SHOW POOLS, SHOW STATS ...)
SEARCH_PATH = "/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin"


@dataclass(frozen=True)
class PgBouncer:
    """A running PgBouncer in front of one server."""

    mode: str  # transaction | session
    pool_size: int
    port: int
    pid: int
    version: str
    auth: str  # scram-secret | password: what its auth file holds (not the value)
    dsn: str = field(repr=False)  # for the apps; holds the password
    admin_dsn: str = field(repr=False)  # the admin console; holds the password
    # Its exit code once it has stopped, None while it runs.
    exit_code: Callable[[], int | None] = field(default=lambda: None, repr=False, compare=False)
    database: str = DATABASE  # the name its clients connect to (its pools are named so)

    def describe(self) -> dict[str, Any]:
        """What a result records about it (no secrets)."""
        return {
            "version": self.version,
            "mode": self.mode,
            "pool_size": self.pool_size,
            "auth": self.auth,
        }


@dataclass(frozen=True)
class Login:
    """An own app's role and database, for PgBouncer to let it in and map it (its SCRAM secret
    in the auth file, so that PgBouncer logs in to the server with the client's proof)."""

    user: str
    password: str = field(repr=False)
    secret: str = field(repr=False)  # the SCRAM verifier the server stores for it
    dbname: str


@dataclass(frozen=True)
class Route:
    """How an app reaches the server: its ``DATABASE_URL`` and what that path requires."""

    topology: str
    dsn: str = field(repr=False)  # holds the password
    # psycopg's server-side prepared statements break behind a transaction-mode pooler: a
    # careful user turns them off (None) there.
    prepare_threshold: int | None
    bouncer: PgBouncer | None = None


def binary() -> Path | None:
    """The pgbouncer executable: ``$CONNBENCH_PGBOUNCER``, else PATH, else the sbin dirs."""
    override = os.environ.get("CONNBENCH_PGBOUNCER")
    if override:
        return Path(override) if os.access(override, os.X_OK) else None
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path=SEARCH_PATH)
    return Path(found) if found else None


def unavailable(topology: str) -> str | None:
    """Why ``topology`` cannot run on this machine (with the install hint), or None."""
    if topology in POOL_MODES and binary() is None:
        return f"pgbouncer is not installed ({INSTALL_HINT})"
    return None


@contextmanager
def route(
    pg: Postgres,
    topology: str,
    *,
    pool_size: int,
    max_client_conn: int,
    conn: psycopg.Connection[Any] | None = None,
) -> Iterator[Route]:
    """The app's way to ``pg`` for ``topology``; starts and stops a PgBouncer if it has one.

    ``conn``, an open connection to ``pg``, is used to read what PgBouncer authenticates with.
    Raises :class:`ProcessError` (with PgBouncer's log tail) when it does not come up.
    """
    if topology not in POOL_MODES:
        yield Route(topology, pg.app_dsn(), PSYCOPG_PREPARE_THRESHOLD)
        return
    mode = POOL_MODES[topology]
    with start(
        pg, mode, pool_size=pool_size, max_client_conn=max_client_conn, conn=conn
    ) as bouncer:
        threshold = None if mode == "transaction" else PSYCOPG_PREPARE_THRESHOLD
        yield Route(topology, bouncer.dsn, threshold, bouncer)


def config_text(
    *,
    server: dict[str, str],
    mode: str,
    port: int,
    pool_size: int,
    max_client_conn: int,
    auth_file: Path,
    admin_user: str,
    database: str = DATABASE,
    app_name: str = APP_NAME,
) -> str:
    """pgbouncer.ini for one server. ``server`` holds host, port, dbname (no password);
    clients reach it as ``database``."""
    target = " ".join(f"{key}={_quote(value)}" for key, value in server.items())
    return f"""\
[databases]
{_quote(database)} = {target} application_name={app_name}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
; no unix socket: loopback TCP only
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {auth_file}
admin_users = {admin_user}
pool_mode = {mode}
default_pool_size = {pool_size}
max_client_conn = {max_client_conn}
; per-request strategies connect hundreds of times a second: two log lines each would
; cost PgBouncer's single core and fill the log
log_connections = 0
log_disconnections = 0
"""


def userlist_text(user: str, secret: str) -> str:
    """The auth file: one user and its SCRAM secret or password, quoted as PgBouncer reads."""
    return f'"{_escape(user)}" "{_escape(secret)}"\n'


def _escape(value: str) -> str:
    return value.replace('"', '""')


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'" if any(c in value for c in " '") else value


def _auth_secret(
    pg: Postgres, password: str, conn: psycopg.Connection[Any] | None
) -> tuple[str, str]:
    """(what the auth file holds, its kind): the server's SCRAM secret where it can be read.

    Asks on ``conn`` if given (a new session would count among the app's sessions opened).
    Raises :class:`ProcessError` when there is no password: the apps could not log in.
    """
    if not password:
        raise ProcessError(
            "pgbouncer: the server's connection string has no password, and the apps need one "
            "to authenticate to PgBouncer (SCRAM)"
        )
    try:
        with nullcontext(conn) if conn is not None else pg.connect() as c:
            row = c.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error:  # not a superuser: pg_authid is out of reach
        row = None
    if row and isinstance(row[0], str) and row[0].startswith("SCRAM-SHA-256$"):
        return row[0], "scram-secret"
    return password, "password"


@contextmanager
def start(
    pg: Postgres,
    mode: str,
    *,
    pool_size: int,
    max_client_conn: int,
    conn: psycopg.Connection[Any] | None = None,
    login: Login | None = None,
) -> Iterator[PgBouncer]:
    """Start PgBouncer in ``mode`` in front of ``pg``, wait until its console answers, yield.

    With ``login`` (an own app), its clients are that role on that database (which they reach
    by its own name), and ``dsn`` is theirs; the admin console stays connbench's.

    Stops it (SIGTERM: immediate shutdown) and removes its temp dir on exit. Raises
    :class:`ProcessError` with its log tail when it exits or does not answer within
    ``READY_TIMEOUT_S``.
    """
    exe = binary()
    if exe is None:
        raise ProcessError(f"pgbouncer is not installed ({INSTALL_HINT})")
    params = conninfo_to_dict(pg.dsn)
    user = str(params.get("user") or getpass.getuser())
    password = str(params.get("password") or "")
    server = {
        key: str(params[key]) for key in ("host", "port", "dbname") if params.get(key) is not None
    }
    secret, auth = _auth_secret(pg, password, conn)
    os_user = procs.unprivileged_user()
    with ExitStack() as stack:
        tmp = tempdirs.make_for_user("pgbouncer", os_user, stack)
        port = procs.free_port()
        userlist = userlist_text(user, secret)
        if login is not None:
            server["dbname"] = login.dbname
            userlist += userlist_text(login.user, login.secret)
        auth_file = tempdirs.write_private(tmp / "userlist.txt", userlist, os_user)
        config = tempdirs.write_private(
            tmp / "pgbouncer.ini",
            config_text(
                server=server,
                mode=mode,
                port=port,
                pool_size=pool_size,
                max_client_conn=max_client_conn,
                auth_file=auth_file,
                admin_user=user,
                database=login.dbname if login is not None else DATABASE,
                app_name=pg.app_name,
            ),
            os_user,
        )
        log_path = tempdirs.write_private(tmp / "pgbouncer.log", "", os_user)
        proc = stack.enter_context(
            procs.Child(
                [str(exe), str(config)],
                name="pgbouncer",
                log_path=log_path,
                env=procs.child_env({}),
                cwd=tmp,
                user=os_user,
            )
        ).proc
        client = make_conninfo(host="127.0.0.1", port=port, user=user, password=password)
        admin_dsn = make_conninfo(client, dbname=ADMIN_DATABASE)
        version = _wait_ready(admin_dsn, port, proc, log_path)
        dsn = make_conninfo(client, dbname=DATABASE, application_name=pg.app_name)
        if login is not None:
            dsn = make_conninfo(
                host="127.0.0.1",
                port=port,
                user=login.user,
                password=login.password,
                dbname=login.dbname,
            )
        yield PgBouncer(
            mode=mode,
            pool_size=pool_size,
            port=port,
            pid=proc.pid,
            version=version,
            auth=auth,
            dsn=dsn,
            admin_dsn=admin_dsn,
            exit_code=proc.poll,
            database=login.dbname if login is not None else DATABASE,
        )


def admin_connect(admin_dsn: str) -> psycopg.Connection[Any]:
    """A connection to the admin console (simple statements only: autocommit, no prepare)."""
    return psycopg.connect(
        admin_dsn, autocommit=True, prepare_threshold=None, connect_timeout=CONNECT_TIMEOUT_S
    )


def _wait_ready(admin_dsn: str, port: int, proc: procs.Process, log_path: Path) -> str:
    """Wait until the admin console answers; return PgBouncer's version."""
    version = ""

    def answers() -> bool:
        nonlocal version
        try:
            with admin_connect(admin_dsn) as conn:
                row = conn.execute("SHOW VERSION").fetchone()
        except psycopg.OperationalError:
            return False
        version = str(row[0]).removeprefix("PgBouncer ") if row else ""
        return True

    procs.wait_until(
        answers,
        what=f"pgbouncer on 127.0.0.1:{port}",
        timeout_s=READY_TIMEOUT_S,
        proc=proc,
        log_path=log_path,
    )
    return version
