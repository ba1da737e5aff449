"""From what was measured to the numbers of a result. Pure functions: no I/O, no printing."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from hdrh.histogram import HdrHistogram

from connbench.analyse.breakdown import BREAKDOWN_PARTS, breakdown
from connbench.measure.faults import Injected
from connbench.measure.load import Buckets, RawLoad
from connbench.measure.measurement import Measurement as Measurement  # read here
from connbench.measure.sampler import PoolSample, PoolSamples, Sample, Samples
from connbench.model import metrics
from connbench.model.metrics import Metric
from connbench.model.result_types import (
    Breakdown,
    CpuPercent,
    FaultOutcome,
    Generator,
    Integrity,
    Latency,
    LocustInfo,
    OpenModel,
    RequestKind,
    Requests,
    Server,
    Status,
    StrategyResult,
    Timeseries,
    VariantRecord,
    VariantSummary,
)

AnySample = TypeVar("AnySample", Sample, PoolSample)

GENERATOR_SATURATED_PERCENT = 90.0
# Below these counts a percentile rests on fewer than ~10 observations beyond it.
MIN_REQUESTS_FOR = {"p99": 1_000, "p999": 10_000}
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def latency_summary(histogram: HdrHistogram) -> dict[str, float]:
    """mean, p50, p90, p99, p999 and max in milliseconds (empty when nothing was recorded)."""
    if histogram.get_total_count() == 0:
        return {}
    out = {"mean": histogram.get_mean_value() / 1000.0}
    for name, pct in PERCENTILES.items():
        out[name] = histogram.get_value_at_percentile(pct) / 1000.0
    out["max"] = histogram.get_max_value() / 1000.0
    return {name: round(value, 3) for name, value in out.items()}


def encode_histogram(histogram: HdrHistogram) -> str | None:
    if histogram.get_total_count() == 0:
        return None
    encoded = histogram.encode()
    return encoded.decode() if isinstance(encoded, bytes) else str(encoded)


def decode_histogram(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded.encode())


def connection_summary(samples: Iterable[Sample]) -> dict[str, Any]:
    """Peak and mean of the app's server sessions, in total and by state (one pass)."""
    count = total_sum = total_peak = 0
    state_sum: Counter[str] = Counter()
    state_peak: Counter[str] = Counter()
    for sample in samples:
        count += 1
        total = sample.total
        total_sum += total
        total_peak = max(total_peak, total)
        for state, n in sample.by_state.items():
            state_sum[state] += n
            state_peak[state] = max(state_peak[state], n)
    if not count:
        return {"connections_peak": None, "connections_mean": None, "samples": 0}
    states = sorted(state_sum.keys() | state_peak.keys())
    return {
        "connections_peak": total_peak,
        "connections_mean": round(total_sum / count, 2),
        "by_state_peak": {st: state_peak[st] for st in states},
        "by_state_mean": {st: round(state_sum[st] / count, 2) for st in states},
        "samples": count,
    }


def in_window(samples: Sequence[AnySample], start_ns: int, end_ns: int) -> list[AnySample]:
    return [s for s in samples if start_ns <= s.t_ns < end_ns]


def pgbouncer_summary(samples: Sequence[PoolSample], start_ns: int, end_ns: int) -> dict[str, Any]:
    """PgBouncer over the measured window: peak and mean of its pool gauges, the longest wait,
    and from its counters the transactions and the time clients spent waiting for a server."""
    window = in_window(samples, start_ns, end_ns)
    out: dict[str, Any] = {"samples": len(window)}
    if not window:
        return out
    for name in ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_login"):
        values = [s.pools.get(name, 0) for s in window]
        out[f"{name}_peak"] = max(values)
        out[f"{name}_mean"] = round(sum(values) / len(values), 2)
    out["maxwait_ms_peak"] = round(max(s.maxwait_us for s in window) / 1000.0, 3)
    # Counters: from the last sample before the window to the first after it, where there are.
    first = next((s for s in reversed(samples) if s.t_ns <= start_ns), window[0])
    last = next((s for s in samples if s.t_ns >= end_ns), window[-1])
    transactions = last.stats["total_xact_count"] - first.stats["total_xact_count"]
    wait_ms = (last.stats["total_wait_time"] - first.stats["total_wait_time"]) / 1000.0
    out["transactions"] = transactions
    out["wait_ms_total"] = round(wait_ms, 3)
    out["wait_ms_per_transaction"] = round(wait_ms / transactions, 4) if transactions else None
    return out


