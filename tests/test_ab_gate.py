"""The GitHub Action's steps (scripts/ab-gate.sh) and the README's CI recipe, run locally
against examples/orders: two git revisions of the app in a throwaway repository, one of
which opens a connection per request instead of using its pool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from connbench.infra import postgres
from connbench.model import results

from .conftest import ROOT, docs_text, script_module
from .helpers import git

SCRIPT = ROOT / "scripts" / "ab-gate.sh"
ORDERS = ROOT / "examples" / "orders"
ab_scenario = script_module("ab_scenario")

# The regression: a connection opened for every request instead of one from the pool.
POOLED = "    async with request.app.state.pool.connection() as conn:\n"
PER_REQUEST = "    async with await psycopg.AsyncConnection.connect(DATABASE_URL) as conn:\n"


def orders_repo(root: Path, dsn: str, gate: str) -> Path:
    """A git repository holding examples/orders (the scenario shortened, on ``dsn``), one
    commit; returns its path."""
    repo = root / "app"
    package = repo / "examples" / "orders"
    package.mkdir(parents=True)
    (repo / "examples" / "__init__.py").write_text("")
    for name in ("__init__.py", "main.py", "requirements.txt"):
        shutil.copy(ORDERS / name, package / name)
    text = (ORDERS / "scenario.toml").read_text()
    text = text.replace("duration_s = 2\n", "duration_s = 0.6\n")
    text = text.replace("warmup_s = 1\n", f'warmup_s = 0.3\npostgres = "{dsn}"\n')
    text = text.replace("concurrency = 16\n", "concurrency = 8\n")
    text = text[: text.index("\n[gate]\n") + 1] + gate
    (package / "scenario.toml").write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "orders with a pool")
    return repo


def commit_change(repo: Path, old: str, new: str, message: str) -> None:
    main = repo / "examples" / "orders" / "main.py"
    text = main.read_text()
    assert old in text
    text = text.replace(old, new)
    if "psycopg.AsyncConnection" in new:
        text = text.replace("import hmac\n", "import hmac\n\nimport psycopg\n")
    main.write_text(text)
    git(repo, "commit", "-q", "-am", message)


def gate(
    repo: Path, tmp: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    (tmp / "work").mkdir(parents=True, exist_ok=True)
    outputs = tmp / "github_output"
    summary = tmp / "summary.md"
    outputs.write_text("")
    summary.write_text("")
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=repo,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "CB_SCENARIO": "examples/orders/scenario.toml",
            "CB_BASE_REF": "main~1",
            "CB_ROUNDS": "6",
            "CB_INSTALL": "none",
            "CB_CONNBENCH": str(Path(sys.executable).parent / "connbench"),
            "CB_WORK": str(tmp / "work"),
            "GITHUB_OUTPUT": str(outputs),
            "GITHUB_STEP_SUMMARY": str(summary),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=400,
    )
    found = dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
    found["summary"] = summary.read_text()
    return done, found


def connections_gate(alpha: float) -> str:
    return f'[gate]\nconnections_peak = "25%"\nsessions_per_ok_response = "50%"\nalpha = {alpha}\n'


def check_passes(repo: Path, tmp: Path, rounds: int) -> None:
    """A harmless change (a comment): head against base must pass."""
    commit_change(repo, POOLED, "    # one connection from the pool\n" + POOLED, "comment")
    passed, out = gate(repo, tmp, CB_ROUNDS=str(rounds))
    assert passed.returncode == 0, passed.stderr[-3000:]
    assert out["verdict"] == "pass"
    assert "conns peak" in out["summary"]


def check_fails(repo: Path, tmp: Path, rounds: int) -> None:
    """A connection per request, with the head's scenario loosened to let it through: the
    gate is the base's, and fails it; the result records both commits; nothing is left."""
    scenario = repo / "examples" / "orders" / "scenario.toml"
    loosened = scenario.read_text().replace('connections_peak = "25%"', 'connections_peak = "900%"')
    scenario.write_text(loosened.replace('sessions_per_ok_response = "50%"', ""))
    commit_change(repo, POOLED, PER_REQUEST, "connect per request")
    failed, out = gate(repo, tmp, CB_ROUNDS=str(rounds))
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert out["verdict"] == "fail"
    summary = out["summary"]
    assert "❌" in summary and "conns peak" in summary
    result = results.load(repo / out["result"])
    assert result.scenario.slices > 1  # the recipe's default: in turns, as many as fit
    by_name = {a.name: a for a in result.scenario.app}
    base_commit, head_commit = git(repo, "rev-parse", "main~1"), git(repo, "rev-parse", "main")
    assert by_name["base"].git is not None and by_name["base"].git.commit == base_commit
    assert by_name["head"].git is not None and by_name["head"].git.commit == head_commit
    assert (repo / out["html"]).read_text().startswith("<!doctype html>")
    peaks = {
        run.key.split()[0]: run.server.connections_peak
        for run in result.results
        if run.server is not None
    }
    assert peaks["base"] == 4 and (peaks["head"] or 0) > 4
    assert git(repo, "worktree", "list").count("\n") == 0
    assert list((tmp / "work").iterdir()) == []


