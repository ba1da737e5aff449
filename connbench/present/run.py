"""A run as the user sees it: rich tables (results, PgBouncer, timeline, faults, where the time
goes), Markdown (a GitHub step summary), CSV (one row per variant) or JSON.

It formats what ``analyse`` computed and adds nothing to the numbers. The table and the
Markdown share their cells: each is built once, with a ``mark`` function that styles it.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connbench.analyse import stats
from connbench.analyse.compare import shown
from connbench.analyse.stats import MEASURED
from connbench.apps import STRATEGIES
from connbench.model import metrics
from connbench.model.result_types import (
    Calibration,
    FaultOutcome,
    LimitRecord,
    PostgresInfo,
    Spread,
    VariantRecord,
    VariantSummary,
)
from connbench.model.results import RunResult, StrategyResult
from connbench.present.common import (
    WARNING,
    Mark,
    csv_text,
    json_text,
    markdown_mark,
    md_table,
    num,
    pct,
    rich_mark,
    sayer,
)


def _label(result: StrategyResult) -> str:
    """The strategy, and the way it reached the server when that was not direct."""
    topology = result.variant.topology
    return result.strategy if topology == "direct" else f"{result.strategy} via {topology}"


def _median(spread: Spread | None, fmt: str = ",.1f") -> str:
    value = spread.median if spread else None
    return "-" if value is None else format(value, fmt)


def _cv(spread: Spread, mark: Mark = rich_mark) -> str:
    if len(spread.values) < 2 or spread.cv is None:
        return ""
    text = f" ±{spread.cv:.0%}"
    return mark(text, "warn" if spread.cv >= stats.UNSTABLE_CV else "dim")


def _integrity(summary: VariantSummary, runs: list[StrategyResult], mark: Mark = rich_mark) -> str:
    # Not checked (an own app without count_sql): "-", neither good nor bad.
    checked = [r.integrity for r in runs if r.integrity and r.integrity.ok is not None]
    if not checked:
        return "-"
    if len(checked) == 1:
        integrity = checked[0]
        rows, ok = integrity.rows_inserted, integrity.ok_responses
        if integrity.ok and rows is not None:
            return mark(f"{rows:,} = {ok:,}", "good")
        return mark(f"{rows} rows ≠ {ok} 2xx", "bad")
    if summary.integrity_ok:
        return mark(f"equal ×{len(checked)}", "good")
    bad = sum(1 for integrity in checked if not integrity.ok)
    return mark(f"≠ in {bad} of {len(checked)}", "bad")


def _sessions(summary: VariantSummary) -> str:
    opened = summary.sessions_opened
    if opened is None:
        return "-"
    per = summary.sessions_per_ok_response
    return f"{opened:,.0f}" + (f" ({per:.2f}/2xx)" if per is not None else "")


# Variant dimensions that get a column when they take more than one value in a run.
DIMENSIONS = (
    ("topology", "via"),
    ("concurrency", "conc."),
    ("workers", "workers"),
    ("pool_max", "pool"),
    ("rate", "rate/s"),
)


def _peak_and_predicted(summary: VariantSummary, mark: Mark = rich_mark) -> str:
    """Observed peak / predicted; red when more were seen than predicted, yellow when the
    prediction does not fit max_connections (connbench's own sessions included)."""
    peak, predicted = summary.connections_peak, summary.predicted
    if predicted is None:
        return num(peak, ".0f")
    text = f"{num(peak, '.0f')} / {predicted.connections}"
    if peak is not None and peak > predicted.connections:
        return mark(text, "bad")
    if predicted.fits is False:
        return mark(text, "warn")
    return text


# Short names for the "via" column (the table is read at 160 columns in CI logs).
VIA_LABELS = {"pgbouncer-transaction": "pgb-txn", "pgbouncer-session": "pgb-session"}


def _cell(variant: VariantRecord, key: str) -> str:
    value = _dimension(variant, key)
    if value is None:
        return "-"
    return VIA_LABELS.get(value, value) if key == "topology" else str(value)


def _bounced(summary: VariantSummary) -> bool:
    return summary.variant.topology != "direct"


def _title(run: RunResult, mark: Mark) -> str:
    title = f"connbench · {run.scenario.name}"
    if run.interrupted:
        title += " · " + mark("INTERRUPTED", "bad")
    repeats = max((s.runs for s in run.summary), default=1)
    if repeats > 1:
        title += f" · median of {repeats} interleaved repeats"
    return title


RUN_HEADERS = (
    "req/s", "p50 ms", "p99 ms", "errors", "conns peak / pred.", "conns mean",
    "sessions opened", "rows = 2xx", "app CPU", "pg CPU", "gen CPU",
)  # fmt: skip


def _run_rows(run: RunResult, mark: Mark) -> tuple[list[str], list[list[str]]]:
    """Headers and one row of cells per variant (medians over repeats, ±CV when repeated)."""
    varying = [
        (key, label)
        for key, label in DIMENSIONS
        if len(values := {_dimension(s.variant, key) for s in run.summary} - {None}) > 1
        or (key == "rate" and values)  # an open-model run always says its rate
    ]
    headers = list(RUN_HEADERS)
    open_model = any(s.variant.rate for s in run.summary)
    if open_model:
        headers.insert(3, "p99 uncorr.")
    if run.calibration:
        headers.insert(1, "of ceiling")
    by_key: dict[str, list[StrategyResult]] = {}
    for result in run.results:
        by_key.setdefault(result.key, []).append(result)
    rows = []
    for summary in run.summary:
        dims = [_cell(summary.variant, key) for key, _ in varying]
        name = _name_cell(summary, mark)
        if summary.status in ("failed", "unavailable"):
            status = mark("failed", "bad") if summary.status == "failed" else mark("n/a", "warn")
            rows.append([name, *dims, status, *["-"] * (len(headers) - 1)])
            continue
        runs = by_key.get(summary.key, [])
        rows.append([name, *dims, *_measured_cells(summary, runs, run, open_model, mark)])
    return ["strategy", *(label for _, label in varying), *headers], rows


def _name_cell(summary: VariantSummary, mark: Mark) -> str:
    name = summary.strategy
    if not summary.valid:
        name += " " + mark("INVALID", "bad")
    if summary.status == "interrupted":
        name += " " + mark("(interrupted)", "bad")
    return name


def _measured_cells(
    summary: VariantSummary,
    runs: list[StrategyResult],
    run: RunResult,
    open_model: bool,
    mark: Mark,
) -> list[str]:
    """A measured variant's cells, in the order of :data:`RUN_HEADERS` (with the ceiling and
    the uncorrected p99 when the run has them)."""
    errors = summary.errors
    gen_text = pct(summary.cpu_generator_percent)
    if summary.generator_saturated:
        gen_text = mark(f"{gen_text}!", "bad")
    rps, p99 = summary.throughput_rps, summary.latency_ms.get("p99")
    return [
        _median(rps, ",.0f") + _cv(rps, mark),
        *([_ceiling(summary, run.calibration)] if run.calibration else []),
        _median(summary.latency_ms.get("p50")),
        _median(p99) + (_cv(p99, mark) if p99 else ""),
        *([_median(summary.latency_uncorrected_ms.get("p99"))] if open_model else []),
        mark(f"{errors:,}", "bad") if errors else "0",
        _peak_and_predicted(summary, mark),
        num(summary.connections_mean),
        _sessions(summary),
        _integrity(summary, runs, mark),
        pct(summary.cpu_app_percent),
        pct(summary.cpu_postgres_percent),
        gen_text,
    ]


def results_table(run: RunResult) -> Table:
    """The main table: one row per variant (medians over repeats, ±CV when repeated)."""
    headers, rows = _run_rows(run, rich_mark)
    table = Table(title=_title(run, rich_mark), title_justify="left")
    table.add_column(headers[0], style="bold")
    for header in headers[1:]:
        table.add_column(header, justify="right")
    previous = None
    for summary, row in zip(run.summary, rows, strict=True):
        if previous is not None and previous != summary.strategy:
            table.add_section()
        previous = summary.strategy
        table.add_row(*row)
    return table


def pgbouncer_table(run: RunResult) -> Table | None:
    """PgBouncer's side of the variants that went through it (medians over repeats)."""
    rows = [s for s in run.summary if _bounced(s) and s.status in MEASURED]
    if not rows:
        return None
    table = Table(title="PgBouncer: SHOW POOLS every 100 ms, SHOW STATS", title_justify="left")
    table.add_column("variant", style="bold", no_wrap=True)
    columns = {
        "cl_waiting peak": ("pgbouncer_cl_waiting_peak", ".0f"),
        "maxwait ms": ("pgbouncer_maxwait_ms_peak", ".1f"),
        "wait ms/xact": ("pgbouncer_wait_ms_per_transaction", ".2f"),
        "sv_active peak": ("pgbouncer_sv_active_peak", ".0f"),
        "sv_idle peak": ("pgbouncer_sv_idle_peak", ".0f"),
    }
    for header in (*columns, "pgb CPU"):
        table.add_column(header, justify="right")
    for summary in rows:
        table.add_row(
            summary.key,
            *(num(getattr(summary, name), fmt) for name, fmt in columns.values()),
            pct(summary.cpu_pgbouncer_percent),
        )
    return table


def _dimension(variant: VariantRecord, key: str) -> Any:
    return getattr(variant, key)


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


def _typical_run(summary: VariantSummary, runs: list[StrategyResult]) -> StrategyResult | None:
    """The repeat whose throughput is closest to the median: its seconds are the ones drawn."""
    measured = [r for r in runs if r.timeseries and r.timeseries.ok]
    median = summary.throughput_rps.median
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
        chosen = _typical_run(summary, by_key.get(summary.key, []))
        if chosen is None:
            continue
        series = chosen.timeseries
        assert series is not None  # _typical_run chose a run with series
        cells = []
        for values, colour in (
            (series.ok, "green"),
            (series.p99_ms, "cyan"),
            (series.connections, "magenta"),
        ):
            top = max(values, default=0.0)
            cells.append(f"[{colour}]{sparkline(values)}[/{colour}] [dim]max {top:,.0f}[/dim]")
        errors = series.errors
        cells.append(
            f"[red]{sparkline(errors)}[/red] [dim]{sum(errors):,.0f}[/dim]" if any(errors) else "-"
        )
        label = summary.key if len(run.summary) > 1 else summary.strategy
        table.add_row(label, *cells)
    return table


def render_calibration(console: Console, ceilings: Calibration) -> None:
    """The ceilings of a session, as measured by calibrate."""
    table = Table(
        title=f"ceilings · c={ceilings.concurrency} · {ceilings.duration_s} s each",
        title_justify="left",
    )
    table.add_column("what")
    table.add_column("per second", justify="right")
    table.add_column("reads as", style="dim")
    rows = [
        ("connbench generator, GET /health (no database)", ceilings.generator_rps,
         f"the most any strategy can show here (generator at "
         f"{ceilings.generator_cpu_percent or 0:.0f}% of a core)"),
        ("wrk, GET /health", ceilings.wrk_rps, "the same, with wrk (if installed)"),
        ("pgbench, persistent connections", ceilings.pgbench_tps,
         "the database's ceiling for the insert: pooled strategies' yardstick"),
        ("pgbench -C, a connection per transaction", ceilings.pgbench_connect_tps,
         "the ceiling with a new session each time: per-request strategies' yardstick"),
    ]  # fmt: skip
    for what, value, reads in rows:
        table.add_row(what, "-" if value is None else f"{value:,.0f}", reads)
    console.print(table)


def _ceiling(summary: VariantSummary, calibration: Calibration) -> str:
    rps = summary.throughput_rps.median
    strategy = STRATEGIES.get(summary.strategy)
    # Serves requests from held connections (pool-unused opens a pool yet connects each time).
    pooled = strategy.pooled if strategy else summary.variant.pool_max is not None
    ceiling = calibration.pgbench_tps if pooled else calibration.pgbench_connect_tps
    if not rps or not ceiling:
        return "-"
    return f"{rps / ceiling:.0%} of {'pgbench' if pooled else 'pgbench -C'}"


def _recovery(fault: FaultOutcome) -> str:
    if fault.error:
        return "[red]not injected[/red]"
    after = fault.recovered_after_s
    if fault.recovered is None:
        return "-"
    if after is None:
        return "[bold red]not recovered[/bold red]"
    return "at once" if after == 0 else f"after {after:.1f} s"


def _what_it_did(fault: FaultOutcome) -> str:
    if fault.error:
        return f"[red]{fault.error}[/red]"
    if fault.injected_at_s is None:
        return "never fired"
    if fault.kind == "terminate":
        return f"{fault.terminated or 0} sessions cut"
    return f"down {fault.took_s:.2f} s" if fault.took_s is not None else "-"


def _writes(count: int | None, style: str) -> str:
    if count is None:
        return "-"
    return f"[{style}]{count:,}[/{style}]" if count else "0"


def fault_table(run: RunResult) -> Table | None:
    """One row per run with a fault: what it did, errors after it, recovery, integrity."""
    faulted = [(r, r.fault) for r in run.results if r.fault]
    if not faulted:
        return None
    fault = faulted[0][1]
    title = f"fault: {fault.kind} at {fault.at_s:g} s of the measured window"
    table = Table(title=title, title_justify="left")
    table.add_column("strategy", style="bold")
    for header in ("fault", "req/s before", "recovered", "errors after", "lost writes",
                   "unacked writes"):  # fmt: skip
        table.add_column(header, justify="right")
    table.add_column("errors after the fault, by kind")
    # The strategy names the row, unless a sweep runs it with several settings.
    labelled = len({r.strategy for r, _ in faulted}) < len({r.key for r, _ in faulted})
    repeats = max((s.runs for s in run.summary), default=1)
    for result, out in faulted:
        name = result.key if labelled else result.strategy
        if repeats > 1:
            name += f" #{result.repeat + 1}"
        baseline = out.baseline_rps
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in out.errors_by_kind.items())
        errors = out.errors
        integrity = result.integrity
        table.add_row(
            name,
            _what_it_did(out),
            "-" if baseline is None else f"{baseline:,.0f}",
            _recovery(out),
            f"[red]{errors:,}[/red]" if errors else "0",
            _writes(integrity.lost_writes if integrity else None, "bold red"),
            _writes(integrity.unacknowledged_writes if integrity else None, "yellow"),
            kinds or "-",
        )
    return table


