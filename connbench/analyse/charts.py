"""The numbers the HTML report draws that a result does not hold as such: a variant's latency
percentile curve from its saved histograms, and the interval of a compared metric's change.
Pure functions: no I/O, no formatting."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hdrh.histogram import HdrHistogram

from connbench.analyse.compare import MetricChange
from connbench.analyse.stats import decode_histogram

# The HdrHistogram plotter's x axis: 1 / (1 - percentile), from p50 (2) to p99.99 (10 000),
# STEPS_PER_DECADE points a decade.
CURVE_FROM, CURVE_TO, STEPS_PER_DECADE = 2.0, 10_000.0, 12


def merged(encoded: Sequence[str | None]) -> HdrHistogram | None:
    """The sum of the histograms that decode (the repeats of one variant); None if none does.

    A histogram that does not decode (a hand-edited or truncated file) is left out, not fatal:
    the report shows what it can."""
    total: HdrHistogram | None = None
    for text in encoded:
        if not text:
            continue
        try:
            histogram = decode_histogram(text)
        except Exception:  # noqa: BLE001 - hdrh raises bare errors of several kinds on bad input
            continue
        if total is None:
            total = histogram
        else:
            total.add(histogram)
    return total


def percentile_curve(histogram: HdrHistogram) -> list[tuple[float, float, float]]:
    """(x, percentile, latency ms) from p50 up to p99.99, x = 1 / (1 - percentile / 100).

    Points stop where fewer than one recorded value lies beyond the percentile: a tail the
    histogram cannot tell is not drawn."""
    count = histogram.get_total_count()
    if count == 0:
        return []
    out = []
    steps = round(math.log10(CURVE_TO / CURVE_FROM) * STEPS_PER_DECADE)
    for i in range(steps + 1):
        x = CURVE_FROM * (CURVE_TO / CURVE_FROM) ** (i / steps)
        if x > count:
            break
        percentile = 100.0 * (1.0 - 1.0 / x)
        value_ms = histogram.get_value_at_percentile(percentile) / 1000.0
        out.append((round(x, 3), round(percentile, 4), round(value_ms, 3)))
    return out


def change_interval(change: MetricChange) -> tuple[float, float] | None:
    """The change's range over every pairing of a BASE repeat with a NEW one, as fractions of
    BASE: (min NEW / max BASE - 1, max NEW / min BASE - 1). None without values on both sides
    or with a BASE value that is not positive (no ratio)."""
    base, new = change.base_values, change.new_values
    if not base or not new or min(base) <= 0:
        return None
    return (min(new) / max(base) - 1.0, max(new) / min(base) - 1.0)
