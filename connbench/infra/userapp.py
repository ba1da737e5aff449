"""Own apps (``--app``) and running targets (``--target``): their database, process and probe.

Attribution. Every own app gets a role and a database of its own, created for the variant and
dropped after it: the server then tells its sessions apart by database, whatever client
library the app uses and whether or not it sets ``application_name``. ``pg_stat_database``
counts every session opened on that database (exactly, including ones too short for any
sampler to see), and ``pg_stat_activity`` shows the ones open. A target uses the database
``--postgres`` names, and counts as its sessions every client session there but connbench's.
(A role per variant alone would not do: PostgreSQL keeps no per-role session counter, and
``log_connections`` is a log to parse, on the servers connbench starts only.)

On an external server connbench creates only that role and database (it needs CREATEROLE and
CREATEDB there), named and marked as the run's (:mod:`connbench.infra.ledger`), and drops only
them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from connbench.infra import appserver, launch, ledger, procs
from connbench.infra.launch import FAILED
from connbench.infra.postgres import CONNECT_TIMEOUT_S, Postgres
from connbench.model import files
from connbench.model.appspec import AppSpec, Compiled
from connbench.model.defaults import COUNT_SQL_TIMEOUT_S, SETUP_SQL_TIMEOUT_S
from connbench.model.dsn import redact, remember_secret
from connbench.model.errors import BadInput, ProcessError, first_line
from connbench.model.sessions import CONTROL_APP, OWN_SESSIONS

# A session of a role whose activity the server hides from ours (no pg_read_all_stats) has a
# null backend_type and state: its state is then null here, not a guess (see the sampler).
DATABASE_ACTIVITY_SQL = """
SELECT CASE WHEN backend_type IS NOT NULL THEN coalesce(state, 'unknown') END, count(*)
FROM pg_stat_activity
WHERE datname = %s AND coalesce(backend_type, 'client backend') = 'client backend'
  AND coalesce(application_name, '') <> ALL(%s)
