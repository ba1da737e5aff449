"""A run as the user sees it: rich tables (results, PgBouncer, timeline, faults, where the time
goes), Markdown (a GitHub step summary), CSV (one row per variant) or JSON.

It formats what ``analyse`` computed and adds nothing to the numbers. The table, the Markdown
and the HTML page share their cells (:mod:`run_cells`): each is built once, with a ``mark``
function that styles it.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from connbench.analyse import advice, findings, stats
from connbench.analyse.breakdown import BREAKDOWN_PARTS
from connbench.analyse.stats import MEASURED
from connbench.analyse.verdicts import limits_failed
from connbench.apps import STRATEGIES
from connbench.model import metrics
from connbench.model.result_types import (
    Calibration,
    FaultOutcome,
    VariantSummary,
)
from connbench.model.results import RunResult, StrategyResult
from connbench.present import sink, tracking
from connbench.present.common import (
    WARNING,
    csv_text,
    fit,
    json_text,
    markdown_mark,
    md_cell,
    md_table,
    name_column,
    num,
    pct,
    rich_mark,
    say_dropped,
    sayer,
)
from connbench.present.run_cells import (
    REQUEST_HEADERS,
    limit_lines,
    recovery,
    reference_levels,
    request_rows,
    row_label,
    run_context,
    run_rows,
    run_title,
    tail_percentile,
    typical_run,
)


def _bounced(summary: VariantSummary) -> bool:
    return summary.variant.topology != "direct"


# The main table's columns, the least needed first: what a narrow terminal drops (the CSV and
# the JSON keep them all).
RESULTS_DROP = (
    "gen CPU", "pg CPU", "conns mean", "app CPU", "p50 ms", "p99 uncorr.", "sessions opened",
    "rows = 2xx", "vs pgbench", "sent", "sessions/2xx",
)  # fmt: skip
# No cell wraps: a row is one line, and a column that does not fit is dropped (and named).
RESULTS_WRAP: tuple[str, ...] = ()


def results_table(run: RunResult) -> Table:
    """The main table: one row per variant (medians over repeats, ±CV when repeated)."""
    headers, rows = run_rows(run, rich_mark)
    table = Table(title=run_title(run, rich_mark), title_justify="left")
    name_column(table, headers[0], [row[0] for row in rows], style="bold")
    for header in headers[1:]:
        table.add_column(header, justify="left" if header == "sent" else "right")
    # A rule between strategies only where one has several rows (a sweep): it groups them.
    grouped = len({s.strategy for s in run.summary}) < len(run.summary)
    previous = None
    sent = headers.index("sent") if "sent" in headers else None
    for summary, row in zip(run.summary, rows, strict=True):
        if grouped and previous is not None and previous != summary.strategy:
            table.add_section()
        previous = summary.strategy
        if sent is not None:
            row[sent] = escape(row[sent])  # the user's path: text, not markup
        table.add_row(*row)
    return table


def pgbouncer_table(run: RunResult) -> Table | None:
    """PgBouncer's side of the variants that went through it (medians over repeats)."""
    rows = [s for s in run.summary if _bounced(s) and s.status in MEASURED]
    if not rows:
        return None
    table = Table(title="PgBouncer: SHOW POOLS every 100 ms, SHOW STATS", title_justify="left")
    labels = [row_label(run, summary.variant) for summary in rows]
    name_column(table, "variant", labels, style="bold")
    columns = {
        "cl_waiting peak": ("pgbouncer_cl_waiting_peak", ".0f"),
        "maxwait ms": ("pgbouncer_maxwait_ms_peak", ".1f"),
        "wait ms/xact": ("pgbouncer_wait_ms_per_transaction", ".2f"),
        "sv_active peak": ("pgbouncer_sv_active_peak", ".0f"),
        "sv_idle peak": ("pgbouncer_sv_idle_peak", ".0f"),
    }
    for header in (*columns, "pgb CPU"):
        table.add_column(header, justify="right")
    for summary, label in zip(rows, labels, strict=True):
        table.add_row(
            label,
            *(num(getattr(summary, name), fmt) for name, fmt in columns.values()),
            pct(summary.cpu_pgbouncer_percent),
        )
    return table


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], top: float | None = None, width: int | None = None) -> str:
    """One character per value, scaled from 0 to ``top`` (default: the largest value); at
    most ``width`` characters, each then the largest of the values it stands for (a spike
    stays visible)."""
    if width is not None and len(values) > width > 0:
        step = len(values) / width
        values = [
            max(values[int(i * step) : max(int(i * step) + 1, int((i + 1) * step))])
            for i in range(width)
        ]
    top = max(values, default=0.0) if top is None else top
    if not values:
        return ""
    if top <= 0:
        return SPARKS[0] * len(values)
    last = len(SPARKS) - 1
    return "".join(SPARKS[min(last, round(last * max(0.0, v) / top))] for v in values)


