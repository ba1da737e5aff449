"""Live progress while a run goes: one bar per variant, notes and warnings above it."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from connbench.measure.load import Progress as LoadProgress
from connbench.model.results import StrategyResult
from connbench.present.common import WARNING
from connbench.present.run import _label, _recovery


class ConsoleReporter:
    """Live progress for a run: one bar per strategy, notes and warnings above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total_s = 0.0

    def note(self, message: str) -> None:
        self.console.print("[dim]" + escape(message), highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(WARNING + escape(message), highlight=False)

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
        label = _label(result)
        if result.status == "failed":
            self.console.print(f"[red]{label}: failed[/red]", highlight=False)
            self.console.print(result.failure or "", highlight=False, markup=False)
        elif result.status == "unavailable":
            self.console.print(
                f"[yellow]{label}: unavailable:[/yellow] {result.failure}", highlight=False
            )
        else:
            rps = result.throughput_rps
            p99 = result.latency_ms.p99 if result.latency_ms else None
            tail = f", p99 {p99:.1f} ms" if p99 is not None else ""
            if result.fault:
                tail += f", {result.fault.kind}: {_recovery(result.fault)}"
            self.console.print(f"{label}: {rps:,.0f} req/s{tail}", highlight=False)
