"""How much of an A/A round's noise shorter alternations cancel, with both apps kept up.

    python benchmarks/alternation.py [--rounds 12] [--noise SEED] [--shapes 1x2,4x0.5,8x0.25]

The gate's rounds (``connbench run --repeat``) start each side's app, warm it up and measure
it for the scenario's duration, one side after the other: the two windows of a pair are
about 4 s apart, and a neighbour's burst of a second or two lands on one side and not the
other. This experiment serves two copies of the ``pool`` app side by side on one throwaway
PostgreSQL (the embedded backend), both up for the whole run, and measures A/A rounds of
several shapes, interleaved round by round (their order rotating) so that every shape sees the
same machine: ``KxS``
is K alternations of S seconds a side (each slice after a 0.05 s warm-up that the switch's
transient falls into), A B A B ... with the sides' order flipped every round. A round's log ratio is
that of the two sides' req/s summed over their slices; printed: each shape's spread (the
standard deviation of the log ratio over the rounds), the noise a paired gate must see
through. ``--noise SEED`` runs ``benchmarks/noise.py`` beside it (seeded, bursty CPU and
memory load), as ``gate_power.py --noise`` does.

An experiment for the gate's design, not the gate: connbench's own rounds still restart the
apps per side (see docs/ci.md).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import noise  # benchmarks/noise.py, beside this file

from connbench.apps import STRATEGIES
from connbench.infra import appserver, postgres, tempdirs
from connbench.measure import load
from connbench.measure.window import LoadConfig
from connbench.model.backend import Backend

CONCURRENCY = 32
SWITCH_WARMUP_S = 0.05


def parse_shape(text: str) -> tuple[int, float]:
    count, _, seconds = text.partition("x")
    return int(count), float(seconds)


def side(url: str, seconds: float) -> tuple[int, float]:
    """One slice: (2xx in the window, the window's length)."""
    config = LoadConfig(CONCURRENCY, duration_s=seconds, warmup_s=SWITCH_WARMUP_S, timeout_s=5.0)
    raw = load.run_sync(url, config)
    return raw.ok, raw.window_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--noise", type=int, help="run benchmarks/noise.py beside, seeded")
    parser.add_argument("--shapes", default="1x2,4x0.5,8x0.25", help="KxS: K slices of S s")
    parser.add_argument("--output", type=Path, help="the log ratios, as JSON")
    args = parser.parse_args()
    shapes = {text: parse_shape(text) for text in args.shapes.split(",")}
    logs: dict[str, list[float]] = {text: [] for text in shapes}
    tmp = tempdirs.make("alternation")
    try:
        with postgres.start(Backend("embedded")) as pg:
            config = appserver.AppConfig(pool_min=4, pool_max=4)
            strategy = STRATEGIES["pool"]
            with (
                appserver.start(strategy, pg.dsn, pg.table, config, tmp / "a.log") as a,
                appserver.start(strategy, pg.dsn, pg.table, config, tmp / "b.log") as b,
                noise.beside(args.noise),
            ):
                for app in (a, b):
                    side(app.visit_url, 1.0)  # each app's first second: connects, caches
                for round_ in range(args.rounds):
                    order = [a, b] if round_ % 2 == 0 else [b, a]
                    # The shapes' order rotates too: none always runs first in a round.
                    names = list(shapes)
                    turn = round_ % len(names)
                    for text in names[turn:] + names[:turn]:
                        count, seconds = shapes[text]
                        served = {a.url: [0, 0.0], b.url: [0, 0.0]}
                        for _ in range(count):
                            for app in order:
                                ok, window_s = side(app.visit_url, seconds)
                                served[app.url][0] += ok
                                served[app.url][1] += window_s
                        rate = {url: ok / s for url, (ok, s) in served.items()}
                        logs[text].append(math.log(rate[b.url] / rate[a.url]))
                    line = "  ".join(f"{t} {v[-1]:+.3f}" for t, v in logs.items())
                    print(f"round {round_ + 1}/{args.rounds}: {line}", flush=True)
    finally:
        tempdirs.remove(tmp)
    print(f"A/A, {args.rounds} rounds, noise seed {args.noise}: spread of the log ratio")
    for text, values in logs.items():
        count, seconds = shapes[text]
        print(
            f"  {count} x {seconds:g} s a side: spread {statistics.stdev(values):.3f}, "
            f"mean {statistics.mean(values):+.3f}"
        )
    if args.output:
        args.output.write_text(json.dumps(logs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
