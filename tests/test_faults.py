"""Faults: parsing and validation, and the recovery arithmetic on made-up completion times."""

import asyncio
import time
from array import array
from pathlib import Path

import pytest

from connbench.analyse import stats
from connbench.infra.postgres import Postgres
from connbench.measure import faults
from connbench.measure.faults import Fault, Injected
from connbench.measure.load import Buckets, LoadConfig, RawLoad, new_histogram
from connbench.measure.sampler import Samples
from connbench.model.errors import ScenarioError
from connbench.model.result_types import VariantRecord
from connbench.model.scenario import build

from .conftest import part, variant_of

S = 1_000_000_000  # one second in ns


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("terminate@3", Fault("terminate", 3.0)),
        ("restart@2.5", Fault("restart", 2.5)),
        (" restart @ 4s ", Fault("restart", 4.0)),
    ],
)
def test_parse(text: str, fault: Fault) -> None:
    assert faults.parse(text) == fault
    assert str(fault) == f"{fault.kind}@{fault.at_s:g}"


@pytest.mark.parametrize("text", ["", "restart", "restart@", "@3", "crash@3", "restart@-1",
                                  "restart@inf", "terminate@x", 3])  # fmt: skip
def test_parse_rejects(text: object) -> None:
    expected = "expected KIND@SECOND with KIND one of terminate, restart"
    with pytest.raises(ValueError, match=expected):
        faults.parse(text)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"fault": "crash@2"}, "--fault: expected KIND@SECOND"),
        ({"fault": "restart@5", "duration_s": "5"}, "--fault: restart@5 is not inside the"),
        ({"fault": "restart@0.5"}, "--fault: restart@0.5 is not inside the measured window"),
        (
            {"fault": "restart@2", "postgres": "docker:postgres:16-alpine"},
            "--fault: restart is only supported on the servers connbench starts (embedded, "
            "local), not on docker:postgres:16-alpine",
        ),
        (
            {"fault": "restart@2", "postgres": "postgresql://me@127.0.0.1:1/db"},
            "not on external",
        ),
    ],
)
def test_scenario_refuses_faults_it_cannot_inject(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        build(None, overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_scenario_file_fault_errors_name_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('fault = "restart"\n')
    with pytest.raises(ScenarioError, match=f"^{path}: fault: expected KIND@SECOND.*got 'restart'"):
        build(path, {})
    path.write_text('fault = "terminate@9"\nduration_s = 4\n')
    with pytest.raises(ScenarioError, match=f"^{path}: fault: terminate@9 is not inside"):
        build(path, {})
    path.write_text('fault = "terminate@2"\nduration_s = 4\n')
    scenario = build(path, {})
    assert scenario.fault == Fault("terminate", 2.0)
    assert scenario.to_dict()["fault"] == {"kind": "terminate", "at_s": 2.0}
    # A flag overrides the file, and its errors name the flag.
    with pytest.raises(ScenarioError, match="^--fault: restart@7 is not inside"):
        build(path, {"fault": "restart@7"})


def test_terminate_works_on_any_server() -> None:
    scenario = build(None, {"fault": "terminate@2", "postgres": "postgresql://me@127.0.0.1/db"})
    assert scenario.fault == Fault("terminate", 2.0)


def raw_at(ok_per_100ms: list[int]) -> RawLoad:
    """A window of len/10 seconds with the given 2xx per 100 ms, evenly spread."""
    raw = RawLoad(config=LoadConfig(8, len(ok_per_100ms) / 10, 0, 5), histogram=new_histogram())
    raw.window_start_ns = 10 * S
    raw.window_end_ns = raw.window_start_ns + len(ok_per_100ms) * S // 10
    offsets = array("q")
    for i, n in enumerate(ok_per_100ms):
        offsets.extend(i * S // 10 + j * (S // 10) // max(n, 1) for j in range(n))
    raw.ok_buckets = Buckets.of(offsets)
    raw.ok = len(offsets)
    return raw


def injected(at_s: float, took_s: float | None = None, error: str | None = None) -> Injected:
    at_ns = 10 * S + int(at_s * S)
    return Injected(Fault("restart", at_s), at_ns=at_ns, took_s=took_s, error=error)


def test_recovery_after_an_outage() -> None:
    # 10 per 100 ms (100 req/s) for 2 s, nothing for 0.5 s, then 100 req/s again.
    raw = raw_at([10] * 20 + [0] * 5 + [10] * 25)
    errors = [(-S, "timeout"), (int(2.1 * S), "db:CannotConnectNow"), (6 * S, "timeout")]
    raw.error_buckets = {
        kind: Buckets.of([o for o, k in errors if k == kind]) for _, kind in errors
    }
    out = stats.fault_outcome(raw, injected(2.0, took_s=0.4))
    assert out["baseline_rps"] == 100
    assert out["baseline_cv"] == 0
    assert out["recovered"] is True
    # The first 1 s span with >= 90 of them starts 0.4 s after the fault (its first 100 ms
    # are still empty).
    assert out["recovered_after_s"] == pytest.approx(0.4)
    # From the fault on, drain included; the warm-up's error is not the fault's.
    assert out["errors_by_kind"] == {"db:CannotConnectNow": 1, "timeout": 1}
    assert out["errors"] == 2
    assert out["injected_at_s"] == 2.0
    assert out["took_s"] == 0.4


def test_a_shallow_dip_recovers_at_once() -> None:
    raw = raw_at([10] * 20 + [9] * 30)  # 90 % of the baseline is back
    assert stats.fault_outcome(raw, injected(2.0))["recovered_after_s"] == 0.0


def test_throughput_that_never_comes_back_is_not_recovered() -> None:
    raw = raw_at([10] * 20 + [5] * 30)
    out = stats.fault_outcome(raw, injected(2.0))
    assert out["recovered"] is False
    assert out["recovered_after_s"] is None


def test_no_baseline_no_recovery_figure() -> None:
    out = stats.fault_outcome(raw_at([0] * 20 + [10] * 30), injected(2.0))
    assert out["baseline_rps"] is None and out["recovered"] is None


def test_a_fault_that_never_fired_or_failed_has_no_outcome() -> None:
    raw = raw_at([10] * 50)
    never = stats.fault_outcome(raw, Injected(Fault("terminate", 2.0)))
    assert never["injected_at_s"] is None and never["recovered"] is None
    failed = stats.fault_outcome(raw, injected(2.0, error="permission denied"))
    assert failed["error"] == "permission denied" and failed["recovered"] is None


def test_unstable_baseline_is_flagged() -> None:
    raw = raw_at([10] * 10 + [5] * 10 + [10] * 30)
    raw.all_ok = raw.ok
    raw.window_s = 5.0
    result = stats.summarize(
        "pool",
        VariantRecord.model_validate(variant_of("pool c=4 w=1")),
        stats.Measurement(
            raw=raw,
            samples=Samples(),
            sessions_opened=None,
            rows_inserted=raw.all_ok,
            cpu_percent={},
            injected=injected(2.0),
        ),
    )
    assert any(w.startswith("fault: throughput varied by") for w in result.warnings)
    assert part(result.integrity).lost_writes == 0
    assert part(result.integrity).unacknowledged_writes == 0


def test_a_fault_still_counting_down_when_the_load_ends_is_called_off() -> None:
    restarted: list[bool] = []

    async def restart() -> None:
        restarted.append(True)

    pg = Postgres(backend="embedded", dsn="", table="visits", restarter=restart)

    async def main() -> Injected:
        injector = faults.Injector(Fault("restart", 30.0), pg)
        injector.arm()
        await asyncio.sleep(0.01)
        return await injector.finish()

    injected = asyncio.run(main())
    assert injected.at_ns is None and injected.error is None
    assert restarted == []


def test_a_fault_fires_at_its_second_and_records_how_long_it_took() -> None:
    async def restart() -> None:
        await asyncio.sleep(0.05)

    pg = Postgres(backend="embedded", dsn="", table="visits", restarter=restart)

    async def main() -> tuple[int, Injected]:
        armed = time.perf_counter_ns()
        injector = faults.Injector(Fault("restart", 0.1), pg)
        injector.arm()
        await asyncio.sleep(0.2)
        return armed, await injector.finish()

    armed, injected = asyncio.run(main())
    assert injected.at_ns is not None
    assert injected.at_ns - armed >= 99_000_000  # not before its second
    assert injected.took_s is not None and injected.took_s >= 0.049
    assert injected.restarted
