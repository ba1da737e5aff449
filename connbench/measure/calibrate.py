"""The ceilings a strategy is measured against, taken in the same session.

- the load generator's own ceiling: an app's ``/health`` endpoint, which touches no database,
  driven by connbench's generator (and by wrk when it is on PATH, for comparison);
- PostgreSQL's: pgbench running the same insert, with a persistent connection per client and
  with a new connection per transaction (``-C``), at the same concurrency.

Per-request strategies are then read against ``pgbench -C``, pooled ones against the
persistent figure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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
        "-c", str(concurrency), "-j", str(min(concurrency, os.cpu_count() or 1)),
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
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise MissingDependency("calibrate: pgbench failed: " + redact(" | ".join(tail)))
    pg.reset_table()
    return float(found.group(1))


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
    pg: Postgres, *, concurrency: int, duration_s: float, engine: str = "httptools"
) -> Calibration:
    """All ceilings at ``concurrency``, ``duration_s`` each. Takes about 4 x duration_s."""
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
        out["pgbench_tps"] = round(pgbench_tps(pg, concurrency, duration_s, False, workdir), 1)
        out["pgbench_connect_tps"] = round(
            pgbench_tps(pg, concurrency, duration_s, True, workdir), 1
        )
    finally:
        tempdirs.remove(workdir)
    return Calibration.model_validate(out)
