"""Your own app as a variant, and a running target: real PostgreSQL, real uvicorn, short runs.

The server-side figures must belong to the right variant whatever library the app uses and
whether or not it sets application_name: the apps here use asyncpg and SQLAlchemy, one with a
foreign application_name and one with none, run beside a built-in strategy.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connbench import runner
from connbench.infra import postgres
from connbench.model import results
from connbench.model.scenario import build

from .conftest import APP_NAME_PREFIX, ROOT, RecordingReporter, like_prefix, part, run_cli
from .processes import serving

SHORT = {"duration_s": "1.5", "warmup_s": "0.5", "concurrency": "6"}


@pytest.fixture(scope="module")
def own_apps(tmp_path_factory: pytest.TempPathFactory, pg: postgres.Postgres) -> results.RunResult:
    scenario_file = tmp_path_factory.mktemp("own") / "own.toml"
    scenario_file.write_text(
        """
strategies = ["pool"]

[[app]]
name = "asyncpg-app"
app = "tests.apps.asyncpg_app:app"
count_sql = "SELECT count(*) FROM hits"
env = { HITS_POOL_SIZE = "3" }

[[app]]
name = "sqlalchemy-app"
app = "sqlalchemy_app:app"
dir = "tests/apps"
path = "/orders/"
method = "POST"
body = { qty = 2 }
setup_sql = "CREATE TABLE orders (id bigserial PRIMARY KEY, qty int NOT NULL)"
count_sql = "SELECT count(*) FROM orders WHERE qty = 2"
"""
    )
    out = scenario_file.with_suffix(".json")
    # On the session's server as a DSN: connbench creates its roles and databases there.
    runner.execute(build(scenario_file, {**SHORT, "postgres": pg.dsn}), RecordingReporter(), out)
    return results.load(out)


def _result(run: results.RunResult, name: str) -> results.StrategyResult:
    return next(r for r in run.results if r.strategy == name)


def test_own_apps_run_beside_a_strategy_with_rows_matching_responses(
    own_apps: results.RunResult,
) -> None:
    assert [r.strategy for r in own_apps.results] == ["pool", "asyncpg-app", "sqlalchemy-app"]
    for result in own_apps.results:
        assert result.status == "ok", result.failure
        assert part(result.requests).ok > 0 and part(result.requests).errors == 0
        assert part(result.integrity).ok is True, result.integrity
        assert part(result.cpu_percent).app is not None
    described = part(_result(own_apps, "sqlalchemy-app").variant.app)
    assert (described.method, described.dir) == ("POST", "tests/apps")
    assert part(_result(own_apps, "asyncpg-app").variant.app).env == ["HITS_POOL_SIZE"]


def test_asyncpg_pool_is_attributed_despite_a_foreign_application_name(
    own_apps: results.RunResult,
) -> None:
    server = part(_result(own_apps, "asyncpg-app").server)
    assert server.connections_peak == 3  # its pool as its env sized it, and nobody else's
    assert server.sessions_opened == 0  # opened at start-up, none while measured


def test_sqlalchemy_nullpool_sessions_are_counted_one_per_request(
    own_apps: results.RunResult,
) -> None:
    result = _result(own_apps, "sqlalchemy-app")
    server = part(result.server)
    # pg_stat_database counts every session, however short: exactly one per 2xx.
    assert server.sessions_opened == part(result.integrity).ok_responses
    assert 1 <= part(server.connections_peak) <= 6


def test_the_builtin_strategy_beside_them_keeps_its_own_figures(
    own_apps: results.RunResult,
) -> None:
    server = part(_result(own_apps, "pool").server)
    assert server.connections_peak == 4 and server.sessions_opened == 4


def test_roles_and_databases_are_dropped_afterwards(
    own_apps: results.RunResult, pg: postgres.Postgres
) -> None:
    with pg.connect() as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %(apps)s "
            "UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE %(apps)s",
            {"apps": like_prefix(APP_NAME_PREFIX)},
        ).fetchall()
    assert left == []


@pytest.mark.integration
def test_example_app_runs_from_the_repository_root(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = run_cli(
        "run", "--strategy", "pool", "--app", "mine=examples.myapp.main:app",
        "--duration", "1", "--warmup", "0.3", "--concurrency", "4", "--no-charts",
        "--count-sql", "SELECT count(*) FROM items", "-o", str(out), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    mine = next(r for r in results.load(out).results if r.strategy == "mine")
    assert part(mine.integrity).ok is True
    assert part(part(mine.server).connections_peak) >= 2 and part(mine.server).samples > 3


# --- a target: an app somebody else started ---------------------------------------------------


@pytest.fixture
def served(pg: postgres.Postgres) -> Iterator[tuple[str, str]]:
    """``connbench serve pool`` on the session's server: its URL and the table it writes."""
    with serving("pool", "--postgres", pg.dsn) as serve:
        table = serve.process.wait_for_line(r"rows go to table (\w+)").group(1)
        yield serve.url, table


