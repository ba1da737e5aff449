"""A real database given as ``--postgres DSN`` (issue 16, findings 5 to 8), and the fault suite
extended to it: what connbench creates there is named, marked and dropped on every way out,
a killed run's leftovers are reported and removed (and nothing of the user's), runs sharing
the server do not see or cut each other's sessions, a cleanup that fails keeps the numbers,
and figures the server hides are unknown, not 0.

One throwaway server for the module plays the external one, with roles made for each case.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from connbench import runner
from connbench.infra import postgres
from connbench.model import files, results
from connbench.model.errors import BadInput
from connbench.model.scenario import build

from .apps.other_database_app import OTHER_DB
from .conftest import (
    APP_NAME_PREFIX,
    ROOT,
    VISITS_TABLE_PREFIX,
    RecordingReporter,
    connbench_cmd,
    like_prefix,
    part,
    run_cli,
    scenario_of,
)
from .processes import all_gone, descendants, wait_for

Popen = subprocess.Popen[str]
QUICK = ("--duration", "1", "--warmup", "0.2", "--concurrency", "4", "--no-charts")


@pytest.fixture
def server(pg: postgres.Postgres) -> postgres.Postgres:
    """The session's server, handed to connbench as a DSN (superuser): a server with other
    tests' data in it, which connbench must leave as it found it."""
    return pg


def _rows(pg: postgres.Postgres, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with pg.connect() as conn:
        return conn.execute(query, list(params) or None).fetchall()


def _ours_left(pg: postgres.Postgres) -> list[tuple[Any, ...]]:
    apps, tables = like_prefix(APP_NAME_PREFIX), like_prefix(VISITS_TABLE_PREFIX)
    return _rows(
        pg,
        "SELECT 'role', rolname FROM pg_roles WHERE rolname LIKE %s "
        "UNION ALL SELECT 'database', datname FROM pg_database WHERE datname LIKE %s "
        "UNION ALL SELECT 'table', relname::text FROM pg_class "
        "WHERE relname LIKE %s AND relkind = 'r'",
        apps, apps, tables,
    )  # fmt: skip


def _start(tmp_path: Path, server: postgres.Postgres, out: str, *args: str) -> Popen:
    """``connbench run ARGS --postgres DSN -o TMP/OUT`` in a session of its own."""
    return subprocess.Popen(
        connbench_cmd("run", *args, "--postgres", server.dsn, "-o", str(tmp_path / out)),
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _scenario(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(body)
    return path


# --- 5. nothing measured is lost ---------------------------------------------------------------


def test_default_names_never_collide_and_a_report_is_its_results(tmp_path: Path) -> None:
    run = results.new_run(scenario_of())
    path = results.default_path(run, tmp_path)
    written: list[tuple[Path, bytes]] = []

    def beside(saved: Path, _: object) -> None:
        written.append((saved, saved.read_bytes()))

    first = runner._save(run, path, RecordingReporter(), new_name=True, beside=beside)
    run.interrupted = True  # another run's, started in the same second
    second = runner._save(run, path, RecordingReporter(), new_name=True, beside=beside)
    assert first == path and second == path.with_name(f"{path.stem}-2.json")
    assert results.load(part(first)).interrupted is False  # not replaced
    assert results.load(part(second)).interrupted is True
    assert [saved for saved, _ in written] == [first, second]  # each beside its own


def test_a_report_is_written_under_the_lock_its_result_was(tmp_path: Path) -> None:
    """Two runs given the same ``-o`` and ``--html``: each writes both files holding the
    directory's lock, so the pair left is one run's, never a JSON of one and an HTML of the
    other."""
    run = results.new_run(scenario_of())
    held: list[bool] = []

    def beside(saved: Path, _: object) -> None:
        fd = os.open(saved.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(True)  # another writer waits until both files are written
        finally:
            os.close(fd)

    for name in ("a.json", "b.json"):
        assert runner._save(run, tmp_path / name, RecordingReporter(), beside=beside)
    assert held == [True, True]


def test_write_new_claims_a_name_whole(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("theirs")
    assert files.write_new(target, b"a") == tmp_path / "r-2.json"
    assert files.write_new(target, b"b") == tmp_path / "r-3.json"
    assert target.read_text() == "theirs" and (tmp_path / "r-2.json").read_bytes() == b"a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r-2.json", "r-3.json", "r.json"]


@pytest.fixture
def other_database(server: postgres.Postgres) -> Iterator[str]:
    """A database where every role may create tables: an app's role leaves one there."""
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(OTHER_DB)))
    with psycopg.connect(make_conninfo(server.dsn, dbname=OTHER_DB), autocommit=True) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
    yield OTHER_DB
    with server.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(OTHER_DB)))
        for (role,) in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", [like_prefix(APP_NAME_PREFIX)]
        ).fetchall():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_role_that_cannot_be_dropped_keeps_the_numbers_and_the_run_goes_on(
    tmp_path: Path, server: postgres.Postgres, other_database: str
) -> None:
    scenario = _scenario(
        tmp_path,
        """
[[app]]
name = "leaves"
app = "tests.apps.other_database_app:app"

[[app]]
name = "after"
app = "tests.apps.asyncpg_app:app"
env = { HITS_POOL_SIZE = "2" }
count_sql = "SELECT count(*) FROM hits"
""",
    )
    out = tmp_path / "r.json"
    overrides = {"duration_s": "1", "warmup_s": "0.2", "concurrency": "4", "postgres": server.dsn}
    runner.execute(build(scenario, overrides), RecordingReporter(), out)
    leaves, after = results.load(out).results
    assert leaves.status == "ok", leaves.failure
    assert part(leaves.requests).ok > 0  # its numbers are kept
    (warning,) = [w for w in leaves.warnings if "could not drop" in w]
    assert "role connbench_app_" in warning and other_database in warning  # what, and why
    assert "connbench cleanup" in warning
    assert after.status == "ok" and part(after.requests).ok > 0  # the next app ran


