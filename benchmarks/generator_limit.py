"""The generator near its limit: connbench's engine and wrk against nginx, one core each.

    python benchmarks/generator_limit.py [--concurrency 8,64,256,1024] [--rounds 10]
                                         [--duration 3] [--models closed,open]
                                         [--open-fraction 0.5] [--output FILE]

nginx (Debian's package; ``make generator-limit`` installs it and wrk) serves a 26-byte static
reply on 127.0.0.1, from a private 0700 temp directory holding its configuration, pid file, logs
and temp paths, on a free port: one process (``master_process off``: no user switch, so the
same as root or not), pinned to one core. Both clients are pinned to the other core: wrk with
one thread, and connbench's default engine in this process. nginx answers in microseconds, so
the client is the bottleneck, which is the point: how far connbench's generator is from wrk's
when the generator itself is what limits the run.

Every round runs, at every concurrency and model, wrk then connbench (the order flipped every
round), each for ``--duration`` seconds; ratios are taken within a round, and the table gives
their median and the spread over the rounds (many short alternations, so that the machine's
drift cancels).

- **closed** (max rate): each connection sends its next request when the last is answered.
  Reported: connbench's req/s over wrk's (goal >= 0.5x) and its CPU per request over wrk's
  (goal <= 1.5x), the CPU of the whole client process over the whole run (wrk from the kernel's
  accounting of the reaped child, connbench from this process's CPU time around the run).
- **open** (a fixed offered rate; goal: p99 within 1.25x of wrk's): Debian's wrk has no -R,
  so it is paced with its Lua ``delay()`` hook: after each reply a connection waits a random
  whole number of milliseconds, uniform on [0, 2d], with mean d = concurrency / R for R
  ``--open-fraction`` of connbench's closed max at that concurrency (a calibration run); the
  random delays keep the connections from marching in step. What wrk so paced achieves in a
  calibration run is the rate connbench's ``--rate`` open model (a fixed schedule per
  connection) is then given: the same offered rate. The p99 is compared *from the actual send*
  on both sides; connbench's latency from the intended send (corrected for coordinated
  omission, what ``connbench run --rate`` reports) is shown beside it. wrk's pacing is a closed
  loop with think time (a late reply delays the next request), connbench's a schedule (it
  does not): near saturation the schedule is the harder test.

connbench gets a 2 s warm-up (see :func:`run_connbench`); its CPU is that of this process
over the measured window, wrk's that of the whole run (the kernel's accounting of the reaped
child): wrk's connects and start-up count against wrk.

The open files limit is raised to fit 1,024 connections (and nginx's ``worker_rlimit_nofile``
with it); the benchmark says so when it does. Writes results/generator-limit-*.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import saved
import wrk
from rich.console import Console
from rich.table import Table

from connbench.infra import procs, tempdirs
from connbench.measure import load

BODY = "connbench generator-limit\n"  # 26 bytes
WARMUP_S = 2.0  # connbench's, as `connbench run` has by default (see run_connbench)
PAUSE_S = 0.3  # between runs: the last client's sockets closed before the next starts
GOALS = {"rps": 0.5, "cpu": 1.5, "p99": 1.25}
Figures = dict[str, float]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile {files};
events {{
    worker_connections {files};
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    # Never close a keep-alive connection on the clients: both keep theirs for the whole run.
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{body}";
        }}
    }}
}}
"""


@contextmanager
def nginx(core: int | None, connections: int) -> Iterator[str]:
    """nginx serving ``BODY`` on a free port of 127.0.0.1, pinned to ``core``: its URL.

    Raises :class:`connbench.model.errors.ProcessError` (with its log's tail) when it does not
    answer within 10 s."""
    binary = nginx_binary()
    assert binary is not None
    directory = tempdirs.make("nginx")
    try:
        port = procs.free_port()
        files = connections + 512
        conf = NGINX_CONF.format(
            dir=directory, files=files, port=port, body=BODY.replace("\n", "\\n")
        )
        tempdirs.write_private(directory / "nginx.conf", conf, None)
        log = directory / "nginx.out"
        argv = [binary, "-p", f"{directory}/", "-e", str(directory / "error.log")]
        argv += ["-c", str(directory / "nginx.conf")]
        with procs.Child(argv, name="nginx", log_path=log, env=procs.child_env({})) as child:
            if core is not None:
                os.sched_setaffinity(child.proc.pid, {core})
            procs.wait_until(
                lambda: _answers(port),
                what=f"nginx on 127.0.0.1:{port}",
                timeout_s=10.0,
                proc=child.proc,
                log_path=directory / "error.log",
            )
            yield f"http://127.0.0.1:{port}/"
    finally:
        tempdirs.remove(directory)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def run_connbench(url: str, concurrency: int, duration_s: float, rate: float | None) -> Figures:
    """connbench's default engine with its CPU per request over the measured window.

    It gets ``WARMUP_S`` of warm-up, as ``connbench run`` does by default: its connections
    are opened there. wrk opens its connections before it starts timing, and connbench times a
    request from the moment it is due, its connect included; 1,024 connects at once can lose a
    SYN, retried a second later, so a 1 s warm-up would let those connects into the window."""
    config = load.LoadConfig(concurrency, duration_s, WARMUP_S, 10.0, rate_rps=rate)
    raw = load.run_sync(url, config)
    requests = raw.ok + raw.errors
    out = {
        "rps": raw.ok / raw.window_s,
        "requests": float(requests),
        "errors": float(raw.errors),
        "p50_ms": raw.histogram.get_value_at_percentile(50) / 1000,
        "p99_ms": raw.histogram.get_value_at_percentile(99) / 1000,
        "cpu_percent": raw.cpu_percent,
        "cpu_us_per_request": 1e6 * raw.cpu_process_s / max(1, requests),
        "loop_cpu_percent": raw.loop_cpu_percent,
    }
    if raw.uncorrected is not None:
        # From the actual send, as wrk measures; the main histogram is from the intended send.
        out["p99_corrected_ms"] = out["p99_ms"]
        out["p99_ms"] = raw.uncorrected.get_value_at_percentile(99) / 1000
        out["p50_ms"] = raw.uncorrected.get_value_at_percentile(50) / 1000
        out["sent_late"] = float(raw.open_model["sent_late"])
    return out