FINDING_MARKS = {"info": "  • ", "warn": "  [yellow]•[/yellow] ", "bad": "  [red]•[/red] "}


def requests_table(run: RunResult) -> Table | None:
    """Each kind of request of a mix: its share, req/s, latency and errors (None: no mix)."""
    rows = request_rows(run, rich_mark)
    if not rows:
        return None
    table = Table(title="by kind of request", title_justify="left")
    name_column(table, "strategy", [row[0] for row in rows], style="bold")
    for header in REQUEST_HEADERS:
        table.add_column(header, justify="left" if header == "request" else "right")
    for row in rows:
        table.add_row(row[0], escape(row[1]), *row[2:])  # a request's name is the user's
    return table


TIMELINE = ("req/s", "p99 ms", "server conns", "errors")


def timeline_table(run: RunResult, width: int | None = None) -> Table:
    """Per-second charts: throughput, p99, server connections, errors, one row per variant.

    Each chart is scaled to its own row's maximum, printed beside it, so shapes (a pool
    warming up, a connection storm, a stall) read at a glance. Within ``width`` columns a
    chart gets a share of what the names leave, a character then covering several seconds.
    """
    table = Table(title="per second of the measured window", title_justify="left", box=None)
    by_key: dict[str, list[StrategyResult]] = {}
    for result in run.results:
        by_key.setdefault(result.key, []).append(result)
    drawn = []
    for summary in run.summary:
        chosen = typical_run(summary, by_key.get(summary.key, []))
        if chosen is not None and chosen.timeseries is not None:
            drawn.append((row_label(run, summary.variant), chosen.timeseries))
    labels = [label for label, _ in drawn]
    name_column(table, "variant", labels, style="bold")
    for header in TIMELINE:
        table.add_column(header)
    chart_width = None
    if width is not None:
        longest = max((len(label) for label in labels), default=0)
        chart_width = max(4, (width - longest - 2 * len(TIMELINE) - 1) // len(TIMELINE))
    for label, series in drawn:
        cells = []
        for values, colour in (
            (series.ok, "green"),
            (series.p99_ms, "cyan"),
            (series.connections, "magenta"),
        ):
            top = max(values, default=0.0)
            line = sparkline(values, width=chart_width)
            cells.append(f"[{colour}]{line}[/{colour}] [dim]max {top:,.0f}[/dim]")
        errors = series.errors
        line = sparkline(errors, width=chart_width)
        cells.append(f"[red]{line}[/red] [dim]{sum(errors):,.0f}[/dim]" if any(errors) else "-")
        table.add_row(label, *cells)
    return table


CALIBRATION_NOTE = (
    "References, not ceilings: pgbench runs the same insert over the apps' own path (TCP, "
    "SCRAM), at the same concurrency, without HTTP or a Python driver; -C opens a new session "
    "per transaction with a thread per client, so its handshakes overlap as the async apps' "
    "do. A strategy can still read above 100 % of them (a different client, and runs vary)."
)


def render_calibration(console: Console, references: Calibration) -> None:
    """The references of a session, as measured by calibrate."""
    table = Table(title=f"references · {references.duration_s} s each", title_justify="left")
    rows = [
        (f"connbench generator, GET /health (no database), c={references.concurrency}",
         references.generator_rps,
         f"the most any strategy can show here (generator at "
         f"{references.generator_cpu_percent or 0:.0f}% of a core)"),
        ("wrk, GET /health", references.wrk_rps, "the same, with wrk (if installed)"),
    ]  # fmt: skip
    for level, (tps, connect_tps) in reference_levels(references).items():
        rows += [
            (f"pgbench, persistent connections, c={level}", tps,
             "the insert without HTTP: pooled strategies' reference"),
            (f"pgbench -C, a connection per transaction, c={level}", connect_tps,
             "a new session per insert: per-request strategies' reference"),
        ]  # fmt: skip
    table.add_column("what")
    table.add_column("per second", justify="right", no_wrap=True)
    table.add_column("reads as", style="dim")
    for what, value, reads in rows:
        table.add_row(what, "-" if value is None else f"{value:,.0f}", reads)
    console.print(table)
    console.print(f"[dim]{CALIBRATION_NOTE}[/dim]", highlight=False)


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
    repeats = max((s.runs for s in run.summary), default=1)
    names = [
        row_label(run, r.variant) + (f" #{r.repeat + 1}" if repeats > 1 else "") for r, _ in faulted
    ]
    name_column(table, "strategy", names, style="bold")
    for header in ("fault", "req/s before", "recovered", "errors after", "lost writes",
                   "unacked writes"):  # fmt: skip
        table.add_column(header, justify="right")
    table.add_column("errors after the fault, by kind")
    for (result, out), name in zip(faulted, names, strict=True):
        baseline = out.baseline_rps
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in out.errors_by_kind.items())
        errors = out.errors
        integrity = result.integrity
        table.add_row(
            name,
            _what_it_did(out),
            "-" if baseline is None else f"{baseline:,.0f}",
            recovery(out),
            f"[red]{errors:,}[/red]" if errors else "0",
            _writes(integrity.lost_writes if integrity else None, "bold red"),
            _writes(integrity.unacknowledged_writes if integrity else None, "yellow"),
            kinds or "-",
        )
    return table


