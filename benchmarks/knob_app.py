"""The pool app with a knob: a fixed amount of CPU work added to every ``/visit/`` request.

``CONNBENCH_EXTRA_WORK_US`` (default 0) is CPU time, in microseconds of this thread's CPU
clock, spent in the request before the pool app serves it. CPU time, not wall time: a spin on
the wall clock would do less work when the machine is busy and the app is descheduled, so
the loss it injects would shrink exactly when the noise grows. Where the app is the
bottleneck and spends ``c`` µs of CPU on a request, ``w`` µs more costs ``w / (c + w)`` of
its throughput.

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
# gate_power.py --pin: the app on these CPUs, the load generator and PostgreSQL on the others.
PIN_CPUS = os.environ.get("CONNBENCH_PIN_CPUS")
if PIN_CPUS:
    os.sched_setaffinity(0, {int(cpu) for cpu in PIN_CPUS.split(",")})


def spin(cpu_us: float) -> None:
    """Burn ``cpu_us`` microseconds of this thread's CPU time (blocking, like real work)."""
    end = time.thread_time_ns() + int(cpu_us * 1000)
    while time.thread_time_ns() < end:
        pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if EXTRA_WORK_US and scope["type"] == "http" and scope["path"] == "/visit/":
        spin(EXTRA_WORK_US)
    await pool_app(scope, receive, send)