def wrk_pacing(directory: Path, concurrency: int, rate: float) -> tuple[Path, float]:
    """A Lua script pacing each wrk connection to ``rate / concurrency`` req/s (a random delay,
    whole milliseconds, mean d), and the nominal rate that whole d gives."""
    mean_ms = max(1, round(concurrency * 1000 / rate))
    script = directory / f"pace-{concurrency}.lua"
    script.write_text(
        f"math.randomseed({concurrency})\nfunction delay()\n"
        f"  return math.random(0, {2 * mean_ms})\nend\n"
    )
    return script, concurrency * 1000 / mean_ms


def pin(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="8,64,256,1024")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--models", default="closed,open")
    parser.add_argument("--open-fraction", type=float, default=0.5)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    console = Console(width=150)
    try:
        levels = [int(c) for c in args.concurrency.split(",")]
        models = [m.strip() for m in args.models.split(",")]
    except ValueError:
        console.print("--concurrency: a comma-separated list of whole numbers")
        return 2
    whole = args.duration >= 1 and args.duration == int(args.duration)  # wrk's -d: seconds
    if not levels or min(levels) < 1 or not set(models) <= {"closed", "open"} or args.rounds < 1:
        console.print("--concurrency >= 1, --models closed,open, --rounds >= 1")
        return 2
    if not whole:
        console.print("--duration: whole seconds, at least 1 (wrk's -d)")
        return 2
    if shutil.which("wrk") is None or nginx_binary() is None:
        console.print(f"wrk and nginx are needed: {wrk.INSTALL_HINT.replace('wrk', 'wrk nginx')}")
        return 2

    load_avg = os.getloadavg()
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = (cores[-2], cores[-1]) if len(cores) >= 2 else (None, None)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    procs.ensure_open_files(2 * max(levels))  # nginx's side and the client's, inherited
    raised = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if raised != soft:
        console.print(f"[dim]open files limit raised from {soft} to {raised}[/dim]")
    console.print(
        f"nginx on core {server_core}, clients on core {client_core}; "
        f"load average {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}"
    )
    runs: dict[str, dict[int, dict[str, list[Figures]]]] = {
        m: {c: {"wrk": [], "connbench": []} for c in levels} for m in models
    }
    rates: dict[int, dict[str, float]] = {}
    scratch = tempdirs.make("generator-limit")
    try:
        with nginx(server_core, 2 * max(levels)) as url:
            pin(client_core)
            for c in levels:  # warm-up, and the open model's rate (see the module's doc)
                r = run_connbench(url, c, 2.0, None)
                pacing, nominal = wrk_pacing(scratch, c, r["rps"] * args.open_fraction)
                paced = wrk.run(url, c, 2.0, pacing)
                rates[c] = {
                    "calibration_rps": r["rps"],
                    "nominal": nominal,
                    "rate_rps": paced["rps"],
                }
                console.print(
                    f"c={c:5}: connbench {r['rps']:8.0f} req/s closed; wrk paced at "
                    f"{nominal:.0f} req/s nominal does {paced['rps']:.0f}: the open model's rate"
                )
            for i in range(args.rounds):
                order = ["wrk", "connbench"] if i % 2 == 0 else ["connbench", "wrk"]
                for c in levels:
                    for model in models:
                        rate = rates[c]["rate_rps"] if model == "open" else None
                        for tool in order:
                            time.sleep(PAUSE_S)
                            if tool == "wrk":
                                script = scratch / f"pace-{c}.lua" if rate else None
                                r = wrk.run(url, c, args.duration, script)
                            else:
                                r = run_connbench(url, c, args.duration, rate)
                            runs[model][c][tool].append(r)
                            console.print(
                                f"  round {i + 1}/{args.rounds} c={c:<5} {model:6} {tool:9} "
                                f"{r['rps']:8.0f} req/s  p99 {r['p99_ms']:7.2f} ms  "
                                f"CPU {r['cpu_us_per_request']:5.1f} us/req "
                                f"({r['cpu_percent']:3.0f}%)"
                            )
    finally:
        tempdirs.remove(scratch)

    rows = summarize(runs, rates)
    show(console, rows, args, load_avg)
    figures = {
        "load_average": load_avg,
        "cores": {"server": server_core, "client": client_core},
        "open_files": raised,
        "rates": rates,
        "runs": runs,
        "summary": rows,
    }
    saved.save("generator-limit", args, figures, console)
    return 0