# --- 6. a real database is left as found -------------------------------------------------------


def test_the_visits_table_is_new_or_nothing(
    server: postgres.Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connbench.infra import ledger

    monkeypatch.setattr(ledger, "new_run_id", lambda: "0badcafe")
    with server.connect() as conn:
        conn.execute("CREATE TABLE connbench_visits_0badcafe (id int)")
        conn.execute("INSERT INTO connbench_visits_0badcafe VALUES (1), (2)")
    try:
        with pytest.raises(BadInput, match="exists already"):
            with postgres.start(postgres.parse_backend(server.dsn)):
                pass  # pragma: no cover
        assert _rows(server, "SELECT count(*) FROM connbench_visits_0badcafe") == [(2,)]
    finally:
        with server.connect() as conn:
            conn.execute("DROP TABLE connbench_visits_0badcafe")


def test_what_a_run_creates_is_marked_and_dropped(server: postgres.Postgres) -> None:
    with postgres.start(postgres.parse_backend(server.dsn)) as pg:
        (comment,) = _rows(server, "SELECT obj_description(to_regclass(%s), 'pg_class')", pg.table)[
            0
        ]
        assert comment.startswith(f"connbench run {pg.run_id} pid {os.getpid()} host ")
        from connbench.infra import ledger

        with server.connect() as conn:
            assert ledger.find(conn) == []  # alive: its lock is held
    assert _ours_left(server) == []


def _sessions(pg: postgres.Postgres, where: str) -> list[tuple[Any, ...]]:
    return _rows(pg, f"SELECT pid, query FROM pg_stat_activity WHERE {where}")


MINE = """
[[app]]
name = "mine"
app = "tests.apps.asyncpg_app:app"
env = { HITS_POOL_SIZE = "3" }
"""


def test_ctrl_c_while_create_database_waits_on_a_lock_leaves_nothing(
    tmp_path: Path, server: postgres.Postgres
) -> None:
    holder = server.connect()
    holder.execute("BEGIN")
    holder.execute("LOCK TABLE pg_database IN EXCLUSIVE MODE")  # CREATE DATABASE waits on it
    proc = _start(tmp_path, server, "r.json", str(_scenario(tmp_path, MINE)), *QUICK)
    try:
        waiting = "wait_event_type = 'Lock' AND query LIKE 'CREATE DATABASE%'"
        wait_for(lambda: bool(_sessions(server, waiting)), 90, proc)
        assert [kind for kind, _ in _ours_left(server)] == ["role", "table"]
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=60)
        finally:
            holder.execute("ROLLBACK")
    finally:
        holder.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert _ours_left(server) == []