def timeseries(raw: RawLoad, samples: Samples, known: bool = True) -> Timeseries:
    """Per-second series over the measured window, each value at its offset ``t_s``; no
    connection series when they are not ``known`` (the server hid the sessions' state)."""
    ok, errors, p50, p99, conns = [], [], [], [], []
    seconds_samples: list[list[Sample]] = []
    for i, second in enumerate(raw.seconds):
        if raw.window_start_ns and raw.window_start_ns + i * 1_000_000_000 >= raw.window_end_ns:
            break
        ok.append(float(second.ok))
        errors.append(float(second.errors))
        p50.append(second.p50_ms)
        p99.append(second.p99_ms)
        start = raw.window_start_ns + i * 1_000_000_000
        these = list(samples.between(start, start + 1_000_000_000))
        conns.append(round(sum(s.total for s in these) / len(these), 2) if these else 0.0)
        seconds_samples.append(these)
    states = sorted({state for these in seconds_samples for s in these for state in s.by_state})
    by_state = {
        state: [
            round(sum(s.by_state.get(state, 0) for s in these) / len(these), 2) if these else 0.0
            for these in seconds_samples
        ]
        for state in states
    }
    return Timeseries(
        interval_s=1.0,
        t_s=[float(i) for i in range(len(ok))],
        ok=ok,
        errors=errors,
        p50_ms=p50,
        p99_ms=p99,
        connections=conns if known else [],
        connections_by_state=by_state if known else {},
    )


def summarize(
    strategy: str,
    variant: VariantRecord,
    measured: Measurement,
    *,
    repeat: int = 0,
    predicted: dict[str, Any] | None = None,
    pgbouncer: dict[str, Any] | None = None,
) -> StrategyResult:
    """Turn one repeat's measurements into its :class:`StrategyResult`.

    ``predicted`` is the capacity prediction; ``pgbouncer`` describes the PgBouncer in front
    of the server, if any.
    """
    raw = measured.raw
    status: Status = "interrupted" if raw.interrupted else "ok"
    failure = None
    if not raw.interrupted and raw.ok == 0:
        status, failure = "failed", served_nothing(raw)
    result = StrategyResult(
        strategy=strategy,
        status=status,
        failure=failure,
        variant=variant,
        repeat=repeat,
        requests=Requests(
            total=raw.ok + raw.errors,
            ok=raw.ok,
            errors=raw.errors,
            errors_by_kind=dict(sorted(raw.errors_by_kind.items())),
            timeout_s=raw.config.timeout_s,
        ),
        throughput_rps=round(raw.ok / raw.window_s, 2) if raw.window_s else 0.0,
        duration_s=round(raw.window_s, 3),
        latency_ms=Latency(**latency) if (latency := latency_summary(raw.histogram)) else None,
        histogram=encode_histogram(raw.histogram),
        server=Server.model_validate(_server_side(measured, predicted, pgbouncer)),
        integrity=_integrity(raw, measured.rows_inserted),
        generator=_generator(raw),
        cpu_percent=CpuPercent(**measured.cpu_percent),
        timeseries=timeseries(raw, measured.samples, known=not measured.samples.hidden),
        fault=(
            FaultOutcome(**fault_outcome(raw, measured.injected))
            if measured.injected is not None
            else None
        ),
    )
    if raw.config.rate_rps:
        result.open_model = OpenModel(**_open_model(raw))
    mean_ms = result.latency_ms.mean if result.latency_ms else None
    parts = breakdown(*measured.app_stats, latency_mean_ms=mean_ms)
    result.breakdown = Breakdown(**parts) if parts else None
    if raw.by_request:
        result.by_request = by_request(raw)
    result.warnings = warnings(result)
    if measured.samples.hidden:
        result.warnings.append(hidden_warning(measured.samples.user))
    if measured.samples.foreign:
        result.warnings.append(
            f"sessions opened unknown: other clients opened sessions on the database during the "
            f"run (up to {measured.samples.foreign} seen at once), and PostgreSQL counts "
            "sessions per database; give the run a database of its own to count them"
        )
    return result


