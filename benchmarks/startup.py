"""How long `connbench --help` and friends take to start: hyperfine-style repeated timing.

A benchmark, not a test (timings on a shared machine are noise for a test). Run:

    .venv/bin/python benchmarks/startup.py [--runs 20] [--warmup 3] [--against REF]

For each command: mean ± stdev, min and max wall time over ``--runs`` runs after ``--warmup``
unmeasured ones, and the modules the CLI import pulls in that the goal forbids (aiohttp,
psycopg, httpx, uvicorn, fastapi, pgserver, hdrh, rich.progress). Goal: `--help` under 0.3 s.

``--against REF`` also times the code of a git REF (checked out into a temporary worktree and
put first on PYTHONPATH, same virtualenv), alternating run by run with this checkout, so both
see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (["--help"], ["run", "--help"], ["strategies"], ["--version"])
HEAVY = ("aiohttp", "psycopg", "httpx", "uvicorn", "fastapi", "pgserver", "hdrh", "rich.progress")
GOAL_S = 0.3


def once(args: list[str], pythonpath: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "connbench", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env, cwd=pythonpath,
    )  # fmt: skip
    return time.perf_counter() - start


def line(label: str, times: list[float]) -> str:
    mean, sd = statistics.mean(times), statistics.stdev(times)
    verdict = "ok" if mean < GOAL_S else f"over the {GOAL_S} s goal"
    return (
        f"{label:<34} {mean * 1000:6.0f} ms ± {sd * 1000:4.0f}  "
        f"(min {min(times) * 1000:.0f}, median {statistics.median(times) * 1000:.0f}, "
        f"max {max(times) * 1000:.0f})  {verdict}"
    )


def heavy_modules(pythonpath: Path) -> str:
    probe = f"import sys, connbench.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env,
        cwd=pythonpath,  # python -c and -m put the working directory first on sys.path
    )  # fmt: skip
    return out.stdout.strip() or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--against", help="a git ref to compare with (e.g. main)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="connbench-startup-") as tmp:
        trees = {"this checkout": ROOT}
        if args.against:
            other = Path(tmp) / "ref"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), args.against],
                check=True, capture_output=True,
            )  # fmt: skip
            trees = {args.against: other, **trees}
        try:
            print(f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs each, alternating")
            for command in COMMANDS:
                times: dict[str, list[float]] = {label: [] for label in trees}
                for i in range(args.warmup + args.runs):
                    for label, tree in trees.items():
                        took = once(command, tree)
                        if i >= args.warmup:
                            times[label].append(took)
                for label in trees:
                    print(line(f"{label}: connbench {' '.join(command)}", times[label]))
            for label, tree in trees.items():
                print(f"{label}: heavy modules imported by connbench.cli: {heavy_modules(tree)}")
        finally:
            if args.against:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)],
                    check=False, capture_output=True,
                )  # fmt: skip


if __name__ == "__main__":
    main()