def test_the_gate_fails_a_connection_per_request(tmp_path: Path, pg: postgres.Postgres) -> None:
    # The fast twin: 3 rounds, the fewest in which the sequential gate can decide at alpha =
    # 0.5, enough for a connection count that moves from 4 to 8 in every round. (A harmless
    # change passing: the README recipe test.)
    repo = orders_repo(tmp_path, pg.dsn, connections_gate(0.5))
    check_fails(repo, tmp_path / "fail", rounds=3)


@pytest.mark.slow
def test_the_gate_as_the_recipe_runs_it(tmp_path: Path, pg: postgres.Postgres) -> None:
    # 6 rounds at most (the sequential gate decides from round 5 at alpha = 0.05): a harmless
    # change, then the regression.
    repo = orders_repo(tmp_path, pg.dsn, connections_gate(0.05))
    check_passes(repo, tmp_path / "pass", rounds=6)
    check_fails(repo, tmp_path / "fail", rounds=6)


@pytest.mark.integration
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    repo = tmp_path / "app"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "s.toml").write_text('description = "x"\n')
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "commit", "-q", "-m", "x")
    for env, message in (
        ({"CB_SCENARIO": ""}, "CB_SCENARIO: give"),
        ({"CB_SCENARIO": "missing.toml"}, "no such file"),
        ({"CB_BASE_REF": "no-such-branch"}, "cannot find or fetch"),
        ({"CB_ROUNDS": "many"}, "CB_ROUNDS"),
        ({"CB_BASE_REF": "HEAD"}, "no [[app]] table"),
    ):
        done, _ = gate(repo, tmp_path / "x", **{"CB_SCENARIO": "s.toml", **env})
        assert done.returncode == 2, (env, done.stderr)
        errors = [line for line in done.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0], (env, done.stderr)
        assert "Traceback" not in done.stderr


def test_the_ab_scenario_is_the_apps_scenario_twice() -> None:
    scenario = tomllib.loads((ORDERS / "scenario.toml").read_text())
    data = ab_scenario.ab_scenario(scenario, "/w/base", "/w/head")
    text = ab_scenario.toml_document(data)
    again = tomllib.loads(text)
    assert again == data
    base, head = again["app"]
    assert (base["name"], base["dir"], head["name"], head["dir"]) == (
        "base",
        "/w/base",
        "head",
        "/w/head",
    )
    for side in (base, head):
        own = {k: v for k, v in scenario["app"][0].items() if k != "name"}
        assert {k: v for k, v in side.items() if k not in ("name", "dir")} == own
    assert again["gate"] == scenario["gate"] and "strategies" not in again


@pytest.mark.parametrize(
    ("settings", "taken", "why"),
    [
        ({}, 8, None),
        ({"duration_s": 2}, 8, None),
        ({"duration_s": "500ms"}, 5, "duration_s 0.5 s fits 5 turns of 0.1 s, not 8"),
        ({"duration_s": 0.05}, 1, "fits 0 turns"),
        ({"slices": 3}, 1, None),  # the scenario's own: kept as it is
        ({"topology": "pgbouncer"}, 1, "turns need direct connections"),
        ({"topology": ["direct"]}, 8, None),
        ({"rate": 100}, 1, "turns need the closed loop"),
        ({"engine": "locust"}, 1, "turns need httptools"),
    ],
)
def test_the_ab_rounds_take_turns_where_the_scenario_can(
    settings: dict[str, object], taken: int, why: str | None
) -> None:
    scenario = tomllib.loads((ORDERS / "scenario.toml").read_text()) | settings
    assert ab_scenario.turns(scenario, 8)[0] == taken
    said = ab_scenario.turns(scenario, 8)[1]
    assert (said is None) if why is None else (said is not None and why in said)
    data = ab_scenario.ab_scenario(scenario, "/w/base", "/w/head", slices=8)
    assert data.get("slices") == (settings.get("slices") or (taken if taken > 1 else None))


