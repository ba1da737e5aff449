"""Watch the server side: sessions in ``pg_stat_activity``, ``pg_stat_database`` counters, CPU,
and PgBouncer's pools where there is one.

The sampler polls on a connection of its own, and counts only sessions whose
``application_name`` is the run's apps' (``connbench-app``; on an external server
``connbench-app-<run id>``), so neither its own connection nor any other client of the same
server, another connbench run included, is counted. Behind PgBouncer those are PgBouncer's
server connections (it tags them so, see :mod:`connbench.infra.pgbouncer`).

A server shows a session's state only to its role, superusers and members of
``pg_read_all_stats``. When a poll finds sessions whose state it hides (an own app's role, a
target's), the sample is unreadable: it is counted in ``Samples.hidden`` and the figures are
unknown, never the count of the sessions left visible.
"""

from __future__ import annotations

import asyncio
import copy
import time
from array import array
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil
import psycopg
from psycopg.rows import dict_row

from connbench.infra import pgbouncer
from connbench.infra.postgres import CONNECT_TIMEOUT_S, Postgres
from connbench.infra.userapp import DATABASE_ACTIVITY_SQL
from connbench.model.errors import first_line
from connbench.model.sessions import APP_NAME, OWN_SESSIONS, SAMPLER_APP

SAMPLE_INTERVAL_S = 0.1

# State null: the server hides the session's activity from us (see DATABASE_ACTIVITY_SQL).
ACTIVITY_SQL = """
SELECT CASE WHEN backend_type IS NOT NULL THEN coalesce(state, 'unknown') END, count(*)
FROM pg_stat_activity
WHERE application_name = %s AND datname = current_database()
GROUP BY 1
"""


# Client sessions on our database that are neither the run's apps' nor connbench's own, started
# since the sampler began (or whose start the server hides): on a server shared with other
# clients, each adds to pg_stat_database.sessions, so the app's count is not the counter's.
FOREIGN_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND coalesce(backend_type, 'client backend') = 'client backend'
  AND coalesce(application_name, '') <> ALL(%s) AND (backend_start IS NULL OR backend_start >= %s)
