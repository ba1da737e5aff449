"""From what was measured to the numbers of a result. Pure functions: no I/O, no printing."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

from connbench.load import RawLoad
from connbench.results import StrategyResult
from connbench.sampler import Sample, Samples

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


def connection_summary(samples: Sequence[Sample]) -> dict[str, Any]:
    """Peak and mean of the app's server sessions, in total and by state."""
    if not samples:
        return {"connections_peak": None, "connections_mean": None, "samples": 0}
    totals = [s.total for s in samples]
    states = sorted({state for s in samples for state in s.by_state})
    return {
        "connections_peak": max(totals),
        "connections_mean": round(sum(totals) / len(totals), 2),
        "by_state_peak": {st: max(s.by_state.get(st, 0) for s in samples) for st in states},
        "by_state_mean": {
            st: round(sum(s.by_state.get(st, 0) for s in samples) / len(samples), 2)
            for st in states
        },
        "samples": len(samples),
    }


def in_window(samples: Sequence[Sample], start_ns: int, end_ns: int) -> list[Sample]:
    return [s for s in samples if start_ns <= s.t_ns < end_ns]


def timeseries(raw: RawLoad, samples: Sequence[Sample]) -> dict[str, list[float]]:
    """Per-second series over the measured window."""
    ok, errors, p50, p99, conns = [], [], [], [], []
    for i, second in enumerate(raw.seconds):
        if raw.window_start_ns and raw.window_start_ns + i * 1_000_000_000 >= raw.window_end_ns:
            break
        ok.append(float(second.ok))
        errors.append(float(second.errors))
        hist = second.histogram
        has = hist.get_total_count() > 0
        p50.append(round(hist.get_value_at_percentile(50) / 1000.0, 3) if has else 0.0)
        p99.append(round(hist.get_value_at_percentile(99) / 1000.0, 3) if has else 0.0)
        start = raw.window_start_ns + i * 1_000_000_000
        these = in_window(samples, start, start + 1_000_000_000)
        conns.append(round(sum(s.total for s in these) / len(these), 2) if these else 0.0)
    return {"ok": ok, "errors": errors, "p50_ms": p50, "p99_ms": p99, "connections": conns}


def summarize(
    *,
    strategy: str,
    variant: dict[str, Any],
    repeat: int = 0,
    raw: RawLoad,
    samples: Samples,
    sessions_opened: int | None,
    rows_inserted: int | None,
    cpu_percent: dict[str, float | None],
    interrupted: bool = False,
) -> StrategyResult:
    """Turn one strategy's raw measurements into its :class:`StrategyResult`."""
    window = in_window(samples.samples, raw.window_start_ns, raw.window_end_ns)
    server = connection_summary(window)
    server["sessions_opened"] = sessions_opened
    # Per successful response: a refused connection ("too many clients") opens no session.
    server["sessions_per_ok_response"] = (
        round(sessions_opened / raw.all_ok, 3)
        if sessions_opened is not None and raw.all_ok
        else None
    )
    server["sampler_failures"] = samples.failures
    integrity_ok = rows_inserted is not None and rows_inserted == raw.all_ok
    result = StrategyResult(
        strategy=strategy,
        status="interrupted" if interrupted else "ok",
        variant=variant,
        repeat=repeat,
        requests={
            "total": raw.ok + raw.errors,
            "ok": raw.ok,
            "errors": raw.errors,
            "errors_by_kind": dict(sorted(raw.errors_by_kind.items())),
            "timeout_s": raw.config.timeout_s,
        },
        throughput_rps=round(raw.ok / raw.window_s, 2) if raw.window_s else 0.0,
        duration_s=round(raw.window_s, 3),
        latency_ms=latency_summary(raw.histogram),
        histogram=encode_histogram(raw.histogram),
        server=server,
        integrity={
            "ok_responses": raw.all_ok,
            "rows_inserted": rows_inserted,
            "requests_sent": raw.all_sent,
            "error_responses": dict(sorted(raw.all_errors_by_kind.items())),
            "ok": integrity_ok,
        },
        generator={
            "engine": raw.config.engine,
            "cpu_percent": round(raw.cpu_percent, 1),
            "loop_cpu_percent": round(raw.loop_cpu_percent, 1),
            "saturated": raw.loop_cpu_percent >= GENERATOR_SATURATED_PERCENT,
        },
        cpu_percent=cpu_percent,
        timeseries=timeseries(raw, samples.samples),
    )
    result.warnings = warnings(result)
    return result


