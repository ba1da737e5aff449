"""A PostgreSQL to benchmark against, behind one context manager, whatever the backend.

Backends (the ``--postgres`` value):

- ``embedded`` (default): the binaries bundled in the ``pgserver`` wheel, so pip is all a fresh
  machine needs.
- ``local``: ``initdb``/``postgres`` found on PATH or in the usual install directories.
- ``docker[:IMAGE]``: a container through testcontainers, when a Docker engine answers.
- ``postgresql://...``: an existing server. connbench creates its own table there (named and
  marked with the run's id, see :mod:`connbench.infra.ledger`), touches nothing else, and drops
  that table on the way out; its apps' sessions carry the run's id in ``application_name``, so
  that runs sharing the server tell theirs apart.

Throwaway servers (embedded, local) live in a temp directory that is removed afterwards and
listen on 127.0.0.1 (and a socket in that directory) only, with SCRAM password auth and a random
password that is never printed. PostgreSQL refuses to run as root, so as root they run as an
unprivileged OS user (``postgres`` if it exists, else a ``connbench`` system user we create).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from connbench.infra import clusters, ledger, procs, tempdirs
from connbench.model import files

# Parsed in the model (a scenario validates --postgres); re-exported for the callers here.
from connbench.model.backend import Backend as Backend
from connbench.model.backend import docker_image
from connbench.model.backend import parse_backend as parse_backend
from connbench.model.dsn import display, redact, remember_secret
from connbench.model.errors import (
    BadInput,
    MissingDependency,
    PostgresError,
    ProcessError,
    first_line,
)
from connbench.model.sessions import APP_NAME, CONTROL_APP

READY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5
DEFAULT_TABLE = "visits"
SETTINGS_RECORDED = (
    "max_connections",
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "wal_level",
    "max_wal_size",
    "password_encryption",
)


@dataclass
class Postgres:
    """A running server and the table the benchmark writes to."""

    backend: str
    dsn: str = field(repr=False)  # holds the password: never print it, never save it
    table: str
    bindir: Path | None = None
    server_pid: int | None = None
    version: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    # Set for the servers connbench starts itself (embedded, local): see restart().
    restarter: Callable[[], Awaitable[None]] | None = field(default=None, repr=False)
    # The postmaster's exit code once it has stopped (None while it runs), for the servers
    # connbench starts itself; None for the others, whose processes it cannot watch.
    exit_code: Callable[[], int | None] | None = field(default=None, repr=False)
    restarting: bool = False  # a restart is stopping it on purpose
    # Names what this run creates on the server, and tags its apps' sessions (app_name).
    run_id: str = field(default_factory=ledger.new_run_id)
    app_name: str = APP_NAME  # an external server's carries the run id
    # What could not be dropped on the way out, one line each (said by the runner).
    cleanup_problems: list[str] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        """A server connbench does not own: what it creates there is marked and recorded."""
        return self.backend == "external"

    # CPU seconds the server has used so far, where it is not a process tree of ours to read
    # (a container: its cgroup); None where server_pid is what to read.
    cpu_s: Callable[[], float | None] | None = field(default=None, repr=False)

    def died(self) -> int | None:
        """The postmaster's exit code if it stopped while not being restarted, else None."""
        if self.exit_code is None or self.restarting:
            return None
        return self.exit_code()

    async def restart(self) -> None:
        """Stop the server fast (open sessions are cut) and start it again on the same port
        and data directory; return once it accepts connections again.

        Runs on the event loop without blocking it. Raises :class:`PostgresError` (with the log
        tail) when the server is not back within ``READY_TIMEOUT_S``, and for a server that
        connbench did not start.
        """
        if self.restarter is None:
            raise PostgresError(f"{self.backend}: connbench can only restart servers it starts")
        self.restarting = True
        try:
            await self.restarter()
        finally:
            self.restarting = False

    @property
    def display_dsn(self) -> str:
        return display(self.dsn)

    def app_dsn(self) -> str:
        """The DSN the apps use: tagged so the sampler can tell their sessions apart."""
        return make_conninfo(self.dsn, application_name=self.app_name)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self.dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True, **kwargs
        )

    def _using(
        self, conn: psycopg.Connection[Any] | None
    ) -> AbstractContextManager[psycopg.Connection[Any]]:
        return nullcontext(conn) if conn is not None else self.connect()

    def reset_table(self, conn: psycopg.Connection[Any] | None = None) -> None:
        """Empty the visits table (between strategies), on ``conn`` or a new connection."""
        with self._using(conn) as c:
            c.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.Identifier(self.table)))

    def count_rows(self, conn: psycopg.Connection[Any] | None = None) -> int:
        with self._using(conn) as c:
            row = c.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(self.table))
            ).fetchone()
        return int(row[0]) if row else 0

    def describe(self) -> None:
        """Fill ``version`` and ``settings`` from the server."""
        with self.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            self.version = str(row[0]) if row else ""
            rows = conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                [list(SETTINGS_RECORDED)],
            ).fetchall()
            self.settings = {str(name): str(value) for name, value in rows}