BAR_WIDTH = 32  # at most; a narrower terminal gets a shorter bar, then none


def _bar(parts: dict[str, float | None], scale: float) -> str:
    """A stacked bar, ``scale`` ms per character; a part too small for a character is skipped."""
    out, filled, total = [], 0, 0.0
    for part in BREAKDOWN_PARTS:
        colour = part.terminal_colour
        total += max(0.0, parts.get(part.key) or 0.0)
        # Round the running total, not each part, so the bar's length stays true to the sum.
        width = round(total / scale) - filled
        if width > 0:
            out.append(f"[{colour}]{'█' * width}[/{colour}]")
            filled += width
    return "".join(out)


def breakdown_table(run: RunResult, bar_width: int = BAR_WIDTH) -> Table | None:
    """Where a request's time goes, per variant: mean ms per part, and a stacked bar."""
    rows = [s for s in run.summary if s.breakdown]
    if not rows:
        return None
    table = Table(
        title="where the time goes · mean ms per request over the measured window",
        title_justify="left",
    )
    labels = [row_label(run, summary.variant) for summary in rows]
    name_column(table, "strategy", labels, style="bold")
    table.add_column("latency", justify="right")
    for part in BREAKDOWN_PARTS:
        colour = part.terminal_colour
        table.add_column(f"[{colour}]{part.label}[/{colour}]", justify="right")
    table.add_column("after response", justify="right")
    if bar_width > 0:
        table.add_column("", no_wrap=True)
    longest = max(
        sum(max(0.0, s.breakdown.get(part.key) or 0.0) for part in BREAKDOWN_PARTS) for s in rows
    )
    scale = longest / bar_width if longest > 0 and bar_width > 0 else 1.0
    for summary, label in zip(rows, labels, strict=True):
        parts = summary.breakdown
        table.add_row(
            label,
            num(parts.get("latency_mean_ms")),
            *(_part(parts.get(part.key)) for part in BREAKDOWN_PARTS),
            _part(parts.get("after_response_ms")),
            *([_bar(parts, scale)] if bar_width > 0 else []),
        )
    return table