# The stacked bar's segments: (breakdown part, column header, colour), in stacking order.
BREAKDOWN_SEGMENTS = (
    ("connect_ms", "connect", "magenta"),
    ("pool_wait_ms", "pool wait", "yellow"),
    ("query_ms", "query", "cyan"),
    ("rest_of_app_ms", "rest of app", "green"),
    ("outside_app_ms", "outside app", "bright_black"),
)
BAR_WIDTH = 32


def _bar(parts: dict[str, float | None], scale: float) -> str:
    """A stacked bar, ``scale`` ms per character; a part too small for a character is skipped."""
    out, filled, total = [], 0, 0.0
    for key, _, colour in BREAKDOWN_SEGMENTS:
        total += max(0.0, parts.get(key) or 0.0)
        # Round the running total, not each part, so the bar's length stays true to the sum.
        width = round(total / scale) - filled
        if width > 0:
            out.append(f"[{colour}]{'█' * width}[/{colour}]")
            filled += width
    return "".join(out)


def breakdown_table(run: RunResult) -> Table | None:
    """Where a request's time goes, per variant: mean ms per part, and a stacked bar."""
    rows = [s for s in run.summary if s.breakdown]
    if not rows:
        return None
    table = Table(
        title="where the time goes · mean ms per request over the measured window",
        title_justify="left",
    )
    table.add_column("strategy", style="bold")
    table.add_column("latency", justify="right")
    for _, header, colour in BREAKDOWN_SEGMENTS:
        table.add_column(f"[{colour}]{header}[/{colour}]", justify="right")
    table.add_column("after response", justify="right")
    table.add_column("")
    longest = max(
        sum(max(0.0, s.breakdown.get(key) or 0.0) for key, _, _ in BREAKDOWN_SEGMENTS) for s in rows
    )
    scale = longest / BAR_WIDTH if longest > 0 else 1.0
    labelled = len({s.strategy for s in rows}) < len(rows)
    for summary in rows:
        parts = summary.breakdown
        table.add_row(
            summary.key if labelled else summary.strategy,
            num(parts.get("latency_mean_ms")),
            *(_part(parts.get(key)) for key, _, _ in BREAKDOWN_SEGMENTS),
            _part(parts.get("after_response_ms")),
            _bar(parts, scale),
        )
    return table


