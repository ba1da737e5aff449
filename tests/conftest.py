from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connbench import postgres
from connbench.load import Progress
from connbench.results import StrategyResult

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
