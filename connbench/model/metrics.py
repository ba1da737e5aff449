"""The metric registry: every number connbench judges, by one name, in one place.

Run limits (``--fail-if "p99_ms>50"``), compare gates (``--fail-on p99:10%``, a scenario's
``[gate]``), report columns and the CSV/JSON exports all look metrics up here, so each is read
the same way everywhere and any of its spellings is accepted everywhere: ``throughput``,
``throughput_rps`` and ``rps`` are one metric.

Each metric has a short ``name`` (what gates and comparisons call it), a ``key`` with its unit
(what a variant summary, the exports and limits call it), a unit, the direction that is better,
and how to read it: from one repeat (:attr:`Metric.from_run`) and from a variant's summary
over its repeats (:attr:`Metric.path`). Imports nothing else of connbench.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class Run(Protocol):
    """What a metric reads from one repeat (``connbench.model.result_types.StrategyResult``):
    each part is None when the repeat did not measure it."""

    @property
    def throughput_rps(self) -> float: ...
    @property
    def latency_ms(self) -> Any: ...
    @property
    def requests(self) -> Any: ...
    @property
    def server(self) -> Any: ...
    @property
    def cpu_percent(self) -> Any: ...
    @property
    def generator(self) -> Any: ...


def _part(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]`` (a typed part or a plain mapping); None if absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


@dataclass(frozen=True)
class Metric:
    name: str  # what gates and comparisons call it: "p99"
    key: str  # with its unit, as a summary, the exports and limits call it: "p99_ms"
    aliases: tuple[str, ...]  # further spellings accepted anywhere
    label: str  # a column header
    unit: str
    higher_is_better: bool
    description: str
    from_run: Callable[[Run], Any]  # its value in one repeat (None: not measured)
    path: tuple[str, ...]  # where a variant summary keeps its median over the repeats
    compared: bool = False  # a row of every comparison (others only when gated)
    counts: str = ""  # what a figure without a unit counts ("connections"), for the exports

    @property
    def unit_stated(self) -> str:
        """Its unit, or what it counts: an export always says what a number is."""
        return self.unit or self.counts

    @property
    def spellings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.name, self.key, *self.aliases)))

    def run_value(self, run: Run) -> float | None:
        value = self.from_run(run)
        return None if value is None else float(value)

    def recorded(self, summary: Any) -> Any:
        """Its median over a variant's repeats as a ``stats.aggregate`` summary holds it."""
        value: Any = summary
        for part in self.path:
            value = _part(value, part)
        return value

    def summary_value(self, summary: Any) -> float | None:
        """:meth:`recorded`, as a number to check or compare."""
        value = self.recorded(summary)
        return None if value is None else float(value)

    def worse_by(self, change: float) -> float:
        """A relative change in the bad direction (positive: worse)."""
        return -change if self.higher_is_better else change


def _error_rate(run: Run) -> float | None:
    total = _part(run.requests, "total")
    return int(_part(run.requests, "errors") or 0) / total if total else None


def _latency(
    name: str, label: str, description: str, compared: bool = True, aliases: tuple[str, ...] = ()
) -> Metric:
    return Metric(
        name=name,
        key=f"{name}_ms",
        aliases=aliases,
        label=label,
        unit="ms",
        higher_is_better=False,
        description=description,
        from_run=lambda run: _part(run.latency_ms, name),
        path=("latency_ms", name, "median"),
        compared=compared,
    )


def _server(name: str, label: str, description: str, counts: str, compared: bool = True) -> Metric:
    return Metric(
        name=name,
        key=name,
        aliases=(),
        label=label,
        unit="",
        higher_is_better=False,
        description=description,
        from_run=lambda run: _part(run.server, name),
        path=(name,),
        compared=compared,
        counts=counts,
    )