def test_target_run_against_connbench_serve(
    served: tuple[str, str], pg: postgres.Postgres, tmp_path: Path
) -> None:
    url, table = served
    out = tmp_path / "t.json"
    done = run_cli(
        "run", "--target", f"served={url}", "--postgres", pg.dsn,
        "--count-sql", f"SELECT count(*) FROM {table}",
        "--duration", "1.5", "--warmup", "0.3", "--concurrency", "6", "--format", "json",
        "-o", str(out), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = results.load(out).results[0]
    assert result.status == "ok" and result.variant.kind == "target"
    assert part(result.cpu_percent).app is None  # not ours: unknown, not 0
    assert json.loads(done.stdout)["summary"][0]["cpu_app_percent"] is None
    integrity = part(result.integrity)
    assert integrity.ok is True and part(integrity.rows_inserted) > 0
    assert part(result.server).connections_peak == 4  # serve's pool: psycopg_pool's 4
    assert part(result.server).sessions_opened == 0
    assert pg.dsn not in out.read_text() and pg.dsn not in done.stdout + done.stderr


def test_target_that_does_not_answer_is_one_line(pg: postgres.Postgres, tmp_path: Path) -> None:
    done = run_cli(
        "run", "--target", "gone=http://127.0.0.1:9/", "--postgres", pg.dsn,
        "--duration", "1", "-o", str(tmp_path / "r.json"), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1
    # Checked before anything is measured: the run stops there, said on stderr.
    assert "target gone: GET http://127.0.0.1:9/visit/ did not answer" in done.stderr
    assert "connection refused" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


# --- bad apps: checked before anything is measured, each named with its cause, exit 1 ---------

BAD_APPS = {
    "nomod": ('app = "tests.apps.nowhere:app"', "module 'tests.apps.nowhere' does not import"),
    "noattr": ('app = "tests.apps.bad_apps:nothing"', "has no attribute 'nothing'"),
    "notasgi": ('app = "tests.apps.bad_apps:not_an_app"', "is not an ASGI app (it is a int)"),
    "silent": (
        'app = "tests.apps.bad_apps:silent"\nready_timeout_s = 2',
        "GET http://127.0.0.1:",
    ),
    "missing": ('app = "tests.apps.bad_apps:ok_app"\npath = "/nope/"', "answered 404 Not Found"),
    "broken": (
        'app = "tests.apps.bad_apps:ok_app"\npath = "/boom/"',
        "answered 500 Internal Server Error",
    ),
    "crashing": (
        'app = "tests.apps.bad_apps:ok_app"\n'
        '[[app.request]]\npath = "/ok/"\n[[app.request]]\nmethod = "POST"\npath = "/crash/"',
        "POST http://127.0.0.1:",
    ),
    "badcount": (
        'app = "tests.apps.bad_apps:ok_app"\npath = "/ok/"\n'
        'count_sql = "SELECT count(*) FROM nope"',
        'count_sql failed: relation "nope" does not exist',
    ),
}


@pytest.fixture(scope="module")
def bad_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp = tmp_path_factory.mktemp("bad")
    tables = "".join(
        f'\n[[app]]\nname = "{name}"\n{body}\n' for name, (body, _) in BAD_APPS.items()
    )
    scenario = tmp / "bad.toml"
    scenario.write_text(f'strategies = ["pool"]\nduration_s = 1\nwarmup_s = 0.2\n{tables}')
    out = tmp / "r.json"
    # The logs kept for the failures go to TMPDIR: the test's own directory.
    done = run_cli(
        "run", str(scenario), "--no-charts", "-o", str(out), cwd=ROOT,
        env_extra={"TMPDIR": str(tmp)},
    )  # fmt: skip
    return done, out


@pytest.mark.parametrize("name", list(BAD_APPS))
@pytest.mark.integration
def test_bad_app_is_named_with_the_cause(
    bad_run: tuple[subprocess.CompletedProcess[str], Path], name: str
) -> None:
    done, _ = bad_run
    [line] = [line for line in done.stderr.splitlines() if line.startswith(f"app {name}: ")]
    assert BAD_APPS[name][1] in line, line


@pytest.mark.integration
def test_bad_apps_are_checked_before_anything_is_measured(
    bad_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, out = bad_run
    assert done.returncode == 1
    assert f"{len(BAD_APPS)} apps failed the check, nothing was measured" in done.stderr
    assert not results.load(out).results  # not even the built-in strategy
    # connbench's own traceback, that is: an app's log tail (indented) may hold the app's.
    assert not [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Tr")]


@pytest.mark.integration
def test_a_failed_check_shows_the_response_and_keeps_the_log(
    bad_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, _ = bad_run
    section = done.stderr.split("app broken: ", 1)[1].split("\napp ", 1)[0]
    assert 'response: {"detail":"boom"}' in section
    # The second kind of a mix is checked too, and its traceback is in the app's log.
    section = done.stderr.split("app crashing: ", 1)[1].split("\napp ", 1)[0]
    assert "/crash/ answered 500 Internal Server Error" in section
    assert "response: Internal Server Error" in section
    assert "the app's log, last lines:" in section
    assert "RuntimeError: the orders table is missing" in section
    kept = Path(re.findall(r"its whole log is kept in (\S+)", section)[0])
    assert (kept.stat().st_mode & 0o777) == 0o600 and (kept.parent.stat().st_mode & 0o777) == 0o700
    assert "RuntimeError: the orders table is missing" in kept.read_text()
