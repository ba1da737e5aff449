"""How long redaction takes on a megabyte of pathological text: the inputs on which the old
pattern backtracked (40 KB of letters then ":" took 40 s, of "password" 44 s).

A benchmark, not a test (timings on a shared machine are noise for a test; the test only runs
this under a generous deadline, which a quadratic redaction misses by hours). Run:

    .venv/bin/python benchmarks/redaction.py

For each input: its size and the time :func:`connbench.model.dsn.redact` took (best of 3),
with two secrets remembered. Goal: every input well under a second.
"""

from __future__ import annotations

import time

from connbench.model import dsn

# About a megabyte each: long runs without "@", runs of ":", "@" at the end of a long token,
# "password" with no "=", many masks.
CASES = {
    "letters": "a" * 1_000_000,
    "colons": ":" * 1_000_000,
    "a: then @": "a:" * 500_000 + "@",
    "letters then @": "a" * 1_000_000 + "@",
    "words then @": "a " * 500_000 + "@",
    "/: then @": "/:" * 500_000 + "@x",
    "x:...@ tokens": ("x:" * 10 + "@ ") * 50_000,
    "password": "password" * 125_000,
    "password = ": "password = " * 90_000,
    "@": "@" * 1_000_000,
    "u:p@h masks": ("u:p@h " * 100 + "\n") * 1_600,
}
GOAL_S = 1.0


def main() -> None:
    dsn.remember_secret("s3cr3t-value", "another-one")
    worst = 0.0
    for name, text in CASES.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            dsn.redact(text)
            best = min(best, time.perf_counter() - start)
        worst = max(worst, best)
        print(f"{name:<16} {len(text):>9,} chars  {best * 1000:8.1f} ms")
    print(f"worst {worst * 1000:.1f} ms (goal: under {GOAL_S:g} s)")


if __name__ == "__main__":
    main()
