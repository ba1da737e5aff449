"""The pool app with a knob: a fixed amount of CPU work added to every ``/visit/`` request.

``CONNBENCH_EXTRA_WORK_US`` (default 0) is CPU time, in microseconds of this thread's CPU
clock, spent in the request before the pool app serves it. CPU time, not wall time: a spin on
the wall clock would do less work when the machine is busy and the app is descheduled, so
the loss it injects would shrink exactly when the noise grows. Where the app is the
bottleneck and spends ``c`` µs of CPU on a request, ``w`` µs more costs ``w / (c + w)`` of
its throughput.

``CONNBENCH_EXTRA_WORK_SHARE`` (``L``, e.g. 0.15) instead adds ``L / (1 - L)`` of the app's
own CPU per request as it runs: the app's CPU time (all its threads, its spins left out) over
its last 256 requests, per request. A fixed ``w`` injects a loss that moves with the machine:
beside a noisy neighbour the app's cost per request moves (cache, frequency, contention), and
``w / (c + w)`` with it (53 µs was a 7 % loss one hour and 68 µs a 17 % loss the one before,
measured here). Tracking ``c`` keeps the loss near ``L`` wherever the app is the bottleneck.

With ``CONNBENCH_EXTRA_WORK_US=0`` this is the pool app plus one environment lookup at import,
so an A/A pair is two copies of the same code. Serve it as your own app would be served::

    connbench run --app base=knob_app:app@benchmarks --app head=knob_app:app@benchmarks ...

(with the work given to each through the scenario's ``[[app]] env``), which is what
``benchmarks/gate_power.py`` does.
"""

from __future__ import annotations

import os
import time
from typing import Any

from connbench.apps.pool import app as pool_app

EXTRA_WORK_US = float(os.environ.get("CONNBENCH_EXTRA_WORK_US") or 0)
EXTRA_WORK_SHARE = float(os.environ.get("CONNBENCH_EXTRA_WORK_SHARE") or 0)
TRACK_EVERY = 256  # requests per estimate of the app's own CPU per request
# gate_power.py --pin: the app on these CPUs, the load generator and PostgreSQL on the others.
PIN_CPUS = os.environ.get("CONNBENCH_PIN_CPUS")
if PIN_CPUS:
    os.sched_setaffinity(0, {int(cpu) for cpu in PIN_CPUS.split(",")})


def spin(cpu_us: float) -> None:
    """Burn ``cpu_us`` microseconds of this thread's CPU time (blocking, like real work)."""
    end = time.thread_time_ns() + int(cpu_us * 1000)
    while time.thread_time_ns() < end:
        pass


class OwnCost:
    """The app's own CPU per request (µs), re-estimated every ``TRACK_EVERY`` requests from
    its process CPU time, less what the spins took."""

    def __init__(self) -> None:
        self.requests = 0
        self.spun_s = 0.0
        self.since_s = time.process_time()
        self.us = 0.0  # nothing added until the first estimate (the warm-up's first requests)

    def extra_us(self, share: float) -> float:
        self.requests += 1
        if self.requests == TRACK_EVERY:
            now = time.process_time()
            own_s = now - self.since_s - self.spun_s
            self.us = max(0.0, own_s * 1e6 / self.requests)
            self.requests, self.spun_s, self.since_s = 0, 0.0, now
        return self.us * share / (1 - share)

    def spin(self, cpu_us: float) -> None:
        before = time.thread_time()
        spin(cpu_us)
        self.spun_s += time.thread_time() - before


OWN_COST = OwnCost()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/visit/":
        if EXTRA_WORK_US:
            spin(EXTRA_WORK_US)
        elif EXTRA_WORK_SHARE:
            OWN_COST.spin(OWN_COST.extra_us(EXTRA_WORK_SHARE))
    await pool_app(scope, receive, send)
