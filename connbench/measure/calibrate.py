"""The references a strategy is measured against, taken in the same session.

- the load generator's own ceiling: an app's ``/health`` endpoint, which touches no database,
  driven by connbench's generator (and by wrk when it is on PATH, for comparison);
- PostgreSQL's: pgbench running the same insert, with a persistent connection per client and
  with a new connection per transaction (``-C``), at each concurrency the run uses, over the
  apps' own path (the same host, port, user and so the same TCP and SCRAM handshake).

Per-request strategies are then read against ``pgbench -C``, pooled ones against the
persistent figure. These are references, not hard ceilings: pgbench is a different client
(C, no HTTP in the way), and a strategy can read above 100 % of it. Its ``-C`` mode opens each
client's connection synchronously inside the thread that drives it, so with fewer threads
than clients at most one handshake per thread is in flight, where the async apps have one per
request in flight; ``-C`` therefore runs one thread per client here. Measured at c=32 on the
2-core VM (two paired rounds, heavily loaded): ``-j 2`` gave 48 and 85 TPS, ``-j 32`` 63 and
92, against 86 and 149 req/s for the connect app; the reference still moves with the load.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from psycopg import sql

from connbench.apps import STRATEGIES
from connbench.infra import appserver, procs, tempdirs
from connbench.infra.postgres import Postgres, for_libpq_program
from connbench.measure import load
from connbench.model.dsn import redact
from connbench.model.errors import MissingDependency
from connbench.model.result_types import Calibration

TPS = re.compile(r"^tps = ([\d.]+)", re.MULTILINE)
WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")


def pgbench_path(pg: Postgres) -> Path | None:
    if pg.bindir is not None and (pg.bindir / "pgbench").exists():
        return pg.bindir / "pgbench"
    found = shutil.which("pgbench")
    return Path(found) if found else None


def pgbench_threads(concurrency: int, reconnect: bool) -> int:
    """``-j``: one thread per client for ``-C`` (see the module docstring), else one per core."""
    return concurrency if reconnect else min(concurrency, os.cpu_count() or 1)


def pgbench_tps(
    pg: Postgres, concurrency: int, duration_s: float, reconnect: bool, workdir: Path
) -> float:
    """pgbench's TPS for ``INSERT INTO <visits> DEFAULT VALUES``; raises MissingDependency."""
    binary = pgbench_path(pg)
    if binary is None:
        raise MissingDependency("calibrate: pgbench not found (it ships with the embedded server)")
    conninfo, secret_env = for_libpq_program(pg.dsn)
    script = workdir / "insert.sql"
    with pg.connect() as conn:
        statement = sql.SQL("INSERT INTO {} DEFAULT VALUES;").format(sql.Identifier(pg.table))
        script.write_text(statement.as_string(conn) + "\n")
    argv = [
        str(binary), "-n", "-f", str(script),
        "-c", str(concurrency), "-j", str(pgbench_threads(concurrency, reconnect)),
        "-T", str(max(1, round(duration_s))),
        conninfo,  # pgbench takes a conninfo as its database name; no password in it
    ]  # fmt: skip
    if reconnect:
        argv.insert(1, "-C")
    # The password goes through the environment, never the command line.
    env = procs.child_env(secret_env)
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration_s + 60)
    found = TPS.search(result.stdout)
    if result.returncode != 0 or found is None:
        raise MissingDependency("calibrate: pgbench failed: " + redact(_pgbench_said(result)))
    pg.reset_table()
    return float(found.group(1))


def _pgbench_said(result: subprocess.CompletedProcess[str]) -> str:
    """What pgbench's failure comes down to: its first error (a client that could not
    connect, say, which its summary's last lines do not name), then those last lines."""
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()][:1]
    tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
    return " | ".join(dict.fromkeys([*errors, *tail]))


def wrk_rps(url: str, concurrency: int, duration_s: float) -> float | None:
    if shutil.which("wrk") is None:
        return None
    result = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s", url],
        capture_output=True,
        text=True,
        env=procs.child_env({}),  # not ours, which may hold PGPASSWORD
        timeout=duration_s + 30,
    )
    found = WRK_RPS.search(result.stdout)
    return float(found.group(1)) if found else None


def measure(
    pg: Postgres,
    *,
    concurrency: int | Sequence[int],
    duration_s: float,
    engine: str = "httptools",
) -> Calibration:
    """The references, ``duration_s`` each: the generator's at the first concurrency, pgbench's
    at every one (``by_concurrency``; the top-level pgbench figures are the first's). Takes
    about (2 + 2 x concurrencies) x duration_s."""
    levels = [concurrency] if isinstance(concurrency, int) else list(concurrency)
    concurrency = levels[0]
    out: dict[str, Any] = {"concurrency": concurrency, "duration_s": duration_s}
    workdir = tempdirs.make("calibrate")
    try:
        config = appserver.AppConfig(pool_min=1, pool_max=1)
        with appserver.start(
            STRATEGIES["connect"], pg.app_dsn(), pg.table, config, workdir / "app.log"
        ) as app:
            health = f"{app.url}/health"
            load_config = load.LoadConfig(concurrency, duration_s, 0.5, 10.0, engine)
            raw = load.run_sync(health, load_config)
            out["generator_rps"] = round(raw.ok / raw.window_s, 1) if raw.window_s else None
            out["generator_cpu_percent"] = round(raw.loop_cpu_percent, 1)
            out["wrk_rps"] = wrk_rps(health, concurrency, duration_s)
        by_concurrency = {}
        for level in levels:
            by_concurrency[str(level)] = {
                "pgbench_tps": round(pgbench_tps(pg, level, duration_s, False, workdir), 1),
                "pgbench_connect_tps": round(pgbench_tps(pg, level, duration_s, True, workdir), 1),
            }
        out.update(by_concurrency[str(concurrency)])
        out["by_concurrency"] = by_concurrency
        out["pgbench_connect_threads"] = "one per client"
    finally:
        tempdirs.remove(workdir)
    return Calibration.model_validate(out)
