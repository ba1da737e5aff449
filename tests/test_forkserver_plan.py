"""What the fork server is asked to fork, and what it imports beforehand: pure checks (the
processes themselves are in test_forkserver.py)."""

from __future__ import annotations

import sys

from connbench.infra import forkserver
from connbench.model.scenario import Variant

READY = [sys.executable, "-m", "connbench.infra.ready_uvicorn", "connbench.apps.pool:app"]


def test_only_the_built_in_strategies_of_one_worker_are_forked() -> None:
    variants = [
        Variant("pool", 8, 1, 1, 2),
        Variant("pool", 8, 1, 1, 2, topology="pgbouncer-transaction"),
        Variant("connect", 8, 2, None, None),  # several workers: cold
        Variant("mine", 8, 1, None, None, kind="app"),  # a user's app: cold
        Variant("site", 8, 1, None, None, kind="target"),
    ]
    assert forkserver.apps_of(variants) == ["connbench.apps.pool"]
    assert forkserver.apps_of(variants[2:]) == []


def test_only_connbench_s_own_launcher_on_this_interpreter_is_run() -> None:
    assert forkserver.runs(READY)
    assert not forkserver.runs(["/usr/bin/python3", *READY[1:]])  # another interpreter
    assert not forkserver.runs([sys.executable, "-m", "connbench.infra.launch", "m:app", "."])
    assert not forkserver.runs([sys.executable, "-c", "print(1)"])
    assert not forkserver.runs(READY[:2])


def test_the_apps_libraries_are_read_from_their_source_not_imported() -> None:
    pool = forkserver.libraries(["connbench.apps.pool"])
    assert {"fastapi", "psycopg", "psycopg_pool"} <= set(pool)
    assert not [name for name in pool if name.startswith("connbench")]
    orm = forkserver.libraries(["connbench.apps.sqlalchemy_", "connbench.apps.asyncpg_pool"])
    assert {"sqlalchemy.ext.asyncio", "asyncpg"} <= set(orm)
    hostile = ["os", "connbench.apps./etc/passwd", "connbench.apps.nope", "connbench.cli"]
    assert forkserver.libraries(hostile) == []