def by_request(raw: RawLoad) -> list[RequestKind]:
    """Each kind of a mix over the window: its counts, req/s and latency."""
    out = []
    for tally in raw.by_request:
        latency = latency_summary(tally.histogram)
        request = tally.request
        out.append(
            RequestKind(
                name=request.label,
                method=request.method,
                path=request.path,
                weight=request.weight,
                sent=tally.sent,
                ok=tally.ok,
                errors=sum(tally.errors_by_kind.values()),
                errors_by_kind=dict(sorted(tally.errors_by_kind.items())),
                throughput_rps=round(tally.ok / raw.window_s, 2) if raw.window_s else 0.0,
                latency_ms=Latency(**latency) if latency else None,
            )
        )
    return out


def hidden_warning(user: str) -> str:
    """Why the server's session figures are unknown, and the grant that makes them readable."""
    return (
        f"server connections unknown: PostgreSQL hides other roles' session state from "
        f"{user or 'this user'}; GRANT pg_read_all_stats TO {user or '<user>'} (or run as a "
        "superuser) to measure them"
    )


def _server_side(
    measured: Measurement, predicted: dict[str, Any] | None, pgbouncer: dict[str, Any] | None
) -> dict[str, Any]:
    """The server's side of the window: sessions, the prediction, and PgBouncer's view."""
    raw, opened = measured.raw, measured.sessions_opened
    if measured.samples.foreign:  # the database's counter counted other clients' too
        opened = None
    server = connection_summary(measured.samples.between(raw.window_start_ns, raw.window_end_ns))
    if measured.samples.hidden:  # what was counted is the sessions left visible: not a figure
        server.update(connections_peak=None, connections_mean=None)
        server.pop("by_state_peak", None)
        server.pop("by_state_mean", None)
    if predicted is not None:
        server["predicted"] = predicted
    server["sessions_opened"] = opened
    # Per successful response: a refused connection ("too many clients") opens no session.
    server["sessions_per_ok_response"] = (
        round(opened / raw.all_ok, 3) if opened is not None and raw.all_ok else None
    )
    server["sampler_failures"] = measured.samples.failures
    if pgbouncer is not None:
        pools = measured.pool_samples or PoolSamples()
        server["pgbouncer"] = {
            **pgbouncer,
            **pgbouncer_summary(pools.samples, raw.window_start_ns, raw.window_end_ns),
            "sampler_failures": pools.failures,
        }
    return server


def served_nothing(raw: RawLoad) -> str:
    """Why a run that served no request in its window failed, in one line."""
    if raw.errors:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(raw.errors_by_kind.items()))
        return f"served no request in the measured window: {raw.errors:,} errors ({kinds})"
    return (
        f"served no request in the measured window, and no error either: {raw.all_sent:,} "
        "requests sent were still in flight (a stuck app, or a --timeout longer than the run)"
    )


def _integrity(raw: RawLoad, rows_inserted: int | None) -> Integrity:
    """Rows in the table against 2xx responses, over the whole run (warm-up included)."""
    # A mix: only the kinds that write add rows.
    writes = raw.all_ok if raw.write_ok is None else raw.write_ok
    return Integrity(
        ok_responses=raw.all_ok,
        rows_inserted=rows_inserted,
        requests_sent=raw.all_sent,
        error_responses=dict(sorted(raw.all_errors_by_kind.items())),
        # None: not checked (an own app without count_sql).
        ok=None if rows_inserted is None else rows_inserted == writes,
        write_responses=raw.write_ok,
        # 2xx without a row (an acknowledged write that is not there), and rows without a
        # 2xx (a write the client was told failed, or never heard back about). Counts
        # only: one of each would cancel out.
        lost_writes=max(0, writes - rows_inserted) if rows_inserted is not None else None,
        unacknowledged_writes=(
            max(0, rows_inserted - writes) if rows_inserted is not None else None
        ),
    )


