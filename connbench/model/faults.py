"""A fault as a scenario names it, ``restart@3``: what to inject and when. Injecting it is
:mod:`connbench.measure.faults`' job; this is the part a scenario validates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

KINDS = {
    "terminate": "pg_terminate_backend on every server session of the app",
    "restart": "restart PostgreSQL (fast shutdown, start again on the same port and data)",
}
# The share of the measured window before the fault that recovery is measured against.
MIN_BASELINE_S = 1.0


@dataclass(frozen=True)
class Fault:
    """What to inject and when: ``at_s`` seconds after the measured window starts."""

    kind: str
    at_s: float

    def __str__(self) -> str:
        return f"{self.kind}@{self.at_s:g}"


def parse(value: Any) -> Fault:
    """``"restart@3"`` -> ``Fault("restart", 3.0)``; raises ValueError saying what is expected."""
    expected = f"expected KIND@SECOND with KIND one of {', '.join(KINDS)} (e.g. restart@3)"
    if not isinstance(value, str):
        raise ValueError(expected)
    kind, at, second = value.strip().partition("@")
    try:
        at_s = float(second.strip().removesuffix("s"))
    except ValueError:
        raise ValueError(expected) from None
    if kind.strip() not in KINDS or not at or not math.isfinite(at_s) or at_s < 0:
        raise ValueError(expected)
    return Fault(kind.strip(), at_s)
