from pathlib import Path

import pytest

from connbench.apps import STRATEGIES
from connbench.model.errors import BadInput, ScenarioError
from connbench.model.scenario import Scenario, build

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_use_psycopg_pool_defaults() -> None:
    scenario = build(None, {})
    assert scenario == Scenario()
    assert scenario.effective_pool == (4, (4,))
    assert build(None, {"pool_min": "2"}).effective_pool == (2, (2,))
    assert build(None, {"pool_min": "2", "pool_max": "8"}).effective_pool == (2, (8,))


def test_strategies_accept_repeats_commas_and_all() -> None:
    assert build(None, {"strategies": ["pool,connect", "pool"]}).strategies == ("pool", "connect")
    assert build(None, {"strategies": ["all"]}).strategies == tuple(STRATEGIES)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("strategies", ["nope"], "--strategy: unknown strategy 'nope'"),
        (
            "concurrency",
            "0",
            "--concurrency: expected a positive whole number "
            "(or a comma-separated list of them), got '0'",
        ),
        ("concurrency", "abc", "--concurrency: expected a positive whole number"),
        ("concurrency", "-3", "--concurrency: expected a positive whole number"),
        ("duration_s", "0", "--duration: expected a number of seconds > 0"),
        ("duration_s", "nan", "--duration: expected a number of seconds > 0"),
        ("warmup_s", "-1", "--warmup: expected a number of seconds >= 0"),
        ("pool_max", "0", "--pool-max: expected a positive whole number"),
        ("engine", "curl", "--engine: expected one of httptools, aiohttp, httpx"),
    ],
)
def test_bad_flags_name_the_flag(key: str, value: object, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        build(None, {key: value})
    assert message in str(info.value)


def test_pool_max_below_min_is_rejected() -> None:
    with pytest.raises(ScenarioError, match="pool_max"):
        build(None, {"pool_min": "8", "pool_max": "4"})


def test_bad_backend_is_bad_input() -> None:
    with pytest.raises(BadInput, match="unknown backend 'mysql'"):
        build(None, {"postgres": "mysql"})


def test_file_values_and_flag_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'strategies = ["pool"]\nconcurrency = 8\nduration_s = 3\n[server]\nmax_connections = 40\n'
    )
    scenario = build(path, {"concurrency": "16", "server": {"shared_buffers": "64MB"}})
    assert scenario.name == "s"
    assert scenario.concurrency == (16,)
    assert scenario.duration_s == 3
    assert scenario.server == {"max_connections": "40", "shared_buffers": "64MB"}
    assert scenario.source_text == path.read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "concurrency = 0\n",
            "s.toml: concurrency: expected a positive whole number "
            "(or a comma-separated list of them), got 0",
        ),
        ("concurency = 8\n", "s.toml: concurency: unknown key"),
        ("concurrency = \n", "s.toml: not valid TOML"),
        ('strategies = ["pool", 3]\n', "s.toml: strategies: expected strategy names"),
        ("[server]\nwork_mem = '4MB'\n", "s.toml: server: unknown server setting 'work_mem'"),
        ("duration_s = true\n", "s.toml: duration_s: expected a number of seconds > 0"),
        (
            "[gate]\nthroughput = 10\n",
            's.toml: gate: throughput: expected a percentage such as "10%", got 10',
        ),
        (
            "[gate]\nthroughput = '-5%'\n",
            "s.toml: gate: throughput: expected a percentage above 0",
        ),
        ("[gate]\nlatency = '5%'\n", "s.toml: gate: latency: unknown metric 'latency'"),
        ("[gate]\nalpha = 5\n", "s.toml: gate: alpha: expected a significance level"),
        ("gate = 3\n", 's.toml: gate: expected a table such as [gate] throughput = "10%"'),
        ("fail_if = 'p98>5'\n", "s.toml: fail_if: 'p98>5': unknown metric 'p98'"),
        ("fail_if = [1]\n", "s.toml: fail_if: expected expressions such as 'p99_ms>50'"),
    ],
)
def test_malformed_file_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        build(path, {})
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        build(tmp_path / "nope.toml", {})


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path: Path) -> None:
    scenario = build(path, {})
    assert scenario.strategies


