from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shlex
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

from connbench.analyse import stats
from connbench.infra import ledger, postgres
from connbench.measure.load import Progress
from connbench.model import results
from connbench.model.defaults import CONCURRENCY, TOPOLOGY, WORKERS
from connbench.model.results import RunResult, StrategyResult
from connbench.model.scenario import Scenario, Variant

from . import parallel

ROOT = Path(__file__).resolve().parent.parent
# The docs: the README and the pages under docs/ it links, read as one text by the tests that
# hold the docs to what connbench does.
DOC_PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))


def docs_text() -> str:
    return "\n\n".join(page.read_text() for page in DOC_PAGES)


DOCKER_ENGINE_ENV = ROOT / ".docker-engine.env"


def _docker_engine_env() -> None:
    """What `make docker-engine` wrote for a shell to export (the engine's address, the image,
    or why there is none), for the variables the environment does not set already: `make
    test` and a bare `pytest` then run the docker tests the same way."""
    try:
        text = DOCKER_ENGINE_ENV.read_text()
    except OSError:
        return
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            words = words[1:]
        if len(words) == 1 and "=" in words[0]:
            key, _, value = words[0].partition("=")
            os.environ.setdefault(key, value)


_docker_engine_env()

# The fast tier (`make test-fast`, the edit loop): every test that starts no process. A test
# that asks for the session's PostgreSQL is integration by that alone; any other that starts a
# process carries the mark itself, and the fast tier refuses the first process a test starts
# without it (the guard below), so the tier cannot silently grow slow.
FAST_TIER = os.environ.get("CONNBENCH_TEST_TIER") == "fast"


def examples(full: int) -> int:
    """How many examples a property test draws: ``full`` in make test, a quarter in the fast
    tier (the edit loop's minute; the full count still runs before anything lands)."""
    return max(10, full // 4) if FAST_TIER else full


INTEGRATION_FIXTURES = {"pg"}


def pytest_configure(config: pytest.Config) -> None:
    parallel.start(config)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        group = parallel.module_fixture_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    parallel.record(config, items)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return parallel.scheduler(config, log) if config.getoption("dist") == "loadgroup" else None


class StartedAProcess(AssertionError):
    """A fast-tier test started a process: it belongs to the integration tier."""


@pytest.fixture(autouse=True, scope="session")
def _no_process_in_the_fast_tier() -> Iterator[None]:
    """Session-wide, so that module and session fixtures are held to it too."""
    if not FAST_TIER:
        yield
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise StartedAProcess(
            "this test starts a process: mark it `pytest.mark.integration` (fast tier)"
        )

    platform.platform()  # asks `uname -p` once and caches it: results record the platform
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "__init__", refuse)
        patch.setattr(os, "fork", refuse)
        patch.setattr(os, "posix_spawn", refuse)
        yield


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