def _part(value: float | None) -> str:
    if value is None:
        return "-"
    return "[dim]0[/dim]" if abs(value) < 0.005 else f"{value:.2f}"


FAULT_NOTE = (
    "recovered: from the fault to the first 1 s span with >= 90 % of the throughput before it "
    "(the median of its whole seconds); errors after: from the fault to the end of the drain; "
    "lost writes: 2xx without a row; unacked writes: rows without a 2xx (over the whole run)."
)
BREAKDOWN_NOTE = (
    "Timed inside the app (wall time): connect = AsyncConnection.connect; pool wait = "
    "AsyncConnectionPool.getconn (queue, check, retries); query = execute, commit, rollback; "
    "outside app = the client's mean latency minus the app's time until its response (HTTP, "
    "uvicorn, waiting for the app's event loop). After response: work done once the response "
    "was sent (a yield dependency's commit and close), which the client does not wait for."
)


def render_run(console: Console, run: RunResult, charts: bool = True) -> None:
    """The tables (results, PgBouncer's side, faults, where the time goes, ceilings, the
    per-second charts), then the context a reader needs to trust them, then warnings."""
    console.print(results_table(run))
    bouncer = pgbouncer_table(run)
    if bouncer is not None:
        console.print(bouncer)
    for table, note in ((fault_table(run), FAULT_NOTE), (breakdown_table(run), BREAKDOWN_NOTE)):
        if table is not None:
            console.print(table)
            console.print(f"[dim]{note}[/dim]", highlight=False)
    if run.calibration:
        render_calibration(console, run.calibration)
    if charts and any(r.timeseries and r.timeseries.ok for r in run.results):
        console.print(timeline_table(run))
    console.print(f"[dim]{escape(_context(run))}[/dim]", highlight=False)
    console.print(
        "[dim]CPU columns: % of one core during the measured window; the machine has "
        f"{run.environment.cpu_count} in all, shared by the app, PostgreSQL and the "
        "generator.[/dim]",
        highlight=False,
    )
    console.print(
        "[dim]conns peak / pred.: the app's server sessions, most seen at once against the most "
        "its pattern can hold (workers × pool, concurrency, PgBouncer's pool).[/dim]",
        highlight=False,
    )
    if any(_bounced(s) for s in run.summary):
        console.print(
            "[dim]via pgb-txn / pgb-session: through PgBouncer in transaction / session pool "
            "mode. cl_waiting: clients waiting for a server connection; maxwait: the longest "
            "such wait seen; wait ms/xact: total_wait_time per transaction over the window.[/dim]",
            highlight=False,
        )
    say = sayer(console)
    for summary in run.summary:
        label = summary.key if len(run.summary) > 1 else summary.strategy
        if summary.status == "unavailable":
            say("[yellow]unavailable:[/yellow] ", f"{label}: {summary.failure}")
    for warning in _warnings(run):
        say(WARNING, warning)
    if run.limits:
        failed = len(limits_failed(run))
        head = f"[bold red]{failed} failed[/bold red]" if failed else "[green]all passed[/green]"
        console.print(f"limits ({len(run.limits)} checks): {head}", highlight=False)
        for crossed, line in _limit_lines(run):
            say("  [bold red]✗[/bold red] " if crossed else "  [green]✓[/green] ", line)