def _create_table(pg: Postgres) -> None:
    """The visits table: a new one (plain CREATE TABLE, failing if the name is taken), marked
    as this run's in the same transaction on a server connbench does not own."""
    with pg.connect() as conn, conn.transaction():
        table = sql.Identifier(pg.table)
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} ("
                "id bigserial PRIMARY KEY, timestamp timestamptz NOT NULL DEFAULT now())"
            ).format(table)
        )
        if pg.shared:
            mark = sql.Literal(ledger.marker(pg.run_id))
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table, mark))


@contextmanager
def start(
    backend: Backend, *, settings: Mapping[str, str] | None = None, workdir: Path | None = None
) -> Iterator[Postgres]:
    """Start (or reach) a server, create the table, yield; tear everything down on exit.

    ``settings`` are server settings (``max_connections`` ...) for the servers connbench starts;
    an external server's are recorded, not changed. Raises :class:`MissingDependency` when the
    backend's binaries or engine are missing, :class:`BadInput` for an unreachable DSN and
    :class:`PostgresError` when a server does not come up (with its log tail).
    """
    settings = dict(settings or {})
    if backend.kind == "external":
        assert backend.dsn is not None
        with _external(backend.dsn, settings) as pg:
            yield pg
        return
    if backend.kind == "docker":
        with _docker(backend.image or docker_image(), settings) as pg:
            yield pg
        return
    bindir = embedded_bindir() if backend.kind == "embedded" else local_bindir()
    with _cluster(backend.kind, bindir, settings, workdir) as pg:
        yield pg


# --- started early: while the command line imports the runner ------------------------------

EARLY_KINDS = ("embedded", "local")  # the servers connbench starts itself
EARLY_STOP_S = 120.0  # for a thread to finish a start (READY_TIMEOUT_S at most) and the stop


class Early:
    """A server :func:`start` starts on a :class:`connbench.infra.procs.Keeper` thread of its
    own, which holds it until :meth:`close` (or the end of :meth:`taken`) and then stops it and
    removes its temp dir, as :func:`start`'s exit does: the same code path, only on another
    thread, so every property of a start (the private temp dir, the password set over the
    socket, the cached cluster) holds. The postmaster is this process's child (the parent-death
    signal comes with the end of the process), and no signal reaches the thread: a Ctrl-C is
    the main thread's, which then closes it."""

    def __init__(self, backend: Backend, settings: Mapping[str, str]) -> None:
        self.backend = backend
        self.settings = dict(settings)
        self._started = threading.Event()  # up, or failed
        self._release = threading.Event()
        self._pg: Postgres | None = None
        self._error: BaseException | None = None
        self._thread = procs.Keeper(self._keep, name="connbench-postgres")
        self._thread.start()

    def _keep(self) -> None:
        try:
            with start(self.backend, settings=self.settings) as pg:
                self._pg = pg
                self._started.set()
                self._release.wait()
        except BaseException as exc:  # noqa: BLE001 - the taker's to raise, on its thread
            self._error = exc
        finally:
            self._started.set()

    def serves(self, backend: Backend, settings: Mapping[str, str]) -> bool:
        return backend == self.backend and dict(settings) == self.settings

    @contextmanager
    def taken(self) -> Iterator[Postgres]:
        """The server once it is up, as :func:`start` yields it (its errors raised here);
        stopped on the way out."""
        try:
            if not self._started.wait(EARLY_STOP_S):
                raise PostgresError(f"{self.backend.label}: not started after {EARLY_STOP_S:g} s")
            if self._pg is None:
                assert self._error is not None
                raise self._error
            yield self._pg
        finally:
            self.close()
        if self._error is not None:  # the stop failed, the body did not
            raise self._error

    def close(self) -> None:
        """Stop the server (once its start is over) and remove its temp dir; wait for that
        (``EARLY_STOP_S`` at most) even through a Ctrl-C, which is raised afterwards."""
        self._release.set()
        interrupted: KeyboardInterrupt | None = None
        deadline = time.monotonic() + EARLY_STOP_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:
                self._thread.join(deadline - time.monotonic())
            except KeyboardInterrupt as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted


_early: Early | None = None  # started by start_early, until taken or closed


def start_early(spec: str, settings: Mapping[str, str]) -> None:
    """Start the server ``spec`` (a ``--postgres`` value) names now, on a thread (see
    :class:`Early`), for the runner to take (:func:`take_early`): the command line calls this
    before it imports the runner (0.4 s), which then overlaps the server's start (the
    cluster's copy, postgres starting: files and subprocesses). Only the servers connbench
    starts itself; a container or an external server is reached when the runner asks. What
    goes wrong is raised when the runner takes it."""
    global _early
    backend = parse_backend(spec)
    if _early is None and backend.kind in EARLY_KINDS:
        _early = Early(backend, settings)


