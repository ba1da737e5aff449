"""Fidelity: connbench's load generator against wrk, on the same apps, in the same run.

    python benchmarks/fidelity.py [--duration 8] [--repeat 7] [--concurrency 32]
                                  [--locust-workers 1,2]

The ``pool`` and ``connect`` apps run side by side on one embedded PostgreSQL. Each round
measures every (app, client) pair once, the client order flipped every round, and the ratios
are taken round by round (runs next to each other share the machine's drift), then their
median. Targets (issue #2): connbench's pool throughput >= 0.95x wrk's, its pool p99
within 1.25x of wrk's, and the pool/connect throughput ratio within 10 % of wrk's. It also
runs the aiohttp and httpx engines once each, to show why they are not the default. Writes
results/fidelity-*.json and exits 1 when a target is missed.

With ``--locust-workers 1,2`` every round also measures the Locust engine with that many local
worker processes (issue #12), reported for the record beside wrk: Locust's CPU per request is
many times the default engine's, and on a 2-core machine that CPU is taken from the app.

wrk runs with one thread (-t1): the same single core's worth of client that connbench's
single event loop gets. Neither gets a warm-up inside its run (wrk has none), and every run
starts after a pause that lets the app finish what the previous client left in flight.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from connbench.apps import STRATEGIES
from connbench.infra import appserver, postgres
from connbench.measure import load
from connbench.model import results

ROOT = Path(__file__).resolve().parent.parent
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/sec and the latency percentiles wrk --latency prints."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    out = {"rps": float(rps.group(1))}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M):
        out[f"p{pct}_ms"] = float(value) * UNITS_MS[unit]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    out["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return out


def run_wrk(url: str, concurrency: int, duration_s: float) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{duration_s:g}s",
            "--latency",
            "--timeout",
            "10s",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = parse_wrk(proc.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["cpu_percent"] = 100.0 * cpu / duration_s
    return out


def run_connbench(url: str, concurrency: int, duration_s: float, engine: str) -> dict[str, float]:
    raw = load.run_sync(url, load.LoadConfig(concurrency, duration_s, 0.0, 10.0, engine))
    return figures(raw)


def figures(raw: load.RawLoad) -> dict[str, float]:
    """Throughput, percentiles, errors and the client's CPU, as wrk reports them."""
    h = raw.histogram
    return {
        "rps": raw.ok / raw.window_s,
        "p50_ms": h.get_value_at_percentile(50) / 1000,
        "p90_ms": h.get_value_at_percentile(90) / 1000,
        "p99_ms": h.get_value_at_percentile(99) / 1000,
        "errors": float(raw.errors),
        "cpu_percent": raw.cpu_percent,
    }


def run_locust(url: str, concurrency: int, duration_s: float, workers: int) -> dict[str, float]:
    from connbench.measure import locust_engine

    config = load.LoadConfig(concurrency, duration_s, 0.0, 10.0, "locust")
    options = locust_engine.LocustOptions(workers=workers)
    with load.new_runner() as runner:
        raw = runner.run(locust_engine.run(url, config, options=options))
    # cpu_percent is the master and the workers together; the busiest worker is the bottleneck.
    return figures(raw) | {"busiest_worker_cpu_percent": raw.loop_cpu_percent}


def measure(tool: str, url: str, concurrency: int, duration_s: float) -> dict[str, float]:
    if tool == "wrk":
        return run_wrk(url, concurrency, duration_s)
    if tool.startswith("locust-"):
        return run_locust(url, concurrency, duration_s, int(tool.split("-")[1].rstrip("w")))
    return run_connbench(url, concurrency, duration_s, "httptools")


SETTLE_S = 2.0


