"""Fidelity: connbench's load generator against wrk, on the same apps, in the same run.

    python benchmarks/fidelity.py [--duration 8] [--repeat 7] [--concurrency 32]
                                  [--locust-workers 1,2]
    python benchmarks/fidelity.py --by-concurrency 8,64,256,1024 [--duration 4] [--repeat 10]

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

With ``--by-concurrency`` it measures the pool app alone, wrk against connbench, at each of
the given concurrencies in every round (goal: connbench's throughput 0.95-1.20x wrk's at each;
see :func:`by_concurrency`), and writes results/fidelity-by-concurrency-*.json.

wrk runs with one thread (-t1): the same single core's worth of client that connbench's
single event loop gets. Neither gets a warm-up inside its run (wrk has none), and every run
starts after a pause that lets the app finish what the previous client left in flight.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import saved
import wrk
from rich.console import Console
from rich.table import Table

from connbench.apps import STRATEGIES
from connbench.infra import appserver, postgres, procs
from connbench.measure import load


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
        return wrk.run(url, concurrency, duration_s)
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
    parser.add_argument(
        "--by-concurrency",
        default="",
        help="instead: the pool app alone, wrk against connbench at each of these concurrencies "
        "(e.g. 8,64,256,1024), interleaved in every round",
    )
    args = parser.parse_args()
    if args.duration < 1 or args.duration != int(args.duration):
        print("--duration: whole seconds, at least 1 (wrk's -d)")
        return 2
    if args.by_concurrency:
        try:
            levels = [int(c) for c in args.by_concurrency.split(",")]
        except ValueError:
            levels = []
        if not levels or min(levels) < 1:
            print("--by-concurrency: a comma-separated list of whole numbers >= 1")
            return 2
        return by_concurrency(levels, args)
    locust_tools = [f"locust-{int(n)}w" for n in args.locust_workers.split(",") if n.strip()]
    console = Console()
    if shutil.which("wrk") is None:
        console.print(f"wrk is not installed: {wrk.INSTALL_HINT}")
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

    checked = [{"check": c, "measured": v, "target": t, "ok": ok} for c, v, t, ok in checks]
    figures = {"runs": measured, "checks": checked}
    saved.save("fidelity", args, figures, console, {"postgres": pg_version})
    return 0 if all(ok for *_, ok in checks) else 1


THROUGHPUT_GOAL = (0.95, 1.20)  # connbench's pool throughput over wrk's, at every concurrency


def by_concurrency(levels: list[int], args: argparse.Namespace) -> int:
    """wrk against connbench on the pool app at each concurrency (issue 23): every round runs
    every level with both clients, the client order flipped each round, the levels in turn;
    the ratio is taken within a round. Goal: connbench's throughput 0.95-1.20x wrk's at each
    level. Exits 1 when a level misses it."""
    console = Console(width=150)
    if shutil.which("wrk") is None:
        console.print(f"wrk is not installed: {wrk.INSTALL_HINT}")
        return 2
    load_avg = os.getloadavg()
    procs.ensure_open_files(2 * max(levels))  # before the app starts: it inherits the limit
    runs: dict[int, dict[str, list[dict[str, float]]]] = {
        c: {"wrk": [], "connbench": []} for c in levels
    }
    console.print(f"load average {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}")
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="connbench-fidelity-")))
        pg = stack.enter_context(postgres.start(postgres.parse_backend("embedded")))
        config = appserver.AppConfig(pool_min=4, pool_max=4)
        app = appserver.start(STRATEGIES["pool"], pg.app_dsn(), pg.table, config, tmp / "pool.log")
        url = stack.enter_context(app).visit_url
        console.print("pool: warm-up")
        run_connbench(url, max(levels), 2.0, "httptools")
        for i in range(args.repeat):
            order = ["wrk", "connbench"] if i % 2 == 0 else ["connbench", "wrk"]
            for c in levels:
                for tool in order:
                    settle(pg)
                    r = measure(tool, url, c, args.duration)
                    runs[c][tool].append(r)
                    console.print(
                        f"  round {i + 1}/{args.repeat} c={c:<5} {tool:9} {r['rps']:8.0f} req/s  "
                        f"p99 {r['p99_ms']:8.1f} ms  client CPU {r['cpu_percent']:4.0f}%"
                    )
        pg_version = pg.version

    table = Table(
        title=f"fidelity by concurrency, pool app · median of {args.repeat} rounds of "
        f"{args.duration:g} s · load average {load_avg[0]:.1f}"
    )
    for col in ("c", "wrk req/s", "connbench req/s", "ratio (rounds)", "wrk p99",
                "connbench p99", "wrk CPU", "connbench CPU", "goal 0.95-1.20x"):  # fmt: skip
        table.add_column(col, justify="right")
    summary = []
    for c, tools in runs.items():
        ratios = paired(tools["connbench"], tools["wrk"], "rps")
        ratio = statistics.median(ratios)
        ok = THROUGHPUT_GOAL[0] <= ratio <= THROUGHPUT_GOAL[1]
        summary.append({"concurrency": c, "ratio": ratio, "rounds": ratios, "ok": ok})
        table.add_row(
            str(c),
            f"{median(tools['wrk'], 'rps'):,.0f}",
            f"{median(tools['connbench'], 'rps'):,.0f}",
            f"{ratio:.2f}x ({min(ratios):.2f}..{max(ratios):.2f})",
            f"{median(tools['wrk'], 'p99_ms'):,.1f} ms",
            f"{median(tools['connbench'], 'p99_ms'):,.1f} ms",
            f"{median(tools['wrk'], 'cpu_percent'):.0f}%",
            f"{median(tools['connbench'], 'cpu_percent'):.0f}%",
            "[green]ok[/green]" if ok else "[red]MISSED[/red]",
        )
    console.print(table)
    figures = {"load_average": load_avg, "runs": runs, "summary": summary}
    saved.save("fidelity-by-concurrency", args, figures, console, {"postgres": pg_version})
    return 0 if all(row["ok"] for row in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