def take_early(
    backend: Backend, settings: Mapping[str, str]
) -> AbstractContextManager[Postgres] | None:
    """The server :func:`start_early` started, if it is ``backend`` with ``settings`` (see
    :meth:`Early.taken`); None otherwise (one that is not is stopped and removed first)."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    if not early.serves(backend, settings):  # pragma: no cover - the same scenario's
        early.close()
        return None
    return early.taken()


@contextmanager
def early_closed() -> Iterator[None]:
    """Stop a server :func:`start_early` started that no run took (the command failed, or
    was interrupted, before it ran) on the way out, and remove its temp dir."""
    global _early
    try:
        yield
    finally:
        early, _early = _early, None
        if early is not None:
            early.close()


# --- embedded and local: one code path, two sources of binaries ---------------------------


def embedded_bindir() -> Path:
    # Locate the bundled binaries without importing pgserver: its import has side effects
    # (lock files, a server registry) that connbench does not use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(
            "embedded: the pgserver package is not installed (pip install pgserver)"
        )
    bindir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (bindir / "postgres").exists():
        raise MissingDependency(f"embedded: no postgres binary in {bindir}; reinstall pgserver")
    return bindir


LOCAL_SEARCH = (
    "/usr/lib/postgresql/*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql*/bin",
)


def local_bindir(path: str | None = None, search: tuple[str, ...] = LOCAL_SEARCH) -> Path:
    """The directory holding ``initdb`` and ``postgres``: PATH first, then the usual places."""
    found = shutil.which("initdb", path=path)
    if found:
        bindir = Path(found).resolve().parent
        if (bindir / "postgres").exists():
            return bindir
    candidates: list[Path] = []
    for pattern in search:
        candidates.extend(Path("/").glob(pattern.lstrip("/")))

    def version_key(p: Path) -> tuple[int, ...]:
        digits = [int(part) for part in p.parts if part.isdigit()]
        return tuple(digits) or (0,)

    for bindir in sorted(candidates, key=version_key, reverse=True):
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise MissingDependency(
        "local: no PostgreSQL binaries (initdb, postgres) on PATH or in "
        "/usr/lib/postgresql/*/bin; install PostgreSQL or use --postgres embedded"
    )


def _usable_by(bindir: Path, user: str | None) -> bool:
    try:
        result = procs.run_to_end([str(bindir / "postgres"), "--version"], user=user, timeout_s=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def _private_copy(bindir: Path, tmp: Path) -> Path:
    """Copy the install that holds ``bindir`` into ``tmp``; return the copy's bindir.

    The wheel's binaries find their vendored libraries through the RPATH
    ``$ORIGIN/../../../pgserver.libs``, so the copy keeps that layout:
    ``tmp/pg/<install>/bin`` beside ``tmp/pgserver.libs``.
    """
    install = bindir.parent
    copy = tmp / "pg" / install.name
    shutil.copytree(install, copy, symlinks=True)
    libs = install.parent.parent / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, tmp / "pgserver.libs", symlinks=True)
    return copy / bindir.name


def _run_as(argv: list[str], user: str | None, what: str) -> None:
    result = procs.run_to_end(argv, user=user)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-15:])
        raise PostgresError(procs.with_cause(f"{what} failed (exit {result.returncode})", tail))


@contextmanager
def _setup_errors(kind: str, where: Path) -> Iterator[None]:
    """An OSError while preparing the server's directory (no space, no permission) as one
    :class:`PostgresError` whose first words are the cause."""
    try:
        yield
    except shutil.Error as exc:  # copytree gathers (src, dst, why) for each file it missed
        why = exc.args[0][0][2] if exc.args and exc.args[0] else str(exc)
        raise PostgresError(f"{kind}: {why} (preparing {where})") from None
    except OSError as exc:
        raise PostgresError(f"{kind}: {exc.strerror} (preparing {where})") from None


@contextmanager
def _cluster(
    kind: str, bindir: Path, settings: Mapping[str, str], workdir: Path | None
) -> Iterator[Postgres]:
    """A cluster in a private temp dir (a copy of the cached one, see :mod:`clusters`), then
    postgres on a free loopback port, run as an unprivileged user when we are root. Raises
    PostgresError when it does not come up."""
    user = procs.unprivileged_user()
    owner = tempdirs.owner_of(user)
    with ExitStack() as stack:
        tmp = tempdirs.make_for_user("pg", user, stack, workdir, on_disk=True)
        with _setup_errors(kind, tmp):
            entry = clusters.key(*_identity(bindir), *INITDB_OPTIONS)
            usable = _usable_by(bindir, user)
            if not usable and user is not None:
                # The install sits where `user` cannot reach (a venv under /root, say):
                # run a private copy instead of widening anyone's permissions.
                bindir = _private_copy(bindir, tmp)
                usable = _usable_by(bindir, user)
            if not usable:
                raise MissingDependency(f"{kind}: {bindir / 'postgres'} does not run here")
            # A name of its own each run, in a directory whose subdirectories ext4 spreads
            # (see tempdirs.spread_subdirs): its ~970 files are then made in 0.03 s, not the
            # 0.3-1 s they take back to back on a journal-less ext4.
            tempdirs.spread_subdirs(tmp)
            data = tmp / f"{tempdirs.DATA_PREFIX}{secrets.token_hex(4)}"
            log_path = tempdirs.write_private(tmp / "postgres.log", "", user)
            sockdir = files.private_subdir(tmp / "sock", owner)
        copied = _new_cluster(kind, bindir, data, entry, user, sockdir, log_path)
        password = secrets.token_urlsafe(24)
        remember_secret(password)
        port = procs.free_port()
        server = stack.enter_context(_server(bindir, data, port, sockdir, settings, log_path, user))
        # A throwaway cluster, deleted with the temp dir: stopped immediately (SIGQUIT, no
        # shutdown checkpoint), after the run has read all it measures. Registered after the
        # Child, so it runs first; the Child's own stop then finds it gone.
        stack.callback(_stop_immediately, server)
        what = f"{kind} postgres on 127.0.0.1:{port}"
        try:
            _wait_accepting(_socket_dsn(sockdir, port), what, server, log_path)
        except PostgresError as exc:
            if copied:  # a copy of the cache that does not start: rebuild it next time
                clusters.forget(entry)
                raise PostgresError(f"{exc}\n(the cached cluster was removed)") from None
            raise
        with psycopg.connect(_socket_dsn(sockdir, port), autocommit=True) as conn:
            _set_password(conn, password)
        admin_dsn = make_conninfo(
            host="127.0.0.1", port=port, user=ROLE, password=password, dbname=DATABASE
        )
        pg = Postgres(
            backend=kind,
            dsn=admin_dsn,
            table=DEFAULT_TABLE,
            bindir=bindir,
            server_pid=server.proc.pid,
            exit_code=lambda: server.proc.poll(),
        )
        pg.restarter = _restarter(pg, server, admin_dsn, what, log_path)
        _create_table(pg)
        pg.describe()
        yield pg


# initdb's options for every cluster (part of the cache's key). No password, and a pg_hba.conf
# that admits no TCP connection: a cluster in the cache holds no secret. Each run writes its own
# pg_hba.conf (see _write_hba) and sets a new password.
INITDB_OPTIONS = (
    "-U", "connbench", "--auth-local", "peer", "--auth-host", "reject", "-E", "UTF8",
    "--no-sync", "--no-instructions",
)  # fmt: skip
ROLE = DATABASE = "connbench"


def _identity(bindir: Path) -> list[str]:
    """What tells one PostgreSQL build from another without running it: where its binaries
    are and their size, time and inode (an upgrade in place changes them)."""
    parts = []
    for name in ("postgres", "initdb"):
        path = (bindir / name).resolve()
        st = path.stat()
        parts.append(f"{path} {st.st_size} {st.st_mtime_ns} {st.st_ino}")
    return parts


def _new_cluster(
    kind: str,
    bindir: Path,
    data: Path,
    entry: str,
    user: str | None,
    sockdir: Path,
    log_path: Path,
) -> bool:
    """A cluster in ``data``: a copy of the cache's ``entry`` (True), or a new one made by
    initdb, given the ``connbench`` database and kept in the cache for the next runs (False).
    Raises PostgresError when initdb or the first start fails."""
    with _setup_errors(kind, data.parent):
        if clusters.take(entry, data, tempdirs.owner_of(user)):
            _write_hba(data, user)
            return True
        _run_as([str(bindir / "initdb"), "-D", str(data), *INITDB_OPTIONS], user, f"{kind}: initdb")
        _write_hba(data, user)
    # The database is made once, here, not by each run (CREATE DATABASE costs 0.2-0.4 s): by
    # renaming initdb's `postgres`, as each database is ~300 files to copy. On the socket only;
    # a fast (clean) shutdown, so that copies start without recovery.
    socket_only = {"listen_addresses": ""}
    with _server(bindir, data, DEFAULT_PORT, sockdir, socket_only, log_path, user) as server:
        dsn = _socket_dsn(sockdir, DEFAULT_PORT, "template1")
        _wait_accepting(dsn, f"{kind}: initial postgres", server, log_path)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE postgres RENAME TO {}").format(sql.Identifier(DATABASE))
            )
    if server.proc.returncode != 0:
        headline = f"{kind}: initial postgres did not stop cleanly"
        raise PostgresError(procs.with_cause(headline, procs.log_tail(log_path)))
    clusters.store(entry, data)
    return False


def _write_hba(data: Path, user: str | None) -> None:
    """This run's pg_hba.conf: initdb's with --auth scram-sha-256 (a password, SCRAM, for every
    role, on the socket and from 127.0.0.1), but for the ``connbench`` role on the socket (in
    a 0700 directory), which admits only the OS user running connbench, by peer credentials:
    connbench's way in before that role has a password."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    for name in ("pg_hba.conf", "pg_ident.conf"):
        (data / name).unlink(missing_ok=True)
    hba = [
        f"local all {ROLE} peer map=connbench",
        "local all all scram-sha-256",
        "host all all 127.0.0.1/32 scram-sha-256",
        "local replication all scram-sha-256",
        "host replication all 127.0.0.1/32 scram-sha-256",
    ]
    tempdirs.write_private(data / "pg_hba.conf", "\n".join(hba) + "\n", user)
    tempdirs.write_private(data / "pg_ident.conf", f"connbench {me} {ROLE}\n", user)