def settle(pg: postgres.Postgres) -> None:
    """Start every run from the same state.

    The pause lets the app finish what the previous client left in flight (wrk drops its
    in-flight requests when it stops; the app still serves them), so no run starts behind a
    backlog; the table is emptied and a checkpoint taken so that no run inherits another's
    dirty pages or meets an autovacuum of rows it did not insert.
    """
    time.sleep(SETTLE_S)
    pg.reset_table()
    with pg.connect() as conn:
        conn.execute("CHECKPOINT")


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def paired(a: list[dict[str, float]], b: list[dict[str, float]], key: str) -> list[float]:
    """Round-by-round ratios a/b: runs next to each other in time share the machine's drift."""
    return [x[key] / y[key] for x, y in zip(a, b, strict=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--locust-workers",
        default="",
        help="also measure the Locust engine with these local worker counts, e.g. 1,2",
    )
    args = parser.parse_args()
    locust_tools = [f"locust-{int(n)}w" for n in args.locust_workers.split(",") if n.strip()]
    console = Console()
    if shutil.which("wrk") is None:
        console.print("wrk is not installed: run benchmarks/install-wrk.sh (or make fidelity)")
        return 2

    names = ("pool", "connect")
    measured: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {tool: [] for tool in ("wrk", "connbench", *locust_tools)} for name in names
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="connbench-fidelity-")))
        pg = stack.enter_context(postgres.start(postgres.parse_backend("embedded")))
        config = appserver.AppConfig(pool_min=4, pool_max=4)
        urls = {
            name: stack.enter_context(
                appserver.start(
                    STRATEGIES[name], pg.app_dsn(), pg.table, config, tmp / f"{name}.log"
                )
            ).visit_url
            for name in names
        }
        for name in names:
            console.print(f"[bold]{name}[/bold]: warm-up")
            run_connbench(urls[name], args.concurrency, 2.0, "httptools")
        # Rounds: every (strategy, tool) once per round, the tool order flipped each round.
        for i in range(args.repeat):
            order = ["wrk", "connbench", *locust_tools]
            tools = order if i % 2 == 0 else order[::-1]
            for name in names:
                for tool in tools:
                    settle(pg)
                    r = measure(tool, urls[name], args.concurrency, args.duration)
                    measured[name][tool].append(r)
                    console.print(
                        f"  round {i + 1}/{args.repeat} {name:8} {tool:9} {r['rps']:8.0f} req/s  "
                        f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                        f"client CPU {r['cpu_percent']:4.0f}%"
                    )
        for name in names:
            for engine in ("aiohttp", "httpx"):  # the other engines, once, for the record
                settle(pg)
                r = run_connbench(urls[name], args.concurrency, args.duration, engine)
                measured[name][f"connbench-{engine}"] = [r]
                console.print(
                    f"  {name:8} {engine:13} {r['rps']:8.0f} req/s  p99 {r['p99_ms']:7.1f} ms  "
                    f"client CPU {r['cpu_percent']:4.0f}%"
                )
        pg_version = pg.version

    pool, connect = measured["pool"], measured["connect"]
    rps_ratios = paired(pool["connbench"], pool["wrk"], "rps")
    p99_ratios = paired(pool["connbench"], pool["wrk"], "p99_ms")
    cb_spreads = paired(pool["connbench"], connect["connbench"], "rps")
    wrk_spreads = paired(pool["wrk"], connect["wrk"], "rps")
    spread_diffs = [c / w - 1 for c, w in zip(cb_spreads, wrk_spreads, strict=True)]
    rps_ratio, p99_ratio = statistics.median(rps_ratios), statistics.median(p99_ratios)
    spread_diff = statistics.median(spread_diffs)
    aiohttp_ratio = pool["connbench-aiohttp"][0]["rps"] / median(pool["wrk"], "rps")
    httpx_ratio = pool["connbench-httpx"][0]["rps"] / median(pool["wrk"], "rps")

    def span(values: list[float], fmt: str) -> str:
        return f"{format(min(values), fmt)}..{format(max(values), fmt)}"

    checks = [
        (
            "pool throughput, connbench / wrk",
            f"{rps_ratio:.2f}x (rounds {span(rps_ratios, '.2f')})",
            ">= 0.95x",
            rps_ratio >= 0.95,
        ),
        (
            "pool p99, connbench / wrk",
            f"{p99_ratio:.2f}x (rounds {span(p99_ratios, '.2f')})",
            "<= 1.25x",
            p99_ratio <= 1.25,
        ),
        (
            "pool/connect throughput ratio vs wrk's",
            f"{statistics.median(cb_spreads):.2f} vs {statistics.median(wrk_spreads):.2f} "
            f"({spread_diff:+.0%}, rounds {span(spread_diffs, '+.0%')})",
            "within 10 %",
            abs(spread_diff) <= 0.10,
        ),
        (
            "pool throughput, aiohttp engine / wrk",
            f"{aiohttp_ratio:.2f}x",
            "(for the record)",
            True,
        ),
        ("pool throughput, httpx engine / wrk", f"{httpx_ratio:.2f}x", "(for the record)", True),
    ]
    for tool in locust_tools:
        for name in names:
            ratios = paired(measured[name][tool], measured[name]["wrk"], "rps")
            p99s = paired(measured[name][tool], measured[name]["wrk"], "p99_ms")
            checks.append(
                (
                    f"{name} throughput / p99, {tool} / wrk",
                    f"{statistics.median(ratios):.2f}x / {statistics.median(p99s):.2f}x "
                    f"(rounds {span(ratios, '.2f')})",
                    "(for the record)",
                    True,
                )
            )
        spreads = paired(measured["pool"][tool], measured["connect"][tool], "rps")
        checks.append(
            (
                f"pool/connect throughput ratio, {tool} vs wrk's",
                f"{statistics.median(spreads):.2f} vs {statistics.median(wrk_spreads):.2f}",
                "(for the record)",
                True,
            )
        )

    table = Table(
        title=f"fidelity against wrk · median of {args.repeat} rounds · c={args.concurrency}"
    )
    for col in ("strategy", "client", "req/s", "p50 ms", "p99 ms", "client CPU"):
        table.add_column(col, justify="right" if col not in ("strategy", "client") else "left")
    for name, runs in measured.items():
        for tool, rs in runs.items():
            table.add_row(
                name,
                tool,
                f"{median(rs, 'rps'):,.0f}",
                f"{median(rs, 'p50_ms'):.1f}",
                f"{median(rs, 'p99_ms'):.1f}",
                f"{median(rs, 'cpu_percent'):.0f}%",
            )
    console.print(table)
    verdicts = Table(title="targets")
    for col in ("check", "measured", "target", "verdict"):
        verdicts.add_column(col)
    for check, value, target, ok in checks:
        verdicts.add_row(check, value, target, "[green]ok[/green]" if ok else "[red]MISSED[/red]")
    console.print(verdicts)

    report: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args) | {"output": str(args.output) if args.output else None},
        "environment": results.environment().model_dump() | {"postgres": pg_version},
        "runs": measured,
        "checks": [{"check": c, "measured": v, "target": t, "ok": ok} for c, v, t, ok in checks],
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.output or ROOT / "results" / f"fidelity-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"[dim]saved {out}[/dim]")
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