"""


@dataclass(frozen=True)
class Sample:
    t_ns: int  # time.perf_counter_ns(), comparable with the load generator's clock
    by_state: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


class Samples:
    """The samples of one run, in columns: 8 bytes for the time and 4 per state a sample
    (10 a second), rather than an object each, so that a 24 h run holds tens of MB, not
    hundreds. Iterating (:meth:`between`) makes the :class:`Sample` objects one at a time."""

    def __init__(self, samples: Iterable[Sample] = ()) -> None:
        self.t_ns = array("q")
        self.by_state: dict[str, array[int]] = {}
        self.connects = 0  # sessions the sampler itself opened (subtracted from the server's)
        self.failures = 0  # polls that failed (server restarting, say)
        self.last_error = ""
        self.hidden = 0  # polls that found sessions whose state the server hid from us
        self.user = ""  # whom it hid them from (the role that needs pg_read_all_stats)
        self.foreign = 0  # most other clients' sessions seen that started during the run
        for sample in samples:
            self.append(sample)

    def append(self, sample: Sample) -> None:
        for state in sample.by_state.keys() - self.by_state.keys():
            self.by_state[state] = array("i", bytes(4 * len(self.t_ns)))
        self.t_ns.append(sample.t_ns)
        for state, column in self.by_state.items():
            column.append(sample.by_state.get(state, 0))

    def __len__(self) -> int:
        return len(self.t_ns)

    def between(self, start_ns: int, end_ns: int) -> Iterator[Sample]:
        """The samples taken in [start_ns, end_ns), oldest first (the times are in order)."""
        low, high = bisect_left(self.t_ns, start_ns), bisect_left(self.t_ns, end_ns)
        for i in range(low, high):
            counts = {state: column[i] for state, column in self.by_state.items() if column[i]}
            yield Sample(self.t_ns[i], counts)

    @property
    def samples(self) -> list[Sample]:
        return list(self.between(-(2**63), 2**63 - 1))

    def moved(self, offset: Callable[[int], int | None], origin_ns: int) -> Samples:
        """The samples ``offset`` places (ns from ``origin_ns``), at their new times, with the
        same counters: one side's of a sliced round, on its window's time line (see
        :meth:`connbench.measure.turns.Turns.offset`)."""
        out = copy.copy(self)  # the counters, whatever they are
        out.t_ns, out.by_state = array("q"), {}
        for sample in self.samples:
            at = offset(sample.t_ns)
            if at is not None:
                out.append(Sample(origin_ns + at, sample.by_state))
        return out


async def watch(
    pg: Postgres,
    out: Samples,
    interval_s: float = SAMPLE_INTERVAL_S,
    database: str | None = None,
) -> None:
    """Append a :class:`Sample` to ``out`` every ``interval_s`` until cancelled.

    ``database``: count every client session on that database but connbench's own (own apps,
    targets), instead of the sessions tagged with ``pg.app_name`` on ours.

    A failed poll is counted in ``out.failures`` and the connection is reopened; the sampler
    never stops the run.
    """

    since: list[Any] = []  # the server's time at the first connection

    async def connect() -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            pg.dsn,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name=SAMPLER_APP,
        )
        out.connects += 1
        if not since:
            row = await (await conn.execute("SELECT now()")).fetchone()
            since.append(row[0] if row else None)
        return conn

    async def poll(conn: psycopg.AsyncConnection[Any]) -> None:
        if database is None:
            rows = await (await conn.execute(ACTIVITY_SQL, [pg.app_name])).fetchall()
        else:
            query = DATABASE_ACTIVITY_SQL
            rows = await (await conn.execute(query, [database, list(OWN_SESSIONS)])).fetchall()
        if database is None and pg.shared:  # others may open sessions on this database
            ours = [pg.app_name, *OWN_SESSIONS]
            row = await (await conn.execute(FOREIGN_SQL, [ours, since[0]])).fetchone()
            out.foreign = max(out.foreign, int(row[0]) if row else 0)
        if any(state is None for state, _ in rows):
            out.hidden += 1
            out.user = conn.info.user
        counts = {str(s): int(n) for s, n in rows if s is not None}
        out.append(Sample(time.perf_counter_ns(), counts))

    await _poll_every(interval_s, connect, poll, out)


class _Failures(Protocol):
    failures: int
    last_error: str


async def _poll_every(
    interval_s: float,
    connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
    poll: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
    out: _Failures,
) -> None:
    """Run ``poll`` every ``interval_s`` on a connection from ``connect`` until cancelled.

    A failed poll (or connect) is counted in ``out`` and the connection reopened next time.
    """
    conn: psycopg.AsyncConnection[Any] | None = None
    try:
        while True:
            started = time.perf_counter()
            try:
                if conn is None or conn.closed:
                    conn = await connect()
                await poll(conn)
            except psycopg.Error as exc:
                out.failures += 1
                out.last_error = first_line(exc)
                if conn is not None:
                    await conn.close()
                conn = None
            await asyncio.sleep(max(0.0, interval_s - (time.perf_counter() - started)))
    finally:
        if conn is not None:
            await conn.close()


# SHOW POOLS gauges kept per sample (clients active / waiting for a server; server
# connections active, idle, used, logging in), and SHOW STATS counters (cumulative).
POOL_GAUGES = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_login")
STATS_COUNTERS = ("total_xact_count", "total_query_count", "total_wait_time")


@dataclass(frozen=True)
class PoolSample:
    """PgBouncer's view of the app's database at one moment."""

    t_ns: int
    pools: dict[str, int]  # POOL_GAUGES, summed over the database's pools
    maxwait_us: int  # how long the oldest waiting client has waited
    stats: dict[str, int]  # STATS_COUNTERS; total_wait_time in microseconds


@dataclass
class PoolSamples:
    samples: list[PoolSample] = field(default_factory=list)
    failures: int = 0
    last_error: str = ""


async def watch_pgbouncer(
    bouncer: pgbouncer.PgBouncer, out: PoolSamples, interval_s: float = SAMPLE_INTERVAL_S
) -> None:
    """Append a :class:`PoolSample` to ``out`` every ``interval_s`` until cancelled.

    Polls ``SHOW POOLS`` and ``SHOW STATS`` on PgBouncer's admin console; a failed poll is
    counted in ``out.failures`` and the connection reopened, never stopping the run.
    """

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            bouncer.admin_dsn,
            autocommit=True,
            prepare_threshold=None,  # the admin console takes simple statements only
            connect_timeout=CONNECT_TIMEOUT_S,
            row_factory=dict_row,
        )

    async def poll(conn: psycopg.AsyncConnection[Any]) -> None:
        pools = await (await conn.execute("SHOW POOLS")).fetchall()
        stats = await (await conn.execute("SHOW STATS")).fetchall()
        out.samples.append(_pool_sample(pools, stats, bouncer.database))

    await _poll_every(interval_s, connect, poll, out)


def _pool_sample(
    pools: list[dict[str, Any]], stats: list[dict[str, Any]], database: str = pgbouncer.DATABASE
) -> PoolSample:
    ours = [row for row in pools if row.get("database") == database]
    # maxwait is whole seconds, maxwait_us the microseconds beyond them (PgBouncer >= 1.8).
    maxwait = max(
        (int(r.get("maxwait") or 0) * 1_000_000 + int(r.get("maxwait_us") or 0) for r in ours),
        default=0,
    )
    totals = next((row for row in stats if row.get("database") == database), {})
    return PoolSample(
        t_ns=time.perf_counter_ns(),
        pools={name: sum(int(r.get(name) or 0) for r in ours) for name in POOL_GAUGES},
        maxwait_us=maxwait,
        stats={name: int(totals.get(name) or 0) for name in STATS_COUNTERS},
    )


def sessions_counter(conn: psycopg.Connection[Any], database: str | None = None) -> int | None:
    """``pg_stat_database.sessions`` for ``database`` (default: ours); None before PostgreSQL 14.

    The server counts a session when it starts, so read on a connection that is already open
    and subtract the sessions connbench itself opens in between (see ``Samples.connects``).
    """
    try:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database"
            " WHERE datname = coalesce(%s::text, current_database())",
            [database],
        ).fetchone()
    except psycopg.errors.UndefinedColumn:
        return None
    return int(row[0]) if row and row[0] is not None else None


def wait_for_app_sessions_to_end(
    conn: psycopg.Connection[Any],
    timeout_s: float = 5.0,
    database: str | None = None,
    app_name: str = APP_NAME,
) -> int:
    """Wait until no app session (tagged ``app_name``) is left on the server (on ``database``,
    if given: see :data:`DATABASE_ACTIVITY_SQL`); return how many still are."""
    deadline = time.monotonic() + timeout_s
    params: list[Any]
    while True:
        if database is None:
            query, params = (
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                [app_name],
            )
        else:
            query = f"SELECT sum(n) FROM ({DATABASE_ACTIVITY_SQL}) AS s(state, n)"
            params = [database, list(OWN_SESSIONS)]
        row = conn.execute(query, params).fetchone()
        left = int(row[0]) if row and row[0] is not None else 0
        if left == 0 or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def tree_cpu_s(pid: int | None) -> float | None:
    """CPU seconds used by a process and all its descendants, living and reaped.

    Reaped children are in the parent's ``children_*`` times, so short-lived Postgres backends
    (one per request, in the per-request strategies) are counted too.
    """
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in proc.children(recursive=True):
            try:
                ct = child.cpu_times()
                total += ct.user + ct.system
            except psutil.Error:
                continue
    except psutil.Error:
        return None
    return float(total)