DEFAULT_PORT = 5432  # the first start's: it only names the socket (no TCP then)


def _socket_dsn(sockdir: Path, port: int, dbname: str = DATABASE) -> str:
    """connbench's own way in while the role has no password: the private socket (whose name
    holds the port), peer auth."""
    return make_conninfo(host=str(sockdir), port=port, user=ROLE, dbname=dbname)


def _set_password(conn: psycopg.Connection[Any], password: str) -> None:
    """Give the role ``password``: its SCRAM verifier is computed here, so the password itself
    is never sent, and never in a statement a log could keep."""
    verifier = conn.pgconn.encrypt_password(password.encode(), ROLE.encode(), b"scram-sha-256")
    conn.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(ROLE), sql.Literal(verifier.decode())
        )
    )


def _server(
    bindir: Path,
    data: Path,
    port: int,
    sockdir: Path,
    settings: Mapping[str, str],
    log_path: Path,
    user: str | None,
) -> procs.Child:
    return procs.Child(
        _postgres_argv(bindir, data, port, sockdir, settings),
        name="postgres",
        log_path=log_path,
        env=procs.child_env({}),
        cwd=data.parent,
        user=user,
        # SIGINT is postgres' "fast" shutdown: roll back, disconnect, exit.
        stop_signal=signal.SIGINT,
    )


