"""Own apps and targets as the scenario reads them: pure parsing, no server."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from connbench.infra import appserver, postgres, userapp
from connbench.infra.launch import is_asgi
from connbench.model import appspec
from connbench.model.errors import ScenarioError
from connbench.model.scenario import build


def test_app_flag_with_and_without_a_directory() -> None:
    spec = appspec.parse_app("mine=examples.myapp.main:app")
    assert (spec.name, spec.app, spec.dir, spec.kind, spec.path) == (
        "mine", "examples.myapp.main:app", None, "app", "/visit/"
    )  # fmt: skip
    assert appspec.parse_app("b=pkg.mod:factory.app@/srv/b").dir == "/srv/b"


def test_target_url_path_is_the_request_path() -> None:
    spec = appspec.parse_target("stg=https://stg.example:8443/api/visit?x=1")
    assert (spec.url, spec.path, spec.kind) == (
        "https://stg.example:8443",
        "/api/visit?x=1",
        "target",
    )
    assert appspec.parse_target("t=http://127.0.0.1:8000").path == "/visit/"


def test_app_alone_runs_no_default_strategy_and_flags_shape_every_request() -> None:
    scenario = build(
        None,
        {"app": ["a=m:x"], "method": "post", "body": '{"n": 1}', "headers": ["X-Key: s3cret"]},
    )
    assert scenario.strategies == ()
    [variant] = scenario.variants()
    assert (variant.key, variant.kind) == ("a c=32 w=1", "app")
    spec = scenario.app[0]
    assert (spec.method, spec.body_bytes, spec.headers) == (
        "POST",
        b'{"n": 1}',
        (("X-Key", "s3cret"),),
    )


def test_header_and_env_values_are_not_saved(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[[app]]\nname = "a"\napp = "m:x"\nheaders = { Authorization = "Bearer tok-123" }\n'
        'env = { API_KEY = "key-456" }\n'
    )
    data = build(path, {}).to_dict()
    assert data["app"][0]["headers"] == ["Authorization"] and data["app"][0]["env"] == ["API_KEY"]
    assert "tok-123" not in str(data) and "key-456" not in str(data)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "a"', "give either app = 'MODULE:ATTR' or url = 'http://...'"),
        ('name = "a"\napp = "m:x"\nurl = "http://h/"', "give either"),
        ('app = "m:x"', "every [[app]] needs a name"),
        ('name = "a"\napp = "m:x"\nport = 1', "unknown key 'port'"),
        ('name = "a"\napp = "m:x"\nmethod = "BREW"', "app 'a': method: expected one of"),
    ],
)
def test_bad_app_table_names_file_and_cause(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f"[[app]]\n{table}\n")
    with pytest.raises(ScenarioError, match=r"s\.toml: app: ") as caught:
        build(path, {})
    assert message in str(caught.value)


def test_database_url_is_a_url_with_the_password_quoted() -> None:
    dsn = "host=127.0.0.1 port=5433 user=u password=p@ss/w:rd dbname=d application_name=x"
    assert appserver.database_url(dsn) == (
        "postgresql://u:p%40ss%2Fw%3Ard@127.0.0.1:5433/d?application_name=x"
    )
    env = appserver.database_env(dsn)
    assert (env["PGHOST"], env["PGPORT"], env["PGPASSWORD"], env["PGDATABASE"]) == (
        "127.0.0.1", "5433", "p@ss/w:rd", "d"
    )  # fmt: skip


def test_is_asgi() -> None:
    from fastapi import FastAPI

    async def raw(scope: object, receive: object, send: object) -> None: ...

    assert is_asgi(FastAPI()) and is_asgi(raw)
    assert not is_asgi(42) and not is_asgi(print) and not is_asgi(FastAPI)


def test_scram_verifier_lets_the_password_in(pg: postgres.Postgres) -> None:
    """The role is created from a verifier worked out here; the password logs in with it."""
    secret = userapp.scram_verifier("pw-for-test")
    assert secret.startswith("SCRAM-SHA-256$4096:") and "pw-for-test" not in secret
    with pg.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE scram_probe LOGIN PASSWORD {}").format(sql.Literal(secret))
        )
        try:
            psycopg.connect(
                make_conninfo(pg.dsn, user="scram_probe", password="pw-for-test")
            ).close()
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(make_conninfo(pg.dsn, user="scram_probe", password="wrong")).close()
        finally:
            conn.execute("DROP ROLE scram_probe")
