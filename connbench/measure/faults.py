"""Faults injected into the server during the measured window, to see how a strategy recovers.

- ``terminate@S``: ``pg_terminate_backend`` on every server session of the app (those with
  the run's ``application_name``: ``connbench-app``, on an external server
  ``connbench-app-<run id>``, so that another run's sessions are never cut), ``S`` seconds
  into the measured window. What an
  administrator, a failover or an idle-session killer does to a running app.
- ``restart@S``: PostgreSQL stops fast (open sessions are cut, new ones refused) and starts
  again on the same port and data directory. Only for the servers connbench starts itself
  (embedded, local); :mod:`connbench.model.scenario` refuses it for the others.

The injector runs on the load generator's event loop and never blocks it: the generator keeps
counting, at full speed, what the app does while the fault lasts. Computing the outcome
(errors, recovery) is :func:`connbench.analyse.stats.fault_outcome`'s job.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from connbench.infra.postgres import CONNECT_TIMEOUT_S, Postgres
from connbench.model.errors import first_line

# Parsed in the model (a scenario validates its fault); re-exported for the injector's callers.
from connbench.model.faults import KINDS as KINDS
from connbench.model.faults import MIN_BASELINE_S as MIN_BASELINE_S
from connbench.model.faults import Fault as Fault
from connbench.model.faults import parse as parse
from connbench.model.sessions import FAULT_APP

TERMINATE_SQL = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE application_name = %s AND datname = current_database()
"""


@dataclass
class Injected:
    """What happened when the fault was injected (``at_ns`` on ``time.perf_counter_ns()``,
    the load generator's clock)."""

    fault: Fault
    at_ns: int | None = None  # None: it never fired (the run stopped first)
    took_s: float | None = None  # how long the injection took: a restart's downtime
    terminated: int | None = None  # sessions pg_terminate_backend cut
    error: str | None = None  # why it could not be injected
    connects: int = 0  # sessions connbench opened to inject (not the app's)

    @property
    def restarted(self) -> bool:
        """Whether the server went down (every session open before it is gone)."""
        return self.fault.kind == "restart" and self.at_ns is not None


class Injector:
    """Fires one fault ``fault.at_s`` seconds after :meth:`arm`; :meth:`finish` settles it.

    Raises :class:`~connbench.model.errors.PostgresError` from :meth:`finish` when a restarted
    server does not come back (there is nothing left to measure against).
    """

    def __init__(self, fault: Fault, pg: Postgres) -> None:
        self.fault = fault
        self.pg = pg
        self.injected = Injected(fault)
        self._task: asyncio.Task[None] | None = None
        self._firing = False

    def arm(self) -> None:
        """Start the countdown (call on the loop, at the measured window's start)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(time.monotonic()))

    async def finish(self) -> Injected:
        """Wait for a fault in progress to complete; cancel one that has not fired yet."""
        task = self._task
        if task is not None:
            if not self._firing:
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self._firing or (current is not None and current.cancelling()):
                    raise  # we were cancelled ourselves (a second Ctrl-C), not just the countdown
            finally:
                if not task.done():
                    task.cancel()
        return self.injected

    async def _run(self, armed: float) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            if self.fault.kind == "terminate":
                # Connect now, so that the fault lands at its second and not a handshake later.
                conn = await psycopg.AsyncConnection.connect(
                    self.pg.dsn,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    application_name=FAULT_APP,
                )
                self.injected.connects += 1
            await asyncio.sleep(max(0.0, armed + self.fault.at_s - time.monotonic()))
            self._firing = True
            start = time.perf_counter_ns()
            self.injected.at_ns = start
            if conn is not None:
                cur = await conn.execute(TERMINATE_SQL, [self.pg.app_name])
                row = await cur.fetchone()
                self.injected.terminated = int(row[0]) if row else 0
            else:
                await self.pg.restart()
            self.injected.took_s = round((time.perf_counter_ns() - start) / 1e9, 3)
        except psycopg.Error as exc:
            self.injected.error = first_line(exc)
        finally:
            if conn is not None:
                await conn.close()