def _wait_accepting(dsn: str, what: str, server: procs.Child, log_path: Path) -> None:
    try:
        procs.wait_until(
            partial(_accepting, dsn),
            what=what,
            timeout_s=READY_TIMEOUT_S,
            proc=server.proc,
            log_path=log_path,
        )
    except ProcessError as exc:
        raise PostgresError(str(exc)) from None


STOP_IMMEDIATE_S = 5.0


def _stop_immediately(server: procs.Child) -> None:
    """SIGQUIT, postgres' immediate shutdown: every process exits at once, nothing is written
    (the next start would recover; there is none). The Child's stop follows either way."""
    proc = server.proc
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGQUIT)  # its own session: the group's id is its pid
            proc.wait(timeout=STOP_IMMEDIATE_S)
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass


def _postgres_argv(
    bindir: Path, data: Path, port: int, sockdir: Path, settings: Mapping[str, str]
) -> list[str]:
    """Loopback and a private socket directory only; the scenario's settings on top."""
    options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(sockdir)}
    options.update(settings)
    argv = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
    for name, value in options.items():
        argv += ["-c", f"{name}={value}"]
    return argv


def _accepting(dsn: str) -> bool:
    try:
        psycopg.connect(dsn, connect_timeout=1).close()
    except psycopg.OperationalError:
        return False
    return True


def _restarter(
    pg: Postgres, server: procs.Child, admin_dsn: str, what: str, log_path: Path
) -> Callable[[], Awaitable[None]]:
    """A fast shutdown and a start on the same port and data (the restart fault)."""

    async def restart() -> None:
        await server.stop_async()
        proc = server.spawn()  # on the loop's thread, which is the main thread
        try:
            await procs.wait_until_async(
                # A refused or "starting up" connection fails at once; a thread keeps the
                # loop free if one ever takes its full connect_timeout.
                lambda: asyncio.to_thread(_accepting, admin_dsn),
                what=f"{what} after a restart",
                timeout_s=READY_TIMEOUT_S,
                proc=proc,
                log_path=log_path,
            )
        except ProcessError as exc:
            raise PostgresError(str(exc)) from None
        pg.server_pid = proc.pid

    return restart


# --- docker --------------------------------------------------------------------------------


