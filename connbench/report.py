"""Everything the user sees: live progress while a run goes, tables after it.

The only module besides ``cli`` that imports rich. It formats what ``stats`` computed and adds
nothing to the numbers.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from connbench.load import Progress as LoadProgress
from connbench.results import RunResult, StrategyResult


class ConsoleReporter:
    """Live progress for a run: one bar per strategy, notes and warnings above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total_s = 0.0

    def note(self, message: str) -> None:
        self.console.print(f"[dim]{message}[/dim]", highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    def strategy_started(self, label: str, index: int, count: int, total_s: float) -> None:
        self._total_s = total_s
        if not self.console.is_terminal:  # a log gets the one-line summary, not a bar
            return
        self._progress = Progress(
            TextColumn(f"[bold]{label}[/bold] ({index}/{count})"),
            BarColumn(),
            TextColumn("{task.fields[phase]:>8}"),
            TextColumn("{task.fields[ok]:>8} ok"),
            TextColumn("{task.fields[errors]:>6} err"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total_s, phase="start", ok=0, errors=0)

    def progress(self, p: LoadProgress) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=min(p.elapsed_s, self._total_s),
                phase=p.phase,
                ok=p.ok,
                errors=p.errors,
            )

    def strategy_finished(self, result: StrategyResult) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if result.status == "failed":
            self.console.print(f"[red]{result.strategy}: failed[/red]", highlight=False)
            self.console.print(result.failure or "", highlight=False, markup=False)
        else:
            rps = result.throughput_rps
            p99 = result.latency_ms.get("p99")
            tail = f", p99 {p99:.1f} ms" if p99 is not None else ""
            self.console.print(f"{result.strategy}: {rps:,.0f} req/s{tail}", highlight=False)


def _median(spread: dict[str, Any] | None, fmt: str = ",.1f") -> str:
    value = (spread or {}).get("median")
    return "-" if value is None else format(value, fmt)


def _cv(spread: dict[str, Any]) -> str:
    if len(spread.get("values", [])) < 2 or spread.get("cv") is None:
        return ""
    text = f" ±{spread['cv']:.0%}"
    return f"[yellow]{text}[/yellow]" if spread["cv"] >= 0.10 else f"[dim]{text}[/dim]"


def _integrity(summary: dict[str, Any], runs: list[StrategyResult]) -> str:
    measured = [r for r in runs if r.integrity]
    if not measured:
        return "-"
    if len(measured) == 1:
        integrity = measured[0].integrity
        rows, ok = integrity.get("rows_inserted"), integrity.get("ok_responses")
        if integrity.get("ok"):
            return f"[green]{rows:,} = {ok:,}[/green]"
        return f"[bold red]{rows} rows ≠ {ok} 2xx[/bold red]"
    if summary.get("integrity_ok"):
        return f"[green]equal ×{len(measured)}[/green]"
    bad = sum(1 for r in measured if not r.integrity.get("ok"))
    return f"[bold red]≠ in {bad} of {len(measured)}[/bold red]"


def _sessions(summary: dict[str, Any]) -> str:
    opened = summary.get("sessions_opened")
    if opened is None:
        return "-"
    per = summary.get("sessions_per_ok_response")
    return f"{opened:,.0f}" + (f" ({per:.2f}/2xx)" if per is not None else "")


# Variant dimensions that get a column when they take more than one value in a run.
DIMENSIONS = (
    ("concurrency", "conc."),
    ("workers", "workers"),
    ("pool_max", "pool"),
    ("rate", "rate/s"),
)


def results_table(run: RunResult) -> Table:
    """The main table: one row per variant (medians over repeats, ±CV when repeated)."""
    title = f"connbench · {run.scenario.get('name', '')}"
    if run.interrupted:
        title += " · [bold red]INTERRUPTED[/bold red]"
    repeats = max((s.get("runs", 1) for s in run.summary), default=1)
    if repeats > 1:
        title += f" · median of {repeats} interleaved repeats"
    table = Table(title=title, title_justify="left")
    table.add_column("strategy", style="bold")
    varying = [
        (key, label)
        for key, label in DIMENSIONS
        if len(values := {s["variant"].get(key) for s in run.summary} - {None}) > 1
        or (key == "rate" and values)
    ]
    for _, label in varying:
        table.add_column(label, justify="right")
    open_model = any(s["variant"].get("rate") for s in run.summary)
    headers = ["req/s", "p50 ms", "p99 ms", "errors", "conns peak", "conns mean",
               "sessions opened", "rows = 2xx", "app CPU", "pg CPU", "gen CPU"]  # fmt: skip
    if open_model:
        headers.insert(3, "p99 uncorr.")
    if run.calibration:
        headers.insert(1, "of ceiling")
    for header in headers:
        table.add_column(header, justify="right")
    by_key: dict[str, list[StrategyResult]] = {}
    for result in run.results:
        by_key.setdefault(result.key, []).append(result)
    previous = None
    for summary in run.summary:
        if previous is not None and previous != summary["strategy"]:
            table.add_section()
        previous = summary["strategy"]
        variant = summary["variant"]
        dims = ["-" if variant.get(key) is None else str(variant.get(key)) for key, _ in varying]
        name = summary["strategy"]
        if not summary.get("valid", True):
            name += " [bold red]INVALID[/bold red]"
        if summary["status"] == "interrupted":
            name += " [red](interrupted)[/red]"
        if summary["status"] == "failed":
            table.add_row(name, *dims, "[red]failed[/red]", *["-"] * (len(headers) - 1))
            continue
        errors = summary.get("errors", 0)
        gen = summary.get("cpu_generator_percent")
        gen_text = _pct(gen)
        if summary.get("generator_saturated"):
            gen_text = f"[bold red]{gen_text}![/bold red]"
        rps = summary["throughput_rps"]
        p99 = [_median(summary["latency_ms"]["p99"]) + _cv(summary["latency_ms"]["p99"])]
        if open_model:
            p99.append(_median(summary.get("latency_uncorrected_ms", {}).get("p99")))
        ceiling = [_ceiling(summary, run.calibration)] if run.calibration else []
        table.add_row(
            name,
            *dims,
            _median(rps, ",.0f") + _cv(rps),
            *ceiling,
            _median(summary["latency_ms"]["p50"]),
            *p99,
            f"[red]{errors:,}[/red]" if errors else "0",
            _num(summary.get("connections_peak"), ".0f"),
            _num(summary.get("connections_mean")),
            _sessions(summary),
            _integrity(summary, by_key.get(summary["key"], [])),
            _pct(summary.get("cpu_app_percent")),
            _pct(summary.get("cpu_postgres_percent")),
            gen_text,
        )
    return table


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], top: float | None = None) -> str:
    """One character per value, scaled from 0 to ``top`` (default: the largest value)."""
    top = max(values, default=0.0) if top is None else top
    if not values:
        return ""
    if top <= 0:
        return SPARKS[0] * len(values)
    last = len(SPARKS) - 1
    return "".join(SPARKS[min(last, round(last * max(0.0, v) / top))] for v in values)


