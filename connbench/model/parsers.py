"""Value parsers for scenario files and flags: each takes a raw value (a TOML value, or a flag's
text) and returns it checked, or raises ValueError saying what was expected.

The caller adds where the value came from and what was given (``--concurrency: expected a
positive whole number, got '0'``); a :class:`Complete` error already names the value itself.
Numbers that size connbench's memory, processes or run time are refused above
:data:`BOUNDS` while parsing, before anything starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from connbench.model.checks import CompleteError
from connbench.model.units import parse_duration

Complete = CompleteError  # a parser's message that already names the offending value

# Upper bounds for every number that sizes connbench's memory, its processes or its run time:
# checked while parsing, before anything starts. Generous for one machine, and far from what
# would exhaust it (each concurrent slot holds a socket and a few hundred bytes; each worker is
# a process; each second of duration a few numbers per series).
BOUNDS: dict[str, float] = {
    "concurrency": 10_000,
    "duration_s": 86_400,  # 24 h
    "warmup_s": 3_600,
    "timeout_s": 3_600,
    "pool_min": 10_000,
    "pool_max": 10_000,
    "workers": 64,
    "pgbouncer_pool_size": 10_000,
    "repeat": 1_000,
    "slices": 1_000,
    "rate": 1_000_000_000,  # requests/s offered: the schedule is arithmetic, nothing per request
    "max_connections": 10_000,
    "locust_workers": 64,  # processes, as workers are
    "expect_workers": 1_000,
}
MAX_SWEEP = 64  # values in one swept list (--concurrency 8,32,128 ...)
MAX_SHOWN = 40  # characters of a bad value quoted back in a message


def shown(value: Any) -> str:
    """``repr(value)``, cut short: a bad value of a megabyte must not make a megabyte line."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def check_bound(number: float, key: str) -> None:
    bound = BOUNDS[key]
    if number > bound:
        raise ValueError(f"at most {bound:,g} (connbench's bound on {key})")


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a positive whole number")
    text = value.strip() if isinstance(value, str) else ""
    # More digits than any bound has: refused before int() (whose digit limit is 4,300).
    if len(text) > 20:
        raise ValueError("expected a positive whole number of at most 20 digits")
    try:
        number = int(text) if isinstance(value, str) else value
    except ValueError:
        raise ValueError("expected a positive whole number") from None
    if number < 1:
        raise ValueError("expected a positive whole number")
    return number


def bounded(parse: Callable[[Any], Any], key: str) -> Callable[[Any], Any]:
    """``parse``, then refuse a number above ``BOUNDS[key]``."""

    def parse_bounded(value: Any) -> Any:
        if isinstance(value, str) and len(value.strip()) > 20 and value.strip().isdigit():
            check_bound(math.inf, key)  # a number too long to convert is too big
        number = parse(value)
        check_bound(number, key)
        return number

    return parse_bounded


def list_of(parse: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    """A parser for one value or a sweep: ``8``, ``"8,32,128"`` or a TOML list."""

    def parse_list(value: Any) -> tuple[Any, ...]:
        if isinstance(value, list):
            items = value
        elif isinstance(value, str):
            items = [part.strip() for part in value.split(",")]
        else:
            items = [value]
        if not items or any(item == "" for item in items):
            raise ValueError("expected a value or a comma-separated list")
        if len(items) > MAX_SWEEP:
            raise Complete(f"at most {MAX_SWEEP} values in a sweep, got {len(items):,}")
        try:
            parsed = tuple(parse(item) for item in items)
        except ValueError as exc:
            suffix = " (or a comma-separated list of them)" if len(items) == 1 else " in every item"
            if str(exc).startswith("at most"):
                raise
            raise ValueError(f"{exc}{suffix}") from None
        return tuple(dict.fromkeys(parsed))  # keep order, drop repeats

    return parse_list


def non_negative_int(value: Any) -> int:
    if (isinstance(value, int) and not isinstance(value, bool) and value == 0) or (
        isinstance(value, str) and value.strip() == "0"
    ):
        return 0
    try:
        return positive_int(value)
    except ValueError:
        raise ValueError("expected a whole number >= 0") from None


def seconds(allow_zero: bool) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        return parse_duration(value, allow_zero=allow_zero)

    return parse


def rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected requests per second > 0")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError("expected requests per second > 0") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError("expected requests per second > 0")
    return number


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def port(value: Any) -> int:
    port = non_negative_int(value)
    if port > 65535:
        raise ValueError("expected a TCP port (0 for a free one)")
    return port


def printable(text: str) -> bool:
    return 0 < len(text) <= 100 and text.isprintable()
