"""Where the seconds of a `connbench run` go besides the load, and how long the CLI takes to start.

A benchmark, not a test (timings on a shared machine are noise for a test). Run:

    .venv/bin/python benchmarks/startup.py [--runs 5] [--strategies pool,direct]
    .venv/bin/python benchmarks/startup.py --commands [--runs 20] [--warmup 3] [--against REF]
    .venv/bin/python benchmarks/startup.py --against REF [--runs 5]

Default: the start-up breakdown. ``connbench run -s pool -d 5s -w 1s`` is run ``--runs`` times
in this process, with a stopwatch around each step (initdb or the cluster copy, the server's
start, the app's start, its readiness, warm-up and measure, the app's teardown, the server's
stop, the result's writing), then as a subprocess (the wall time a user sees, imports included)
``--runs`` times with one strategy and ``--runs`` times with two. Printed: the median of each
step, the overhead (wall time minus warm-up and measured time; goal under 1 s) and the cost of
an extra variant (goal under 0.5 s).

``--commands``: for each quick command (``--help``...), mean ± stdev, min and max wall time over
``--runs`` runs after ``--warmup`` unmeasured ones, and the modules the CLI import pulls in that
the goal forbids (aiohttp, psycopg, httpx, uvicorn, fastapi, pgserver, hdrh, rich.progress).
Goal: `--help` under 0.3 s. ``--against REF`` also times the code of a git REF (checked out into
a temporary worktree and put first on PYTHONPATH, same virtualenv), alternating run by run with
this checkout, so both see the same machine load.

``--against REF`` alone: the wall times only (one strategy, then ``--strategies``), REF's and
this checkout's in turn run by run, and what this checkout saves, run by run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (["--help"], ["run", "--help"], ["strategies"], ["--version"])
HEAVY = ("aiohttp", "psycopg", "httpx", "uvicorn", "fastapi", "pgserver", "hdrh", "rich.progress")
GOAL_S = 0.3
DURATION_S, WARMUP_S = 5, 1
RUN_ARGS = ["run", "-d", f"{DURATION_S}s", "-w", f"{WARMUP_S}s", "--format", "json"]
OVERHEAD_GOAL_S, EXTRA_VARIANT_GOAL_S = 1.0, 0.5


# --- the quick commands (--commands) -------------------------------------------------------


def once(args: list[str], pythonpath: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "connbench", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env, cwd=pythonpath,
    )  # fmt: skip
    return time.perf_counter() - start


def line(label: str, times: list[float]) -> str:
    mean, sd = statistics.mean(times), statistics.stdev(times)
    verdict = "ok" if mean < GOAL_S else f"over the {GOAL_S} s goal"
    return (
        f"{label:<34} {mean * 1000:6.0f} ms ± {sd * 1000:4.0f}  "
        f"(min {min(times) * 1000:.0f}, median {statistics.median(times) * 1000:.0f}, "
        f"max {max(times) * 1000:.0f})  {verdict}"
    )


def heavy_modules(pythonpath: Path) -> str:
    probe = f"import sys, connbench.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env,
        cwd=pythonpath,  # python -c and -m put the working directory first on sys.path
    )  # fmt: skip
    return out.stdout.strip() or "none"


@contextlib.contextmanager
def checkouts(against: str | None) -> Iterator[dict[str, Path]]:
    """This checkout, and ``against`` (a git ref) checked out into a temporary worktree
    (removed on the way out), by label: the ref's first."""
    with tempfile.TemporaryDirectory(prefix="connbench-startup-") as tmp:
        trees = {"this checkout": ROOT}
        if against:
            other = Path(tmp) / "ref"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), against],
                check=True, capture_output=True,
            )  # fmt: skip
            trees = {against: other, **trees}
        for tree in trees.values():
            _byte_compile(tree)
        try:
            yield trees
        finally:
            if against:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)],
                    check=False, capture_output=True,
                )  # fmt: skip