GROUP BY 1
"""

PROBE_TIMEOUT_S = 5.0
BODY_LINES = 5  # of a failing response, in its message
BODY_READ_BYTES = 8192  # of a failed answer's body: enough for its first lines
BODY_LINE_CHARS = 200
APP_LOG_LINES = 20  # of the app's log, in a failing check's message
LOG_SCAN_LINES = 400  # searched for the last exception
# A traceback's last line: a dotted exception name (psycopg.errors.UndefinedTable: ...) or a
# bare ...Error / ...Exception; not a log line's "INFO: ".
_EXCEPTION = re.compile(r"^\s*(?:(?:[A-Za-z_]\w*\.)+[A-Z]\w*|[A-Z]\w*(?:Error|Exception)): ")
# Statuses that mean "not yet" (a proxy in front, a warming app); any other non-2xx is an answer.
NOT_YET = (502, 503, 504)


class AppFailed(ProcessError):
    """An own app or target that cannot be measured; the message is one line naming it."""


@dataclass(frozen=True)
class AppDatabase:
    """Where an own app (or target) keeps its data, and how connbench reaches it."""

    name: str  # the database (and, for own apps, the role) name
    dsn: str = field(repr=False)  # the app's: its role on its database (holds the password)
    control_dsn: str = field(repr=False)  # connbench's on the same database
    # What could not be dropped on the way out (one line each), filled as the block ends.
    problems: list[str] = field(default_factory=list)
    secret: str | None = field(default=None, repr=False)  # its role's SCRAM verifier (own apps)


@dataclass(frozen=True)
class Served:
    """An own app or a target, as the runner measures it."""

    spec: AppSpec
    base_url: str
    proc: procs.Process | None = None  # None: a target, not ours
    log_path: Path | None = None
    instrumented: bool = False
    answers: tuple[str, ...] = ()  # the probe's: one request of each kind, answered 2xx
    # Once stopped: processes it left running outside its group, killed or not (one line each).
    strays: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def visit_url(self) -> str:
        return self.base_url + self.spec.path

    async def read_stats(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        return None  # an own app keeps no timing totals for connbench

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def log_tail(self) -> str:
        return procs.log_tail(self.log_path) if self.log_path else ""


_SERIAL = itertools.count(1)  # own databases of this process' run: never two of one name


@contextmanager
def own_database(pg: Postgres, spec: AppSpec) -> Iterator[AppDatabase]:
    """A role and a database for ``spec``'s app, dropped on the way out (and nothing else).

    Both are named and marked as this run's (see :mod:`connbench.infra.ledger`), the database
    in its role's marker before it is created, so that whatever ends the run (Ctrl-C while
    ``CREATE DATABASE`` waits on a lock included) they are dropped or, after a ``kill -9``,
    found by the next run. What cannot be dropped is said in ``problems``, never raised.
    Raises :class:`AppFailed` when the server refuses to create them.
    """
    ident = ledger.app_name(pg.run_id, next(_SERIAL), spec.name)
    password = secrets.token_urlsafe(24)
    remember_secret(password)  # masked wherever an app's log or error quotes it
    role, db = sql.Identifier(ident), sql.Identifier(ident)
    mark = ledger.marker(pg.run_id)
    created: list[ledger.Marked] = []  # what to drop: recorded before each creation
    problems: list[str] = []
    try:
        secret = scram_verifier(password)
        with pg.connect(application_name=CONTROL_APP) as conn:
            verifier = sql.Literal(secret)
            # Dropped on the way out only if it bears our marker: not a role of that name
            # that was there before.
            created.append(ledger.Marked("role", ident, pg.run_id, mark))
            with conn.transaction():  # the role and its marker, or neither
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, verifier))
                conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(role, sql.Literal(mark)))
            # Marked by its role until its own comment is set (no transaction can hold both).
            created.append(ledger.Marked("database", ident, pg.run_id, mark, unmarked_ok=True))
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(db))
            except psycopg.Error:
                created.pop()  # refused: nothing of ours by that name
                raise
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(mark)))
            conn.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(db, role))
        control_dsn = make_conninfo(pg.dsn, dbname=ident, application_name=CONTROL_APP)
        with psycopg.connect(control_dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as c:
            # Since PostgreSQL 15 only the database owner may create in ``public``.
            c.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(role))
    except psycopg.Error as exc:
        left = "".join(f"; {problem}" for problem in _drop(pg, created))
        raise AppFailed(
            f"app {spec.name}: cannot create its role and database on {pg.display_dsn} "
            f"({first_line(exc)}); connbench needs CREATEROLE and CREATEDB there{left}"
        ) from None
    except BaseException:  # Ctrl-C, SIGTERM: what was created goes before the run unwinds
        _drop(pg, created)
        raise
    database = AppDatabase(
        ident,
        make_conninfo(pg.dsn, user=ident, password=password, dbname=ident),
        control_dsn,
        problems,
        secret,
    )
    try:
        yield database
    finally:
        problems += _drop(pg, created)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores for ``password`` (RFC 5802, 7677), worked out
    here so that the password itself never reaches the server, nor a statement in its log."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    b64 = [base64.b64encode(part).decode() for part in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{b64[0]}${b64[1]}:{b64[2]}"


def _drop(pg: Postgres, created: list[ledger.Marked]) -> list[str]:
    """Drop ``created`` (the database before its role); one line per refusal, never raised."""
    return ledger.drop(lambda: pg.connect(application_name=CONTROL_APP), created[::-1])


def target_database(pg: Postgres) -> AppDatabase:
    """A target's database: the one ``--postgres`` names (its sessions are the app's)."""
    with pg.connect(application_name=CONTROL_APP) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    name = str(row[0]) if row else ""
    control = make_conninfo(pg.dsn, application_name=CONTROL_APP)
    return AppDatabase(name, pg.dsn, control)


def connect_as_app(db: AppDatabase) -> psycopg.Connection[Any]:
    """connbench's connection to the app's database, as the app's role (so that it reads and
    writes what the app owns), tagged so that it is not counted as the app's."""
    return psycopg.connect(
        make_conninfo(db.dsn, application_name=CONTROL_APP),
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_S,
    )


