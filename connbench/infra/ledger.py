"""What connbench creates on a PostgreSQL it does not own, and what a killed run left there.

On an external server (``--postgres DSN``) every object a run creates (the visits table, an own
app's role and database) is

- named with a fixed prefix and the run's id: ``connbench_visits_<run>``,
  ``connbench_app_<run>_<n>_<app>``;
- marked, in the transaction that creates it, by a comment: ``connbench run <run> pid <pid>
  host <host> started <time>``. A database cannot be created inside a transaction, so its
  role (created first, its name the same) names it in its own comment beforehand;
- the run's while the run lives: the run holds a session-level advisory lock keyed by its id
  (:func:`hold`) on a connection it keeps open. PostgreSQL releases it when that connection
  ends, however the process ended (``kill -9`` included), and ``pg_locks`` shows it to every
  user: a marked object whose run holds no lock was left by a run that is gone.

:func:`find` lists such leftovers (a run warns about them, ``connbench cleanup`` lists them),
:func:`drop` removes marked objects and nothing else, each re-checked before it is dropped.
An object is taken for connbench's only with both the name and the marker of one run, and a
table or database only when the connecting user owns it: a user's own objects with similar
names, or another user's, are never touched.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg import sql

from connbench.model.errors import PostgresError, first_line

PREFIX = "connbench_"
MARK = "connbench run"
# pg_advisory_lock(int4, int4): the first key says "connbench" ("cnbc"), the second the run.
LOCK_CLASS = 0x636E6263
# How long a drop may wait for a lock (a session of the app's still closing, another DDL)
# before it is reported as not done rather than hanging the run's exit.
DROP_LOCK_TIMEOUT = "10s"

_MARKED = re.compile(r"^connbench run ([0-9a-f]{8}) ")
_NAMES = {
    "table": re.compile(r"^connbench_visits_([0-9a-f]{8})$"),
    "database": re.compile(r"^connbench_app_([0-9a-f]{8})_\d+_[a-z0-9_]*$"),
    "role": re.compile(r"^connbench_app_([0-9a-f]{8})_\d+_[a-z0-9_]*$"),
}
Kind = Literal["table", "database", "role"]
_ORDER: dict[str, int] = {"table": 0, "database": 1, "role": 2}  # a role last: it owns the rest


def new_run_id() -> str:
    """A run's id: 8 hex digits (31 random bits, so that it is its lock key as is)."""
    return f"{secrets.randbits(31):08x}"


def table_name(run_id: str) -> str:
    return f"{PREFIX}visits_{run_id}"


def app_name(run_id: str, serial: int, app: str) -> str:
    """An own app's role and database: the run, a serial within the run, the app's name."""
    slug = re.sub(r"[^a-z0-9_]", "_", app.lower())[:24]
    return f"{PREFIX}app_{run_id}_{serial}_{slug}"


def marker(run_id: str) -> str:
    """The comment that marks an object as this process' run's."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return f"{MARK} {run_id} pid {os.getpid()} host {socket.gethostname()} started {started}"


def _lock_key(run_id: str) -> tuple[int, int]:
    return LOCK_CLASS, int(run_id, 16) & 0x7FFFFFFF


@contextmanager
def hold(connect: Callable[[], psycopg.Connection[Any]], run_id: str) -> Iterator[None]:
    """Hold ``run_id``'s lock on a connection of its own until the block ends (see the module
    docstring). Raises :class:`PostgresError` if another session holds it (no two runs share
    an id)."""
    with connect() as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", _lock_key(run_id)).fetchone()
        if not row or not row[0]:
            raise PostgresError(f"connbench run {run_id} is already running on this server")
        yield


@dataclass(frozen=True)
class Marked:
    """An object a run created, as found (or as recorded before its creation)."""

    kind: Kind
    name: str  # a table's as schema.table
    run_id: str
    comment: str
    # A database whose creation was interrupted may lack its comment: then the marker of its
    # role (created first, the same name) stands for it.
    unmarked_ok: bool = False

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.comment})"


_FIND_SQL = """
SELECT 'role', rolname, shobj_description(oid, 'pg_authid'), NULL FROM pg_roles
 WHERE rolname LIKE 'connbench\\_app\\_%'
UNION ALL
SELECT 'database', datname, shobj_description(oid, 'pg_database'), datdba::regrole::text
  FROM pg_database WHERE datname LIKE 'connbench\\_app\\_%'
UNION ALL
SELECT 'table', format('%I.%I', n.nspname, c.relname), obj_description(c.oid, 'pg_class'),
       c.relowner::regrole::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relname LIKE 'connbench\\_visits\\_%'
