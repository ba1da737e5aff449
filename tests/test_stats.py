from collections import Counter

import pytest

from connbench.analyse import stats
from connbench.measure.load import LoadConfig, RawLoad, Second, classify, new_histogram
from connbench.measure.sampler import PoolSample, PoolSamples, Sample, Samples
from connbench.model.result_types import StrategyResult, VariantRecord

from .conftest import made, part, variant_of

VARIANT = VariantRecord.model_validate(variant_of("pool c=4 w=1"))
CONFIG = LoadConfig(concurrency=4, duration_s=2, warmup_s=0, timeout_s=5)


def raw_with(latencies_us: list[int], *, all_ok: int | None = None) -> RawLoad:
    raw = RawLoad(config=CONFIG, histogram=new_histogram())
    for value in latencies_us:
        raw.histogram.record_value(value)
    raw.ok = len(latencies_us)
    raw.all_ok = len(latencies_us) if all_ok is None else all_ok
    raw.all_sent = raw.all_ok
    raw.window_s = 2.0
    raw.window_start_ns = 1_000_000_000
    raw.window_end_ns = 3_000_000_000
    raw.seconds = [Second(), Second()]
    return raw


def test_latency_percentiles_from_counts() -> None:
    # 1..1000 ms, one each: p50 = 500 ms, p99 = 990 ms, max = 1000 ms (3 significant digits).
    summary = stats.latency_summary(raw_with([ms * 1000 for ms in range(1, 1001)]).histogram)
    assert summary["p50"] == pytest.approx(500, rel=1e-3)
    assert summary["p90"] == pytest.approx(900, rel=1e-3)
    assert summary["p99"] == pytest.approx(990, rel=1e-3)
    assert summary["max"] == pytest.approx(1000, rel=1e-3)
    assert summary["mean"] == pytest.approx(500.5, rel=1e-3)


def test_empty_histogram_has_no_percentiles() -> None:
    assert stats.latency_summary(new_histogram()) == {}
    assert stats.encode_histogram(new_histogram()) is None


def test_histogram_round_trips_through_encoding() -> None:
    hist = raw_with([1000, 2000, 3000]).histogram
    decoded = stats.decode_histogram(stats.encode_histogram(hist) or "")
    assert decoded.get_total_count() == 3
    assert decoded.get_value_at_percentile(100) == hist.get_value_at_percentile(100)


def test_connection_summary_by_state() -> None:
    samples = [
        Sample(1, {"active": 2, "idle": 2}),
        Sample(2, {"active": 4}),
        Sample(3, {"idle in transaction": 1, "idle": 1}),
    ]
    summary = stats.connection_summary(samples)
    assert summary["connections_peak"] == 4
    assert summary["connections_mean"] == pytest.approx(10 / 3, abs=0.01)
    assert summary["by_state_peak"] == {"active": 4, "idle": 2, "idle in transaction": 1}
    assert summary["samples"] == 3


def test_summarize_counts_only_samples_in_the_window_and_checks_integrity() -> None:
    raw = raw_with([1000] * 10)
    samples = Samples(
        samples=[Sample(500_000_000, {"active": 99}), Sample(2_000_000_000, {"idle": 3})]
    )
    result = stats.summarize(
        "pool",
        VARIANT,
        stats.Measurement(
            raw=raw,
            samples=samples,
            sessions_opened=4,
            rows_inserted=10,
            cpu_percent={"app": 50.0, "postgres": 10.0},
        ),
    )
    assert part(result.server).connections_peak == 3  # the warm-up sample is not counted
    assert result.throughput_rps == 5.0
    assert part(result.integrity).ok is True
    assert part(result.server).sessions_per_ok_response == 0.4


def test_integrity_mismatch_is_a_warning() -> None:
    raw = raw_with([1000] * 10)
    result = stats.summarize(
        "yield-context",
        VARIANT,
        stats.Measurement(
            raw=raw,
            samples=Samples(),
            sessions_opened=10,
            rows_inserted=8,
            cpu_percent={},
        ),
    )
    assert part(result.integrity).ok is False
    assert any("8 rows inserted for 10 successful responses" in w for w in result.warnings)


def test_saturated_generator_and_thin_percentiles_are_flagged() -> None:
    raw = raw_with([1000] * 10)
    raw.cpu_loop_s = 1.9  # of a 2 s window: 95 %
    raw.errors_by_kind = Counter({"db:TooManyConnections": 3})
    result = stats.summarize(
        "connect",
        VARIANT,
        stats.Measurement(
            raw=raw,
            samples=Samples(),
            sessions_opened=10,
            rows_inserted=10,
            cpu_percent={},
        ),
    )
    assert part(result.generator).saturated is True
    text = " | ".join(result.warnings)
    assert "load generator saturated (95% of a core)" in text
    assert "p99 rests on 10 requests" in text
    assert "db:TooManyConnections 3" in text


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (503, b'{"error": "database", "sqlstate": "53300", "name": "TooManyConnections"}',
         "db:TooManyConnections"),
        (503, b"Service Unavailable", "http_503"),
        (500, b"Internal Server Error", "http_500"),
        (404, b"", "http_404"),
    ],
)  # fmt: skip
def test_error_kinds(status: int, body: bytes, kind: str) -> None:
    assert classify(status, body) == kind