def _typical_run(summary: dict[str, Any], runs: list[StrategyResult]) -> StrategyResult | None:
    """The repeat whose throughput is closest to the median: its seconds are the ones drawn."""
    measured = [r for r in runs if r.timeseries.get("ok")]
    median = summary["throughput_rps"].get("median")
    if not measured or median is None:
        return measured[0] if measured else None
    return min(measured, key=lambda r: abs(r.throughput_rps - median))


def timeline_table(run: RunResult) -> Table:
    """Per-second charts: throughput, p99, server connections, errors, one row per variant.

    Each chart is scaled to its own row's maximum, printed beside it, so shapes (a pool
    warming up, a connection storm, a stall) read at a glance.
    """
    table = Table(title="per second of the measured window", title_justify="left", box=None)
    table.add_column("variant", style="bold")
    for header in ("req/s", "p99 ms", "server conns", "errors"):
        table.add_column(header)
    by_key: dict[str, list[StrategyResult]] = {}
    for result in run.results:
        by_key.setdefault(result.key, []).append(result)
    for summary in run.summary:
        chosen = _typical_run(summary, by_key.get(summary["key"], []))
        if chosen is None:
            continue
        series = chosen.timeseries
        cells = []
        for name, colour in (("ok", "green"), ("p99_ms", "cyan"), ("connections", "magenta")):
            values = series.get(name, [])
            top = max(values, default=0.0)
            cells.append(f"[{colour}]{sparkline(values)}[/{colour}] [dim]max {top:,.0f}[/dim]")
        errors = series.get("errors", [])
        cells.append(
            f"[red]{sparkline(errors)}[/red] [dim]{sum(errors):,.0f}[/dim]" if any(errors) else "-"
        )
        label = summary["key"] if len(run.summary) > 1 else summary["strategy"]
        table.add_row(label, *cells)
    return table