"""


def _live_runs(conn: psycopg.Connection[Any]) -> set[int]:
    rows = conn.execute(
        "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = %s AND objsubid = 2",
        [LOCK_CLASS],
    ).fetchall()
    return {int(row[0]) for row in rows}


def _whose(kind: str, name: str, comment: str | None) -> str | None:
    """The run id an object is marked with, if its name and marker are one run's."""
    marked = _MARKED.match(comment or "")
    bare = name.rpartition(".")[2].strip('"') if kind == "table" else name
    named = _NAMES[kind].match(bare)
    if marked is None or named is None or marked.group(1) != named.group(1):
        return None
    return marked.group(1)


def find(conn: psycopg.Connection[Any]) -> list[Marked]:
    """connbench's objects on ``conn``'s server (tables: in its database) whose run is gone,
    tables first, roles last (the order they can be dropped in)."""
    user = conn.info.user
    rows = conn.execute(_FIND_SQL).fetchall()
    live = _live_runs(conn)
    found: list[Marked] = []
    unmarked: list[str] = []
    for kind, name, comment, owner in rows:
        if owner is not None and owner.strip('"') != user:
            continue  # another user's: not ours to drop, whatever its comment says
        run_id = _whose(kind, name, comment)
        if run_id is None:
            if kind == "database" and comment is None:
                unmarked.append(name)
            continue
        if _lock_key(run_id)[1] not in live:
            found.append(Marked(kind, name, run_id, comment))
    dead_roles = {o.name: o for o in found if o.kind == "role"}
    for name in unmarked:  # created, and its run killed before the comment: its role says so
        if name in dead_roles:
            found.append(Marked("database", name, dead_roles[name].run_id, "", unmarked_ok=True))
    return sorted(found, key=lambda o: (_ORDER[o.kind], o.name))


def _still_marked(conn: psycopg.Connection[Any], obj: Marked) -> bool:
    """Whether ``obj`` still bears its run's marker (re-read just before it is dropped)."""
    if obj.kind == "table":
        query = "SELECT obj_description(to_regclass(%s), 'pg_class'), true"
    elif obj.kind == "database":
        query = (
            "SELECT shobj_description(oid, 'pg_database'), datdba = current_user::regrole"
            " FROM pg_database WHERE datname = %s"
        )
    else:
        query = "SELECT shobj_description(oid, 'pg_authid'), true FROM pg_roles WHERE rolname = %s"
    row = conn.execute(query, [obj.name]).fetchone()
    if row is None or not row[1]:
        return False
    if row[0] is None and obj.unmarked_ok:
        return True
    return _whose(obj.kind, obj.name, row[0]) == obj.run_id


def _drop_statements(obj: Marked) -> list[sql.Composed]:
    if obj.kind == "table":  # its name as the server quoted it: format('%I.%I', ...)
        return [sql.SQL("DROP TABLE {}").format(sql.SQL(obj.name))]
    if obj.kind == "database":
        return [sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(obj.name))]
    role = sql.Identifier(obj.name)
    # What the app created in this database goes with it (elsewhere, DROP ROLE says where).
    return [sql.SQL("DROP OWNED BY {}").format(role), sql.SQL("DROP ROLE {}").format(role)]


def qualified(conn: psycopg.Connection[Any], table: str) -> str:
    """``table`` (as resolved on ``conn``'s search_path) as ``schema.table``, quoted."""
    row = conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        [sql.Identifier(table).as_string(conn)],
    ).fetchone()
    if row is None:
        raise PostgresError(f"table {table} not found right after its creation")
    return str(row[0])


def drop(connect: Callable[[], psycopg.Connection[Any]], objects: list[Marked]) -> list[str]:
    """Drop each of ``objects`` that still bears its marker, in order; return, for each that
    could not be dropped, one line saying what and why. Never raises for a refusal."""
    problems: list[str] = []
    if not objects:
        return problems
    try:
        conn = connect()
    except psycopg.Error as exc:
        return [f"{o.kind} {o.name}: not dropped ({first_line(exc)})" for o in objects]
    interrupted: BaseException | None = None
    with conn:
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT)))
        for obj in objects:
            for _ in range(2):  # once more if a Ctrl-C cancelled it: the rest goes too
                try:
                    _drop_one(conn, obj)
                except psycopg.Error as exc:
                    problems.append(f"{obj.kind} {obj.name}: not dropped ({_why(exc)})")
                except KeyboardInterrupt as exc:
                    interrupted = exc
                    continue
                break
    if interrupted is not None:
        raise interrupted  # after the drops: the caller unwinds as it would have
    return problems


def _drop_one(conn: psycopg.Connection[Any], obj: Marked) -> None:
    if not _still_marked(conn, obj):
        return  # gone, or not ours
    statements = _drop_statements(obj)
    for statement in statements[:-1]:
        try:
            conn.execute(statement)
        except psycopg.Error:
            pass  # the last statement's refusal says why, if it matters
    conn.execute(statements[-1])


def _why(exc: psycopg.Error) -> str:
    detail = exc.diag.message_detail if exc.diag else None
    reason = first_line(exc)
    return f"{reason}: {' '.join(detail.split())}" if detail else reason
