"""Faults on the real thing: embedded PostgreSQL, uvicorn, HTTP load. Short durations.

Timings and throughput depend on the machine (shared, 2 cores): these tests assert what each
fault must do, never how fast anything recovers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from connbench import runner
from connbench.model import results
from connbench.model.results import StrategyResult
from connbench.model.scenario import build

from .conftest import RecordingReporter, part


def _run(tmp_path: Path, **overrides: str) -> dict[str, StrategyResult]:
    scenario = build(
        None,
        {"concurrency": "8", "warmup_s": "0.5", "pool_min": "2", "pool_max": "2", **overrides},
    )
    out = tmp_path / "r.json"
    runner.execute(scenario, RecordingReporter(), out)
    saved = results.load(out)  # what was measured is what was saved
    assert part(saved.scenario.fault).kind == part(scenario.fault).kind
    return {r.strategy: r for r in saved.results}


def _served_after_fault(result: StrategyResult) -> int:
    """2xx in the window's whole seconds after the fault (and a restart's downtime) ended."""
    fault = part(result.fault)
    ended = part(fault.injected_at_s) + (fault.took_s or 0)
    return int(sum(part(result.timeseries).ok[math.ceil(ended) :]))


@pytest.fixture(scope="module")
def terminated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StrategyResult]:
    return _run(
        tmp_path_factory.mktemp("terminate"),
        strategies="pool,pool-nocheck,connect",
        duration_s="3",
        fault="terminate@1",
    )


@pytest.mark.parametrize("name", ["pool", "pool-nocheck", "connect"])
@pytest.mark.integration
def test_terminate_is_injected_and_every_strategy_serves_again(
    terminated: dict[str, StrategyResult], name: str
) -> None:
    result = terminated[name]
    assert result.status == "ok", result.failure
    fault = part(result.fault)
    assert fault.kind == "terminate" and fault.error is None
    assert 1.0 <= part(fault.injected_at_s) < 3.0
    assert part(fault.baseline_rps) > 0
    assert fault.recovered in (True, False)  # computed, whatever this machine managed
    assert sum(fault.errors_by_kind.values()) == fault.errors
    assert _served_after_fault(result) > 0
    assert part(result.integrity).rows_inserted is not None


@pytest.mark.parametrize("name", ["pool", "pool-nocheck"])
@pytest.mark.integration
def test_pools_replace_the_sessions_that_were_cut(
    terminated: dict[str, StrategyResult], name: str
) -> None:
    result = terminated[name]
    assert part(result.fault).terminated == 2  # the whole pool: min = max = 2
    assert part(part(result.server).sessions_opened) >= 4


@pytest.mark.integration
def test_a_pool_without_check_lends_dead_connections(
    terminated: dict[str, StrategyResult],
) -> None:
    # Each cut session fails the next request that borrows it: nothing looks before lending.
    assert part(terminated["pool-nocheck"].fault).errors >= 1


@pytest.mark.integration
def test_committing_before_the_response_loses_no_write(
    terminated: dict[str, StrategyResult],
) -> None:
    connect = terminated["connect"]
    assert part(connect.integrity).lost_writes == 0
    assert part(connect.integrity).ok is True


@pytest.mark.integration
def test_restart_brings_the_server_back_and_the_apps_with_it(tmp_path: Path) -> None:
    runs = _run(tmp_path, strategies="pool,connect", duration_s="5", fault="restart@1")
    for name, result in runs.items():
        assert result.status == "ok", (name, result.failure)
        fault = part(result.fault)
        assert fault.kind == "restart" and fault.error is None, fault
        assert part(fault.took_s) > 0
        assert fault.terminated is None
        assert _served_after_fault(result) > 0, (name, result.timeseries)
        # The server's CPU has no single process to be read from across a restart.
        assert part(result.cpu_percent).postgres is None
        assert part(result.cpu_percent).app is not None
        # Rows are counted on the restarted server, over the whole run.
        assert part(result.integrity).rows_inserted is not None
        assert part(part(result.integrity).rows_inserted) > 0
    assert part(runs["connect"].integrity).lost_writes == 0
