"""`make test` on several pytest-xdist workers (``-n 4 --dist loadgroup``), with the groups this
suite needs honoured whatever pytest's version.

Most of an integration test's time is waiting (a server starting, a measured window, a drain),
so workers overlap it. Some tests must share a worker: those of one module-scoped fixture (a real
run most of a module reads: once per worker would multiply it), the docker module (its check
covers the whole engine), the README commands that share a file. They carry an ``xdist_group``
mark. pytest-xdist's own ``loadgroup`` passes the group to its scheduler by appending it to the
test's node id, which pytest 9.2's structured node ids silently ignore (pytest-xdist issue
#1386: every group spread across workers). Here each worker writes the groups it collected to a
directory the controller made, and the scheduler reads them from there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

GROUPS_DIR_ENV = "CONNBENCH_XDIST_GROUPS"


def module_fixture_group(item: pytest.Item) -> str | None:
    """The tests that share a module-scoped fixture go to one worker, so that the fixture runs
    once rather than once on every worker; a test that names its own group keeps it."""
    if item.get_closest_marker("xdist_group") is not None:
        return None
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    if any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values()):
        return item.nodeid.split("::")[0]  # the module's file
    return None


def group_of(item: pytest.Item) -> str | None:
    names = sorted(str(mark.args[0]) for mark in item.iter_markers("xdist_group") if mark.args)
    return "_".join(names) or None


def is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and config.getoption("dist", "no") == "loadgroup"


def start(config: pytest.Config) -> None:
    """In the controller: the directory the workers write their groups to, removed at exit."""
    if not is_controller(config):
        return
    where = tempfile.mkdtemp(prefix="connbench-xdist-groups-")
    os.environ[GROUPS_DIR_ENV] = where
    config.add_cleanup(lambda: shutil.rmtree(where, ignore_errors=True))


def record(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: its collection's groups, written before it reports the collection."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    where = os.environ.get(GROUPS_DIR_ENV)
    if workerinput is None or where is None:
        return
    groups = {item.nodeid: group for item in items if (group := group_of(item)) is not None}
    path = Path(where, f"{workerinput['workerid']}.json")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    os.replace(tmp, path)


def scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's load-scope scheduling, a scope being a group (or a test of none)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # read once every worker has reported its collection
                where = Path(os.environ[GROUPS_DIR_ENV])
                self.groups = {}
                for path in sorted(where.glob("*.json")):
                    self.groups.update(json.loads(path.read_text()))
                assert self.groups, f"no xdist groups in {where}: the workers wrote none"
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)
