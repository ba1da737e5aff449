"""The measured window's edges: what each process tree has used so far, marked as the load
generator reaches the start and the end of the window, and the CPU share taken from the two.

At each edge: the CPU seconds of the app's, PostgreSQL's and PgBouncer's process trees (a
container's cgroup for PostgreSQL in Docker), a read of the app's timing totals when it keeps
them, and, at the start, the fault armed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from connbench.infra import appserver, pgbouncer, postgres, userapp
from connbench.measure import faults, sampler

STATS_TIMEOUT_S = 10.0  # the app answers its timing totals behind the requests it is serving


@dataclass(frozen=True)
class Edge:
    """CPU seconds used so far by each process tree at one edge of the window."""

    cpu_s: dict[str, float | None]
    pids: dict[str, int | None]  # a restart replaces the server: no start to count from
    t_s: float


@dataclass
class Edges:
    """Marks the measured window's edges as the load generator reaches them (on its loop):
    each process tree's CPU so far, a read of the app's timing totals, the fault armed."""

    app: appserver.App | userapp.Served
    pg: postgres.Postgres
    bouncer: pgbouncer.PgBouncer | None
    injector: faults.Injector | None
    client: httpx.AsyncClient
    seen: dict[str, Edge] = field(default_factory=dict)
    reads: dict[str, asyncio.Task[dict[str, Any] | None]] = field(default_factory=dict)
    # A sliced round: each turn's (start, end), whose CPU is this side's (see load.run).
    turns: list[tuple[Edge, Edge]] = field(default_factory=list)
    _turn_start: Edge | None = None

    def processes(self) -> dict[str, int | None]:
        # Read at each edge: a restart gives PostgreSQL a new process.
        found = {"app": self.app.pid, "postgres": self.pg.server_pid}
        if self.bouncer is not None:
            found["pgbouncer"] = self.bouncer.pid
        return found

    def mark(self, name: str) -> None:
        pids = self.processes()
        cpu = {label: sampler.tree_cpu_s(pid) for label, pid in pids.items()}
        if self.pg.cpu_s is not None:  # a container: its cgroup, not a process tree of ours
            cpu["postgres"] = self.pg.cpu_s()
        edge = Edge(cpu, pids, time.perf_counter())
        if name == "turn-start":
            self._turn_start = edge
            return
        if name == "turn-end":
            if self._turn_start is not None:
                self.turns.append((self._turn_start, edge))
                self._turn_start = None
            return
        self.seen[name] = edge
        if self.app.instrumented:  # the app's timing totals at this edge, read meanwhile
            self.reads[name] = asyncio.get_running_loop().create_task(
                self.app.read_stats(self.client)
            )
        if name == "start" and self.injector is not None:
            self.injector.arm()

    def cpu_percent(self) -> dict[str, float | None]:
        if self.turns:  # a sliced round: over this side's turns, not the others' between
            return cpu_percent(self.processes(), self.turns)
        if "start" not in self.seen or "end" not in self.seen:
            return {label: None for label in self.processes()}
        return cpu_percent(self.processes(), [(self.seen["start"], self.seen["end"])])


def cpu_percent(
    processes: dict[str, int | None], spans: list[tuple[Edge, Edge]]
) -> dict[str, float | None]:
    """% of one core used by each process tree over the measured window, made of ``spans``
    (one, or a sliced round's turns), from their CPU and wall time summed (None: unknown)."""
    out: dict[str, float | None] = {}
    wall = sum(end.t_s - start.t_s for start, end in spans)
    for label in processes:
        used = 0.0
        for start, end in spans:
            a, b = start.cpu_s.get(label), end.cpu_s.get(label)
            if a is None or b is None or start.pids.get(label) != end.pids.get(label):
                break
            used += b - a
        else:
            out[label] = round(100 * used / wall, 1) if wall > 0 else None
            continue
        out[label] = None
    return out
