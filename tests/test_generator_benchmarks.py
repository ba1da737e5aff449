"""The generator benchmarks run end to end (short, one round): nginx and wrk against
connbench's engine, and the pool app's fidelity by concurrency. Figures are not checked here
(they belong to the benchmarks' own output, on a machine quiet enough to publish them); that
the runs happen, are paired and leave nothing behind is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make fidelity)"),
]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "150"}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make generator-limit)")
def test_generator_limit_runs_both_clients_in_both_models(tmp_path: Path) -> None:
    out = tmp_path / "limit.json"
    proc = _run(
        ["benchmarks/generator_limit.py", "--rounds", "2", "--duration", "1"]
        + ["--concurrency", "8,32", "--output", str(out)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    rows = {(row["model"], row["concurrency"]): row for row in report["summary"]}
    assert set(rows) == {(m, c) for m in ("closed", "open") for c in (8, 32)}
    for model in ("closed", "open"):
        for tool in ("wrk", "connbench"):
            runs = [r for c in ("8", "32") for r in report["runs"][model][c][tool]]
            assert len(runs) == 4  # one per round and concurrency, paired
            assert {"rps", "p99_ms", "cpu_us_per_request"} <= runs[0].keys()
            # Figures are the benchmark's business, but it must measure something: a 1 s run
            # may see nothing when a busy machine starves nginx, not four in a row.
            assert any(r["rps"] > 0 for r in runs), runs
    assert all(row["rate_rps"] > 0 for (model, _), row in rows.items() if model == "open")
    assert "closed model" in proc.stdout and "open model" in proc.stdout
    # nginx's private directory (its configuration, logs, pid) and the pacing scripts' are gone
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("connbench-")]


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make generator-limit)")
def test_generator_limit_bad_input_is_one_line(tmp_path: Path) -> None:
    proc = _run(["benchmarks/generator_limit.py", "--concurrency", "8,many"], tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout.count("\n") == 1


def test_fidelity_by_concurrency_pairs_wrk_and_connbench(tmp_path: Path) -> None:
    out = tmp_path / "fidelity.json"
    proc = _run(
        ["benchmarks/fidelity.py", "--by-concurrency", "4,16", "--repeat", "1"]
        + ["--duration", "1", "--output", str(out)],
        tmp_path,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: a goal missed
    report = json.loads(out.read_text())
    assert [row["concurrency"] for row in report["summary"]] == [4, 16]
    for c in ("4", "16"):
        assert [len(report["runs"][c][tool]) for tool in ("wrk", "connbench")] == [1, 1]
        assert report["runs"][c]["connbench"][0]["rps"] > 0
