"""The A/B gate given to the run: ``--base/--head/--fail-on``, ``--repeat auto --max-rounds``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from connbench.cli import app
from connbench.infra.postgres import Postgres
from connbench.model import results

from .conftest import ROOT, run_cli
from .helpers import assert_one_line_exit_2

cli = CliRunner()
AB = ["--strategy", "pool,connect", "--base", "pool", "--head", "connect"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeat", "auto"], "--repeat auto: needs the gate it runs until: --base NAME"),
        (["--repeat", "auto", *AB], "--repeat auto: needs the gate it runs until"),
        (
            ["--repeat", "auto", "--max-rounds", "4", *AB, "--fail-on", "throughput:10%"],
            "--max-rounds 4: the sequential gate cannot decide anything before round 5",
        ),
        (
            ["--repeat", "auto", "--max-rounds", "5", "--alpha", "0.01", *AB,
             "--fail-on", "throughput:10%"],
            "before round 6 at α=0.01",
        ),
        (["--max-rounds", "10", *AB], "--max-rounds: goes with --repeat auto"),
        (["--strategy", "pool,connect", "--base", "pool"], "--base and --head go together"),
        (["--strategy", "pool,connect", "--base", "pool", "--head", "pool"], "same variant"),
        (["--strategy", "pool", "--base", "pool", "--head", "nope"], "--head 'nope': no such"),
        (["--repeat", "auto", *AB, "--fail-on", "throughput:ten"], "expected a percentage"),
        (["--repeat", "auto", *AB, "--fail-on", "throughput:10%", "--alpha", "2"], "--alpha"),
        (["--repeat", "several"], "--repeat"),
    ],
)  # fmt: skip
@pytest.mark.integration
def test_bad_gate_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = cli.invoke(app, ["run", *args, "-o", str(tmp_path / "r.json")])
    assert_one_line_exit_2(out, message)
    assert not (tmp_path / "r.json").exists()


def test_repeat_auto_stops_once_the_gate_decides(pg: Postgres, tmp_path: Path) -> None:
    """pool against connect, gated on sessions opened (a pool's 4 against one per request:
    several times more in every round whatever the machine's load), stops once the
    confidence sequence decides (5 rounds at the earliest at α=0.05), before the budget,
    says how many rounds it used, and exits 1."""
    out = tmp_path / "auto.json"
    proc = run_cli(
        "run", *AB, "--repeat", "auto", "--max-rounds", "12", "--fail-on",
        "sessions_opened:25%", "--duration", "1", "--warmup", "0.2", "--concurrency", "4",
        "--postgres", pg.dsn, "-o", str(out), "--format", "markdown", "--progress", "0",
        cwd=ROOT, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    run = results.load(out)
    assert run.scenario.sequential and run.scenario.repeat == 12
    used = len({r.repeat for r in run.results})
    assert 5 <= used < 12, proc.stderr
    assert all(r.status == "ok" for r in run.results), proc.stderr
    assert f"A/B gate after round {used} of at most 12: sessions opened ×" in proc.stderr
    assert "A/B gate after round 4 of at most 12: sessions opened ×" in proc.stderr
    assert "connbench: A/B gate: REGRESSION: 1 of 1 check failed" in proc.stderr
    assert "## connbench compare (A/B): ❌ regression" in proc.stdout
    assert f"{used} rounds (of at most 12: --repeat auto)" in proc.stdout
    # compare re-judges the saved run with the same procedure.
    again = run_cli(
        "compare", str(out), "--base", "pool", "--head", "connect", cwd=ROOT, timeout=60
    )
    assert again.returncode == 1, again.stderr
    assert "confidence sequence" in again.stdout
    flipped = run_cli(
        "compare", str(out), "--base", "connect", "--head", "pool", cwd=ROOT, timeout=60
    )
    assert flipped.returncode == 0, flipped.stderr


def test_cross_file_compare_says_inconclusive_and_exits_5(tmp_path: Path) -> None:
    """Across files: worse than the threshold but within the noise of the repeats is not a
    pass any more."""
    from .conftest import entry, run_of

    base = run_of(*(entry(repeat=i, rps=v) for i, v in enumerate([1000, 700, 1300, 900, 1100])))
    new = run_of(*(entry(repeat=i, rps=v) for i, v in enumerate([850, 1250, 650, 800, 1050])))
    paths = [tmp_path / "base.json", tmp_path / "new.json"]
    for path, run in zip(paths, (base, new), strict=True):
        results.save(run, path)
    out = cli.invoke(
        app,
        ["compare", *map(str, paths), "--fail-on", "throughput:10%", "--format", "markdown"],
    )
    assert out.exit_code == 5, out.output
    assert out.stdout.startswith("## connbench compare: ⚠️ inconclusive")
    assert "**Inconclusive checks**" in out.stdout
    assert "within the noise of the repeats, so inconclusive" in out.stdout


def test_a_scenario_file_can_give_the_run_its_gate(tmp_path: Path) -> None:
    from connbench.model.scenario import build

    path = tmp_path / "ab.toml"
    path.write_text(
        'strategies = ["pool", "connect"]\nrepeat = "auto"\nmax_rounds = 12\n'
        'base = "pool"\nhead = "connect"\n[gate]\nthroughput = "10%"\n'
    )
    chosen = build(path, {})
    assert chosen.sequential and chosen.repeat == 12
    assert (chosen.base, chosen.head) == ("pool", "connect")
    assert dict(chosen.gate) == {"throughput": 0.10}
    default = build(path, {"max_rounds": None, "fail_on": ["p99:20%"], "alpha": "0.01"})
    assert dict(default.gate) == {"throughput": 0.10, "p99": 0.20, "alpha": 0.01}
    assert build(None, {"repeat": "6"}).sequential is False
