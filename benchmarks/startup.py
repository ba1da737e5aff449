"""How long `connbench --help` and friends take to start: hyperfine-style repeated timing.

A benchmark, not a test (timings on a shared machine are noise for a test). Run:

    .venv/bin/python benchmarks/startup.py [--runs 20] [--warmup 3]

For each command: mean ± stdev, min and max wall time over ``--runs`` runs after ``--warmup``
unmeasured ones, and the modules the CLI import pulls in that the goal forbids (aiohttp,
psycopg, httpx, uvicorn, fastapi, pgserver, hdrh, rich.progress). Goal: `--help` under 0.3 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = (
    ["connbench", "--help"],
    ["connbench", "run", "--help"],
    ["connbench", "strategies"],
    ["connbench", "--version"],
)
HEAVY = ("aiohttp", "psycopg", "httpx", "uvicorn", "fastapi", "pgserver", "hdrh", "rich.progress")
GOAL_S = 0.3


def timed(argv: list[str], runs: int, warmup: int) -> list[float]:
    out = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i >= warmup:
            out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    for command in COMMANDS:
        argv = [str(BIN / command[0]), *command[1:]]
        times = timed(argv, args.runs, args.warmup)
        mean, sd = statistics.mean(times), statistics.stdev(times)
        verdict = "ok" if mean < GOAL_S else f"over the {GOAL_S} s goal"
        print(
            f"{' '.join(command):<24} {mean * 1000:6.0f} ms ± {sd * 1000:4.0f}  "
            f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, {args.runs} runs)  "
            + verdict
        )
    probe = "import sys, connbench.cli; print(' '.join(sorted(m for m in %r if m in sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe % (HEAVY,)], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"heavy modules imported by connbench.cli: {loaded or 'none'}")


if __name__ == "__main__":
    main()
