"""wrk as the reference client of the benchmarks: run it, read its figures and its CPU.

wrk runs with one thread (-t1): the same single core's worth of client that connbench's single
event loop gets. Its CPU is read from the kernel's accounting of the reaped child (user +
system time of the whole run), so nothing of the benchmark's own process is counted in it.
"""

from __future__ import annotations

import re
import resource
import subprocess
from pathlib import Path

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
INSTALL_HINT = "run benchmarks/install-tools.sh wrk (or make fidelity)"


def parse(output: str) -> dict[str, float]:
    """Requests/sec, the request count, socket errors and the latency percentiles wrk
    --latency prints."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in ", output)
    if rps is None or requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    out = {"rps": float(rps.group(1)), "requests": float(requests.group(1))}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M):
        out[f"p{pct}_ms"] = float(value) * UNITS_MS[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    out["non_2xx"] = float(errors.group(1)) if errors else 0.0
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    out["socket_errors"] = float(sum(int(n) for n in sockets.groups())) if sockets else 0.0
    return out


def run(
    url: str, concurrency: int, duration_s: float, script: Path | None = None
) -> dict[str, float]:
    """One wrk run (``-t1``, ``--latency``, 10 s timeout) with its CPU: ``cpu_percent`` of a
    core over the run and ``cpu_us_per_request``. ``script``: a Lua file (``-s``).

    Raises :class:`subprocess.CalledProcessError` when wrk fails, RuntimeError when its output
    cannot be read, ValueError when ``duration_s`` is not whole seconds (wrk's -d)."""
    if duration_s < 1 or duration_s != int(duration_s):
        raise ValueError(f"wrk runs for whole seconds, not {duration_s:g}")
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration_s:g}s", "--latency", "--timeout", "10s"]
    if script is not None:
        argv += ["-s", str(script)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([*argv, url], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = parse(proc.stdout)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["cpu_percent"] = 100.0 * cpu_s / duration_s
    out["cpu_us_per_request"] = 1e6 * cpu_s / max(1.0, out["requests"])
    return out
