"""The gate's own check: A/A comparisons must pass it, real regressions must fail it.

    python benchmarks/gate_check.py [--rounds 10] [--scenario scenarios/ci.toml] [--keep DIR]

Each round runs the CI scenario four times, each as its own ``connbench run`` (its own
PostgreSQL, its own apps), as CI would against a baseline made earlier:

    A    the scenario as it is (pool, pool size 4)
    B    the pool shrunk to one connection (--pool-min 1 --pool-max 1)
    C    a per-request strategy instead of the pool (--strategy connect)
    A'   the scenario as it is, again

A' runs last so that the A/A pair is as far apart in time as the others. Then, with the
scenario's own [gate]:

    A -> A'   must pass (same code: a failure here is a false alarm)
    A -> C    must fail (--ignore strategy --ignore pool): a session per request
    A -> B    reported, not judged (--ignore pool). A pool of one is a regression only where
              the connection is the bottleneck; on a 2-core VM whose app is CPU-bound, one
              connection carries all the load, and then passing is the right answer.

It prints every verdict, how often each case passed or failed, the CV of throughput and p99
over each run's interleaved repeats, and the Markdown of the last failing comparison, writes
results/gate-check-<time>.json, and exits 1 when an A/A failed or a regression passed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = {
    "A": [],
    "B": ["--pool-min", "1", "--pool-max", "1"],
    "C": ["--strategy", "connect"],
    "A'": [],
}
CASES: dict[str, tuple[str, str, list[str], bool | None]] = {
    # name: (base, new, extra compare arguments, should fail; None: report only)
    "A/A (same code)": ("A", "A'", [], False),
    "A/C (pool -> connect)": ("A", "C", ["--ignore", "strategy", "--ignore", "pool"], True),
    "A/B (pool 4 -> 1)": ("A", "B", ["--ignore", "pool"], None),
}


def connbench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connbench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run(scenario: Path, extra: list[str], out: Path) -> dict[str, Any]:
    proc = connbench("run", str(scenario), *extra, "--format", "json", "-o", str(out))
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"connbench run failed ({proc.returncode}):\n{proc.stderr}")
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def compare(base: Path, new: Path, extra: list[str]) -> tuple[int, dict[str, Any], str]:
    as_json = connbench("compare", str(base), str(new), *extra, "--format", "json")
    if as_json.returncode not in (0, 1):
        raise RuntimeError(f"connbench compare failed ({as_json.returncode}):\n{as_json.stderr}")
    markdown = connbench("compare", str(base), str(new), *extra, "--format", "markdown").stdout
    return as_json.returncode, json.loads(as_json.stdout), markdown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "ci.toml")
    parser.add_argument("--keep", type=Path, help="keep the result files in this directory")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="gate-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    outcomes: dict[str, list[bool]] = {case: [] for case in CASES}
    cvs: dict[str, list[float]] = {"throughput": [], "p99": []}
    medians: list[float] = []
    rounds: list[dict[str, Any]] = []
    last_failure = ""
    started = time.monotonic()
    for i in range(1, args.rounds + 1):
        paths = {name: workdir / f"round{i}-{name.replace(chr(39), 'x')}.json" for name in RUNS}
        for name, extra in RUNS.items():
            summary = run(args.scenario, extra, paths[name])["summary"][0]
            if name.startswith("A"):
                cvs["throughput"].append(summary["throughput_rps"]["cv"])
                cvs["p99"].append(summary["latency_ms"]["p99"]["cv"])
                medians.append(summary["throughput_rps"]["median"])
            print(
                f"round {i} {name:<3} {summary['key']}: {summary['throughput_rps']['median']:,.0f}"
                f" req/s (CV {summary['throughput_rps']['cv']:.0%}), p99 "
                f"{summary['latency_ms']['p99']['median']:.1f} ms",
                flush=True,
            )
        record: dict[str, Any] = {"round": i, "cases": {}}
        for case, (base, new, extra, should_fail) in CASES.items():
            code, data, markdown = compare(paths[base], paths[new], extra)
            failed = code == 1
            outcomes[case].append(failed)
            verdicts = [v for c in data["comparisons"] for var in c["variants"]
                        for v in var["verdicts"]]  # fmt: skip
            record["cases"][case] = {"failed": failed, "verdicts": verdicts}
            if failed:
                last_failure = markdown
            mark = "   " if should_fail is None else "ok " if failed == should_fail else "BAD"
            print(f"  {mark} {case}: {'FAIL' if failed else 'pass'}", flush=True)
            for v in verdicts:
                print(f"      {'✗' if v['failed'] else '✓'} {v['reason']}", flush=True)
        rounds.append(record)
    elapsed = time.monotonic() - started

    print(f"\n{args.rounds} rounds in {elapsed / 60:.1f} min, scenario {args.scenario}")
    wrong = 0
    for case, (_, _, _, should_fail) in CASES.items():
        failures = sum(outcomes[case])
        expected: dict[bool | None, str] = {
            True: "should fail every time",
            False: "should never fail",
        }
        if should_fail is not None:
            wrong += (len(outcomes[case]) - failures) if should_fail else failures
        changes = [
            (v["change"], v["p_value"])
            for r in rounds
            for v in r["cases"][case]["verdicts"]
            if v["metric"] == "throughput" and v["change"] is not None
        ]
        moved = ", ".join(f"{c:+.0%} (p={'-' if p is None else f'{p:.2g}'})" for c, p in changes)
        print(
            f"  {case:<22} failed {failures}/{len(outcomes[case])} "
            f"({expected.get(should_fail, 'reported only')}); throughput: {moved}"
        )
    for metric, values in cvs.items():
        print(
            f"  CV of {metric} over each A run's repeats: median {statistics.median(values):.1%},"
            f" range {min(values):.1%}..{max(values):.1%} ({len(values)} runs)"
        )
    spread = (max(medians) - min(medians)) / statistics.median(medians)
    print(f"  A runs' throughput medians: {min(medians):,.0f}..{max(medians):,.0f} req/s "
          f"(spread {spread:.0%} of their median)")  # fmt: skip
    if last_failure:
        print("\nThe last failing comparison, as Markdown:\n")
        print(last_failure)
    out = ROOT / "results" / f"gate-check-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "scenario": str(args.scenario),
                "rounds": rounds,
                "failed": {case: sum(v) for case, v in outcomes.items()},
                "cv": cvs,
                "a_medians_rps": medians,
                "elapsed_s": round(elapsed),
                "results_dir": str(workdir),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out}; result files in {workdir}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