def docker_available() -> bool:
    """Whether a Docker engine answers a ping."""
    return docker_api_version() is not None


def docker_api_version() -> str | None:
    """The API version the engine and docker-py agree on, None when no engine answers.

    Asked once per run and handed to the clients made after: the negotiation is a ``/version``
    call, which Podman can take seconds to answer.
    """
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return None  # the usual case here; docker-py would leak sockets finding that out
    try:
        import docker
    except ImportError:  # pragma: no cover - testcontainers brings it
        return None
    try:
        client = docker.from_env()
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return None
    try:
        client.ping()
        return str(client.api.api_version)
    except Exception:  # noqa: BLE001
        return None
    finally:
        client.close()


DOCKER_PORT = 5432
CONTAINER_PREFIX = "connbench-"  # every container connbench starts is named so


@contextmanager
def _docker(image: str, settings: Mapping[str, str]) -> Iterator[Postgres]:
    """A container of ``image`` through testcontainers, published on 127.0.0.1 only (a random
    port), removed on the way out however that happens (Ctrl-C included).

    ``image`` must keep the official postgres image's contract: ``POSTGRES_USER``,
    ``POSTGRES_PASSWORD`` and ``POSTGRES_DB`` honoured, ``postgres -c name=value ...`` as its
    command, port 5432. Raises :class:`MissingDependency` when no engine answers and
    :class:`PostgresError` (one line) when the image is missing and cannot be pulled, the
    container exits, or PostgreSQL does not accept connections within ``READY_TIMEOUT_S``.
    """
    api_version = docker_api_version()
    if api_version is None:
        raise MissingDependency(
            "docker: no Docker engine answers; start one or use --postgres embedded"
            " (without Docker: make docker-engine, see the README)"
        )
    from testcontainers.core.container import DockerContainer

    password = secrets.token_urlsafe(24)
    remember_secret(password)
    # A name of our own: a container created while we were interrupted (no id came back yet)
    # can still be found and removed.
    name = f"{CONTAINER_PREFIX}{secrets.token_hex(6)}"
    command = ["postgres"]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    container = (
        DockerContainer(image, docker_client_kw={"version": api_version})
        .with_name(name)
        .with_env("POSTGRES_USER", "connbench")
        .with_env("POSTGRES_PASSWORD", password)
        .with_env("POSTGRES_DB", "connbench")
        # A throwaway cluster, as the embedded and local ones: no fsync of initdb's files.
        .with_env("POSTGRES_INITDB_ARGS", "--no-sync")
        .with_command(command)
    )
    # Published on loopback only, on a port the engine picks. testcontainers' with_bind_ports
    # takes no address (it would publish on every interface); its port map goes to docker-py
    # as given, where (address, None) means "this address, any free port".
    ports: dict[str, Any] = container.ports
    ports[f"{DOCKER_PORT}/tcp"] = ("127.0.0.1", None)
    client = container.get_docker_client().client
    try:
        _have_image(client, image)
        try:
            container.start()
        except Exception as exc:  # noqa: BLE001 - the engine's, docker-py's or testcontainers'
            raise PostgresError(f"docker: {image} did not start: {_engine_reason(exc)}") from None
        port, reader = _wait_for_container(container, image, password)
        pg = Postgres(
            backend=f"docker:{image}",
            dsn=make_conninfo(
                host="127.0.0.1",
                port=port,
                user="connbench",
                password=password,
                dbname="connbench",
            ),
            table=DEFAULT_TABLE,
            cpu_s=reader,
        )
        _create_table(pg)
        pg.describe()
        yield pg
    finally:
        _remove_container(client, name)


def _have_image(client: Any, image: str) -> None:
    """Pull ``image`` unless the engine has it. Raises :class:`PostgresError` (one line) when
    it is not there and cannot be pulled."""
    import docker.errors

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as exc:  # a name the engine refuses, say
        raise PostgresError(f"docker: image {image!r}: {_engine_reason(exc)}") from None
    why = ""
    try:
        # The pull's own log says why it failed; images.pull() drops it.
        for event in client.api.pull(image, stream=True, decode=True):
            why = str(event.get("error") or why) if isinstance(event, dict) else why
        client.images.get(image)
    except docker.errors.DockerException as exc:
        why = why or _engine_reason(exc)
    else:
        return
    raise PostgresError(
        f"docker: image {image!r} is not in the engine and cannot be pulled: "
        + " ".join(why.split())
    )


