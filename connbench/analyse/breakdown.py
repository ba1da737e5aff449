"""Where a request's time goes: the app's own timings, read at the window's edges, split into
the parts of its latency. Pure functions: no I/O, no printing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BreakdownPart:
    """One part of a request's latency: its field in a breakdown, its name in tables and
    legends, and its colour in the terminal (a rich style) and in the HTML charts."""

    key: str
    label: str
    terminal_colour: str
    chart_colour: str


# What a request's latency is made of, in the order the bars stack them.
BREAKDOWN_PARTS = (
    BreakdownPart("connect_ms", "connect", "magenta", "#b07aa1"),
    BreakdownPart("pool_wait_ms", "pool wait", "yellow", "#edc948"),
    BreakdownPart("query_ms", "query", "cyan", "#4e79a7"),
    BreakdownPart("rest_of_app_ms", "rest of app", "green", "#59a14f"),
    BreakdownPart("outside_app_ms", "outside app", "bright_black", "#bab0ac"),
)
# psycopg_pool's get_stats(): gauges are read at the end, counters over the window.
POOL_GAUGES = ("pool_min", "pool_max", "pool_size", "pool_available", "requests_waiting")


def breakdown(
    start: dict[str, Any] | None, end: dict[str, Any] | None, *, latency_mean_ms: float | None
) -> dict[str, Any]:
    """Mean milliseconds per request over the window, from the app's totals at its edges.

    The app's time until the response is split into connecting, waiting for a pooled
    connection (queue, check, retries), queries (execute, commit, rollback) and the rest; what
    the client's mean latency adds to that is ``outside_app_ms`` (HTTP, uvicorn, waiting for
    the app's loop to take the request). ``after_response_ms`` is the app's work after the
    response was sent (a ``yield`` dependency's commit and close): the client does not wait
    for it. Empty when the totals are missing or no request completed in between.
    """
    if not start or not end or "timing" not in start or "timing" not in end:
        return {}
    t0, t1 = start["timing"], end["timing"]
    requests = int(t1["requests"]) - int(t0["requests"])
    if requests <= 0:
        return {}

    def mean(key: str) -> float:
        return (float(t1[key]) - float(t0[key])) / requests

    if mean("queries") == 0:
        # No query was timed (the sync strategies' psycopg calls, SQLAlchemy's cursors and
        # asyncpg are not instrumented): a breakdown would put them in "rest of app".
        return {}

    in_app = mean("until_response_ms")
    parts = {
        "connect_ms": mean("connect_ms"),
        "pool_wait_ms": mean("pool_wait_ms"),
        "query_ms": mean("query_ms"),
    }
    parts["rest_of_app_ms"] = in_app - sum(parts.values())
    if latency_mean_ms is not None:
        # The app's totals are read over HTTP at the window's edges, and each read waits
        # behind the requests in flight, so the app's mean covers a window shifted by up to a
        # request's latency. Where little time is spent outside the app (a busy loop at high
        # concurrency) that skew can exceed it (-1.8 ms seen at c=128): 0 is the honest floor.
        parts["outside_app_ms"] = max(0.0, latency_mean_ms - in_app)
    out: dict[str, Any] = {
        "requests": requests,
        "latency_mean_ms": latency_mean_ms,
        "in_app_ms": round(in_app, 3),
        **{name: round(value, 3) for name, value in parts.items()},
        "after_response_ms": round(mean("after_response_ms"), 3),
        "connects_per_request": round(mean("connects"), 3),
        "queries_per_request": round(mean("queries"), 3),
        "pool": None,
    }
    p0, p1 = start.get("pool"), end.get("pool")
    if isinstance(p0, dict) and isinstance(p1, dict):
        out["pool"] = {
            key: p1.get(key, 0) if key in POOL_GAUGES else p1.get(key, 0) - p0.get(key, 0)
            for key in sorted(set(p0) | set(p1))
        }
    return out
