"""The children connbench runs, watched while a variant is measured.

The app, PostgreSQL's postmaster and PgBouncer are polled every :data:`WATCH_INTERVAL_S`. The
first that stops on its own is recorded as a :class:`Death` and stops the load, as a Ctrl-C
does: what was measured until then is kept, and the runner fails the variant with the cause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from connbench.infra import appserver, pgbouncer, postgres, procs, userapp
from connbench.measure.edges import Edge

WATCH_INTERVAL_S = 0.1  # how often the watchdog looks at the children
# Each child watched, as a failure names it.
CHILDREN = {
    "app": "the app's uvicorn",
    "postgres": "PostgreSQL's postmaster",
    "pgbouncer": "PgBouncer",
}


@dataclass(frozen=True)
class Death:
    """A child that stopped on its own while a variant was measured."""

    child: str  # app | postgres | pgbouncer
    pid: int | None
    returncode: int
    at_s: float | None  # seconds into the measured window; None: during the warm-up

    def __str__(self) -> str:
        who = CHILDREN.get(self.child, self.child)
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        when = "during the warm-up" if self.at_s is None else f"{self.at_s:.1f} s into the window"
        return f"{who}{pid} {procs.describe_exit(self.returncode)} {when}"


async def watch(
    app: appserver.App | userapp.Served,
    pg: postgres.Postgres,
    bouncer: pgbouncer.PgBouncer | None,
    edges: dict[str, Edge],
    stop: asyncio.Event,
    deaths: list[Death],
) -> None:
    """Until cancelled: when the app, the postmaster or PgBouncer stops on its own, record it
    in ``deaths`` and set ``stop`` (the load ends as on Ctrl-C, keeping what it measured)."""
    children: dict[str, tuple[Callable[[], int | None], int | None]] = {
        "app": (app.exit_code, app.pid),
        "postgres": (pg.died, pg.server_pid),
    }
    if bouncer is not None:
        children["pgbouncer"] = (bouncer.exit_code, bouncer.pid)
    while not deaths:
        for name, (exit_code, pid) in children.items():
            code = exit_code()
            if code is not None:
                start = edges.get("start")
                at_s = time.perf_counter() - start.t_s if start is not None else None
                if name == "postgres":
                    pid = pg.server_pid  # a restart fault may have replaced it
                deaths.append(Death(name, pid, code, at_s))
                stop.set()
                break
        await asyncio.sleep(WATCH_INTERVAL_S)