SCHEDULE_LAG_INVALID_MS = 10.0
NOT_SENT_INVALID = 0.01  # of the offered requests


def _open_model(raw: RawLoad) -> dict[str, Any]:
    """The open model's own account: what was offered, what did not go to plan, validity."""
    info = dict(raw.open_model)
    uncorrected = latency_summary(raw.uncorrected) if raw.uncorrected else {}
    info["latency_uncorrected_ms"] = uncorrected or None
    reasons = []
    offered = info.get("offered") or 0
    if offered and info.get("not_sent", 0) > NOT_SENT_INVALID * offered:
        reasons.append(
            f"could not hold the offered rate: {info['not_sent']} of {offered} requests never "
            "sent (every connection busy; raise --concurrency or lower --rate)"
        )
    lag = info.get("schedule_lag_ms_p99")
    if lag is not None and lag > SCHEDULE_LAG_INVALID_MS:
        reasons.append(f"the generator's timers fired late (p99 {lag:.1f} ms)")
    if raw.loop_cpu_percent >= GENERATOR_SATURATED_PERCENT:
        reasons.append("the generator's CPU was saturated")
    info["valid"] = not reasons
    info["invalid_reasons"] = reasons
    return info


# --- faults ---------------------------------------------------------------------------------

RECOVERY_SHARE = 0.9  # throughput back to this share of the pre-fault median ...
RECOVERY_SPAN_S = 1.0  # ... over a whole span this long ...
RECOVERY_STEP_S = 0.1  # ... starting at the fault or this much later, and later again


def fault_outcome(raw: RawLoad, injected: Injected) -> dict[str, Any]:
    """What a fault did to one strategy: errors after it, and how long until it recovered.

    Errors count from the fault's instant to the end of the drain (a request that times out
    because of the fault may end after the window). Recovery: the pre-fault baseline is the
    median throughput of the window's whole seconds before the fault; the strategy has
    recovered at the first ``RECOVERY_SPAN_S`` span, starting ``RECOVERY_STEP_S`` apart from
    the fault on, whose throughput is >= ``RECOVERY_SHARE`` of it. ``recovered_after_s`` is
    how long after the fault that span starts (0.0: it never dipped that far), ``None`` when
    no such span fits in the window ("not recovered").
    """
    fault = injected.fault
    out: dict[str, Any] = {
        "kind": fault.kind,
        "at_s": fault.at_s,
        "injected_at_s": None,
        "took_s": injected.took_s,
        "terminated": injected.terminated,
        "error": injected.error,
        "baseline_rps": None,
        "baseline_cv": None,
        "recovered": None,
        "recovered_after_s": None,
        "errors": 0,
        "errors_by_kind": {},
    }
    if injected.at_ns is None or injected.error is not None:
        return out
    at_ns = injected.at_ns - raw.window_start_ns
    out["injected_at_s"] = round(at_ns / 1e9, 3)
    after = +Counter({kind: b.count(at_ns) for kind, b in raw.error_buckets.items()})
    out["errors"] = sum(after.values())
    out["errors_by_kind"] = dict(after.most_common())
    offsets = raw.ok_buckets
    before = per_second_before(offsets, at_ns)
    if before and statistics.median(before):
        baseline = float(statistics.median(before))
        out["baseline_rps"] = round(baseline, 1)
        out["baseline_cv"] = spread([float(n) for n in before])["cv"]
        recovered_after = recovered_after_s(
            offsets, at_ns, raw.window_end_ns - raw.window_start_ns, baseline
        )
        out["recovered"] = recovered_after is not None
        out["recovered_after_s"] = recovered_after
    return out


_SECOND_NS = 1_000_000_000


