"""Request mixes: templates, the weighted order, the flags and tables, and the example run end
to end (real PostgreSQL, real uvicorn, short windows)."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path

import pytest

from connbench.measure import load
from connbench.model import appspec, results, template
from connbench.model.errors import ScenarioError
from connbench.model.scenario import build

from .conftest import ROOT, WIDE, part, run_cli


def render(source: str, where: str = "body", n: int = 1) -> list[str]:
    compiled = template.compile_template(source, where)
    return [compiled.render(template.next_seq(), i) for i in range(n)]


# --- templates ---------------------------------------------------------------------------------


def test_randint_stays_in_its_range_and_reaches_both_ends() -> None:
    values = {int(v) for v in render("{{randint 3 5}}", n=400)}
    assert values == {3, 4, 5}


def test_uuid_is_new_each_time_and_seq_never_repeats() -> None:
    ids = render("{{uuid}}", n=50)
    assert len(set(ids)) == 50 and all(uuid.UUID(i).version == 4 for i in ids)
    seqs = [int(v) for v in render("{{seq}}", n=20)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20


def test_csv_rows_in_turn_the_same_row_for_every_placeholder(tmp_path: Path) -> None:
    data = tmp_path / "c.csv"
    data.write_text('id,name\n1,"a ""quoted"" name"\n2,b/c\n')
    both = template.compile_template(
        f'{{"id": {{{{csv {data} id}}}}, "n": "{{{{csv {data} name}}}}"}}', "body"
    )
    bodies = [json.loads(both.render(0, i)) for i in range(3)]
    assert bodies == [
        {"id": 1, "n": 'a "quoted" name'},  # escaped as in a JSON string
        {"id": 2, "n": "b/c"},
        {"id": 1, "n": 'a "quoted" name'},  # from the top again
    ]
    path = template.compile_template(f"/c/{{{{csv {data} name}}}}", "path")
    assert path.render(0, 1) == "/c/b%2Fc"  # percent-encoded in a path


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{nope}}", "unknown placeholder"),
        ("{{randint 1}}", "two integers"),
        ("{{randint 9 1}}", "LOW <= HIGH"),
        ("{{uuid 4}}", "takes no arguments"),
        ("{{csv nowhere.csv id}}", "cannot read nowhere.csv"),
        ("{{seq", "unbalanced"),
        ("{{}}", "empty placeholder"),
    ],
)
def test_bad_placeholders_say_which(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        template.compile_template(source, "body")


def test_a_csv_column_that_is_not_there_names_the_columns(tmp_path: Path) -> None:
    data = tmp_path / "c.csv"
    data.write_text("id,name\n1,a\n")
    with pytest.raises(ValueError, match=r"no column 'ident' \(columns: id, name\)"):
        template.compile_template(f"{{{{csv {data} ident}}}}", "body")


# --- requests: flags and tables ----------------------------------------------------------------


def test_request_flag_weight_method_path_and_templated_body() -> None:
    request = appspec.parse_request('3 post /orders/{{seq}} {"customer_id": {{randint 1 9}}}')
    assert (request.weight, request.method, request.path) == (3, "POST", "/orders/{{seq}}")
    assert request.body == '{"customer_id": {{randint 1 9}}}'
    assert appspec.parse_request("GET /health").weight == 1


def test_a_table_body_sends_numbers_for_number_placeholders() -> None:
    request = appspec.parse_request(
        {"method": "POST", "path": "/o/", "body": {"n": "{{randint 1 9}}", "ref": "{{uuid}}"}}
    )
    body = json.loads(appspec.Compiled(request).render()[2] or b"")
    assert isinstance(body["n"], int) and isinstance(body["ref"], str)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("0 GET /a/", "weight from 1 to 1000"),
        ("2 FETCH /a/", "expected one of GET"),
        ("GET a/", "starting with '/'"),
        ('POST /a/ {"a": {{uuid}}}', "JSON once its placeholders are filled in"),
        ("POST /a/ {not json", "expected JSON"),
        ("POST", "METHOD PATH"),
    ],
)
def test_bad_request_flags_say_what_is_wrong(flag: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        appspec.parse_request(flag)


def test_request_flags_replace_path_method_and_body_not_beside_them() -> None:
    with pytest.raises(ScenarioError, match="--request: give each request its path"):
        build(None, {"app": ["a=m:x"], "request": ["GET /a/", "GET /b/"], "path": "/c/"})
    with pytest.raises(ScenarioError, match="both 'GET /a/': give them a name each"):
        build(None, {"app": ["a=m:x"], "request": ["GET /a/", "2 GET /a/"]})
    scenario = build(None, {"app": ["a=m:x"], "request": ["2 GET /a/", "POST /b/"]})
    assert scenario.app[0].sent == "GET /a/ (mix of 2)"


@pytest.mark.skipif(importlib.util.find_spec("locust") is None, reason="Locust not installed")
def test_a_mix_is_refused_by_locust() -> None:
    # Not importorskip: importing locust has gevent monkey-patch this whole test process (its
    # threads, then uvloop's idea of the main thread and every signal handler after it).
    with pytest.raises(ScenarioError, match="--engine locust: app a sends a request mix"):
        build(None, {"app": ["a=m:x"], "request": ["GET /a/", "GET /b/"], "engine": "locust"})


def test_setup_sql_from_a_file(tmp_path: Path) -> None:
    seed = tmp_path / "seed.sql"
    seed.write_text("CREATE TABLE t (id int);\n")
    scenario = build(None, {"app": ["a=m:x"], "setup_sql": f"@{seed}"})
    assert scenario.app[0].setup_sql == "CREATE TABLE t (id int);\n"
    with pytest.raises(ScenarioError, match="--setup-sql: cannot read"):
        build(None, {"app": ["a=m:x"], "setup_sql": f"@{tmp_path / 'none.sql'}"})


def test_header_secrets_of_each_request_stay_out_of_the_result(tmp_path: Path) -> None:
    scenario_file = tmp_path / "s.toml"
    scenario_file.write_text(
        '[[app]]\nname = "a"\napp = "m:x"\n'
        '[[app.request]]\npath = "/a/"\nheaders = { Authorization = "Bearer s3cr3t-token" }\n'
    )
    data = build(scenario_file, {}).to_dict()
    assert "s3cr3t-token" not in json.dumps(data)
    assert data["app"][0]["requests"][0]["headers"] == ["Authorization"]


# --- the order a mix is sent in ----------------------------------------------------------------


def test_weighted_order_has_the_weights_and_spreads_them() -> None:
    order = load.weighted_order([6, 3, 1])
    assert [order.count(i) for i in range(3)] == [6, 3, 1]
    assert order[:2] != [0, 0] or order[2] != 0  # not all of one kind first
    assert load.weighted_order([4, 2]) == [0, 1, 0]  # reduced by their common divisor


def test_a_mix_sends_each_kind_with_its_own_values() -> None:
    requests = appspec.parse_requests(
        ['2 POST /o/ {"n": {{seq}}}', "GET /o/{{randint 1 1}}", "GET /health"]
    )
    mix = load.Mix(requests, "h:1")
    sent = []
    for _ in range(8):
        sent.append(mix.kinds[mix.next()].wire())
    assert sum(1 for s in sent if s.startswith(b"POST /o/ ")) == 4
    assert (
        sent.count(
            b"GET /o/1 HTTP/1.1\r\nHost: h:1\r\nUser-Agent: connbench\r\nAccept: */*\r\n\r\n"
        )
        == 2
    )
    bodies = [s.split(b"\r\n\r\n", 1)[1] for s in sent if s.startswith(b"POST")]
    assert len(set(bodies)) == 4  # a new sequence number each time
    static = mix.kinds[2]
    assert static.static and static.wire() is static.wire()  # built once


# --- the example, end to end -------------------------------------------------------------------

EXAMPLE = ROOT / "examples" / "shop" / "scenario.toml"
SHORT = ("--duration", "1.5", "--warmup", "0.5", "--concurrency", "4", "--no-charts")


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, results.RunResult]:
    out = tmp_path_factory.mktemp("orders") / "r.json"
    done = run_cli("run", str(EXAMPLE), *SHORT, "-o", str(out), "--format", "markdown", cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, results.load(out)


@pytest.mark.integration
def test_the_example_mix_runs_from_its_scenario_file(
    example_run: tuple[str, results.RunResult],
) -> None:
    _, run = example_run
    orders = next(r for r in run.results if r.strategy == "orders")
    assert orders.status == "ok" and orders.requests and orders.requests.errors == 0
    kinds = orders.by_request or []
    assert [k.name for k in kinds] == ["POST /orders/", "GET /customers/ID/orders", "GET /health"]
    sent = [k.sent for k in kinds]
    # The weighted order: 6:3:1 to within one cycle of the mix.
    assert abs(sent[0] - 2 * sent[1]) <= 10 and abs(sent[0] - 6 * sent[2]) <= 10
    assert all(k.ok > 0 and k.latency_ms is not None for k in kinds)
    assert sum(k.ok for k in kinds) == orders.requests.ok
    # Every insert landed (a fresh ref, a seeded customer): rows = the POSTs' 2xx, not all 2xx.
    integrity = orders.integrity
    assert integrity is not None and integrity.ok is True
    assert integrity.write_responses == integrity.rows_inserted
    assert part(integrity.rows_inserted) < integrity.ok_responses
    app = orders.variant.app
    assert app is not None and app.requests and app.requests[0].headers == ["Authorization"]


@pytest.mark.integration
def test_every_row_says_what_it_sent(example_run: tuple[str, results.RunResult]) -> None:
    markdown, run = example_run
    assert "| orders | POST /orders/ (mix of 3) |" in markdown
    assert "| pool | GET /visit/ |" in markdown
    assert "**By kind of request**" in markdown and "| orders | GET /health | 1 (10%) |" in markdown
    from connbench.present import run as view

    csv_rows = view.run_csv(run).splitlines()
    assert any(",POST /orders/ (mix of 3)," in row for row in csv_rows)
    from connbench.present import html

    page = html.report([("r.json", run)])
    assert "<td>POST /orders/ (mix of 3)</td>" in page and "<td>GET /visit/</td>" in page
    assert "<h3>By kind of request</h3>" in page and "<td>GET /health</td>" in page
    from connbench.analyse import findings

    for finding in findings.findings(run):  # (a busy machine may serve too few to say any)
        assert '<div class="findings"><h3>Findings</h3>' in page and finding.rule
        assert f"- {finding.text}" in markdown


@pytest.mark.integration
def test_check_alone_sends_one_of_each_and_measures_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    done = run_cli("run", str(EXAMPLE), "--check", "-o", str(out), cwd=ROOT, env_extra=WIDE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked app orders: POST /orders/ 201, GET /customers/" in done.stdout
    assert "GET /health 200" in done.stdout and "checks passed" in done.stdout
    assert not out.exists()


@pytest.mark.integration
def test_a_wrong_token_fails_the_check_with_the_response(tmp_path: Path) -> None:
    scenario = tmp_path / "wrong.toml"
    scenario.write_text(
        EXAMPLE.read_text().replace("Bearer dev-token", "Bearer typo-token")
        .replace('strategies = ["pool"]', 'strategies = ["pool", "connect"]')
    )  # fmt: skip
    done = run_cli(
        "run", str(scenario), *SHORT, "-o", str(tmp_path / "r.json"),
        env_extra={"TMPDIR": str(tmp_path)}, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1
    assert "app orders: POST http://127.0.0.1:" in done.stderr
    assert "/orders/ answered 401 Unauthorized" in done.stderr
    assert 'response: {"detail":"bad or missing bearer token"}' in done.stderr
    assert "nothing was measured" in done.stderr
    assert "pool c=" not in done.stdout  # no strategy ran before the check failed


def test_rows_that_all_sent_the_same_say_it_once() -> None:
    from connbench.present import run as view

    from .conftest import entry, run_of

    markdown = view.run_markdown(run_of(entry("pool"), entry("connect", pool=None)))
    assert "| sent |" not in markdown
    assert "load generator: httptools · each request GET /visit/" in markdown
