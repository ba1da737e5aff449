"""Every default is defined once, in connbench.model.defaults (and every choice the help lists,
in connbench.model.choices): the model applies it and the help states it. Changed there (in a
fresh interpreter), every place must follow; a figure restated anywhere (a help string, a
dataclass field, a Typer default) would keep its old value."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

# Values no default has, each different from the others, so a stale figure shows.
CHANGED: dict[str, Any] = {
    "STRATEGY": "connect",
    "CONCURRENCY": 37,
    "DURATION_S": 13.0,
    "WARMUP_S": 3.0,
    "TIMEOUT_S": 11.0,
    "POOL_MIN": 7,
    "WORKERS": 3,
    "TOPOLOGY": "pgbouncer-session",
    "PGBOUNCER_POOL_SIZE": 23,
    "REPEAT": 2,
    "MAX_ROUNDS": 41,
    "ALPHA": 0.07,
    "POSTGRES": "local",
    "ENGINE": "aiohttp",
    "METHOD": "PUT",
    "MAX_CONNECTIONS": 107,
    "PROGRESS_EVERY_S": 17.0,
    "CALIBRATE_DURATION_S": 6.0,
    "LOCUST_WORKERS": 5,
    "EXPECT_WORKERS": 9,
    "LOCUST_BIND": "127.0.0.9",
    "LOCUST_PORT": 5557,
}

# The choices the help lists, one more each (connbench.model.choices).
ADDED = {"TOPOLOGIES": "pgbouncer-statement", "ENGINES": "wrk", "DIMENSIONS": "colour"}

PROBE = """
import dataclasses, json, sys
from connbench.model import choices, defaults
for name, value in json.loads(sys.argv[1]).items():
    assert hasattr(defaults, name), name
    setattr(defaults, name, value)
for name, value in json.loads(sys.argv[2]).items():
    setattr(choices, name, (*getattr(choices, name), value))
from typer.testing import CliRunner
from connbench.analyse import compare
from connbench.cli import app
from connbench.measure import locust_engine
from connbench.model import appspec, scenario
from connbench.present import progress
runner = CliRunner()
helps = {
    # without whitespace: click wraps at 100 columns, even after a hyphen
    command: "".join(runner.invoke(app, [command, "-h"], env={"COLUMNS": "300"}).stdout.split())
    for command in ("run", "calibrate", "serve", "locustfile", "compare")
}
auto = scenario.build(None, {"strategies": ["pool", "connect"], "repeat": "auto",
                             "base": "pool", "head": "connect", "fail_on": ["throughput:10%"]})
print(json.dumps({
    "help": helps,
    "scenario": scenario.Scenario().to_dict(),
    "max_rounds": auto.repeat,
    "locust": dataclasses.asdict(locust_engine.LocustOptions()),
    "alpha": compare.DEFAULT_ALPHA,
    "every_s": progress.DEFAULT_EVERY_S,
    "method": appspec.Request().method,
    "choices": [scenario.TOPOLOGIES[-1], scenario.ENGINES[-1], scenario.DIMENSIONS[-1]],
}))
"""


def flat(text: str) -> str:
    return "".join(text.split())


@pytest.fixture(scope="module")
def probed() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CHANGED), json.dumps(ADDED)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


@pytest.mark.integration
def test_the_model_applies_the_defaults_module(probed: dict[str, Any]) -> None:
    scenario = probed["scenario"]
    assert scenario["strategies"] == ["connect"]
    assert scenario["concurrency"] == [37]
    assert (scenario["duration_s"], scenario["warmup_s"], scenario["timeout_s"]) == (13, 3, 11)
    assert (scenario["pool_min_effective"], scenario["pool_max_effective"]) == (7, [7])
    assert scenario["workers"] == [3] and scenario["topology"] == ["pgbouncer-session"]
    assert scenario["pgbouncer_pool_size"] == 23 and scenario["repeat"] == 2
    assert scenario["postgres"] == "local" and scenario["engine"] == "aiohttp"
    locust = (scenario["locust_workers"], scenario["expect_workers"], scenario["locust_bind"],
              scenario["locust_port"])  # fmt: skip
    assert locust == (5, 9, "127.0.0.9", 5557)
    assert probed["locust"] == {
        "workers": 5, "expect_workers": 9, "bind_host": "127.0.0.9", "port": 5557, "token": None
    }  # fmt: skip
    assert probed["max_rounds"] == 41
    assert probed["alpha"] == 0.07 and probed["every_s"] == 17 and probed["method"] == "PUT"


@pytest.mark.integration
def test_the_help_states_the_defaults_module(probed: dict[str, Any]) -> None:
    run = probed["help"]["run"]
    for said in (
        "'all' (default: connect)",
        "e.g. 8,32,128 (default: 37)",
        "a bare number is seconds (default: 13s)",
        "before each window (default: 3s)",
        "Per-request timeout (default: 11s)",
        "Pool min_size (default: psycopg_pool's, 7)",
        "uvicorn worker processes; INTEGER or a comma list (a sweep) (default: 3)",
        "pgbouncer-session (default), direct, pgbouncer-transaction or pgbouncer-statement; a "
        "comma list sweeps",
        "(default_pool_size) (default: 23)",
        "compare --base/--head (default: 2)",
        "inconclusive (default: 41)",
        "its error rate (default: 0.07)",
        "local (default), local, docker",
        "The throwaway server's max_connections (default: 107)",
        "Load generator: aiohttp (default), httptools, httpx, locust, or wrk",
        "local worker processes (default 5)",
        "on each host; default 9)",
        "(default 127.0.0.9;",
        "a line every 17s elsewhere",
        "the request's method (default: PUT)",
    ):
        assert flat(said) in run, said
    calibrate = probed["help"]["calibrate"]
    assert flat("(default: 37)") in calibrate and flat("1m (default: 6s)") in calibrate
    serve = probed["help"]["serve"]
    assert flat("Pool min_size (default: 7)") in serve and flat("processes (default: 3)") in serve
    assert flat("(default_pool_size) (default: 23)") in serve
    assert flat("direct, pgbouncer-transaction or pgbouncer-statement.") in serve
    locustfile = probed["help"]["locustfile"]
    for said in ("[default: connect]", "[default: 37; x>=1]", "[default: 11.0]"):
        assert flat(said) in locustfile, said
    assert flat("(default: 0.07, or the gate's)") in probed["help"]["compare"]
    assert flat("topology, rate, colour (e.g. --ignore pool") in probed["help"]["compare"]
    assert probed["choices"] == list(ADDED.values())