def per_second_before(ok: Buckets, fault_ns: int) -> list[int]:
    """2xx per whole second of the window before ``fault_ns``."""
    return [
        ok.count(k * _SECOND_NS, (k + 1) * _SECOND_NS)
        for k in range(max(0, fault_ns) // _SECOND_NS)
    ]


def recovered_after_s(
    ok: Buckets, fault_ns: int, window_ns: int, baseline_rps: float
) -> float | None:
    """Seconds from the fault to the first span back at ``RECOVERY_SHARE`` of the baseline
    (see :func:`fault_outcome`); None when none fits in the window."""
    span, step = int(RECOVERY_SPAN_S * _SECOND_NS), int(RECOVERY_STEP_S * _SECOND_NS)
    needed = RECOVERY_SHARE * baseline_rps * RECOVERY_SPAN_S
    start = fault_ns
    while start + span <= window_ns:
        if ok.count(start, start + span) >= needed:
            return round((start - fault_ns) / 1e9, 3)
        start += step
    return None


def warnings(result: StrategyResult) -> list[str]:
    """What a careful reader should know before trusting this strategy's numbers."""
    out: list[str] = []
    integrity = result.integrity
    # ok None: not checked (an own app without count_sql), so nothing to warn about.
    if integrity is None or integrity.ok is False:
        rows = integrity.rows_inserted if integrity else None
        ok = integrity.ok_responses if integrity else None
        out.append(f"integrity: {rows} rows inserted for {ok} successful responses")
    generator = result.generator
    if generator is not None and generator.saturated:
        busiest = "its busiest Locust worker at " if generator.locust else ""
        out.append(
            f"load generator saturated ({busiest}{generator.loop_cpu_percent or 0:.0f}% of "
            "a core): throughput is the generator's ceiling, not the app's"
        )
    if generator is not None and generator.locust is not None:
        out.extend(_lost_workers(generator.locust))
        out.extend(_refused_workers(generator.locust))
    requests = result.requests
    for name, needed in MIN_REQUESTS_FOR.items():
        if requests is not None and 0 < requests.ok < needed:
            out.append(f"{name} rests on {requests.ok} requests (want >= {needed})")
            break
    if requests is not None and requests.total and requests.errors:
        kinds = ", ".join(f"{k} {v}" for k, v in requests.errors_by_kind.items())
        out.append(f"errors: {kinds}")
    open_model = result.open_model
    if open_model is not None:
        for reason in open_model.invalid_reasons:
            out.append(f"INVALID: {reason}")
        if open_model.sent_late:
            out.append(
                f"{open_model.sent_late} requests sent late (latency is counted from "
                "their intended time)"
            )
    server = result.server
    if server is not None and server.sampler_failures:
        out.append(f"server sampler failed {server.sampler_failures} times")
    if server is not None and server.pgbouncer and server.pgbouncer.sampler_failures:
        out.append(f"pgbouncer sampler failed {server.pgbouncer.sampler_failures} times")
    predicted = server.predicted if server else None
    peak = server.connections_peak if server else None
    if peak is not None and predicted is not None and peak > predicted.connections:
        out.append(
            f"capacity: {peak} server connections seen, more than the "
            f"{predicted.connections} predicted ({predicted.basis})"
        )
    baseline_cv = result.fault.baseline_cv if result.fault else None
    if baseline_cv is not None and baseline_cv >= UNSTABLE_CV:
        out.append(
            f"fault: throughput varied by {baseline_cv:.0%} (CV) over the seconds before the "
            "fault; its recovery is measured against a moving target"
        )
    return out


# --- across repeats ---------------------------------------------------------------------------

MEASURED = ("ok", "interrupted")  # statuses with numbers; not failed, not unavailable
UNSTABLE_CV = 0.10  # pyperf's threshold: a standard deviation >= 10 % of the mean
OUTLIER_FIRST = 0.15  # first repeat this far from the median of the others


def spread(values: Sequence[float]) -> dict[str, Any]:
    """median, min, max, coefficient of variation (sample stdev / mean) and the values."""
    if not values:
        return {"median": None, "min": None, "max": None, "cv": None, "values": []}
    mean = statistics.fmean(values)
    cv = statistics.stdev(values) / mean if len(values) > 1 and mean else 0.0
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "cv": round(cv, 4),
        "values": [round(v, 3) for v in values],
    }