def not_broken_down(run: RunResult) -> list[str]:
    """Why measured variants have no breakdown: one phrase per reason, naming them."""
    missing = [s for s in run.summary if s.status in MEASURED and not s.breakdown]
    reasons: dict[str, list[str]] = {}
    for summary in missing:
        strategy = STRATEGIES.get(summary.strategy)
        if strategy is not None and strategy.sync:
            why = "sync strategies: their psycopg calls are not timed"
        elif summary.variant.workers > 1:
            why = "more than one worker: each keeps its own totals"
        else:
            why = "the app's totals could not be read"
        reasons.setdefault(why, []).append(row_label(run, summary.variant))
    return [f"{', '.join(dict.fromkeys(names))} ({why})" for why, names in reasons.items()]


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
    "uvicorn, waiting for the app's event loop), at least 0: the app's totals are read at the "
    "window's edges behind the requests in flight, a skew that can exceed a small difference. "
    "After response: work done once the response was sent (a yield dependency's commit and "
    "close), which the client does not wait for."
)


def render_run(
    console: Console, run: RunResult, charts: bool = True, explain: bool = False
) -> None:
    """The findings in plain words, then the tables (results, by kind of request, PgBouncer's
    side, faults, where the time goes, references, the per-second charts), then the context a
    reader needs to trust them, then warnings, one line per kind. What each column means is
    said only when asked (``explain``): the same paragraphs on every run are read once and
    then skipped, and hide the warnings below."""
    found = findings.findings(run)
    if found:
        console.print("[bold]Findings[/bold]", highlight=False)
        say = sayer(console)
        for finding in found:
            say(FINDING_MARKS[finding.severity], finding.text)
    _fitted(console, results_table(run), "results", RESULTS_DROP, RESULTS_WRAP)
    note = tail_note(run)
    if note:
        console.print(f"[dim]{escape(note)}[/dim]", highlight=False)
    kinds = requests_table(run)
    if kinds is not None:
        _fitted(console, kinds, "by kind of request", ("p50 ms", "weight"), wrap=("request",))
    bouncer = pgbouncer_table(run)
    if bouncer is not None:
        _fitted(console, bouncer, "PgBouncer", ("pgb CPU", "sv_idle peak", "wait ms/xact"))
    faults = fault_table(run)
    if faults is not None:
        _fitted(
            console, faults, "fault", ("req/s before", "unacked writes"),
            wrap=("fault", "errors after the fault, by kind"),
        )  # fmt: skip
        if explain:
            console.print(f"[dim]{FAULT_NOTE}[/dim]", highlight=False)
    # The bar gets what the numbers leave of the width, up to BAR_WIDTH; under 8, none.
    bar_width = min(BAR_WIDTH, console.width - 88)
    breakdown = breakdown_table(run, bar_width if bar_width >= 8 else 0)
    if breakdown is not None:
        drop = ("", "after response", "rest of app", "pool wait", "latency", "outside app")
        _fitted(console, breakdown, "where the time goes", drop)
        if explain:
            console.print(f"[dim]{BREAKDOWN_NOTE}[/dim]", highlight=False)
    left_out = not_broken_down(run)
    if explain and breakdown is not None and left_out:
        console.print(f"[dim]Not broken down: {'; '.join(left_out)}.[/dim]", highlight=False)
    if run.calibration:
        render_calibration(console, run.calibration)
    if charts and any(r.timeseries and r.timeseries.ok for r in run.results):
        _fitted(console, timeline_table(run, console.width), "charts", ("errors",))
    console.print(f"[dim]{escape(run_context(run))}[/dim]", highlight=False)
    if explain:
        _explain_columns(console, run)
    say = sayer(console)
    for summary in run.summary:
        label = summary.key if len(run.summary) > 1 else summary.strategy
        if summary.status == "unavailable":
            say("[yellow]unavailable:[/yellow] ", f"{label}: {summary.failure}")
        elif summary.status == "failed":
            cause = (summary.failure or "").strip().splitlines()[:1]
            say("[red]failed:[/red] ", f"{label}: {''.join(cause)}")
    for warning in warning_lines(run):
        say(WARNING, warning)
    if run.limits:
        failed = len(limits_failed(run))
        head = f"[bold red]{failed} failed[/bold red]" if failed else "[green]all passed[/green]"
        checks = f"{len(run.limits)} check{'s' if len(run.limits) != 1 else ''}"
        console.print(f"limits ({checks}): {head}", highlight=False)
        for crossed, line in limit_lines(run):
            say("  [bold red]✗[/bold red] " if crossed else "  [green]✓[/green] ", line)


