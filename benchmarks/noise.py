"""A noisy neighbour on demand: seeded, bursty CPU and memory load beside a benchmark.

    python benchmarks/noise.py --seed 1 [--workers 1] [--memory-mb 256] [--on 1.5] [--off 1.5]

Each worker process alternates bursts and pauses whose lengths are drawn from exponential
distributions (means ``--on`` and ``--off`` seconds) by its own seeded generator, so the
same seed gives the same pattern of bursts. In a burst it spins on the CPU while walking a
buffer of ``--memory-mb`` (touched page by page, so it is resident and evicts caches), and in
a pause it sleeps with the buffer released. It runs until it is sent SIGTERM (or SIGINT).

Power measured on a busy machine by design rather than by luck: ``benchmarks/gate_power.py
--noise SEED`` starts one beside every trial (a new seed per trial, from SEED) and stops it
after.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

PAGE = 4096


def burst(rng: random.Random, memory_mb: int, seconds: float) -> None:
    """Spin for ``seconds`` of wall time, writing one byte per page of a fresh buffer."""
    buffer = bytearray(memory_mb * 1024 * 1024)
    end = time.monotonic() + seconds
    offset = 0
    while time.monotonic() < end:
        for _ in range(1024):
            buffer[offset] = (buffer[offset] + 1) & 0xFF
            offset = (offset + PAGE * rng.randrange(1, 64)) % len(buffer)
    del buffer


def worker(seed: int, memory_mb: int, on_s: float, off_s: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    rng = random.Random(seed)
    while True:
        burst(rng, memory_mb, rng.expovariate(1 / on_s))
        time.sleep(rng.expovariate(1 / off_s))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes (CPU-bound each)")
    parser.add_argument("--memory-mb", type=int, default=256, help="touched per burst, each")
    parser.add_argument("--on", type=float, default=1.5, help="mean burst, s")
    parser.add_argument("--off", type=float, default=1.5, help="mean pause, s")
    args = parser.parse_args()
    procs = [
        multiprocessing.Process(
            target=worker, args=(args.seed * 1000 + i, args.memory_mb, args.on, args.off)
        )
        for i in range(args.workers)
    ]
    for proc in procs:
        proc.start()

    def stop(signum: int, frame: object) -> None:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(5)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.join()
    return 0


@contextmanager
def beside(seed: int | None, workers: int = 1, memory_mb: int = 256) -> Iterator[None]:
    """Run the noise (``seed`` None: none) for the duration of the ``with`` block."""
    import subprocess

    if seed is None:
        yield
        return
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--seed",
            str(seed),
            "--workers",
            str(workers),
            "--memory-mb",
            str(memory_mb),
        ],
        start_new_session=True,
    )
    try:
        yield
    finally:
        proc.terminate()  # the parent stops its own workers
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
