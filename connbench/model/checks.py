"""Checks as written: a run limit (``--fail-if "p99_ms>50"``, a scenario's ``fail_if``) and a
compare gate (``--fail-on p99:10%``, a scenario's ``[gate]``, ``--alpha``).

Parsed here, in the model, so a scenario file and the command line validate them alike;
``connbench.analyse.limits`` and ``connbench.analyse.compare`` judge them. Metric names go
through the registry, so any alias is accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connbench.model import metrics

_EXPRESSION = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(<=|>=|<|>)\s*(\S+)\s*$")


class CompleteError(ValueError):
    """A parser's message that already names the offending value (nothing to append)."""


@dataclass(frozen=True)
class Limit:
    metric: str  # the registry's key, with its unit: "p99_ms" (any alias is accepted)
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_limit(text: str) -> Limit:
    """``"p99_ms>50"`` (or ``"p99>50"``) -> Limit; raises ValueError saying what is wrong."""
    found = _EXPRESSION.match(text)
    if not found:
        raise ValueError(
            f"cannot read {text!r}: expected METRIC<NUMBER or METRIC>NUMBER (also <=, >=), "
            "such as 'p99_ms>50'"
        )
    name, op, number = found.groups()
    try:
        metric = metrics.lookup(name)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r}: {number!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: {number!r} is not a finite number")
    return Limit(metric.key, op, value)


def parse_percent(value: Any) -> float:
    """``"10%"`` -> 0.10. Only a string with a % sign: a bare 10 or 0.1 would be ambiguous."""
    expected = 'expected a percentage such as "10%"'
    if not isinstance(value, str) or not value.strip().endswith("%"):
        raise ValueError(expected)
    try:
        number = float(value.strip()[:-1])
    except ValueError:
        raise ValueError(expected) from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError('expected a percentage above 0 such as "10%"')
    return number / 100.0


def parse_alpha(value: Any) -> float:
    """A significance level: a number strictly between 0 and 1."""
    if isinstance(value, bool):
        raise ValueError("expected a significance level between 0 and 1, such as 0.05")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a significance level between 0 and 1, such as 0.05") from None
    if not 0 < number < 1:
        raise ValueError("expected a significance level between 0 and 1, such as 0.05")
    return number


def gate_metric(name: str) -> str:
    """The gate's name for the metric spelled ``name`` (``throughput_rps`` -> ``throughput``);
    raises ValueError listing the known names."""
    return metrics.lookup(name).name


def parse_fail_on(text: str) -> tuple[str, float]:
    """``"throughput:10%"`` -> ("throughput", 0.10); raises ValueError saying what is wrong."""
    name, sep, percent = text.partition(":")
    if not sep:
        raise ValueError('expected METRIC:PERCENT such as "throughput:10%"')
    return gate_metric(name), parse_percent(percent)


def parse_gate(value: Any) -> dict[str, float]:
    """A scenario's ``[gate]``: ``throughput = "10%"`` per metric, and ``alpha``. Raises
    ValueError whose message starts with the offending key."""
    if not isinstance(value, Mapping):
        raise ValueError('expected a table such as [gate] throughput = "10%"')
    out: dict[str, float] = {}
    for key, setting in value.items():
        try:
            if key == "alpha":
                out[key] = parse_alpha(setting)
            else:
                out[gate_metric(key)] = parse_percent(setting)
        except ValueError as exc:
            got = "" if str(exc).startswith("unknown") else f", got {setting!r}"
            raise CompleteError(f"{key}: {exc}{got}") from None
    return out