def warnings(result: StrategyResult) -> list[str]:
    """What a careful reader should know before trusting this strategy's numbers."""
    out: list[str] = []
    integrity = result.integrity
    if not integrity.get("ok"):
        rows, ok = integrity.get("rows_inserted"), integrity.get("ok_responses")
        out.append(f"integrity: {rows} rows inserted for {ok} successful responses")
    if result.generator.get("saturated"):
        out.append(
            f"load generator saturated ({result.generator['loop_cpu_percent']:.0f}% of a core): "
            "throughput is the generator's ceiling, not the app's"
        )
    total = result.requests.get("total", 0)
    for name, needed in MIN_REQUESTS_FOR.items():
        if 0 < result.requests.get("ok", 0) < needed:
            out.append(f"{name} rests on {result.requests['ok']} requests (want >= {needed})")
            break
    if total and result.requests.get("errors"):
        kinds = ", ".join(f"{k} {v}" for k, v in result.requests["errors_by_kind"].items())
        out.append(f"errors: {kinds}")
    if result.server.get("sampler_failures"):
        out.append(f"server sampler failed {result.server['sampler_failures']} times")
    return out


# --- across repeats ---------------------------------------------------------------------------

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


def aggregate(runs: Sequence[StrategyResult]) -> list[dict[str, Any]]:
    """One summary per variant, in the order variants first appear: medians and spread over
    the repeats that completed, and the warnings a careful reader needs."""
    groups: dict[str, list[StrategyResult]] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
    return [_summarize_variant(key, group) for key, group in groups.items()]


def _latency(name: str) -> Callable[[StrategyResult], float | None]:
    return lambda run: run.latency_ms.get(name)


def _server(name: str) -> Callable[[StrategyResult], float | None]:
    return lambda run: run.server.get(name)


def _cpu(name: str) -> Callable[[StrategyResult], float | None]:
    return lambda run: run.cpu_percent.get(name)


def _error_rate(run: StrategyResult) -> float | None:
    total = int(run.requests.get("total") or 0)
    return int(run.requests.get("errors") or 0) / total if total else None


# One value per run, by name (units in the names). What aggregate, compare and the --fail-if
# limits all read, so a median means the same thing everywhere.
RUN_METRICS: dict[str, Callable[[StrategyResult], float | None]] = {
    "throughput_rps": lambda run: run.throughput_rps,
    **{f"{name}_ms": _latency(name) for name in ("mean", *PERCENTILES, "max")},
    "error_rate": _error_rate,
    **{
        name: _server(name)
        for name in (
            "connections_peak",
            "connections_mean",
            "sessions_opened",
            "sessions_per_ok_response",
        )
    },
    "cpu_app_percent": _cpu("app"),
    "cpu_postgres_percent": _cpu("postgres"),
    "cpu_generator_percent": lambda run: run.generator.get("loop_cpu_percent"),
}


def measured(runs: Sequence[StrategyResult]) -> list[StrategyResult]:
    """The runs that produced numbers: not failed, at least one successful response."""
    return [r for r in runs if r.status != "failed" and r.requests.get("ok")]


def values(runs: Sequence[StrategyResult], metric: str) -> list[float]:
    """``metric`` (a :data:`RUN_METRICS` name) of every measured run that has it, in order."""
    get = RUN_METRICS[metric]
    return [float(v) for v in (get(r) for r in measured(runs)) if v is not None]


def _median_of(runs: Sequence[StrategyResult], metric: str) -> float | None:
    found = values(runs, metric)
    return round(statistics.median(found), 3) if found else None


def variant_status(runs: Sequence[StrategyResult]) -> str:
    """failed (every repeat failed), interrupted (one was), or ok."""
    statuses = {r.status for r in runs}
    if statuses == {"failed"}:
        return "failed"
    return "interrupted" if "interrupted" in statuses else "ok"


def _summarize_variant(key: str, runs: list[StrategyResult]) -> dict[str, Any]:
    done = measured(runs)
    status = variant_status(runs)
    ran = [r for r in runs if r.status != "failed"]
    total = sum(int(r.requests.get("total", 0)) for r in ran)
    errors = sum(int(r.requests.get("errors", 0)) for r in runs)
    summary: dict[str, Any] = {
        "key": key,
        "strategy": runs[0].strategy,
        "variant": runs[0].variant,
        "status": status,
        "runs": len(runs),
        "runs_measured": len(done),
        "throughput_rps": spread(values(runs, "throughput_rps")),
        "latency_ms": {
            name: spread(values(runs, f"{name}_ms")) for name in ("mean", *PERCENTILES, "max")
        },
        "errors": errors,
        "requests_ok": sum(int(r.requests.get("ok", 0)) for r in runs),
        "requests_total": total,
        # Over every request of every repeat, as k6 computes a rate: a median of per-repeat
        # rates would hide one repeat that failed badly.
        "error_rate": round(errors / total, 6) if total else None,
        "integrity_ok": all(r.integrity.get("ok") for r in ran),
        "generator_saturated": any(r.generator.get("saturated") for r in runs),
    }
    for name in (
        "connections_peak",
        "connections_mean",
        "sessions_opened",
        "sessions_per_ok_response",
        "cpu_app_percent",
        "cpu_postgres_percent",
        "cpu_generator_percent",
    ):
        summary[name] = _median_of(runs, name)
    summary["failure"] = next((r.failure for r in runs if r.failure), None)
    summary["warnings"] = _stability_warnings(summary, done) + _run_warnings(runs)
    return summary


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
