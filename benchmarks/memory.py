"""connbench's own memory against the run's duration: peak RSS of a 60 s and a 600 s run.

    python benchmarks/memory.py            # 60 s and 600 s runs of the pool strategy (~12 min)
    python benchmarks/memory.py --short    # 10 s and 60 s (~2 min)
    python benchmarks/memory.py --engine locust --durations 60,180   # Locust (issue 23)
    python benchmarks/memory.py --locust-reports 2000   # connbench's side of Locust, fed
                                                        # 60 s and 600 s of reports (~1 min)

Goal (issue 7): under 150 MB, and the long run within 10 % of the short one: the per-second
series and the latency samples are folded as the run goes, so nothing in connbench's own
process grows with --duration. The RSS is the connbench process's alone (psutil, sampled every
0.2 s), not its children's: the app, PostgreSQL and PgBouncer are not connbench's memory.
With ``--engine locust`` the samples reach connbench from Locust's master and are folded into
the window as they arrive; the peak RSS of Locust's own processes (master and workers, summed)
is shown beside connbench's, for information. On a loaded machine Locust drives too few
requests for a difference to show, so ``--locust-reports RATE`` feeds connbench's follower
(the code that reads the master's reports and folds them) the reports of two workers at RATE
requests a second, as fast as it takes them, in a fresh process per duration.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
GOAL_MB = 150.0
GOAL_RATIO = 0.10
SAMPLE_S = 0.2


def _locust_rss_mb(watched: psutil.Process) -> float:
    """The summed RSS of the Locust processes under ``watched`` (0 when there are none)."""
    total = 0
    for child in watched.children(recursive=True):
        try:
            if "locust" in child.cmdline():
                total += child.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def peak_rss_mb(
    duration_s: int, strategy: str, engine: str = "httptools"
) -> tuple[float, float, int, float]:
    """(peak RSS MB, the last RSS MB sampled before it exited, requests, Locust's peak RSS MB)
    of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        argv = [
            sys.executable, "-m", "connbench", "run", "--strategy", strategy, "--engine", engine,
            "--duration", str(duration_s), "--warmup", "2", "--no-charts", "-o", str(out),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        watched = psutil.Process(proc.pid)
        peak = last = locust = 0.0
        while proc.poll() is None:
            try:
                rss = watched.memory_info().rss / 2**20
                if engine == "locust":
                    locust = max(locust, _locust_rss_mb(watched))
            except psutil.Error:
                break
            if rss:  # 0 once it has exited (a zombie until reaped)
                last = rss
                peak = max(peak, rss)
            time.sleep(SAMPLE_S)
        _, stderr = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"connbench failed ({proc.returncode}): {stderr.decode()[-500:]}")
        data = json.loads(out.read_text())
        requests = sum(int(r["requests"].get("total", 0)) for r in data["results"])
    return peak, last, requests, locust


def follower_rss_mb(seconds: int, rate: int) -> tuple[float, int]:
    """(max RSS MB, requests counted) of this process after following ``seconds`` of reports
    of two workers at ``rate`` requests a second in all."""
    import asyncio
    import resource

    from connbench.measure import locust_engine
    from connbench.measure.load import LoadConfig, _Window

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.jsonl"
        follow = locust_engine._Follow(path)
        config = LoadConfig(concurrency=32, duration_s=float(seconds), warmup_s=0.0, timeout_s=10.0)
        window = _Window(config, asyncio.Event())
        t0 = time.time() - seconds - locust_engine.SAMPLE_HOLD_S
        window.t0 = window.start_ns = int(t0 * 1e9)
        window.end_ns = window.start_ns + seconds * 10**9
        follow.window = window
        per_worker = rate // 2
        for second in range(seconds):
            with path.open("w") as f:  # each second's reports, read as the master wrote them
                for worker in ("w1", "w2"):
                    batch = [
                        [t0 + second + i / per_worker, 10 + i % 50 / 10, None, None]
                        for i in range(per_worker)
                    ]
                    data = {"pid": 1, "host": "h", "samples": batch}
                    f.write(json.dumps({"event": "samples", "worker": worker, "data": data}))
                    f.write("\n")
            follow.offset = 0
            follow.read()
            follow.fold(t0 + second + 1)
        follow.fold(time.time(), final=True)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, window.window_ok


def _follower_main(rate: int) -> None:
    peaks = []
    for seconds in (60, 600):
        done = subprocess.run(
            [sys.executable, __file__, "--follow-only", f"{seconds},{rate}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        peak, counted = done.stdout.split()
        peaks.append(float(peak))
        print(
            f"Locust follower, {seconds:>3} s at {rate:,}/s: max RSS {float(peak):6.1f} MB, "
            f"{int(counted):,} requests counted",
            flush=True,
        )
    growth = peaks[1] / peaks[0] - 1
    ok = abs(growth) <= GOAL_RATIO
    print(f"growth 60 s -> 600 s: {growth:+.1%}; goal within {GOAL_RATIO:.0%}: "
          f"{'met' if ok else 'NOT met'}")  # fmt: skip
    sys.exit(0 if ok else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="10 s and 60 s runs instead")
    parser.add_argument("--strategy", default="pool")
    parser.add_argument("--engine", default="httptools", help="httptools (default) or locust")
    parser.add_argument("--durations", help="the short and the long run, seconds: 60,180")
    parser.add_argument(
        "--locust-reports", type=int, metavar="RATE", help="the Locust follower alone, fed"
    )
    parser.add_argument("--follow-only", help=argparse.SUPPRESS)  # SECONDS,RATE: one child
    args = parser.parse_args()
    if args.follow_only:
        seconds, _, rate = args.follow_only.partition(",")
        peak, counted = follower_rss_mb(int(seconds), int(rate))
        print(peak, counted)
        return
    if args.locust_reports:
        _follower_main(args.locust_reports)
    durations = (10, 60) if args.short else (60, 600)
    if args.durations:
        short, _, long = args.durations.partition(",")
        durations = (int(short), int(long))
    peaks = []
    for duration in durations:
        peak, last, requests, locust = peak_rss_mb(duration, args.strategy, args.engine)
        peaks.append(peak)
        beside = f"; Locust's processes {locust:6.1f} MB" if args.engine == "locust" else ""
        print(
            f"{args.strategy} --engine {args.engine} --duration {duration:>4}: peak RSS "
            f"{peak:6.1f} MB (last sample {last:6.1f} MB), {requests:,} requests{beside}",
            flush=True,
        )
    growth = peaks[1] / peaks[0] - 1
    ok = max(peaks) < GOAL_MB and abs(growth) <= GOAL_RATIO
    print(
        f"growth {durations[0]} s -> {durations[1]} s: {growth:+.1%}; goal < {GOAL_MB:.0f} MB "
        f"and within {GOAL_RATIO:.0%}: {'met' if ok else 'NOT met'}"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