def aggregate(runs: Sequence[StrategyResult]) -> list[VariantSummary]:
    """One summary per variant, in the order variants first appear: medians and spread over
    the repeats that completed, and the warnings a careful reader needs."""
    groups: dict[str, list[StrategyResult]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    return [_summarize_variant(key, group) for key, group in groups.items()]


def measured(runs: Sequence[StrategyResult]) -> list[StrategyResult]:
    """The runs that produced numbers: not failed nor unavailable, at least one 2xx."""
    return [r for r in runs if r.status in MEASURED and r.requests and r.requests.ok]


def values(runs: Sequence[StrategyResult], metric: Metric | str) -> list[float]:
    """``metric`` (from the registry, or any of its names) of every measured run that has it,
    in order. The one place a per-repeat value comes from: aggregate, compare and the
    --fail-if limits all read through it, so a median means the same thing everywhere."""
    found = metrics.lookup(metric) if isinstance(metric, str) else metric
    return [v for v in (found.run_value(r) for r in measured(runs)) if v is not None]


def _median_of(runs: Sequence[StrategyResult], metric: Metric | str) -> float | None:
    found = values(runs, metric)
    return round(statistics.median(found), 3) if found else None


def variant_status(runs: Sequence[StrategyResult]) -> str:
    """failed or unavailable (every repeat was), interrupted (one was), or ok."""
    statuses = {r.status for r in runs}
    if len(statuses) == 1 and statuses <= {"failed", "unavailable"}:
        return runs[0].status
    return "interrupted" if "interrupted" in statuses else "ok"


# The registry's metrics whose median over the repeats a summary keeps at its top level
# (throughput and latencies keep their whole spread; the error rate is over all requests).
_MEDIANS = tuple(m for m in metrics.METRICS if len(m.path) == 1 and m.key != "error_rate")
_PGBOUNCER_PEAKS = (
    "cl_waiting_peak", "maxwait_ms_peak", "wait_ms_per_transaction", "sv_active_peak",
    "sv_idle_peak",
)  # fmt: skip


def _summarize_variant(key: str, runs: list[StrategyResult]) -> VariantSummary:
    done = measured(runs)
    summary: dict[str, Any] = {
        "key": key,
        "strategy": runs[0].strategy,
        "variant": runs[0].variant,
        "status": variant_status(runs),
        "runs": len(runs),
        "runs_measured": len(done),
        "throughput_rps": spread(values(runs, "throughput")),
        "latency_ms": {
            m.name: spread(values(runs, m)) for m in metrics.METRICS if m.path[0] == "latency_ms"
        },
        "latency_uncorrected_ms": {
            name: spread(
                [
                    getattr(r.open_model.latency_uncorrected_ms, name)
                    for r in done
                    if r.open_model and r.open_model.latency_uncorrected_ms
                ]
            )
            for name in ("p50", "p99")
        },
        **_request_counts(runs),
        "generator_saturated": any(r.generator and r.generator.saturated for r in runs),
        "valid": all(r.open_model is None or r.open_model.valid for r in runs),
    }
    summary.update({m.key: _median_of(runs, m) for m in _MEDIANS})
    # The same in every repeat: it depends on the variant and the server's settings only.
    summary["predicted"] = next(
        (r.server.predicted for r in runs if r.server and r.server.predicted), None
    )
    summary.update(_pgbouncer_medians(done))
    summary["breakdown"] = _breakdown_medians(done)
    summary["failure"] = next((r.failure for r in runs if r.failure), None)
    summary["warnings"] = _stability_warnings(summary, done) + _run_warnings(runs)
    return VariantSummary.model_validate(summary)


def _request_counts(runs: list[StrategyResult]) -> dict[str, Any]:
    ran = [r for r in runs if r.status in MEASURED]
    total = sum(r.requests.total for r in ran if r.requests)
    errors = sum(r.requests.errors for r in runs if r.requests)
    return {
        "errors": errors,
        "requests_ok": sum(r.requests.ok for r in runs if r.requests),
        "requests_total": total,
        # Over every request of every repeat, as k6 computes a rate: a median of per-repeat
        # rates would hide one repeat that failed badly.
        "error_rate": round(errors / total, 6) if total else None,
        "integrity_ok": _integrity_ok(ran),
    }


def _pgbouncer_medians(done: list[StrategyResult]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _PGBOUNCER_PEAKS:
        found = [
            value
            for r in done
            if r.server and r.server.pgbouncer
            if (value := getattr(r.server.pgbouncer, name)) is not None
        ]
        out[f"pgbouncer_{name}"] = spread(found)["median"] if found else None
    return out


def _breakdown_medians(done: list[StrategyResult]) -> dict[str, Any]:
    parts = [*(part.key for part in BREAKDOWN_PARTS), "after_response_ms", "latency_mean_ms"]
    with_breakdown = [r.breakdown.model_dump() for r in done if r.breakdown]
    return {
        name: spread([b[name] for b in with_breakdown if b.get(name) is not None])["median"]
        for name in parts
        if with_breakdown
    }


def _integrity_ok(runs: Sequence[StrategyResult]) -> bool | None:
    """Every checked run's rows matched its 2xx; None when runs were measured but none was
    checked (an own app without count_sql)."""
    checked = [r.integrity.ok for r in runs if r.integrity and r.integrity.ok is not None]
    if not checked:
        # Measured without a check (no count_sql): unknown. Nothing measured: nothing
        # mismatched; measured with no integrity recorded: not ok.
        return None if any(r.integrity for r in runs) else not runs
    return all(checked)


def _run_warnings(runs: list[StrategyResult]) -> list[str]:
    """Each run's warnings once per kind: the first instance, and in how many repeats."""
    kinds: dict[str, list[str]] = {}
    for run in runs:
        for warning in run.warnings:
            kinds.setdefault(" ".join(warning.split()[:2]), []).append(warning)
    out = []
    for found in kinds.values():
        suffix = f" (in {len(found)} of {len(runs)} repeats)" if len(runs) > 1 else ""
        out.append(found[0] + suffix)
    return out


def _stability_warnings(summary: dict[str, Any], runs: list[StrategyResult]) -> list[str]:
    out = []
    for label, values in (
        ("throughput", summary["throughput_rps"]),
        ("p99", summary["latency_ms"]["p99"]),
    ):
        if len(values["values"]) > 1 and values["cv"] is not None and values["cv"] >= UNSTABLE_CV:
            out.append(
                f"unstable: {label} varies by {values['cv']:.0%} (CV) over "
                f"{len(values['values'])} repeats"
            )
    rps = [r.throughput_rps for r in runs]
    if len(rps) >= 3:
        rest = statistics.median(rps[1:])
        if rest and abs(rps[0] - rest) / rest > OUTLIER_FIRST:
            out.append(
                f"first repeat is an outlier ({rps[0] / rest - 1:+.0%} against the others): "
                "consider a longer warm-up"
            )
    return out


def _generator(raw: RawLoad) -> Generator:
    """The generator's cost; Locust's version and workers when it ran the load."""
    info = raw.engine_info.get("locust")
    # Locust with remote workers only: their CPU is not ours to read.
    known = info is None or info["local_workers"] > 0
    return Generator(
        engine=raw.config.engine,
        cpu_percent=round(raw.cpu_percent, 1),
        loop_cpu_percent=round(raw.loop_cpu_percent, 1) if known else None,
        saturated=raw.loop_cpu_percent >= GENERATOR_SATURATED_PERCENT,
        locust=LocustInfo(**info) if info is not None else None,
    )


def _refused_workers(locust: LocustInfo, shown: int = 5) -> list[str]:
    """One warning naming the workers the master refused (all of them are in the result)."""
    if not locust.refused:
        return []
    named = [
        f"{w.id} ({w.why}: {w.messages} messages, {w.samples} samples)"
        for w in locust.refused[:shown]
    ]
    more = len(locust.refused) - shown
    if more > 0:
        named.append(f"and {more} more")
    return [
        "Locust workers refused, nothing they sent counted (workers need the run's token): "
        + ", ".join(named)
    ]


def _lost_workers(locust: LocustInfo) -> list[str]:
    out = []
    for worker in locust.workers:
        if worker.lost_after_s is None:
            continue
        how = f"exited (code {worker.exit_code})" if worker.exit_code else "went missing"
        out.append(
            f"Locust worker {worker.id} (host {worker.host}, pid {worker.pid}) {how} "
            f"{worker.lost_after_s} s after the users were spawned, having completed "
            f"{worker.requests} requests; the run went on with the other workers and fewer users"
        )
    return out
