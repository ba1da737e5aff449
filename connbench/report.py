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


def _ms(latency: dict[str, float], key: str) -> str:
    value = latency.get(key)
    return "-" if value is None else f"{value:,.1f}"


def _integrity(result: StrategyResult) -> str:
    integrity = result.integrity
    if not integrity:
        return "-"
    rows, ok = integrity.get("rows_inserted"), integrity.get("ok_responses")
    if integrity.get("ok"):
        return f"[green]{rows:,} = {ok:,}[/green]"
    return f"[bold red]{rows} rows ≠ {ok} 2xx[/bold red]"


def _sessions(server: dict[str, Any]) -> str:
    opened = server.get("sessions_opened")
    if opened is None:
        return "-"
    per = server.get("sessions_per_ok_response")
    return f"{opened:,}" + (f" ({per:.2f}/2xx)" if per is not None else "")


def results_table(run: RunResult) -> Table:
    """The main table: one row per strategy."""
    title = f"connbench · {run.scenario.get('name', '')}"
    if run.interrupted:
        title += " · [bold red]INTERRUPTED[/bold red]"
    table = Table(title=title, title_justify="left")
    table.add_column("strategy", style="bold")
    table.add_column("req/s", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("conns peak", justify="right")
    table.add_column("conns mean", justify="right")
    table.add_column("sessions opened", justify="right")
    table.add_column("rows = 2xx", justify="right")
    table.add_column("app CPU", justify="right")
    table.add_column("pg CPU", justify="right")
    table.add_column("gen CPU", justify="right")
    for result in run.results:
        if result.status == "failed":
            table.add_row(result.strategy, "[red]failed[/red]", *["-"] * 10)
            continue
        server = result.server
        errors = result.requests.get("errors", 0)
        gen = result.generator
        gen_text = f"{gen.get('loop_cpu_percent', 0):.0f}%"
        if gen.get("saturated"):
            gen_text = f"[bold red]{gen_text}![/bold red]"
        name = result.strategy + (
            " [red](interrupted)[/red]" if result.status == "interrupted" else ""
        )
        table.add_row(
            name,
            f"{result.throughput_rps:,.0f}",
            _ms(result.latency_ms, "p50"),
            _ms(result.latency_ms, "p99"),
            f"[red]{errors:,}[/red]" if errors else "0",
            str(server.get("connections_peak", "-")),
            _num(server.get("connections_mean")),
            _sessions(server),
            _integrity(result),
            _pct(result.cpu_percent.get("app")),
            _pct(result.cpu_percent.get("postgres")),
            gen_text,
        )
    return table


def render_run(console: Console, run: RunResult) -> None:
    """The table, then the context a reader needs to trust it, then warnings."""
    console.print(results_table(run))
    scenario, env = run.scenario, run.environment
    pool_min, pool_max = scenario.get("pool_min_effective"), scenario.get("pool_max_effective")
    pg = env.get("postgres", {})
    console.print(
        f"[dim]concurrency {scenario.get('concurrency')} · {scenario.get('duration_s')} s "
        f"measured after {scenario.get('warmup_s')} s warm-up · pool {pool_min}..{pool_max} · "
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
    for result in run.results:
        for warning in result.warnings:
            console.print(
                f"[yellow]warning:[/yellow] {result.strategy}: {warning}", highlight=False
            )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
