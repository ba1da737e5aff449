"""Every command of the README's Usage block runs as written (with short durations), so the
README cannot drift from the CLI again.

By default each command runs in a short form: its durations cut to two seconds (what a
response can take on a busy machine),
its sweeps and strategy lists cut to their first value (``all`` to ``pool``), ``--repeat``
to 1, and, where the command needs no server of its own (no server setting, no restart), on
the test session's PostgreSQL (``--postgres DSN``) rather than a new one each time: every
flag and every value kind the README shows is parsed and run end to end in a few minutes.
The ``slow`` twin runs the same commands with only their durations cut.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connbench.infra import pgbouncer, postgres
from connbench.model import results

from .conftest import ROOT
from .processes import serving

LISTS = {"--strategy", "-s", "--concurrency", "-c", "--pool-max", "--rate", "-R", "--topology",
         "--workers"}  # fmt: skip
DURATIONS = {"--duration", "-d", "--warmup", "-w"}
# Long enough for a response: only requests sent in the window count, and a README command's
# 64 or 128 clients on a busy machine (a load average of 10 on 2 cores) wait ~0.5-1.3 s for
# one, so at 300 ms the window saw none ("served no request", a failed run, exit 1).
SHORT_S = "2s"
CALIBRATE_S = "4s"
WARMUP_S = "500ms"  # the app's pool filled and its clients connected before the window


def usage_commands() -> list[str]:
    """The lines of the first ``sh`` block under "## Usage"."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Usage") :]
    block = block[block.index("```sh\n") + len("```sh\n") :]
    block = block[: block.index("```")]
    return [line for line in block.splitlines() if line.strip()]


COMMANDS = usage_commands()
WRITES = ("-o", "--summary", ">")  # the options after which a command names a file it writes


def in_order(commands: list[str]) -> list[Any]:
    """``commands`` as parameters, those that share a file (one writes ``new.json``, the next
    compares it) in one xdist group: a worker of their own runs them in the README's order."""
    lines = [shlex.split(line, comments=True) for line in commands]
    written = {argv[i + 1] for argv in lines for i, arg in enumerate(argv[:-1]) if arg in WRITES}
    return [
        pytest.param(line, id=f"{i:02d}", marks=[pytest.mark.xdist_group("readme-files")])
        if written & set(argv)
        else pytest.param(line, id=f"{i:02d}")
        for i, (line, argv) in enumerate(zip(commands, lines, strict=True))
    ]


def own_server(argv: list[str], cwd: Path) -> bool:
    """Whether the command needs a server connbench starts (settings, restarts)."""
    files = [cwd / arg for arg in argv if arg.endswith(".toml")]
    text = " ".join(argv) + " ".join(path.read_text() for path in files if path.exists())
    return any(word in text for word in ("--max-connections", "[server]", "restart@"))