def wait_until_idle(conn: psycopg.Connection[Any], database: str, timeout_s: float = 5.0) -> None:
    """Wait until no session of a running target is busy: a ``yield`` dependency commits after
    its response, so the last rows land a moment after the load has ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = conn.execute(DATABASE_ACTIVITY_SQL, [database, list(OWN_SESSIONS)]).fetchall()
        if all(state == "idle" for state, _ in rows):
            return
        time.sleep(0.05)


def count(spec: AppSpec, conn: psycopg.Connection[Any]) -> int | None:
    """The rows ``count_sql`` counts now; None without one (integrity not checked)."""
    return run_sql(spec, conn, "count_sql", spec.count_sql) if spec.count_sql else None


SQL_TIMEOUTS_S = {"setup_sql": SETUP_SQL_TIMEOUT_S, "count_sql": COUNT_SQL_TIMEOUT_S}
CANCEL_GRACE_S = 2.0  # past the statement timeout, connbench cancels the query itself


def run_sql(spec: AppSpec, conn: psycopg.Connection[Any], what: str, query: str) -> int | None:
    """Run ``setup_sql`` or ``count_sql``; the first value of its last row, if a number.

    Each has :data:`SQL_TIMEOUTS_S` to finish: PostgreSQL's ``statement_timeout`` ends it, and
    a cancel from here ``CANCEL_GRACE_S`` later ends SQL that set the timeout off. Raises
    :class:`AppFailed` (one line) when it fails or runs out of time.
    """
    timeout_s = SQL_TIMEOUTS_S[what]
    watchdog = threading.Timer(timeout_s + CANCEL_GRACE_S, conn.cancel_safe)
    try:
        conn.execute(sql.SQL("SET statement_timeout = {}").format(round(timeout_s * 1000)))
        watchdog.start()
        row = _first_row(conn, query) if what == "count_sql" else _run(conn, query)
    except psycopg.errors.QueryCanceled:
        raise AppFailed(
            f"app {spec.name}: {what} did not finish within {timeout_s:g} s "
            "(connbench's statement timeout)"
        ) from None
    except psycopg.Error as exc:
        raise AppFailed(f"app {spec.name}: {what} failed: {first_line(exc)}") from None
    finally:
        watchdog.cancel()
    if what == "count_sql":
        if row is None or isinstance(row[0], bool) or not isinstance(row[0], int):
            raise AppFailed(f"app {spec.name}: count_sql must return one number, got {row!r}")
        return int(row[0])
    return None


def _run(conn: psycopg.Connection[Any], query: str) -> tuple[Any, ...] | None:
    """The first row of ``query``'s last statement: every row is fetched (several statements)."""
    cur = conn.execute(query.encode())
    return cur.fetchone() if cur.description else None


def _first_row(conn: psycopg.Connection[Any], query: str) -> tuple[Any, ...] | None:
    """``query``'s first row, the rest never fetched (a count_sql of 10^8 rows costs one);
    several statements cannot be streamed, and are run as :func:`_run` does."""
    rows = cast(Generator[tuple[Any, ...], None, None], conn.cursor().stream(query.encode()))
    try:
        return next(rows, None)
    except psycopg.errors.SyntaxError as exc:
        if "multiple commands" not in str(exc):
            raise
    finally:
        rows.close()  # cancels the query and drops what it had still to send
    return _run(conn, query)


@contextmanager
def start(spec: AppSpec, db: AppDatabase, workers: int, log_path: Path) -> Iterator[Served]:
    """Serve ``spec.app`` with uvicorn, ``spec.dir`` on its path, until its path answers.

    The app's environment: ``DATABASE_URL`` and libpq's ``PG*`` for its own role and database,
    and ``spec.env``. Raises :class:`AppFailed` (one line) when the module does not import, the
    attribute is not an ASGI app, the app exits, or the probe fails (see :func:`probe`).
    """
    assert spec.app is not None
    app_dir = spec.dir or "."
    env = procs.child_env({**appserver.database_env(db.dsn), **dict(spec.env)})
    launcher = ["-m", "connbench.infra.launch", spec.app, app_dir]
    if spec.python is not None:
        # Its own virtualenv need not have connbench: the launcher (stdlib and uvicorn only)
        # goes as source. And not connbench's virtualenv in its environment.
        env.pop("VIRTUAL_ENV", None)
        launcher = ["-c", Path(launch.__file__).read_text(), spec.app, app_dir]

    answers: list[str] = []

    def ready(url: str, proc: procs.Process) -> None:
        answers.extend(probe(spec, url, proc=proc, log_path=log_path))

    strays: list[str] = []
    try:
        with appserver.serve(
            lambda port: appserver.uvicorn_argv(
                spec.app or "", port, workers, launcher, spec.python
            ),
            env,
            f"app {spec.name}",
            log_path,
            ready,
            strays=strays,
        ) as (url, proc):
            yield Served(spec, url, proc, log_path, answers=tuple(answers), strays=strays)
    except AppFailed:
        raise
    except ProcessError:
        raise AppFailed(f"app {spec.name}: {start_failure(log_path)}") from None


