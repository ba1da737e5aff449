"""What a run's tables say, cell by cell, for every sink: the terminal, Markdown and the HTML
page build their rows here, each with a ``mark`` function that styles a cell its way.

The rows' names (:func:`row_label`), the columns of the settings that vary, the context line
(:func:`run_context`) and the limits' lines are here too, so that every view says the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connbench.analyse import advice, stats
from connbench.analyse.compare import shown
from connbench.analyse.stats import MEASURED
from connbench.apps import STRATEGIES
from connbench.model.choices import TOPOLOGY_LABELS
from connbench.model.result_types import (
    Calibration,
    FaultOutcome,
    PostgresInfo,
    Spread,
    VariantRecord,
    VariantSummary,
)
from connbench.model.results import RunResult, StrategyResult
from connbench.model.scenario import Variant
from connbench.present.common import (
    Mark,
    num,
    pct,
    rich_mark,
)


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
        if integrity.write_responses is not None:  # a mix: the 2xx of the kinds that write
            ok = integrity.write_responses
        if integrity.ok and rows is not None:
            return mark(f"{rows:,} = {ok:,}", "good")
        return mark(f"{rows} rows ≠ {ok} 2xx", "bad")
    if summary.integrity_ok:
        return mark(f"equal ×{len(checked)}", "good")
    bad = sum(1 for integrity in checked if not integrity.ok)
    return mark(f"≠ in {bad} of {len(checked)}", "bad")


def _sessions(summary: VariantSummary) -> str:
    opened = summary.sessions_opened
    return "-" if opened is None else f"{opened:,.0f}"


def _sessions_per_2xx(summary: VariantSummary) -> str:
    return num(summary.sessions_per_ok_response, ".2f")


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
    text = f"{num(peak, '.0f')}/{predicted.connections}"
    if peak is not None and peak > predicted.connections:
        return mark(text, "bad")
    if predicted.fits is False:
        return mark(text, "warn")
    return text


def _cell(variant: VariantRecord, key: str) -> str:
    value = _dimension(variant, key)
    if value is None:
        return "-"
    return TOPOLOGY_LABELS.get(value, value) if key == "topology" else str(value)


# The variant dimension (:data:`connbench.model.scenario.DIMENSIONS`) of each of DIMENSIONS.
LABELLED = {"pool_max": "pool"}


def shown_dimensions(variants: Iterable[Mapping[str, Any]], rate: bool = True) -> list[str]:
    """The fields of :data:`DIMENSIONS` that tell a run's variants apart (more than one value
    among those that have it), and with ``rate`` an open-model run's rate however many values
    it takes: what a label or a column shows."""
    variants = list(variants)
    out = []
    for key, _ in DIMENSIONS:
        # str: a hand-written result's value may be a list; a variant without a topology went
        # direct (it was recorded before topologies)
        values = {
            str(v.get(key) or "direct") if key == "topology" else str(v[key])
            for v in variants
            if key == "topology" or v.get(key) is not None
        }
        if len(values) > 1 or (rate and key == "rate" and values):
            out.append(key)
    return out


def variant_label(variant: Mapping[str, Any], dims: Iterable[str]) -> str:
    """:meth:`Variant.label` of a recorded variant, showing the ``dims`` fields of
    :data:`DIMENSIONS`; its key when the record is not whole (a hand-written result)."""
    found = Variant.from_dict(variant)
    if found is None:
        return str(variant.get("key") or variant.get("strategy"))
    return found.label(LABELLED.get(key, key) for key in dims)


def _varying(run: RunResult) -> list[tuple[str, str]]:
    """(dimension, column header) for each dimension that takes more than one value."""
    dims = shown_dimensions(s.variant.model_dump() for s in run.summary)
    return [(key, header) for key, header in DIMENSIONS if key in dims]


def row_label(run: RunResult, variant: VariantRecord) -> str:
    """``pool c=128 pool=4..10``: the strategy and the settings that vary in this run."""
    return variant_label(variant.model_dump(), [key for key, _ in _varying(run)])


def run_title(run: RunResult, mark: Mark) -> str:
    title = f"connbench · {run.scenario.name}"
    if run.interrupted:
        title += " · " + mark("INTERRUPTED", "bad")
    repeats = max((s.runs for s in run.summary), default=1)
    if repeats > 1:
        title += f" · median of {repeats} interleaved repeats"
    return title


RUN_HEADERS = (
    "req/s", "p50 ms", "p99 ms", "errors", "conns peak / pred.", "conns mean",
    "sessions opened", "sessions/2xx", "rows = 2xx", "app CPU", "pg CPU", "gen CPU",
)  # fmt: skip


def tail_percentile(run: RunResult) -> str:
    """The tail the run tables show: p99, or p90 where some variant served too few requests
    for its p99 to rest on more than a handful of them (the JSON keeps both)."""
    short = any(
        advice.few_requests(w) == "p99"
        for summary in run.summary
        if summary.status in MEASURED
        for w in summary.warnings
    )
    return "p90" if short else "p99"


def run_rows(run: RunResult, mark: Mark) -> tuple[list[str], list[list[str]]]:
    """Headers and one row of cells per variant (medians over repeats, ±CV when repeated)."""
    varying = _varying(run)
    tail = tail_percentile(run)
    headers = [f"{tail} ms" if h == "p99 ms" else h for h in RUN_HEADERS]
    open_model = any(s.variant.rate for s in run.summary)
    if open_model:
        headers.insert(3, "p99 uncorr.")
    if run.calibration:
        headers.insert(1, "vs pgbench")
    by_key: dict[str, list[StrategyResult]] = {}
    for result in run.results:
        by_key.setdefault(result.key, []).append(result)
    # What each row sent, in a column when the rows differ (else in the context line).
    sent_header = ["sent"] if _one_sent(run) is None else []

    def sent(summary: VariantSummary) -> list[str]:
        return [summary.variant.sent] if sent_header else []

    rows = []
    for summary in run.summary:
        dims = [_cell(summary.variant, key) for key, _ in varying]
        name = _name_cell(summary, mark)
        if summary.status in ("failed", "unavailable"):
            status = mark("failed", "bad") if summary.status == "failed" else mark("n/a", "warn")
            cells = [status, *["-"] * (len(headers) - 1)]
            if summary.errors:  # what a failed run saw (every request timed out, say)
                cells[headers.index("errors")] = mark(f"{summary.errors:,}", "bad")
            rows.append([name, *dims, *sent(summary), *cells])
            continue
        runs = by_key.get(summary.key, [])
        cells = _measured_cells(summary, runs, run, open_model, mark, tail)
        rows.append([name, *dims, *sent(summary), *cells])
    return ["strategy", *(label for _, label in varying), *sent_header, *headers], rows


def _one_sent(run: RunResult) -> str | None:
    """What every row sent, when they all sent the same (the context line says it, and the
    table has no column for it); None when they differ."""
    sent = {s.variant.sent for s in run.summary}
    return next(iter(sent)) if len(sent) == 1 else None


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
    tail: str = "p99",
) -> list[str]:
    """A measured variant's cells, in the order of :data:`RUN_HEADERS` (with the reference and
    the uncorrected p99 when the run has them)."""
    errors = summary.errors
    gen_text = pct(summary.cpu_generator_percent)
    if summary.generator_saturated:
        gen_text = mark(f"{gen_text}!", "bad")
    rps, p99 = summary.throughput_rps, summary.latency_ms.get(tail)
    return [
        _median(rps, ",.0f") + _cv(rps, mark),
        *([_reference(summary, run.calibration, mark)] if run.calibration else []),
        _median(summary.latency_ms.get("p50")),
        _median(p99) + (_cv(p99, mark) if p99 else ""),
        *([_median(summary.latency_uncorrected_ms.get("p99"))] if open_model else []),
        mark(f"{errors:,}", "bad") if errors else "0",
        _peak_and_predicted(summary, mark),
        num(summary.connections_mean),
        _sessions(summary),
        _sessions_per_2xx(summary),
        _integrity(summary, runs, mark),
        pct(summary.cpu_app_percent),
        pct(summary.cpu_postgres_percent),
        gen_text,
    ]


def _dimension(variant: VariantRecord, key: str) -> Any:
    return getattr(variant, key)


def typical_run(summary: VariantSummary, runs: list[StrategyResult]) -> StrategyResult | None:
    """The repeat whose throughput is closest to the median: its seconds are the ones drawn."""
    measured = [r for r in runs if r.timeseries and r.timeseries.ok]
    median = summary.throughput_rps.median
    if not measured or median is None:
        return measured[0] if measured else None
    return min(measured, key=lambda r: abs(r.throughput_rps - median))


REQUEST_HEADERS = ("request", "weight", "req/s", "p50 ms", "p99 ms", "errors")


def request_rows(run: RunResult, mark: Mark) -> list[list[str]]:
    """One row per kind of request of each variant that sent a mix (its typical repeat)."""
    rows = []
    for summary in run.summary:
        runs = [r for r in run.results if r.key == summary.key]
        typical = typical_run(summary, runs)
        if typical is None or not typical.by_request:
            continue
        total = sum(kind.weight for kind in typical.by_request)
        for kind in typical.by_request:
            latency = kind.latency_ms
            errors = ", ".join(f"{k} {v:,}" for k, v in kind.errors_by_kind.items())
            rows.append(
                [
                    row_label(run, summary.variant),
                    kind.name,
                    f"{kind.weight} ({100 * kind.weight / total:.0f}%)",
                    f"{kind.throughput_rps:,.0f}",
                    num(latency.p50) if latency else "-",
                    num(latency.p99) if latency else "-",
                    mark(errors, "bad") if errors else "0",
                ]
            )
    return rows


def reference_levels(references: Calibration) -> dict[str, tuple[float | None, float | None]]:
    """(pgbench, pgbench -C) by concurrency; a result from before by_concurrency has one."""
    if references.by_concurrency:
        return {
            level: (figures.pgbench_tps, figures.pgbench_connect_tps)
            for level, figures in references.by_concurrency.items()
        }
    return {str(references.concurrency): (references.pgbench_tps, references.pgbench_connect_tps)}


def _reference(summary: VariantSummary, calibration: Calibration, mark: Mark = rich_mark) -> str:
    """The variant's req/s as a fraction of pgbench's at its own concurrency (``-`` when
    pgbench was not measured at it: a reference from other conditions is no reference)."""
    rps = summary.throughput_rps.median
    strategy = STRATEGIES.get(summary.strategy)
    # Serves requests from held connections (pool-unused opens a pool yet connects each time).
    pooled = strategy.pooled if strategy else summary.variant.pool_max is not None
    tps, connect_tps = reference_levels(calibration).get(
        str(summary.variant.concurrency), (None, None)
    )
    reference = tps if pooled else connect_tps
    if not rps or not reference:
        return "-"
    text = f"{rps / reference:.0%} of {'pgbench' if pooled else 'pgbench -C'}"
    return mark(text, "warn") if rps > reference else text


def recovery(fault: FaultOutcome) -> str:
    if fault.error:
        return "[red]not injected[/red]"
    after = fault.recovered_after_s
    if fault.recovered is None:
        return "-"
    if after is None:
        return "[bold red]not recovered[/bold red]"
    return "at once" if after == 0 else f"after {after:.1f} s"


def run_context(run: RunResult) -> str:
    """What the numbers were measured with, in one line (the table's and Markdown's)."""
    scenario, env = run.scenario, run.environment
    topology = scenario.topology
    via = f"via {shown(topology)}"
    if topology != ["direct"]:
        via += f" (PgBouncer pool {scenario.pgbouncer_pool_size})"
    one = _one_sent(run)
    turns = f" in {scenario.slices} turns a side" if scenario.slices > 1 else ""
    return (
        f"concurrency {shown(scenario.concurrency)} · "
        f"{scenario.duration_s} s measured{turns} after {scenario.warmup_s} s warm-up · "
        f"{_pool(run)}workers {shown(scenario.workers)} · "
        f"{via} · {_server(env.postgres)} · {env.cpu_count} CPUs · "
        f"load generator: {scenario.engine}" + (f" · each request {one}" if one else "")
    )


def _server(pg: PostgresInfo | None) -> str:
    if pg is None:
        return "PostgreSQL ? (not started)"
    connections = pg.settings.max_connections
    return (
        f"PostgreSQL {pg.version} ({pg.backend}, max_connections "
        f"{'?' if connections is None else connections})"
    )


def _pool(run: RunResult) -> str:
    """``pool 4..10 · `` for the context line, when a strategy that opens a pool ran."""
    if not any(s.variant.pool_max is not None for s in run.summary):
        return ""
    scenario = run.scenario
    return f"pool {scenario.pool_min_effective}..{shown(scenario.pool_max_effective)} · "


def limit_lines(run: RunResult) -> list[tuple[bool, str]]:
    """(failed, text) per limit verdict, failures first."""
    ordered = sorted(run.limits, key=lambda v: not v.failed)
    return [(v.failed, f"{v.limit} · {v.variant}: {v.reason}") for v in ordered]