@pytest.mark.parametrize(
    "value",
    ['quote " back \\ nl \n tab \t del \x7f nul \x00 é 😀', "", "[x] = 'y'"],
)
def test_strings_survive_the_toml_writer(value: str) -> None:
    data = {"k": value, value or "e": [value, {"in": value}], "n": 1.5, "b": True}
    assert tomllib.loads(ab_scenario.toml_document(data)) == data


# --- the action ---------------------------------------------------------------------------------


def action() -> dict[str, object]:
    loaded = yaml.safe_load((ROOT / "action.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_action_pins_what_it_uses_and_passes_inputs_through_the_environment() -> None:
    steps = action()["runs"]["steps"]  # type: ignore[index]
    for step in steps:
        uses = step.get("uses")
        if uses:  # a tag can be moved; a commit cannot
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), uses
        # An input in a run: script is code injection (a branch name is attacker-chosen).
        assert "${{" not in step.get("run", ""), step
    text = (ROOT / "action.yml").read_text()
    assert "github.token" not in text and "secrets." not in text  # least privilege


@pytest.mark.integration
def test_the_actions_shell_steps_pass_shellcheck(tmp_path: Path) -> None:
    # actionlint checks the workflows' run: steps, not a composite action's: ShellCheck here.
    shellcheck = Path(sys.executable).parent / "shellcheck"
    steps = [s for s in action()["runs"]["steps"] if "run" in s]  # type: ignore[index]
    assert steps
    for n, step in enumerate(steps):
        script = tmp_path / f"step{n}.sh"
        script.write_text("#!/usr/bin/env bash\n" + step["run"])
        done = subprocess.run([str(shellcheck), str(script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


def test_the_workflow_that_uses_the_action_is_read_only() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ab-gate.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            uses = step.get("uses")
            pinned = uses is None or re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses)
            assert uses == "./" or pinned, uses


def readme_block(after: str, kind: str) -> str:
    """The first ``kind`` code block of the docs (the README and its pages) after the line
    ``after``."""
    text = docs_text()
    text = text[text.index(after) :]
    text = text[text.index(f"```{kind}\n") + len(kind) + 4 :]
    return text[: text.index("```")]


def test_the_readme_shows_the_scenario_file_as_committed() -> None:
    shown = tomllib.loads(readme_block("**The app's scenario file**", "toml"))
    committed = tomllib.loads((ORDERS / "scenario.toml").read_text())
    committed.pop("description")
    assert shown == committed


def test_the_readme_recipe_runs_as_written(tmp_path: Path, pg: postgres.Postgres) -> None:
    """The long form's commands, line by line, in a clone-like repository whose branch makes a
    harmless change: every line succeeds, the compare's gate passes (its regression twin:
    test_the_gate_fails_a_connection_per_request).
    The first two lines (install connbench into a virtualenv, put it on PATH) are this test's
    own environment; the rounds are cut to 2, the scenario's gate to connections at α 0.5."""
    lines = readme_block("## The recipe, long form", "sh").splitlines()
    assert lines[0].startswith("python3 -m venv") and lines[1].startswith("export PATH=")
    repo = orders_repo(tmp_path, pg.dsn, connections_gate(0.5))
    (repo / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "ab_scenario.py", repo / "scripts")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "the scenario helper")
    git(repo, "checkout", "-q", "-b", "change")
    commit_change(repo, POOLED, "    # one connection from the pool\n" + POOLED, "comment")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    codes = [line.replace("ROUNDS=10", "ROUNDS=2") for line in lines[2:]]
    done = subprocess.run(  # one shell, so ROUNDS carries over; each line's exit code said
        ["bash", "-c", "".join(f'{line}\necho "__code $?"\n' for line in codes)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    found = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("__code")]
    assert found == [0] * len(codes), done.stdout[-2000:] + done.stderr[-3000:]
    assert "conns peak" in done.stdout
    assert (repo / "ab.html").exists()
    assert not (tmp_path / "orders-base").exists()