def _explain_columns(console: Console, run: RunResult) -> None:
    console.print(
        "[dim]CPU columns: % of one core during the measured window; the machine has "
        f"{run.environment.cpu_count} in all, shared by the app, PostgreSQL and the "
        "generator.[/dim]",
        highlight=False,
    )
    console.print(
        "[dim]conns peak / pred.: the app's server sessions, most seen at once against the most "
        "its pattern can hold (workers × pool, concurrency, PgBouncer's pool); sessions/2xx: "
        "server sessions opened per successful response (1.00: a session per request).[/dim]",
        highlight=False,
    )
    if any(_bounced(s) for s in run.summary):
        console.print(
            "[dim]via pgb-txn / pgb-session: through PgBouncer in transaction / session pool "
            "mode. cl_waiting: clients waiting for a server connection; maxwait: the longest "
            "such wait seen; wait ms/xact: total_wait_time per transaction over the window.[/dim]",
            highlight=False,
        )


def _fitted(
    console: Console, table: Table, what: str, drop: tuple[str, ...], wrap: tuple[str, ...] = ()
) -> None:
    """Print ``table`` within the console's width: the columns in ``drop`` go first (said)."""
    dropped = fit(console, table, drop, wrap)
    console.print(table)
    say_dropped(console, what, dropped)


def _labelled_warnings(run: RunResult) -> list[tuple[str, str]]:
    """(variant label, warning) for every warning the run's summaries carry."""
    return [
        (summary.key if len(run.summary) > 1 else summary.strategy, warning)
        for summary in run.summary
        for warning in summary.warnings
    ]


def warning_lines(run: RunResult, every_figure: bool = False) -> list[str]:
    """The run's warnings, one line per kind (:func:`connbench.analyse.advice.grouped`), about
    the figures the tables show (``every_figure``: the CSV's and the JSON's, every one)."""
    shown = stats.PERCENTILES if every_figure else ("p50", tail_percentile(run))
    return advice.grouped(_labelled_warnings(run), shown=shown)


def tail_note(run: RunResult) -> str | None:
    """Why the tables show p90 rather than p99, and how to see p99; None when they show p99."""
    if tail_percentile(run) == "p99":
        return None
    pairs = [(label, w) for label, w in _labelled_warnings(run) if advice.few_requests(w) == "p99"]
    return "p90 shown, not p99: " + advice.grouped(pairs, shown=("p99",))[0]


def run_markdown(run: RunResult) -> str:
    headers, rows = run_rows(run, markdown_mark)
    table = md_table(headers, rows, left=headers.index("sent") + 1 if "sent" in headers else 1)
    out = [f"### {run_title(run, markdown_mark)}", ""]
    found = findings.findings(run)
    if found:
        out += ["**Findings**", "", *(f"- {md_cell(f.text)}" for f in found), ""]
    out += [table, "", run_context(run)]
    note = tail_note(run)
    if note:
        out += ["", note]
    kinds = request_rows(run, markdown_mark)
    if kinds:
        table = md_table(["strategy", *REQUEST_HEADERS], kinds, left=2)
        out += ["", "**By kind of request**", "", table]
    if run.limits:
        failed = len(limits_failed(run))
        verdict = f"❌ {failed} of {len(run.limits)} failed" if failed else "✅ all passed"
        out += ["", f"**Limits: {verdict}**", ""]
        out += [f"- {'❌' if failed else '✅'} {line}" for failed, line in limit_lines(run)]
    warnings = warning_lines(run)
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
            "sent": variant.sent,
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
    """A run as Markdown, CSV or JSON text, or for a tracking tool (``table`` goes through
    :func:`render_run`)."""
    run = sink.safe(run, markdown=fmt == "markdown")
    if fmt in tracking.FORMATS:
        return tracking.format_run(run, fmt)
    return {"markdown": run_markdown, "csv": run_csv, "json": run_json}[fmt](run)