def script_module(name: str) -> ModuleType:
    """A module of scripts/ (not a package: the scripts run on their own), imported."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def connbench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "connbench", *args]


# A terminal wide enough that no line is wrapped: for a test that reads a whole path or phrase
# from the output (rich wraps at 80 columns without a terminal, and pytest-xdist's temp paths
# are longer than a serial run's, so a path that fitted one run was cut in the next).
WIDE = {"COLUMNS": "500"}


def run_cli(
    *args: str, cwd: Path, env_extra: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        connbench_cmd(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


# What connbench names on a server, as the package names it: a leftover check with a prefix
# written here would pass whatever a renamed connbench leaves behind.
APP_NAME_PREFIX = ledger.app_name("RUN", 1, "x").partition("RUN")[0]  # own apps' roles, databases
VISITS_TABLE_PREFIX = ledger.table_name("")


def like_prefix(prefix: str) -> str:
    """A LIKE pattern for the names that start with ``prefix`` (its ``_`` and ``%`` literal)."""
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


# --- results built by hand, for the pure tests of compare, limits and the formats ---------------

# A whole part of a run with neutral values: a test names only the fields it is about.
PART_DEFAULTS: dict[str, dict[str, Any]] = {
    "requests": {"total": 0, "ok": 0, "errors": 0, "errors_by_kind": {}, "timeout_s": 10.0},
    "latency_ms": {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0},
    "server": {"connections_peak": None, "connections_mean": None, "samples": 0},
    "integrity": {
        "ok_responses": 0, "rows_inserted": 0, "requests_sent": 0, "error_responses": {},
        "ok": True,
    },
    "generator": {
        "engine": "httptools", "cpu_percent": 0.0, "loop_cpu_percent": 0.0, "saturated": False,
    },
    "cpu_percent": {},
    "timeseries": {
        "t_s": [], "ok": [], "errors": [], "p50_ms": [], "p99_ms": [], "connections": [],
    },
    "breakdown": {
        "requests": 1, "latency_mean_ms": None, "in_app_ms": 0.0, "connect_ms": 0.0,
        "pool_wait_ms": 0.0, "query_ms": 0.0, "rest_of_app_ms": 0.0, "after_response_ms": 0.0,
        "connects_per_request": 0.0, "queries_per_request": 0.0,
    },
}  # fmt: skip


T = TypeVar("T")


def part(value: T | None) -> T:
    """A part of a result the test expects to be there (not null)."""
    assert value is not None
    return value


def variant_of(key: str, **fields: Any) -> dict[str, Any]:
    """A variant record from its key (``pool c=8 w=1 pool=4..4``), fields filled from it.
    The model writes keys (:meth:`Variant.key_without`): a full key read here must come out
    the same when the model writes it again, so this reading cannot drift from that grammar."""
    words = key.split()
    found = dict(word.split("=", 1) for word in words[1:] if "=" in word)
    pool = found.get("pool", "").partition("..")
    variant = Variant(
        words[0],
        int(found.get("c", CONCURRENCY)),
        int(found.get("w", WORKERS)),
        int(pool[0]) if pool[0] else None,
        int(pool[2]) if pool[2] else None,
        rate=float(found["rate"]) if "rate" in found else None,
        topology=found.get("via", TOPOLOGY),
    )
    if {"c", "w"} <= found.keys():
        assert variant.key == key, f"the model writes {key!r} as {variant.key!r}"
    return {
        "strategy": variant.strategy,
        "concurrency": variant.concurrency,
        "workers": variant.workers,
        "pool_min": variant.pool_min,
        "pool_max": variant.pool_max,
        "topology": variant.topology,
        "rate": variant.rate,
        "key": key,
        **fields,
    }


def made(strategy: str = "pool", status: str = "ok", **fields: Any) -> StrategyResult:
    """A :class:`StrategyResult` from the fields a test cares about: a part given as a partial
    dict is completed with neutral values; a variant may be given as its key alone."""
    variant = fields.pop("variant", None) or {"key": f"{strategy} c=32 w=1"}
    fields["variant"] = variant_of(**variant) if set(variant) <= {"key"} else variant
    for part, defaults in PART_DEFAULTS.items():
        if isinstance(fields.get(part), dict):
            fields[part] = defaults | fields[part]
    return StrategyResult.model_validate({"strategy": strategy, "status": status, **fields})


def scenario_of(**fields: Any) -> dict[str, Any]:
    """A scenario record as a run writes it, with ``fields`` changed."""
    return Scenario(name="t", duration_s=5.0).to_dict() | fields


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
    return made(
        strategy,
        status,
        variant=variant.to_dict(),
        repeat=repeat,
        requests={"ok": 1000, "errors": 0, "total": 1000} if ok else None,
        throughput_rps=rps if ok else 0.0,
        latency_ms={"p50": p99 / 2, "p90": p99 * 0.8, "p99": p99, "p999": p99 * 1.2}
        if ok
        else None,
        server={"connections_peak": peak, "connections_mean": peak, "sessions_opened": peak}
        if ok
        else None,
    )


def run_of(*entries: StrategyResult, **scenario: Any) -> RunResult:
    run = results.new_run(scenario_of(**scenario))
    run.results.extend(entries)
    run.summary = stats.aggregate(run.results)
    return run


@contextlib.contextmanager
def serving_in_thread(server: socketserver.TCPServer) -> Iterator[str]:
    """Serve ``server`` (bound to 127.0.0.1:0) from a thread; yield its ``/visit/`` URL, and
    shut it down on the way out."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/visit/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
