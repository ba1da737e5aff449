"""Watch the server side: sessions in ``pg_stat_activity``, ``pg_stat_database`` counters, CPU.

The sampler polls on a connection of its own, and counts only sessions whose
``application_name`` is the apps' (``connbench-app``), so neither its own connection nor any
other client of the same server is counted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import psycopg

from connbench.errors import first_line
from connbench.postgres import APP_NAME, CONNECT_TIMEOUT_S, Postgres

SAMPLE_INTERVAL_S = 0.1

ACTIVITY_SQL = """
SELECT coalesce(state, 'unknown'), count(*)
FROM pg_stat_activity
WHERE application_name = %s AND datname = current_database()
GROUP BY 1
"""


@dataclass(frozen=True)
class Sample:
    t_ns: int  # time.perf_counter_ns(), comparable with the load generator's clock
    by_state: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


@dataclass
class Samples:
    samples: list[Sample] = field(default_factory=list)
    connects: int = 0  # sessions the sampler itself opened (subtracted from the server's count)
    failures: int = 0  # polls that failed (server restarting, say)
    last_error: str = ""


async def watch(pg: Postgres, out: Samples, interval_s: float = SAMPLE_INTERVAL_S) -> None:
    """Append a :class:`Sample` to ``out`` every ``interval_s`` until cancelled.

    A failed poll is counted in ``out.failures`` and the connection is reopened; the sampler
    never stops the run.
    """
    conn: psycopg.AsyncConnection[tuple[str, int]] | None = None
    try:
        while True:
            started = time.perf_counter()
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        pg.dsn,
                        autocommit=True,
                        connect_timeout=CONNECT_TIMEOUT_S,
                        application_name="connbench-sampler",
                    )
                    out.connects += 1
                cur = await conn.execute(ACTIVITY_SQL, [APP_NAME])
                rows = await cur.fetchall()
                out.samples.append(
                    Sample(time.perf_counter_ns(), {str(s): int(n) for s, n in rows})
                )
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


def sessions_counter(conn: psycopg.Connection[Any]) -> int | None:
    """``pg_stat_database.sessions`` for our database (None before PostgreSQL 14).

    The server counts a session when it starts, so read on a connection that is already open
    and subtract the sessions connbench itself opens in between (see ``Samples.connects``).
    """
    try:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    except psycopg.errors.UndefinedColumn:
        return None
    return int(row[0]) if row and row[0] is not None else None


def wait_for_app_sessions_to_end(conn: psycopg.Connection[Any], timeout_s: float = 5.0) -> int:
    """Wait until no app session is left on the server; return how many still are."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
        ).fetchone()
        left = int(row[0]) if row else 0
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