def _byte_compile(tree: Path) -> None:
    """connbench's modules in ``tree`` byte-compiled, as `make run` and a regular pip install
    leave them: with PYTHONDONTWRITEBYTECODE set (as on this project's VMs) nothing else
    writes them, and a tree without them would compile its modules in every run."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "connbench")],
        check=True, capture_output=True,
    )  # fmt: skip


def commands(args: argparse.Namespace) -> None:
    with checkouts(args.against) as trees:
        print(f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs each, alternating")
        for command in COMMANDS:
            times: dict[str, list[float]] = {label: [] for label in trees}
            for i in range(args.warmup + args.runs):
                for label, tree in trees.items():
                    took = once(command, tree)
                    if i >= args.warmup:
                        times[label].append(took)
            for label in trees:
                print(line(f"{label}: connbench {' '.join(command)}", times[label]))
        for label, tree in trees.items():
            print(f"{label}: heavy modules imported by connbench.cli: {heavy_modules(tree)}")


# --- the breakdown of a run (default) ------------------------------------------------------


class Stopwatch:
    """Seconds spent in each named step during one run (a step entered twice adds up)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] += time.perf_counter() - start


def _patch(module: Any, attr: str, wrap: Callable[[Any], Any], undo: contextlib.ExitStack) -> None:
    """Replace ``module.attr`` by ``wrap(original)`` until ``undo`` closes; a name this
    version of connbench does not have is skipped (its step then reads as 0)."""
    original = getattr(module, attr, None)
    if original is None:
        return
    setattr(module, attr, wrap(original))
    undo.callback(setattr, module, attr, original)