@pytest.fixture
def lookalikes(server: postgres.Postgres) -> Iterator[None]:
    """A user's own objects named like connbench's: unmarked, or marked but another user's."""
    with server.connect() as conn:
        conn.execute("CREATE ROLE connbench_app_0000beef_1_mine")
        conn.execute("CREATE DATABASE connbench_app_0000beef_1_mine")
        conn.execute("CREATE TABLE connbench_visits_0000beef (id int)")
        conn.execute("INSERT INTO connbench_visits_0000beef VALUES (1)")
        conn.execute("CREATE ROLE cb_someone")
        conn.execute("GRANT CREATE ON SCHEMA public TO cb_someone")
        conn.execute("SET ROLE cb_someone")
        conn.execute("CREATE TABLE connbench_visits_0000feed (id int)")
        conn.execute(
            "COMMENT ON TABLE connbench_visits_0000feed IS 'connbench run 0000feed pid 1 host x'"
        )
        conn.execute("RESET ROLE")
    yield
    with server.connect() as conn:
        conn.execute("DROP TABLE connbench_visits_0000feed, connbench_visits_0000beef")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM cb_someone")
        conn.execute("DROP ROLE cb_someone")
        conn.execute("DROP DATABASE connbench_app_0000beef_1_mine")
        conn.execute("DROP ROLE connbench_app_0000beef_1_mine")


USERS_OWN = [
    ("role", "connbench_app_0000beef_1_mine"),
    ("database", "connbench_app_0000beef_1_mine"),
    ("table", "connbench_visits_0000beef"),
    ("table", "connbench_visits_0000feed"),
]


def test_kill_9_mid_own_app_run_then_the_next_run_reports_and_cleanup_removes_only_those(
    tmp_path: Path, server: postgres.Postgres, lookalikes: None
) -> None:
    scenario = _scenario(tmp_path, MINE)
    args = ("--duration", "60", "--warmup", "0", "--concurrency", "4")
    proc = _start(tmp_path, server, "r.json", str(scenario), *args)
    children: list[psutil.Process] = []
    try:
        # The measured variant's app: the second database of the run (the first is the check's,
        # dropped before anything is measured).
        app_sessions = (
            "application_name = 'someone-else' AND datname LIKE 'connbench\\_app\\_%\\_2\\_mine'"
        )
        wait_for(lambda: bool(_sessions(server, app_sessions)), 90, proc)
        time.sleep(0.5)  # under load
        children = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        wait_for(lambda: all_gone(children), 30)
    finally:
        for child in children:  # whatever outlived its parent: not this test's subject
            try:
                child.kill()
            except psutil.Error:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    left = sorted(_ours_left(server))
    assert sorted({kind for kind, _ in left}) == ["database", "role", "table"]
    killed = [obj for obj in left if obj not in USERS_OWN]
    assert len(killed) == 3, left

    # The next run says so, once, and goes on.
    done = run_cli("run", "-s", "pool", *QUICK, "--postgres", server.dsn, "-o",
                   str(tmp_path / "next.json"), cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert said.count("left 3 objects") == 1, said
    assert all(name in said for _, name in killed) and "connbench cleanup" in said
    assert not any(name in said for _, name in USERS_OWN)

    listed = run_cli("cleanup", "--postgres", server.dsn, cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    assert all(name in listed.stdout for _, name in killed) and "--yes" in listed.stdout
    assert sorted(_ours_left(server)) == left  # listing drops nothing

    dropped = run_cli("cleanup", "--postgres", server.dsn, "--yes", cwd=ROOT)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert "dropped 3 of 3" in dropped.stdout
    assert sorted(_ours_left(server)) == sorted(USERS_OWN)  # the user's, untouched
    assert _rows(server, "SELECT count(*) FROM connbench_visits_0000beef") == [(1,)]
    again = run_cli("cleanup", "--postgres", server.dsn, "--yes", cwd=ROOT)
    assert again.returncode == 0 and "nothing left by connbench" in again.stdout


@pytest.mark.integration
def test_cleanup_needs_a_dsn() -> None:
    done = run_cli("cleanup", "--postgres", "embedded", cwd=ROOT)
    assert done.returncode == 2 and "cleanup needs a DSN" in done.stderr


# --- 7. runs on one server do not see each other -----------------------------------------------


def test_two_runs_on_one_server_count_and_cut_only_their_own_sessions(
    tmp_path: Path, server: postgres.Postgres
) -> None:
    def start(out: str, *args: str) -> Popen:
        pool = ("-s", "pool", "--concurrency", "4", "--warmup", "0.2", "--no-charts")
        return _start(tmp_path, server, out, *pool, *args)

    apps = "application_name LIKE 'connbench-app%'"
    quiet = start("quiet.json", "--duration", "120")
    faulty: Popen | None = None
    try:
        wait_for(lambda: len(_sessions(server, apps)) >= 4, 90, quiet)
        faulty = start("faulty.json", "--duration", "3", "--fault", "terminate@1")
        _, faulty_err = faulty.communicate(timeout=180)
        assert faulty.returncode == 0, faulty_err
        assert quiet.poll() is None  # it was measuring all along
        quiet.send_signal(signal.SIGINT)  # what it measured is saved
        _, quiet_err = quiet.communicate(timeout=60)
        assert quiet.returncode == 130, quiet_err
    finally:
        for proc in (quiet, faulty):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    (cut,) = results.load(tmp_path / "faulty.json").results
    (spared,) = results.load(tmp_path / "quiet.json").results
    assert part(cut.fault).terminated == 4  # its own four, not the other run's too
    assert part(cut.server).connections_peak == 4
    assert part(spared.requests).errors == 0, spared.requests
    assert part(spared.server).connections_peak == 4
    # The other run's sessions went into the database's session counter: unknown, not wrong.
    assert part(spared.server).sessions_opened is None
    assert any(w.startswith("sessions opened unknown: other clients") for w in spared.warnings)


# --- 8. figures that cannot be read are unknown, not 0 -----------------------------------------


@pytest.fixture
def creator(server: postgres.Postgres) -> Iterator[str]:
    """The README's external user: CREATEROLE and CREATEDB, a database of its own; a DSN."""
    password = "cb-creator-pw"
    with server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE cb_creator LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Literal(password)
            )
        )
        conn.execute("CREATE DATABASE cb_creator_db OWNER cb_creator")
    yield make_conninfo(server.dsn, user="cb_creator", password=password, dbname="cb_creator_db")
    with server.connect() as conn:
        conn.execute("DROP DATABASE cb_creator_db WITH (FORCE)")
        conn.execute("DROP ROLE cb_creator")


