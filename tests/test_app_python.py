"""Each side with its own interpreter: ``--app-python NAME=PATH`` and ``[[app]] python``.

A virtualenv is made in the test (``python -m venv --without-pip``: a fraction of a second).
Bare, it lacks uvicorn, which connbench must say in one line before anything starts. Given
this environment's packages by a ``.pth`` line (but not connbench itself: the app runs in a
directory where connbench cannot be imported), the app must run under it: the app reports
the ``sys.prefix`` and ``sys.executable`` it was started with.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from connbench.cli import app
from connbench.infra.postgres import Postgres
from connbench.model import results

from .conftest import WIDE, run_cli
from .helpers import assert_one_line_exit_2

cli = CliRunner()

WHOAMI = """
import importlib.util, json, os, sys
from pathlib import Path

from fastapi import FastAPI

report = {
    "prefix": sys.prefix,
    "executable": sys.executable,
    "connbench_importable": importlib.util.find_spec("connbench") is not None,
}
Path(__file__).with_name(f"report-{os.getpid()}.json").write_text(json.dumps(report))
app = FastAPI()


@app.get("/visit/")
def visit() -> dict[str, bool]:
    return {"ok": True}
"""


def make_venv(where: Path, with_packages: bool) -> Path:
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(where)],
        check=True,
        timeout=120,
    )
    python = where / "bin" / "python"
    if with_packages:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # This environment's packages (uvicorn, fastapi ...), as a directory on the path:
        # its own .pth files (connbench's editable install) are not read from there.
        Path(site, "connbench-test-packages.pth").write_text(
            sysconfig.get_paths()["purelib"] + "\n"
        )
    return python


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    where = tmp_path / "app"
    where.mkdir()
    (where / "whoami.py").write_text(WHOAMI)
    return where


def test_each_side_runs_under_the_interpreter_it_was_given(
    pg: Postgres, tmp_path: Path, app_dir: Path
) -> None:
    python = make_venv(tmp_path / "venv", with_packages=True)
    out = tmp_path / "ab.json"
    proc = run_cli(
        "run", "--app", f"base=whoami:app@{app_dir}", "--app", f"head=whoami:app@{app_dir}",
        "--app-python", f"head={python}", "--duration", "0.5", "--warmup", "0",
        "--concurrency", "2", "--postgres", pg.dsn, "-o", str(out), "--format", "json",
        cwd=tmp_path,  # not the repository: connbench must not be importable from the cwd
        timeout=300, env_extra=WIDE,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())  # as a terminal would wrap it, or not
    assert f"app head: {python} (sys.prefix {tmp_path / 'venv'})" in said
    reports = [json.loads(p.read_text()) for p in app_dir.glob("report-*.json")]
    assert {r["prefix"] for r in reports} == {str(tmp_path / "venv"), sys.prefix}
    head = next(r for r in reports if r["prefix"] == str(tmp_path / "venv"))
    assert head["executable"] == str(python)
    assert head["connbench_importable"] is False  # the launcher went as source
    run = results.load(out)
    recorded = {a.name: a.python for a in run.scenario.app}
    assert recorded == {"base": None, "head": str(python)}
    assert all(r.status == "ok" for r in run.results), [r.failure for r in run.results]


@pytest.mark.integration
def test_an_interpreter_without_uvicorn_is_one_line_exit_2(tmp_path: Path, app_dir: Path) -> None:
    bare = make_venv(tmp_path / "bare", with_packages=False)
    args = ["run", "--app", f"head=whoami:app@{app_dir}", "-o", str(tmp_path / "r.json")]
    out = cli.invoke(app, [*args, "--app-python", f"head={bare}"])
    # Which of the three it lacks depends on the base interpreter's own site-packages.
    assert_one_line_exit_2(out, f"--app-python head: {bare}: lacks uvicorn")
    missing = cli.invoke(app, [*args, "--app-python", f"head={tmp_path}/nope/python"])
    assert_one_line_exit_2(missing, f"{tmp_path}/nope/python: no such interpreter")
    not_python = cli.invoke(app, [*args, "--app-python", "head=/bin/false"])
    assert_one_line_exit_2(not_python, "not a Python interpreter that connbench can use")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app", "a=m:app", "--app-python", "b=/usr/bin/python3"],
         "--app-python b: no --app of that name (apps: a)"),
        (["--app", "a=m:app", "--app-python", "/usr/bin/python3"], "expected NAME=PATH"),
        (["--app", "a=m:app", "--app-python", "a="], "expected the path of a Python interpreter"),
    ],
)  # fmt: skip
def test_bad_app_python_flags_are_one_line_exit_2(args: list[str], message: str) -> None:
    assert_one_line_exit_2(cli.invoke(app, ["run", *args]), message)


def test_a_python_key_in_an_app_table(tmp_path: Path) -> None:
    from connbench.model.scenario import build

    path = tmp_path / "s.toml"
    path.write_text('[[app]]\nname = "a"\napp = "m:app"\npython = "venvs/a/bin/python"\n')
    (spec,) = build(path, {}).app
    assert spec.python == str(Path("venvs/a/bin/python").absolute())
    path.write_text('[[app]]\nname = "a"\nurl = "http://127.0.0.1:1"\npython = "python3"\n')
    out = cli.invoke(app, ["run", str(path), "--postgres", "postgresql://x@127.0.0.1:1/x"])
    assert_one_line_exit_2(out, "python applies to app = '...', not to a url")