# What uvicorn is run with (--loop uvloop --http httptools, as for the built-in strategies).
INTERPRETER_NEEDS = ("uvicorn", "uvloop", "httptools")
INTERPRETER_CHECK_TIMEOUT_S = 60.0


def check_interpreter(spec: AppSpec) -> str | None:
    """Before anything starts: that ``spec.python`` runs and has uvicorn, uvloop and httptools.
    Returns its ``sys.prefix`` (None without one); raises :class:`BadInput` in one line."""
    if spec.python is None:
        return None
    who = f"--app-python {spec.name}: {spec.python}"
    code = (
        "import importlib.util, sys\n"
        f"missing = [m for m in {INTERPRETER_NEEDS!r} if importlib.util.find_spec(m) is None]\n"
        "print(' '.join(missing) or '-', sys.prefix)"
    )
    try:
        proc = subprocess.run(
            [spec.python, "-c", code],
            capture_output=True,
            text=True,
            timeout=INTERPRETER_CHECK_TIMEOUT_S,
            env=procs.child_env({}),
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise BadInput(f"{who}: no such interpreter") from None
    except PermissionError:
        raise BadInput(f"{who}: not executable") from None
    except OSError as exc:
        raise BadInput(f"{who}: cannot run it ({exc.strerror or exc})") from None
    except subprocess.TimeoutExpired:
        raise BadInput(f"{who}: no answer within {INTERPRETER_CHECK_TIMEOUT_S:g} s") from None
    missing, _, prefix = proc.stdout.strip().partition(" ")
    if proc.returncode != 0 or not prefix:
        cause = (proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()[-1][:200]
        raise BadInput(f"{who}: not a Python interpreter that connbench can use ({cause})")
    if missing != "-":
        names = missing.split()
        raise BadInput(
            f"{who}: lacks {', '.join(names)}: install {'it' if len(names) == 1 else 'them'} "
            "there (pip install 'uvicorn[standard]')"
        )
    return prefix


# Failures with a known cause, as the app's log words them: (pattern, what it means).
KNOWN_FAILURES = (
    (
        re.compile(r'prepared statement "[^"]*" (does not exist|already exists)'),
        "{topology} shares server connections between clients, and the app's prepared "
        "statements do not follow it from one to the next ({match}, {count:,} times in its "
        "log): turn its statement cache off (asyncpg: statement_cache_size=0; psycopg: "
        "prepare_threshold=None; SQLAlchemy+asyncpg: prepared_statement_cache_size=0)",
    ),
)


def known_failures(log_path: Path, topology: str) -> list[str]:
    """Each known failure the app's log shows, named with its cause and its remedy."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for pattern, meaning in KNOWN_FAILURES:
        found = pattern.findall(text)
        if found:
            first = pattern.search(text)
            match = first.group(0) if first else ""
            out.append(meaning.format(topology=topology, match=match, count=len(found)))
    return out


KEPT_LOG_PREFIX = "connbench_applog-"  # not connbench-*: tempdirs.remove_stale leaves it


def keep_log(log_path: Path | None) -> Path | None:
    """A copy of an app's log (passwords masked) in a new private directory that outlives the
    run, for a failure to point at; None when there is no log or it cannot be kept."""
    if log_path is None:
        return None
    try:
        text = log_path.read_text(errors="replace")
        kept = files.private_dir(KEPT_LOG_PREFIX) / log_path.name
        return files.write_secret(kept, redact(text))
    except OSError:
        return None


def start_failure(log_path: Path) -> str:
    """The one line that says why an app did not start, from its log."""
    lines = procs.log_tail(log_path, lines=200).splitlines()
    for line in lines:
        if line.startswith(FAILED):
            return line.removeprefix(FAILED)
    errors = [line.strip() for line in lines if re.match(r"^\s*[\w.]+(Error|Exception)\b", line)]
    if errors:
        return f"exited during start-up: {errors[-1]}"
    last = lines[-1].strip() if lines else "(no output)"
    return f"exited during start-up: {last}"


def probe(
    spec: AppSpec,
    base_url: str,
    *,
    proc: procs.Process | None = None,
    log_path: Path | None = None,
) -> list[str]:
    """Wait until the app answers: ``ready_path`` (if any) with a 2xx, then one request of
    each kind of its mix; return each answer (``POST /orders/ 201``).

    Connection errors and 502/503/504 mean "not yet" until ``spec.ready_timeout_s``; any other
    non-2xx fails at once. Raises :class:`AppFailed` on either: its first line names the app,
    the request and the status, the next ones the response's first lines and the app's log
    tail; a process that exits meanwhile raises :class:`ProcessError`.
    """
    who = f"{spec.kind} {spec.name}"
    checks: list[tuple[str, str, list[tuple[str, str]], bytes | None]] = []
    if spec.ready_path:
        checks.append(("GET", spec.ready_path, [], None))
    for request in spec.mix:  # one of each kind, each with its values filled in
        path, headers, body = Compiled(request).render()
        checks.append((request.method, path, headers, body))
    answers = []
    deadline = time.monotonic() + spec.ready_timeout_s
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        for method, path, headers, body in checks:
            url = base_url + path
            last = "no answer"
            while True:
                if proc is not None and proc.poll() is not None:
                    raise ProcessError(f"{who} exited (code {proc.returncode})")
                try:
                    with client.stream(method, url, content=body, headers=headers) as resp:
                        # the status is the answer; of a failure's body, its start (however
                        # large the body is)
                        ok = 200 <= resp.status_code < 300
                        start = b"" if ok else _first_bytes(resp)
                except httpx.HTTPError as exc:
                    last = _reason(exc)
                else:
                    last = f"{resp.status_code} {resp.reason_phrase}".strip()
                    if ok:
                        answers.append(f"{method} {path} {resp.status_code}")
                        break
                    if resp.status_code not in NOT_YET:
                        raise AppFailed(f"{who}: {method} {url} answered {last}" + _response(start))
                if time.monotonic() >= deadline:
                    raise AppFailed(
                        f"{who}: {method} {url} did not answer within "
                        f"{spec.ready_timeout_s:g} s ({last})"
                    )
                time.sleep(procs.POLL_INTERVAL_S * 5)
    return answers


def _first_bytes(resp: httpx.Response, limit: int = BODY_READ_BYTES) -> bytes:
    """The first ``limit`` bytes of a streamed response's body, the rest left unread."""
    out = bytearray()
    for chunk in resp.iter_bytes():
        out += chunk
        if len(out) >= limit:
            break
    return bytes(out[:limit])


def _response(body: bytes) -> str:
    """The line under a failed request's: the response's first lines (passwords masked,
    control characters shown escaped)."""
    lines = [line for line in body.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    return redact(
        "\n  response: "
        + "\n            ".join(_printable(line)[:BODY_LINE_CHARS] for line in lines[:BODY_LINES])
    )


def failure_details(log_path: Path | None) -> str:
    """What goes under an own app's failure once it has stopped (its log complete): the log's
    last lines, and where a copy of the whole of it is kept (see :func:`keep_log`)."""
    if log_path is None or not log_path.exists():
        return ""
    whole = procs.log_tail(log_path, lines=LOG_SCAN_LINES).splitlines()
    errors = [line.strip() for line in whole if _EXCEPTION.match(line)]
    out = (
        f"\n  cause in the app's log: {_printable(errors[-1])[:BODY_LINE_CHARS]}" if errors else ""
    )
    tail = whole[-APP_LOG_LINES:]
    out += "\n  the app's log, last lines:\n" + "\n".join(
        "    " + _printable(line)[: BODY_LINE_CHARS * 2] for line in tail
    )
    kept = keep_log(log_path)
    if kept is not None:
        out += f"\n  its whole log is kept in {kept}"
    return redact(out)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else first_line(exc)
    if isinstance(exc, httpx.TimeoutException):
        return f"no response within {PROBE_TIMEOUT_S:g} s"
    return first_line(exc)