def _context(run: RunResult) -> str:
    """What the numbers were measured with, in one line (the table's and Markdown's)."""
    scenario, env = run.scenario, run.environment
    pool_min, pool_max = scenario.pool_min_effective, scenario.pool_max_effective
    topology = scenario.topology
    via = f"via {shown(topology)}"
    if topology != ["direct"]:
        via += f" (PgBouncer pool {scenario.pgbouncer_pool_size})"
    return (
        f"concurrency {shown(scenario.concurrency)} · "
        f"{scenario.duration_s} s measured after {scenario.warmup_s} s warm-up · "
        f"pool {pool_min}..{shown(pool_max)} · workers {shown(scenario.workers)} · "
        f"{via} · {_server(env.postgres)} · {env.cpu_count} CPUs · "
        f"load generator: {scenario.engine}"
    )


def _server(pg: PostgresInfo | None) -> str:
    if pg is None:
        return "PostgreSQL ? (not started)"
    connections = pg.settings.max_connections
    return (
        f"PostgreSQL {pg.version} ({pg.backend}, max_connections "
        f"{'?' if connections is None else connections})"
    )


def _warnings(run: RunResult) -> list[str]:
    out: list[str] = []
    for summary in run.summary:
        label = summary.key if len(run.summary) > 1 else summary.strategy
        out.extend(f"{label}: {warning}" for warning in summary.warnings)
    return out