def _timed(watch: Stopwatch, name: str) -> Callable[[Any], Any]:
    def wrap(fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with watch.step(name):
                return fn(*args, **kwargs)

        return timed

    return wrap


def _timed_cm(watch: Stopwatch, enter: str, leave: str) -> Callable[[Any], Any]:
    """A context-manager function whose entering and leaving are timed apart."""

    def wrap(fn: Any) -> Any:
        @contextlib.contextmanager
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            cm = fn(*args, **kwargs)
            with watch.step(enter):
                value = cm.__enter__()
            exc_info: Any = (None, None, None)
            try:
                yield value
            except BaseException:
                exc_info = sys.exc_info()
                raise
            finally:
                with watch.step(leave):
                    cm.__exit__(*exc_info)

        return timed

    return wrap


def _timed_waits(watch: Stopwatch) -> Callable[[Any], Any]:
    """procs.wait_until, when it waits for the server (an app's wait is timed by name)."""

    def wrap(fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if "postgres" not in str(kwargs.get("what", "")):
                return fn(*args, **kwargs)
            with watch.step("server: readiness wait"):
                return fn(*args, **kwargs)

        return timed

    return wrap


# (key, shown as, what it is); sub-steps are indented under the step that holds them.
STEPS = (
    ("stale temp dirs", "stale temp dirs", "tempdirs.remove_stale at start"),
    ("fork server: start", "fork server: start", "spawned before the server, not waited for"),
    ("server: start", "server: start", "postgres.start until it yields"),
    ("cluster", "  cluster: initdb / copy", "a new cluster in the run's temp dir"),
    ("server: readiness wait", "  readiness wait", "spawned until it accepts a connection"),
    ("server: early wait", "  taken by the runner", "the command line's early start, waited for"),
    ("app: start", "app: start", "appserver.start until it yields"),
    ("fork server: wait", "  fork server's imports", "waited for by the first app's start"),
    ("app: readiness wait", "  readiness wait", "spawned until ready: import, lifespan, detection"),
    ("warm-up + measure", "warm-up + measure", f"{WARMUP_S} s + {DURATION_S} s of load, drain"),
    ("app: stop", "app: stop", "leaving appserver.start"),
    ("server: stop", "server: stop", "leaving postgres.start (stop, temp dir removed)"),
    ("fork server: stop", "fork server: stop", "its channel closed, the server stopped"),
    ("summarize", "stats: summarize", "a variant's figures from its histogram and samples"),
    ("result: save", "result: save", "runner._save"),
    ("show", "result: show", "the tables printed after the run (to a sink here)"),
)
TOP_LEVEL = [key for key, shown, _ in STEPS if not shown.startswith(" ")]


def _one_run(output: Path) -> dict[str, float]:
    from connbench import cli, runner
    from connbench.analyse import stats
    from connbench.infra import appserver, postgres, procs, tempdirs

    forkserver: Any = None
    with contextlib.suppress(ImportError):  # before the fork server: its steps read as 0
        from connbench.infra import forkserver

    watch = Stopwatch()
    with contextlib.ExitStack() as undo:
        _patch(tempdirs, "remove_stale", _timed(watch, "stale temp dirs"), undo)
        _patch(postgres, "start", _timed_cm(watch, "server: start", "server: stop"), undo)
        for attr in ("_initdb", "_new_cluster"):  # before and after the cluster cache
            _patch(postgres, attr, _timed(watch, "cluster"), undo)
        early = getattr(postgres, "Early", None)  # started on a thread by the command line
        if early is not None:  # its start and stop are timed above, on that thread
            _patch(early, "taken", _timed_cm(watch, "server: early wait", "early stop"), undo)
        _patch(appserver, "start", _timed_cm(watch, "app: start", "app: stop"), undo)
        _patch(procs, "wait_until", _timed_waits(watch), undo)
        for attr in ("_wait_signal", "_wait_healthy"):
            _patch(appserver, attr, _timed(watch, "app: readiness wait"), undo)
        _patch(runner, "_measure", _timed(watch, "warm-up + measure"), undo)
        if forkserver is not None:
            server = forkserver.ForkServer
            _patch(server, "start", _timed(watch, "fork server: start"), undo)
            _patch(server, "_ready", _timed(watch, "fork server: wait"), undo)
            _patch(server, "close", _timed(watch, "fork server: stop"), undo)
        _patch(runner, "_save", _timed(watch, "result: save"), undo)
        _patch(stats, "summarize", _timed(watch, "summarize"), undo)
        _patch(cli, "_show_run", _timed(watch, "show"), undo)
        sink = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            code = cli.app([*RUN_ARGS, "-s", "pool", "-o", str(output)], standalone_mode=False)
        watch.spent["total in process"] = time.perf_counter() - start
    if code not in (0, None):
        raise SystemExit(f"connbench run failed (exit {code}):\n{sink.getvalue()[-2000:]}")
    return dict(watch.spent)


def _wall(strategies: str, output: Path, tree: Path = ROOT) -> float:
    argv = [sys.executable, "-m", "connbench", *RUN_ARGS, "-s", strategies, "-o", str(output)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=tree, env=env
    )
    took = time.perf_counter() - start
    output.unlink(missing_ok=True)
    return took


def _import_s(module: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def breakdown(args: argparse.Namespace) -> None:
    load = os.getloadavg()
    print(
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} cores; "
        f"{args.runs} runs each, medians"
    )
    print(f"command: connbench {' '.join(RUN_ARGS)} -s pool")
    _byte_compile(ROOT)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="connbench-startup-") as tmp:
        # Unmeasured: it fills the cluster cache if it is empty (what a first run costs).
        first = _one_run(Path(tmp) / "first.json")
        print(f"first run, not counted: {first['total in process']:.2f} s in process")
        for i in range(args.runs):
            runs.append(_one_run(Path(tmp) / f"in-process-{i}.json"))
        one = [_wall("pool", Path(tmp) / "one.json") for _ in range(args.runs)]
        two = [_wall(args.strategies, Path(tmp) / "two.json") for _ in range(args.runs)]
    bare = _import_s("sys", args.runs)
    imports = {m: _import_s(m, args.runs) - bare for m in ("connbench.cli", "connbench.runner")}
    # What an app's process spends before it needs the database: a launcher started beside
    # the server (a runner change) would have done this by the time the server is up.
    app_libraries = "uvicorn, uvloop, httptools, fastapi, psycopg, psycopg_pool"
    imports[app_libraries] = _import_s(app_libraries, args.runs) - bare

    def median(key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in runs)

    print(f"\n{'step':<30} {'median s':>8}  what")
    for key, shown, what in STEPS:
        print(f"{shown:<30} {median(key):8.2f}  {what}")
    total = median("total in process")
    print(f"{'other (unattributed)':<30} {total - sum(map(median, TOP_LEVEL)):8.2f}")
    print(f"{'total in process':<30} {total:8.2f}  the run command called here, imports aside")
    print(f"{'python: bare interpreter':<30} {bare:8.2f}  python -c 'import sys'")
    for module, took in imports.items():
        print(f"{'python: import':<30} {took:8.2f}  {module}, beyond the bare interpreter")

    load_s = DURATION_S + WARMUP_S
    wall1, wall2 = statistics.median(one), statistics.median(two)
    count = len(args.strategies.split(","))
    overhead, extra = wall1 - load_s, (wall2 - count * load_s - (wall1 - load_s)) / (count - 1)
    print(
        f"\nwall, one strategy (pool): median {wall1:.2f} s (min {min(one):.2f}, "
        f"max {max(one):.2f}); overhead {overhead:.2f} s beyond {load_s} s of load "
        f"(goal < {OVERHEAD_GOAL_S} s)"
    )
    print(
        f"wall, {count} strategies ({args.strategies}): median {wall2:.2f} s (min {min(two):.2f}, "
        f"max {max(two):.2f}); each extra variant {extra:.2f} s beyond its {load_s} s of load "
        f"(goal < {EXTRA_VARIANT_GOAL_S} s)"
    )


def walls(args: argparse.Namespace) -> None:
    """``--against REF`` without ``--commands``: the wall times alone, this checkout's and
    REF's run by run in turn (ABAB...), so that both see the same machine; the overheads and
    their paired differences."""
    load = os.getloadavg()
    print(
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} cores; "
        f"{args.runs} runs each, alternating; medians"
    )
    load_s = DURATION_S + WARMUP_S
    count = len(args.strategies.split(","))
    with checkouts(args.against) as trees, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        _wall("pool", out)  # unmeasured: the cluster cache, the page cache
        overhead: dict[str, list[float]] = {label: [] for label in trees}
        extra: dict[str, list[float]] = {label: [] for label in trees}
        for _ in range(args.runs):
            for label, tree in trees.items():
                one = _wall("pool", out, tree) - load_s
                two = _wall(args.strategies, out, tree) - count * load_s
                overhead[label].append(one)
                extra[label].append((two - one) / (count - 1))
    for label in trees:
        print(
            f"{label}: overhead {statistics.median(overhead[label]):.2f} s "
            f"(min {min(overhead[label]):.2f}, max {max(overhead[label]):.2f}; goal < "
            f"{OVERHEAD_GOAL_S} s), each extra variant ({args.strategies}) "
            f"{statistics.median(extra[label]):.2f} s (min {min(extra[label]):.2f}, "
            f"max {max(extra[label]):.2f}; goal < {EXTRA_VARIANT_GOAL_S} s)"
        )
    if len(trees) == 2:
        ref, this = trees
        gain = [a - b for a, b in zip(overhead[ref], overhead[this], strict=True)]
        gain_extra = [a - b for a, b in zip(extra[ref], extra[this], strict=True)]
        print(
            f"saved by this checkout, run by run: overhead {statistics.median(gain):.2f} s "
            f"({', '.join(f'{g:.2f}' for g in gain)}), each extra variant "
            f"{statistics.median(gain_extra):.2f} s ({', '.join(f'{g:.2f}' for g in gain_extra)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--commands", action="store_true", help="time the quick commands")
    parser.add_argument("--runs", type=int, help="runs of each (default 5, --commands 20)")
    parser.add_argument("--warmup", type=int, default=3, help="--commands: unmeasured runs")
    parser.add_argument(
        "--against",
        help="a git ref to compare with (e.g. main), run by run in turn: with --commands, the "
        "quick commands; without, the wall times of the runs (no breakdown)",
    )
    parser.add_argument(
        "--strategies", default="pool,connect", help="the multi-variant run (default pool,connect)"
    )
    args = parser.parse_args()
    if args.commands:
        args.runs = args.runs or 20
        commands(args)
    elif args.against:
        args.runs = args.runs or 5
        walls(args)
    else:
        args.runs = args.runs or 5
        breakdown(args)


if __name__ == "__main__":
    main()