def test_recorded_scenario_never_holds_a_password(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('postgres = "postgresql://bob:pa55word@db.internal:5432/app"\n')
    recorded = build(path, {}).to_dict()
    assert "pa55word" not in str(recorded)
    assert recorded["postgres"] == "postgresql://bob@db.internal:5432/app"


def test_sweeps_accept_lists_and_build_the_matrix() -> None:
    scenario = build(
        None,
        {
            "strategies": ["pool,connect"],
            "concurrency": "8,32",
            "pool_min": "2",
            "pool_max": "2,4",
            "repeat": "3",
        },
    )
    assert scenario.concurrency == (8, 32)
    assert scenario.repeat == 3
    keys = [v.key for v in scenario.variants()]
    assert keys == [
        "pool c=8 w=1 pool=2..2",
        "pool c=8 w=1 pool=2..4",
        "pool c=32 w=1 pool=2..2",
        "pool c=32 w=1 pool=2..4",
        "connect c=8 w=1",  # no pool: one cell per concurrency
        "connect c=32 w=1",
    ]


def test_sweep_values_are_checked_one_by_one(tmp_path: Path) -> None:
    with pytest.raises(
        ScenarioError, match="--concurrency: expected a positive whole number in every item"
    ):
        build(None, {"concurrency": "8,0"})
    path = tmp_path / "s.toml"
    path.write_text("workers = [1, 2, -1]\n")
    with pytest.raises(ScenarioError, match="s.toml: workers: expected a positive whole number"):
        build(path, {})
    with pytest.raises(ScenarioError, match="pool_max"):
        build(None, {"pool_min": "4", "pool_max": "8,2"})


def test_rate_is_an_open_model_dimension() -> None:
    scenario = build(None, {"strategies": ["pool"], "rate": "100,250.5"})
    assert [v.key for v in scenario.variants()] == [
        "pool c=32 w=1 pool=4..4 rate=100",
        "pool c=32 w=1 pool=4..4 rate=250.5",
    ]
    with pytest.raises(ScenarioError, match="--rate: expected requests per second > 0"):
        build(None, {"rate": "0"})
    with pytest.raises(ScenarioError, match="needs --engine httptools"):
        build(None, {"rate": "100", "engine": "aiohttp"})


def test_topology_is_a_sweepable_dimension_named_in_the_key() -> None:
    scenario = build(
        None,
        {"strategies": ["pool,connect"], "topology": "direct,pgbouncer-transaction"},
    )
    assert scenario.topology == ("direct", "pgbouncer-transaction")
    assert [v.key for v in scenario.variants()] == [
        "pool c=32 w=1 pool=4..4",  # direct keys are what they were before topologies
        "pool c=32 w=1 pool=4..4 via=pgbouncer-transaction",
        "connect c=32 w=1",
        "connect c=32 w=1 via=pgbouncer-transaction",
    ]
    assert scenario.to_dict()["topology"] == ["direct", "pgbouncer-transaction"]
    assert build(None, {}).topology == ("direct",)


def test_topology_and_pgbouncer_pool_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('topology = ["pgbouncer-session"]\npgbouncer_pool_size = 8\n')
    scenario = build(path, {})
    assert scenario.topology == ("pgbouncer-session",)
    assert scenario.pgbouncer_pool_size == 8


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "topology",
            "pgbouncer",
            "--topology: expected one of direct, pgbouncer-transaction, pgbouncer-session",
        ),
        ("pgbouncer_pool_size", "0", "--pgbouncer-pool-size: expected a positive whole number"),
    ],
)
def test_bad_topology_flags(key: str, value: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        build(None, {key: value})
    assert message in str(info.value)


def test_gate_and_limits_from_a_file_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'fail_if = ["p99_ms > 50", "error_rate>0.001"]\n'
        '[gate]\nthroughput = "10%"\np99 = "25%"\nalpha = 0.01\n'
    )
    scenario = build(path, {})
    assert scenario.gate == {"throughput": 0.10, "p99": 0.25, "alpha": 0.01}
    recorded = scenario.to_dict()
    assert recorded["gate"] == {"throughput": 0.10, "p99": 0.25, "alpha": 0.01}
    assert recorded["fail_if"] == ["p99_ms>50", "error_rate>0.001"]
    # The flag replaces the file's limits, as every flag replaces its key.
    assert build(path, {"fail_if": ["throughput_rps<10"]}).to_dict()["fail_if"] == [
        "throughput_rps<10"
    ]


def test_bad_fail_if_flag_names_the_flag() -> None:
    with pytest.raises(ScenarioError, match=r"--fail-if: cannot read 'p99_ms=5'"):
        build(None, {"fail_if": ["p99_ms=5"]})
