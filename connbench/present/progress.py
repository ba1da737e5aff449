"""Live progress while a run goes: a bar per variant on a terminal, periodic lines elsewhere.

Every line names the variant by its key (and its repeat), so a sweep's or a repeat's lines
can be told apart in a log. Periodic lines are pgbench ``-P``'s habit: req/s over the last
interval, p99 of the measured window so far, errors so far, the app's server connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from connbench.measure.load import Progress as LoadProgress
from connbench.model import defaults
from connbench.model.results import StrategyResult
from connbench.present.common import WARNING
from connbench.present.run_cells import (
    recovery,
)

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

DEFAULT_EVERY_S = defaults.PROGRESS_EVERY_S  # periodic lines off a terminal
BAR_WIDTH = 10


def _p99(p: LoadProgress) -> str:
    return "-" if p.p99_ms is None else f"{p.p99_ms:,.1f} ms"


def _conns(p: LoadProgress) -> str:
    return "-" if p.connections is None else str(p.connections)


class ConsoleReporter:
    """Progress for a run: notes and warnings, then per variant a live bar (on a terminal,
    unless ``every_s`` asks for lines) or a line every ``every_s`` seconds (0: none)."""

    def __init__(self, console: Console, every_s: float | None = None) -> None:
        self.console = console
        self.every_s = DEFAULT_EVERY_S if every_s is None else every_s
        # An explicit --progress asks for lines, on a terminal too (as pgbench -P does).
        self.bar = console.is_terminal and every_s is None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._total_s = 0.0
        self._key = ""  # the variant's key (and repeat): what every line is about
        self._label = ""  # ... and where it stands in the run
        self._last: LoadProgress | None = None  # at the last printed line (or the start)

    def note(self, message: str) -> None:
        self.console.print("[dim]" + escape(message), highlight=False)

    def warn(self, message: str) -> None:
        self.console.print(WARNING + escape(message), highlight=False)

    def strategy_started(self, label: str, index: int, count: int, total_s: float) -> None:
        self._total_s, self._key = total_s, label
        self._label = f"{label} ({index}/{count})"
        self._last = LoadProgress("start", 0.0, 0, 0)
        if not self.bar or total_s <= 0:  # 0: a result told after its window (--slices)
            return
        from rich.progress import Progress, TextColumn

        # Two lines, so that a long key and the figures fit an 80-column terminal.
        self._progress = Progress(
            TextColumn("{task.description}"), console=self.console, transient=True
        )
        self._progress.start()
        self._task = self._progress.add_task(self._status(self._last), total=total_s)

    def _status(self, p: LoadProgress, rps: str = "-") -> str:
        done = min(1.0, p.elapsed_s / self._total_s) if self._total_s else 0.0
        bar = "█" * round(done * BAR_WIDTH)
        return (
            f"[bold]{escape(self._label)}[/bold]\n"
            f"  {p.phase:<7} {p.elapsed_s:.1f}/{self._total_s:g} s ▕{bar:<{BAR_WIDTH}}▏ "
            f"{rps} req/s  p99 {_p99(p)}  {_conns(p)} conns  {p.errors:,} err"
        )

    def progress(self, p: LoadProgress) -> None:
        last = self._last
        if last is None:
            return
        if self._progress is not None and self._task is not None:
            if p.elapsed_s - last.elapsed_s >= 1.0:  # req/s over about the last second
                self._last = p
            self._progress.update(self._task, description=self._status(p, _rate(last, p)))
        elif self.every_s > 0 and p.elapsed_s - last.elapsed_s >= self.every_s:
            self._last = p
            self.console.print(
                f"{escape(self._label)} {p.phase} {p.elapsed_s:5.1f} s: {_rate(last, p)} req/s, "
                f"p99 {_p99(p)} so far, {p.errors:,} errors, {_conns(p)} server conns",
                highlight=False,
                soft_wrap=True,  # one line per report, whatever the width: a log is grepped
            )

    def strategy_finished(self, result: StrategyResult) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        label = escape(self._key or result.key)
        if result.status == "failed":
            self.console.print(f"[red]{label}: failed[/red]", highlight=False)
            # Whole, however long: a log is grepped for it.
            self.console.print(result.failure or "", highlight=False, markup=False, soft_wrap=True)
        elif result.status == "unavailable":
            self.console.print(
                f"[yellow]{label}: unavailable:[/yellow] {escape(result.failure or '')}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            rps = result.throughput_rps
            p99 = result.latency_ms.p99 if result.latency_ms else None
            tail = f", p99 {p99:.1f} ms" if p99 is not None else ""
            errors = result.requests.errors if result.requests else 0
            tail += f", {errors:,} errors" if errors else ""
            if result.fault:
                tail += f", {result.fault.kind}: {recovery(result.fault)}"
            self.console.print(f"{label}: {rps:,.0f} req/s{tail}", highlight=False)


def _rate(before: LoadProgress, now: LoadProgress) -> str:
    seconds = now.elapsed_s - before.elapsed_s
    return "-" if seconds <= 0 else f"{(now.ok - before.ok) / seconds:,.0f}"