def ratios(runs: dict[str, list[Figures]], key: str) -> list[float]:
    """Round-by-round connbench/wrk: runs next to each other in time share the drift."""
    return [
        c[key] / w[key] if w[key] else float("inf")
        for c, w in zip(runs["connbench"], runs["wrk"], strict=True)
    ]


def summarize(
    runs: dict[str, dict[int, dict[str, list[Figures]]]], rates: dict[int, dict[str, float]]
) -> list[dict[str, Any]]:
    """One row per (model, concurrency): medians per client, the paired ratios' median and
    their spread over the rounds, and the verdict against the goal."""
    rows = []
    for model, by_c in runs.items():
        for c, tools in by_c.items():
            row: dict[str, Any] = {"model": model, "concurrency": c}
            for tool, rs in tools.items():
                for key in ("rps", "p99_ms", "cpu_us_per_request", "cpu_percent"):
                    row[f"{tool}_{key}"] = statistics.median(r[key] for r in rs)
            checks = {"closed": ("rps", "cpu_us_per_request"), "open": ("p99_ms",)}[model]
            for key in checks:
                paired = ratios(tools, key)
                row[f"ratio_{key}"] = statistics.median(paired)
                row[f"ratio_{key}_range"] = (min(paired), max(paired))
            if model == "open":
                row["rate_rps"] = rates[c]["rate_rps"]
                row["connbench_p99_corrected_ms"] = statistics.median(
                    r["p99_corrected_ms"] for r in tools["connbench"]
                )
                row["ok"] = row["ratio_p99_ms"] <= GOALS["p99"]
            else:
                row["ok"] = (
                    row["ratio_rps"] >= GOALS["rps"]
                    and row["ratio_cpu_us_per_request"] <= GOALS["cpu"]
                )
            rows.append(row)
    return rows


def show(
    console: Console, rows: list[dict[str, Any]], args: argparse.Namespace, load_avg: Any
) -> None:
    def span(row: dict[str, Any], key: str) -> str:
        low, high = row[f"ratio_{key}_range"]
        return f"{row[f'ratio_{key}']:.2f}x ({low:.2f}..{high:.2f})"

    verdict = {True: "[green]ok[/green]", False: "[red]MISSED[/red]"}
    title = (
        f"closed model · median of {args.rounds} rounds of {args.duration:g} s · "
        f"load average {load_avg[0]:.1f}"
    )
    closed = Table(title=title)
    for col in ("c", "wrk req/s", "connbench req/s", "ratio (rounds)", "wrk CPU/req",
                "connbench CPU/req", "ratio (rounds)", "goal"):  # fmt: skip
        closed.add_column(col, justify="right")
    opened = Table(title=title.replace("closed model", "open model, p99 from the actual send"))
    for col in ("c", "rate", "wrk req/s", "connbench req/s", "wrk p99", "connbench p99",
                "ratio (rounds)", "connbench p99 corrected", "goal"):  # fmt: skip
        opened.add_column(col, justify="right")
    for row in rows:
        if row["model"] == "closed":
            closed.add_row(
                str(row["concurrency"]),
                f"{row['wrk_rps']:,.0f}",
                f"{row['connbench_rps']:,.0f}",
                span(row, "rps"),
                f"{row['wrk_cpu_us_per_request']:.1f} us",
                f"{row['connbench_cpu_us_per_request']:.1f} us",
                span(row, "cpu_us_per_request"),
                verdict[row["ok"]],
            )
        else:
            opened.add_row(
                str(row["concurrency"]),
                f"{row['rate_rps']:,.0f}",
                f"{row['wrk_rps']:,.0f}",
                f"{row['connbench_rps']:,.0f}",
                f"{row['wrk_p99_ms']:.2f} ms",
                f"{row['connbench_p99_ms']:.2f} ms",
                span(row, "p99_ms"),
                f"{row['connbench_p99_corrected_ms']:.2f} ms",
                verdict[row["ok"]],
            )
    for table in (closed, opened):
        if table.row_count:
            console.print(table)
    console.print(
        f"goals: closed req/s >= {GOALS['rps']}x wrk's and CPU per request <= {GOALS['cpu']}x; "
        f"open p99 <= {GOALS['p99']}x"
    )


if __name__ == "__main__":
    sys.exit(main())