def shortened(argv: list[str], full: bool) -> list[str]:
    """``argv`` with short durations (and, unless ``full``, one value per list)."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in DURATIONS:
            next(args)
            continue
        if arg == "--fault":
            kind = next(args).partition("@")[0]
            out += [arg, f"{kind}@1"]  # the earliest second a fault may have (a baseline)
            continue
        if arg in ("--repeat", "-r"):
            out += [arg, "2" if full else "1"]
            next(args)
            continue
        if arg in LISTS and not full:
            first = next(args).split(",")[0]
            out += [arg, "pool" if first == "all" else first]
            continue
        out.append(arg)
    if out[1] == "run":
        out += ["-d", SHORT_S, "-w", WARMUP_S]
        if not full and len(out) > 2 and out[2].endswith(".toml"):
            out += ["-s", "pool", "-r", "1"]  # a scenario file's own lists, cut
    if out[1] == "calibrate":
        # pgbench's -C too: at 500 ms it had processed nothing here, and at 2 s once, beside
        # four test workers (its 32 threads each connect first, with SCRAM, on 2 cores)
        out += ["-d", CALIBRATE_S]
    return out


def run_readme_command(line: str, cwd: Path, full: bool, dsn: str | None = None) -> None:
    argv = shlex.split(line, comments=True)
    assert argv[0] == "connbench", line
    stdout_to = None
    if ">" in argv:
        stdout_to = cwd / argv[argv.index(">") + 1]
        argv = argv[: argv.index(">")]
    shared = dsn is not None and argv[1] in ("run", "calibrate", "serve")
    if shared and "--postgres" not in argv and not own_server(argv, cwd):
        argv += ["--postgres", str(dsn)]
    argv = shortened(argv, full)
    command = argv[1]
    if command == "serve":
        _serve(argv, cwd)
        return
    before = _results_in(cwd)
    out = subprocess.run(
        [sys.executable, "-m", "connbench", *argv[1:]],
        cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "100"},
    )  # fmt: skip
    if stdout_to is not None:
        stdout_to.write_text(out.stdout)
    said = f"{shlex.join(argv)}\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr, said
    if command == "run":
        (saved,) = [path for path, stamp in _results_in(cwd).items() if before.get(path) != stamp]
        expected = run_exit_code(results.load(saved), said)
    elif command == "compare":
        expected = compare_exit_code(out.stdout, said)
    else:
        expected = 0
    assert out.returncode == expected, said


def _results_in(cwd: Path) -> dict[Path, int]:
    """The result files where a run saves them (``results/``, or ``-o`` in ``cwd``), with their
    modification times: the one a run wrote is new or changed."""
    found = [*cwd.glob("*.json"), *cwd.glob("results/*.json")]
    return {path: path.stat().st_mtime_ns for path in found}


def run_exit_code(run: results.RunResult, said: str) -> int:
    """The exit code the README's table gives for what a run saved. Measured on a shared machine
    in 300 ms, a figure may legitimately cross a --fail-if limit (3) or be an invalid measurement
    (4: an open-model rate not held, a saturated load generator); which one is the machine's
    doing, but the code must match what was recorded. A failed variant (1) is never accepted."""
    assert all(r.status == "ok" for r in run.results), said
    if any(not s.valid or s.generator_saturated for s in run.summary) or any(
        r.open_model is not None and not r.open_model.valid for r in run.results
    ):
        return 4
    return 3 if any(limit.failed for limit in run.limits) else 0


def compare_exit_code(stdout: str, said: str) -> int:
    """The exit code compare's printed verdict calls for (both formats end the verdict with the
    same words): against a baseline from another machine, a regression (1) or an undecided gate
    (5) is this machine's figure, but exit code and verdict must agree."""
    if "REGRESSION" in stdout:
        return 1
    if "INCONCLUSIVE" in stdout:
        return 5
    assert "no regression" in stdout, said
    return 0


def _serve(argv: list[str], cwd: Path) -> None:
    topology = argv[argv.index("--topology") + 1] if "--topology" in argv else "direct"
    if pgbouncer.unavailable(topology):
        pytest.skip(f"pgbouncer is not installed ({pgbouncer.INSTALL_HINT}; make test does it)")
    if "--port" in argv:  # the README's port may be taken here: another free one
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            argv[argv.index("--port") + 1] = str(sock.getsockname()[1])
    with serving(*argv[2:], cwd=cwd) as served:
        assert served.strategy == "pool" and served.url.startswith("http://127.0.0.1:")
        if "--port" in argv:
            assert served.url.endswith(f":{argv[argv.index('--port') + 1]}/visit/")
    assert served.process.returncode == 130, served.process.stderr


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the commands read (scenarios, the baseline); they write here too. Of the
    session (of each xdist worker): a copy costs nothing, and a module's fixture would keep
    the module's tests on one worker (see ``module_fixture_group``)."""
    cwd = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "scenarios", cwd / "scenarios")
    (cwd / "results").mkdir()
    shutil.copy(ROOT / "results" / "baseline-ci.json", cwd / "results")
    return cwd


def test_the_usage_block_is_found() -> None:
    assert len(COMMANDS) >= 20
    assert all(line.startswith("connbench ") for line in COMMANDS)


def test_shortening_keeps_the_command() -> None:
    argv = shlex.split("connbench run -s all -c 8,32 --duration 20 --repeat 5 --fault restart@3")
    assert shortened(argv, full=False) == [
        "connbench", "run", "-s", "pool", "-c", "8", "--repeat", "1", "--fault", "restart@1",
        "-d", "2s", "-w", "500ms",
    ]  # fmt: skip
    assert shortened(argv, full=True)[2:6] == ["-s", "all", "-c", "8,32"]


@pytest.mark.parametrize("line", in_order(COMMANDS))
def test_readme_command_short(line: str, workdir: Path, pg: postgres.Postgres) -> None:
    run_readme_command(line, workdir, full=False, dsn=pg.dsn)


@pytest.mark.slow
@pytest.mark.parametrize("line", in_order(COMMANDS))
def test_readme_command_as_written(line: str, workdir: Path) -> None:
    run_readme_command(line, workdir, full=True)
