"""Durations as people type them to wrk, k6, oha and pgbench: ``500ms``, ``30s``, ``2m``, ``1h``.

A bare number is seconds (``10`` and ``2.5`` stay what they always meant). Flags and scenario
files read durations through :func:`parse_duration`, so both accept the same spellings.
"""

from __future__ import annotations

import math
import re
from typing import Any

# Longest suffix first, so "ms" is not read as "m" followed by junk.
UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h)?\s*$")
DURATION_HELP = "DURATION: 500ms, 30s, 2m, 1h; a bare number is seconds"


def parse_duration(value: Any, *, allow_zero: bool = False) -> float:
    """Seconds from ``value`` (a number, or text with an optional unit); raises ValueError
    saying what was expected. Negative, infinite and (unless ``allow_zero``) zero are refused."""
    expected = (
        f"expected a number of seconds {'>= 0' if allow_zero else '> 0'} "
        "or a duration such as 500ms, 30s, 2m, 1h"
    )
    if isinstance(value, bool):
        raise ValueError(expected)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value))
        if found is None:
            raise ValueError(expected)
        seconds = float(found.group(1)) * UNITS_S[found.group(2) or "s"]
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(expected)
    return seconds