def _run(key: str, repeat: int, rps: float, p99: float, *, ok: bool = True) -> StrategyResult:
    return made(
        key.split()[0],
        variant={"key": key},
        repeat=repeat,
        requests={"ok": 100, "errors": 0},
        throughput_rps=rps,
        latency_ms={"p50": p99 / 2, "p99": p99},
        server={"connections_peak": 4, "sessions_opened": 4},
        integrity={"ok": ok},
    )


def test_aggregate_takes_medians_per_variant_in_first_seen_order() -> None:
    runs = [
        _run("pool c=32", 0, 1000, 40),
        _run("connect c=32", 0, 100, 300),
        _run("pool c=32", 1, 1100, 44),
        _run("connect c=32", 1, 110, 310),
        _run("pool c=32", 2, 1050, 42),
        _run("connect c=32", 2, 105, 305),
    ]
    pool, connect = stats.aggregate(runs)
    assert pool.key == "pool c=32" and connect.key == "connect c=32"
    assert pool.runs == 3
    assert pool.throughput_rps.median == 1050
    assert pool.throughput_rps.values == [1000, 1100, 1050]
    assert pool.throughput_rps.cv == pytest.approx(0.0476, abs=1e-3)
    assert pool.latency_ms["p99"].median == 42
    assert pool.integrity_ok is True
    assert not [w for w in pool.warnings if w.startswith("unstable")]


def test_unstable_and_first_outlier_are_flagged() -> None:
    runs = [_run("pool", i, rps, 40) for i, rps in enumerate([600, 1000, 1010, 990])]
    (summary,) = stats.aggregate(runs)
    text = " | ".join(summary.warnings)
    assert "unstable: throughput varies by" in text
    assert "first repeat is an outlier (-40% against the others)" in text


def test_one_bad_repeat_spoils_integrity() -> None:
    (summary,) = stats.aggregate([_run("pool", 0, 1, 1), _run("pool", 1, 1, 1, ok=False)])
    assert summary.integrity_ok is False


def _pool_sample(t_ns: int, waiting: int, xacts: int, wait_us: int) -> PoolSample:
    return PoolSample(
        t_ns=t_ns,
        pools={"cl_active": 4, "cl_waiting": waiting, "sv_active": 2, "sv_idle": 1, "sv_login": 0},
        maxwait_us=waiting * 1500,
        stats={"total_xact_count": xacts, "total_wait_time": wait_us, "total_query_count": 0},
    )


def test_pgbouncer_counters_are_taken_across_the_window() -> None:
    samples = [
        _pool_sample(500_000_000, 9, 100, 1_000_000),  # warm-up: gauges not counted
        _pool_sample(1_500_000_000, 2, 300, 1_200_000),
        _pool_sample(2_500_000_000, 4, 500, 1_600_000),
        _pool_sample(3_500_000_000, 0, 700, 1_800_000),  # after: closes the counters
    ]
    summary = stats.pgbouncer_summary(samples, 1_000_000_000, 3_000_000_000)
    assert summary["samples"] == 2
    assert summary["cl_waiting_peak"] == 4
    assert summary["cl_waiting_mean"] == 3
    assert summary["maxwait_ms_peak"] == 6.0
    # From the last sample before the window to the first after it.
    assert summary["transactions"] == 600
    assert summary["wait_ms_total"] == 800.0
    assert summary["wait_ms_per_transaction"] == pytest.approx(800 / 600, abs=1e-3)
    assert stats.pgbouncer_summary(samples, 4_000_000_000, 5_000_000_000) == {"samples": 0}


def test_summarize_records_pgbouncer_prediction_and_more_than_predicted() -> None:
    result = stats.summarize(
        "connect",
        VARIANT,
        stats.Measurement(
            raw=raw_with([1000] * 10),
            samples=Samples(samples=[Sample(2_000_000_000, {"idle": 5})]),
            sessions_opened=5,
            rows_inserted=10,
            cpu_percent={},
            pool_samples=PoolSamples(samples=[_pool_sample(2_000_000_000, 1, 10, 0)], failures=2),
        ),
        predicted={
            "connections": 4,
            "basis": "min(concurrency 8, PgBouncer pool 4)",
            "max_connections": 100,
            "fits": True,
        },
        pgbouncer={"version": "1.18", "mode": "transaction", "pool_size": 4, "auth": "md5"},
    )
    assert part(part(result.server).predicted).connections == 4
    assert part(part(result.server).pgbouncer).mode == "transaction"
    assert part(part(result.server).pgbouncer).cl_waiting_peak == 1
    text = " | ".join(result.warnings)
    assert "pgbouncer sampler failed 2 times" in text
    assert "capacity: 5 server connections seen, more than the 4 predicted" in text


def test_unavailable_variants_are_summarized_as_such() -> None:
    missing = made(
        "pool",
        "unavailable",
        failure="pgbouncer is not installed (apt-get install pgbouncer)",
        variant={"key": "pool c=32 w=1 pool=4..4 via=pgbouncer-session"},
    )
    (summary,) = stats.aggregate([missing])
    assert summary.status == "unavailable"
    assert summary.failure == missing.failure
    assert summary.integrity_ok is True  # nothing was measured, so nothing mismatched