def _engine_reason(exc: BaseException) -> str:
    """The engine's own words for a failed call, on one line."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation) if explanation else str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _wait_for_container(
    container: Any, image: str, password: str
) -> tuple[int, Callable[[], float | None] | None]:
    """Wait until PostgreSQL in ``container`` accepts connections on its published port;
    return the port and a reader of the container's CPU seconds (None where its cgroup cannot
    be read). Raises :class:`PostgresError` (one line, with the container's last log line) when
    the container exits first or the deadline passes."""
    import docker.errors

    wrapped = container.get_wrapped_container()
    started = time.monotonic()
    deadline = started + READY_TIMEOUT_S
    port: int | None = None
    while True:
        try:
            wrapped.reload()
        except docker.errors.DockerException as exc:
            raise PostgresError(f"docker: {image}: {_engine_reason(exc)}") from None
        state = wrapped.attrs.get("State", {})
        if state.get("Status") in ("exited", "dead"):
            raise PostgresError(
                f"docker: {image}: the container exited with code {state.get('ExitCode')} "
                f"before PostgreSQL was ready{_last_log_line(wrapped)}"
            )
        if port is None:
            port = _published_port(wrapped.attrs, image)
        if port is not None:
            dsn = make_conninfo(
                host="127.0.0.1", port=port, user="connbench", password=password,
                dbname="connbench",
            )  # fmt: skip
            if _accepting(dsn):
                return port, container_cpu_reader(state.get("Pid"), wrapped.id)
        if time.monotonic() >= deadline:
            raise PostgresError(
                f"docker: {image}: PostgreSQL not ready after "
                f"{time.monotonic() - started:.1f} s{_last_log_line(wrapped)}"
            )
        time.sleep(0.2)


def _published_port(attrs: Mapping[str, Any], image: str) -> int | None:
    """The host port of 5432 once the engine has published it (None before). Raises
    :class:`PostgresError` if it is published anywhere but on 127.0.0.1: the server would be
    reachable from other machines."""
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    published = bindings.get(f"{DOCKER_PORT}/tcp") or []
    elsewhere = sorted({str(b.get("HostIp")) for b in published} - {"127.0.0.1"})
    if elsewhere:
        raise PostgresError(
            f"docker: {image}: the engine published PostgreSQL on {', '.join(elsewhere)}, "
            "not on 127.0.0.1 only; refusing to run on it"
        )
    for binding in published:
        if str(binding.get("HostPort", "")).isdigit():
            return int(binding["HostPort"])
    return None


def _last_log_line(wrapped: Any) -> str:
    try:
        lines = wrapped.logs(tail=20).decode(errors="replace").strip().splitlines()
    except Exception:  # noqa: BLE001 - the log is a courtesy; the error stands without it
        return ""
    found = procs.cause("\n".join(lines)) or (lines[-1].strip() if lines else "")
    return f" (its log: {found})" if found else " (its log is empty)"


def _remove_container(client: Any, name: str) -> None:
    """Remove the container ``name`` (and its anonymous volumes) if it exists; close the
    client. Never raises: it runs on the way out of everything else."""
    import docker.errors

    try:
        client.containers.get(name).remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    except Exception:  # noqa: BLE001 - the engine went away: nothing more can be done
        pass
    finally:
        client.close()


def container_cpu_reader(pid: Any, container_id: str) -> Callable[[], float | None] | None:
    """A function returning the CPU seconds the container has used so far, read from its
    cgroup (cgroup v2 ``cpu.stat``, or v1 ``cpuacct.usage``); None when the engine runs
    elsewhere (a VM: its PID means nothing here) or the cgroup is out of reach.

    The cgroup is found through the container's first process and kept only if its path
    names the container, so a PID reused by another process can never be read instead.
    """
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not container_id or container_id not in path:
            continue
        if controllers == "":  # v2, or its part of a hybrid hierarchy
            candidates = [
                (Path("/sys/fs/cgroup") / mount / path.lstrip("/") / "cpu.stat", "v2")
                for mount in ("", "unified")
            ]
        elif "cpuacct" in controllers.split(","):
            candidates = [
                (Path("/sys/fs/cgroup") / mount / path.lstrip("/") / "cpuacct.usage", "v1")
                for mount in ("cpu,cpuacct", "cpuacct", "cpuacct,cpu")
            ]
        else:
            continue
        for file, version in candidates:
            reader = partial(_read_cgroup_cpu_s, file, version)
            if reader() is not None:
                return reader
    return None


def _read_cgroup_cpu_s(file: Path, version: str) -> float | None:
    try:
        text = file.read_text()
        if version == "v1":
            return int(text.strip()) / 1e9
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    except (OSError, ValueError):  # gone with the container, or not what we know
        return None
    return None


# --- external ------------------------------------------------------------------------------


# What a service file may add besides where and who (kept when the DSN itself did not say).
_RESOLVED_EXTRAS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "options",
    "target_session_attrs", "gssencmode", "channel_binding",
)  # fmt: skip


def resolved_dsn(given: str, conn: psycopg.Connection[Any]) -> str:
    """``given`` as libpq resolved it on ``conn``: host, port, user, database and password
    from wherever libpq found them (``PGPASSWORD``, ``PGHOST``..., a service file, a password
    file). A child (app, PgBouncer, pgbench) connects with it as we did, needing none of our
    environment; it holds the password, so it goes to children privately (environment or a
    0600 file), never on a command line. Only what the user gave or libpq resolved: not
    connbench's own ``connect_timeout``, nor what a driver other than libpq would not know
    (``hostaddr``, ``sslcertmode``).
    """
    params: dict[str, Any] = {
        key: value
        for key, value in conninfo_to_dict(given).items()
        if key not in ("service", "passfile")  # applied: what they gave is below
    }
    found = conn.info.get_parameters()
    params.update({k: found[k] for k in _RESOLVED_EXTRAS if k in found and k not in params})
    info = conn.info
    params.update(host=info.host, port=info.port, user=info.user, dbname=info.dbname)
    if info.password:
        remember_secret(info.password)
        params["password"] = info.password
    return make_conninfo("", **params)


# Keywords a libpq program of another version (pgbench) understands, for its command line.
_PORTABLE_KEYWORDS = (
    "host", "hostaddr", "port", "user", "dbname", "options", "sslmode", "sslrootcert",
    "sslcert", "sslkey", "sslcrl", "gssencmode", "target_session_attrs", "connect_timeout",
)  # fmt: skip


def for_libpq_program(dsn: str) -> tuple[str, dict[str, str]]:
    """(a conninfo without secrets, for a libpq program's command line; the environment that
    gives it the password): argv is readable by every local user, a process' environment
    only by its owner."""
    params = conninfo_to_dict(dsn)
    password = str(params.get("password") or "")
    shown = {k: v for k, v in params.items() if k in _PORTABLE_KEYWORDS and v is not None}
    return make_conninfo("", **shown), ({"PGPASSWORD": password} if password else {})


@contextmanager
def _external(dsn: str, settings: Mapping[str, str]) -> Iterator[Postgres]:
    if settings:
        raise BadInput(
            "server settings (" + ", ".join(settings) + ") cannot be changed on an external server"
        )
    run_id = ledger.new_run_id()
    pg = Postgres(
        backend="external",
        dsn=dsn,
        table=ledger.table_name(run_id),
        run_id=run_id,
        app_name=f"{APP_NAME}-{run_id}",
    )
    try:
        with pg.connect() as conn:
            # The apps, PgBouncer and pgbench must log in as we did: hand them what libpq found.
            pg.dsn = resolved_dsn(dsn, conn)
            user = conn.info.user
    except psycopg.Error as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise BadInput(f"cannot connect to {pg.display_dsn}: {redact(reason)}") from None
    with ledger.hold(lambda: pg.connect(application_name=CONTROL_APP), run_id):
        # Recorded before it is created; dropped on the way out only if it bears our marker
        # (a table of that name that was there before does not).
        ours = [ledger.Marked("table", sql.Identifier(pg.table).as_string(), run_id, "")]
        try:
            try:
                _create_table(pg)
            except psycopg.errors.DuplicateTable:
                raise BadInput(
                    f"{pg.display_dsn}: a table named {pg.table} exists already; connbench "
                    "leaves it alone and creates only tables of its own"
                ) from None
            except psycopg.Error as exc:
                raise BadInput(
                    f"{pg.display_dsn}: user {user!r} may not create connbench's table "
                    f"({first_line(exc)}); connbench needs CREATE on a schema in its "
                    f"search_path, e.g. GRANT CREATE ON SCHEMA public TO {user}"
                ) from None
            with pg.connect() as conn:
                ours = [replace(ours[0], name=ledger.qualified(conn, pg.table))]
            pg.describe()
            yield pg
        finally:
            pg.cleanup_problems += ledger.drop(pg.connect, ours)


def leftovers(backend: Backend, *, drop: bool) -> tuple[str, list[ledger.Marked], list[str]]:
    """What killed connbench runs left on an external server (see :mod:`connbench.infra.ledger`):
    (the server as shown, what was found, what could not be dropped). With ``drop``, drop what
    was found. Raises :class:`BadInput` for a backend that is no DSN or a server that does not
    answer."""
    if backend.kind != "external" or backend.dsn is None:
        raise BadInput(
            "--postgres: cleanup needs a DSN (the servers connbench starts are removed whole)"
        )
    pg = Postgres(backend="external", dsn=backend.dsn, table="")

    def connect() -> psycopg.Connection[Any]:
        return pg.connect(application_name=CONTROL_APP)

    try:
        with connect() as conn:
            found = ledger.find(conn)
            where = f"{pg.display_dsn} (tables: in database {conn.info.dbname} only)"
    except psycopg.Error as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise BadInput(f"cannot connect to {pg.display_dsn}: {redact(reason)}") from None
    return where, found, ledger.drop(connect, found) if drop else []