def _cpu(part: str, label: str, whose: str, read: Callable[[Run], Any]) -> Metric:
    return Metric(
        name=f"cpu_{part}",
        key=f"cpu_{part}_percent",
        aliases=(),
        label=label,
        unit="%",
        higher_is_better=False,
        description=f"CPU of {whose} over the measured window, % of one core",
        from_run=read,
        path=(f"cpu_{part}_percent",),
    )


METRICS: tuple[Metric, ...] = (
    Metric(
        name="throughput",
        key="throughput_rps",
        aliases=("rps",),
        label="throughput",
        unit="req/s",
        higher_is_better=True,
        description="2xx responses per second over the measured window",
        from_run=lambda run: run.throughput_rps,
        path=("throughput_rps", "median"),
        compared=True,
    ),
    _latency("mean", "mean", "mean latency", compared=False),
    _latency("p50", "p50", "median latency"),
    _latency("p90", "p90", "90th percentile latency"),
    _latency("p99", "p99", "99th percentile latency"),
    _latency("p999", "p99.9", "99.9th percentile latency", aliases=("p99.9", "p99.9_ms")),
    _latency("max", "max", "slowest response", compared=False),
    Metric(
        name="error_rate",
        key="error_rate",
        aliases=(),
        label="error rate",
        unit="",
        higher_is_better=False,
        description="errors over all requests (of all repeats, in a summary)",
        from_run=_error_rate,
        path=("error_rate",),
        counts="errors/request",
    ),
    _server(
        "connections_peak",
        "conns peak",
        "the app's server sessions, most seen at once",
        counts="connections",
    ),
    _server(
        "connections_mean",
        "conns mean",
        "the app's server sessions, mean over the window",
        counts="connections",
    ),
    _server(
        "sessions_opened",
        "sessions opened",
        "server sessions opened in the window",
        counts="sessions",
    ),
    _server(
        "sessions_per_ok_response",
        "sessions/2xx",
        "server sessions opened per 2xx response",
        counts="sessions/response",
        compared=False,
    ),
    _cpu("app", "app CPU", "the app's workers", lambda run: _part(run.cpu_percent, "app")),
    _cpu("postgres", "pg CPU", "PostgreSQL", lambda run: _part(run.cpu_percent, "postgres")),
    _cpu(
        "pgbouncer", "PgBouncer CPU", "PgBouncer", lambda run: _part(run.cpu_percent, "pgbouncer")
    ),
    _cpu(
        "generator",
        "gen CPU",
        "the load generator's event loop",
        lambda run: _part(run.generator, "loop_cpu_percent"),
    ),
)

BY_SPELLING: dict[str, Metric] = {
    spelling: metric for metric in METRICS for spelling in metric.spellings
}
COMPARED: tuple[Metric, ...] = tuple(m for m in METRICS if m.compared)
# What is followed over time (tracking-tool exports, `report --trend`): throughput, the latency
# percentiles, errors, and the server-side figures only connbench sees.
TRACKED: tuple[Metric, ...] = tuple(
    BY_SPELLING[name]
    for name in (
        "throughput", "p50", "p90", "p99", "p999", "error_rate", "connections_peak",
        "connections_mean", "sessions_opened", "sessions_per_ok_response", "cpu_app",
        "cpu_postgres",
    )
)  # fmt: skip


def known() -> str:
    """Every accepted name, one metric's spellings joined by ``/``: for an error's one line."""
    return ", ".join("/".join(metric.spellings) for metric in METRICS)


def lookup(name: str) -> Metric:
    """The metric spelled ``name``; raises ValueError listing the known names."""
    metric = BY_SPELLING.get(name.strip())
    if metric is None:
        raise ValueError(f"unknown metric {name.strip()!r} (known: {known()})")
    return metric


def amount(value: float | None, unit: str = "", show_unit: bool = True) -> str:
    """A value as a reader sees it: whole numbers from 100 (and for req/s), else 3 digits."""
    if value is None:
        return "-"
    text = f"{value:,.0f}" if unit == "req/s" or abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".rstrip() if show_unit else text