def render_run(console: Console, run: RunResult, charts: bool = True) -> None:
    """The table, the per-second charts, the context a reader needs, then warnings."""
    console.print(results_table(run))
    if run.calibration:
        render_calibration(console, run.calibration)
    if charts and any(r.timeseries.get("ok") for r in run.results):
        console.print(timeline_table(run))
    scenario, env = run.scenario, run.environment
    pool_min, pool_max = scenario.get("pool_min_effective"), scenario.get("pool_max_effective")
    pg = env.get("postgres", {})

    def listed(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    console.print(
        f"[dim]concurrency {listed(scenario.get('concurrency'))} · "
        f"{scenario.get('duration_s')} s measured after {scenario.get('warmup_s')} s warm-up · "
        f"pool {pool_min}..{listed(pool_max)} · workers {listed(scenario.get('workers'))} · "
        f"PostgreSQL {pg.get('version', '?')} ({pg.get('backend', '?')}, max_connections "
        f"{pg.get('settings', {}).get('max_connections', '?')}) · {env.get('cpu_count')} CPUs · "
        f"load generator: {scenario.get('engine')}[/dim]",
        highlight=False,
    )
    console.print(
        "[dim]CPU columns: % of one core during the measured window; the machine has "
        f"{env.get('cpu_count')} in all, shared by the app, PostgreSQL and the generator.[/dim]",
        highlight=False,
    )
    for summary in run.summary:
        label = summary["key"] if len(run.summary) > 1 else summary["strategy"]
        for warning in summary.get("warnings", []):
            console.print(f"[yellow]warning:[/yellow] {label}: {warning}", highlight=False)


def render_calibration(console: Console, ceilings: dict[str, Any]) -> None:
    """The ceilings of a session, as measured by calibrate."""
    table = Table(
        title=f"ceilings · c={ceilings.get('concurrency')} · {ceilings.get('duration_s')} s each",
        title_justify="left",
    )
    table.add_column("what")
    table.add_column("per second", justify="right")
    table.add_column("reads as", style="dim")
    rows = [
        ("connbench generator, GET /health (no database)", ceilings.get("generator_rps"),
         f"the most any strategy can show here (generator at "
         f"{ceilings.get('generator_cpu_percent', 0):.0f}% of a core)"),
        ("wrk, GET /health", ceilings.get("wrk_rps"), "the same, with wrk (if installed)"),
        ("pgbench, persistent connections", ceilings.get("pgbench_tps"),
         "the database's ceiling for the insert: pooled strategies' yardstick"),
        ("pgbench -C, a connection per transaction", ceilings.get("pgbench_connect_tps"),
         "the ceiling with a new session each time: per-request strategies' yardstick"),
    ]  # fmt: skip
    for what, value, reads in rows:
        table.add_row(what, "-" if value is None else f"{value:,.0f}", reads)
    console.print(table)


def _ceiling(summary: dict[str, Any], calibration: dict[str, Any]) -> str:
    rps = summary["throughput_rps"].get("median")
    pooled = summary["variant"].get("pool_max") is not None and summary["strategy"] != "pool-unused"
    ceiling = calibration.get("pgbench_tps" if pooled else "pgbench_connect_tps")
    if not rps or not ceiling:
        return "-"
    return f"{rps / ceiling:.0%} of {'pgbench' if pooled else 'pgbench -C'}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)