def test_hidden_session_state_is_unknown_with_the_grant_named(
    tmp_path: Path, server: postgres.Postgres, creator: str
) -> None:
    scenario = _scenario(tmp_path, MINE)
    overrides = {"duration_s": "1", "warmup_s": "0.2", "concurrency": "4", "postgres": creator}

    def measured(out: Path) -> results.StrategyResult:
        runner.execute(build(scenario, overrides), RecordingReporter(), out)
        (result,) = results.load(out).results
        assert result.status == "ok", result.failure
        return result

    hidden = measured(tmp_path / "hidden.json")
    server_side = part(hidden.server)
    assert server_side.connections_peak is None and server_side.connections_mean is None
    assert server_side.samples > 0
    (warning,) = [w for w in hidden.warnings if "pg_read_all_stats" in w]
    assert "GRANT pg_read_all_stats TO cb_creator" in warning
    with server.connect() as conn:
        conn.execute("GRANT pg_read_all_stats TO cb_creator")
    seen = measured(tmp_path / "seen.json")
    assert part(seen.server).connections_peak == 3
    assert not [w for w in seen.warnings if "pg_read_all_stats" in w]
    assert _ours_left(server) == []


def test_a_database_killed_before_its_comment_is_found_through_its_role(
    server: postgres.Postgres,
) -> None:
    from connbench.infra import ledger

    name, bare = "connbench_app_0dead000_1_mine", "connbench_app_0dead000_2_mine"
    with server.connect() as conn:
        conn.execute(f"CREATE ROLE {name}")
        conn.execute(f"COMMENT ON ROLE {name} IS 'connbench run 0dead000 pid 1 host h started x'")
        conn.execute(f"CREATE DATABASE {name}")  # the run was killed before its COMMENT
        conn.execute(f"CREATE DATABASE {bare}")  # unmarked, and no marked role names it
    try:
        with server.connect() as conn:
            found = [(o.kind, o.name) for o in ledger.find(conn)]
        assert found == [("database", name), ("role", name)]
        with server.connect() as conn:
            assert ledger.drop(server.connect, ledger.find(conn)) == []
        left = "SELECT datname FROM pg_database WHERE datname LIKE 'connbench\\_app%'"
        assert _rows(server, left) == [(bare,)]
    finally:
        with server.connect() as conn:
            for database in (name, bare):
                conn.execute(f"DROP DATABASE IF EXISTS {database}")
            conn.execute(f"DROP ROLE IF EXISTS {name}")
