from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connbench.analyse import stats
from connbench.infra import postgres
from connbench.measure.load import Progress
from connbench.model import results
from connbench.model.results import RunResult, StrategyResult
from connbench.model.scenario import Variant

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pg() -> Iterator[postgres.Postgres]:
    """A real embedded PostgreSQL for the whole session."""
    with postgres.start(postgres.parse_backend("embedded")) as server:
        yield server


class RecordingReporter:
    """A reporter that keeps what it is told, for assertions (it computes nothing)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.progress_seen: list[Progress] = []
        self.finished: list[StrategyResult] = []

    def note(self, message: str) -> None:
        self.notes.append(message)

    def warn(self, message: str) -> None:
        self.notes.append(message)

    def strategy_started(self, label: str, index: int, count: int, total_s: float) -> None:
        self.notes.append(f"start {label}")

    def progress(self, p: Progress) -> None:
        self.progress_seen.append(p)

    def strategy_finished(self, result: StrategyResult) -> None:
        self.finished.append(result)


@pytest.fixture
def reporter() -> RecordingReporter:
    return RecordingReporter()


def connbench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "connbench", *args]


def run_cli(
    *args: str, cwd: Path, env_extra: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        connbench_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


# --- results built by hand, for the pure tests of compare, limits and the formats ---------------


def entry(
    strategy: str = "pool",
    repeat: int = 0,
    rps: float = 1000.0,
    p99: float = 40.0,
    *,
    pool: int | None = 4,
    concurrency: int = 32,
    status: str = "ok",
    peak: int = 4,
    workers: int = 1,
    topology: str = "direct",
    rate: float | None = None,
) -> StrategyResult:
    """One repeat of a variant, recorded as the runner records it (``Variant.to_dict()``)."""
    variant = Variant(strategy, concurrency, workers, pool, pool, rate=rate, topology=topology)
    ok = status != "failed"
    return StrategyResult(
        strategy=strategy,
        status=status,
        variant=variant.to_dict(),
        repeat=repeat,
        requests={"ok": 1000, "errors": 0, "total": 1000} if ok else {},
        throughput_rps=rps if ok else 0.0,
        latency_ms={"p50": p99 / 2, "p90": p99 * 0.8, "p99": p99, "p999": p99 * 1.2} if ok else {},
        server={"connections_peak": peak, "connections_mean": peak, "sessions_opened": peak}
        if ok
        else {},
    )


def run_of(*entries: StrategyResult, **scenario: Any) -> RunResult:
    run = results.new_run({"name": "t", "duration_s": 5, **scenario})
    run.results.extend(entries)
    run.summary = stats.aggregate(run.results)
    return run
