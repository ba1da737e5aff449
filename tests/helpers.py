"""Helpers several test modules share (not fixtures, not process helpers: those are in
``conftest.py`` and ``processes.py``). A test module imports from here, never from another test
module."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from connbench.model.results import RunResult, StrategyResult

from .conftest import entry, run_of

# Every way a name could break out of HTML, for the reports' escaping tests.
XSS = '<img src=x onerror="alert(1)"></script><script>alert(2)</script>'


def assert_one_line_exit_2(result: Result, message: str) -> None:
    """Bad input, as every command must answer it: exit 2, one line on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("connbench: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def git(directory: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at ``where`` (to fill it, or make it read-only); skips without mount."""
    where.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


BASE = [1000, 1100, 900, 1050, 950, 1000]  # an A/B run's base throughput, round by round


def ab_run(
    base: Sequence[float | None],
    head: Sequence[float | None],
    *,
    peaks: tuple[Sequence[int], Sequence[int]] | None = None,
    **scenario: Any,
) -> RunResult:
    """Base and head in alternating rounds; None: that side failed in that round."""
    entries: list[StrategyResult] = []
    for r, (x, y) in enumerate(zip(base, head, strict=True)):
        pair = []
        for side, rps in (("base", x), ("head", y)):
            peak = 4 if peaks is None else peaks[side == "head"][r]
            if rps is None:
                pair.append(entry(side, r, status="failed"))
                pair[-1].failure = "app 'x' exited (code 1)\nlog"
            else:
                pair.append(entry(side, r, rps=rps, p99=40_000 / rps, peak=peak))
        if r % 2:
            pair.reverse()
        for position, run in enumerate(pair):
            run.position = position
        entries.extend(pair)
    return run_of(*entries, **scenario)