def _limit_lines(run: RunResult) -> list[tuple[bool, str]]:
    """(failed, text) per limit verdict, failures first."""
    ordered = sorted(run.limits, key=lambda v: not v.failed)
    return [(v.failed, f"{v.limit} · {v.variant}: {v.reason}") for v in ordered]


def limits_failed(run: RunResult) -> list[LimitRecord]:
    return [v for v in run.limits if v.failed]


def run_markdown(run: RunResult) -> str:
    headers, rows = _run_rows(run, markdown_mark)
    out = [f"### {_title(run, markdown_mark)}", "", md_table(headers, rows), "", _context(run)]
    if run.limits:
        failed = len(limits_failed(run))
        verdict = f"❌ {failed} of {len(run.limits)} failed" if failed else "✅ all passed"
        out += ["", f"**Limits: {verdict}**", ""]
        out += [f"- {'❌' if failed else '✅'} {line}" for failed, line in _limit_lines(run)]
    warnings = _warnings(run)
    if warnings:
        out += ["", "**Warnings**", ""] + [f"- ⚠️ {w}" for w in warnings]
    return "\n".join(out) + "\n"


def run_csv(run: RunResult) -> str:
    """One row per variant: what it is, every registry metric's median (by its key, with its
    unit), the CV of throughput and p99, the counts, and the limits it failed."""
    rows = []
    for summary in run.summary:
        variant, latency = summary.variant, summary.latency_ms
        row: dict[str, Any] = {
            "variant": summary.key,
            "strategy": summary.strategy,
            **{k: getattr(variant, k) for k in ("concurrency", "workers", "pool_min", "pool_max")},
            "topology": variant.topology,
            "rate": variant.rate,
            "status": summary.status,
            "runs": summary.runs,
            "runs_measured": summary.runs_measured,
            **{metric.key: metric.recorded(summary) for metric in metrics.METRICS},
            "throughput_cv": summary.throughput_rps.cv,
            "p99_cv": latency["p99"].cv if "p99" in latency else None,
            "requests_total": summary.requests_total,
            "errors": summary.errors,
            "integrity_ok": summary.integrity_ok,
        }
        row["limits_failed"] = ";".join(
            v.limit for v in run.limits if v.failed and v.variant == summary.key
        )
        rows.append(row)
    return csv_text(rows)


def run_json(run: RunResult) -> str:
    """The result without its per-run detail (histograms, series): that stays in the file."""
    document = run.model_dump(mode="json", exclude={"results": True, "calibration": True})
    document["scenario"].pop("source_text", None)
    return json_text(document | {"limits_failed": bool(limits_failed(run))})


def format_run(run: RunResult, fmt: str) -> str:
    """A run as Markdown, CSV or JSON text (``table`` goes through :func:`render_run`)."""
    return {"markdown": run_markdown, "csv": run_csv, "json": run_json}[fmt](run)
