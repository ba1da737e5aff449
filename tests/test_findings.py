"""Findings: each rule fires on a result that shows its pattern, and not on one that does not
(nor on noise: small differences, few responses)."""

from __future__ import annotations

from typing import Any

from connbench.analyse import findings
from connbench.model import results
from connbench.model.results import RunResult, StrategyResult

from .conftest import made, run_of, variant_of


def result(
    strategy: str = "pool",
    *,
    rps: float = 1000.0,
    ok: int = 5000,
    peak: int | None = 4,
    mean: float = 4.0,
    opened: int | None = 4,
    states: dict[str, float] | None = None,
    kind: str = "strategy",
    cpu_app: float | None = 40.0,
    saturated: bool = False,
    lost: int = 0,
    errors: dict[str, int] | None = None,
    workers: int = 1,
) -> StrategyResult:
    variant: dict[str, Any] = variant_of(f"{strategy} c=32 w={workers}", kind=kind)
    if kind != "strategy":
        variant["app"] = {"kind": kind, "name": strategy, "path": "/orders/", "method": "POST"}
    return made(
        strategy,
        variant=variant,
        requests={"ok": ok, "total": ok + sum((errors or {}).values()),
                  "errors": sum((errors or {}).values()), "errors_by_kind": errors or {}},
        throughput_rps=rps,
        latency_ms={"p50": 10.0, "p99": 40.0},
        server={
            "connections_peak": peak, "connections_mean": mean, "samples": 50,
            "sessions_opened": opened,
            "sessions_per_ok_response": None if opened is None else round(opened / ok, 3),
            "by_state_mean": states or {"active": mean},
            "by_state_peak": {k: int(v + 1) for k, v in (states or {"active": mean}).items()},
        },
        integrity={"ok_responses": ok, "rows_inserted": ok - lost, "ok": lost == 0,
                   "lost_writes": lost, "unacknowledged_writes": 0},
        generator={"engine": "httptools", "cpu_percent": 99.0 if saturated else 20.0,
                   "loop_cpu_percent": 99.0 if saturated else 20.0, "saturated": saturated},
        cpu_percent={"app": cpu_app, "postgres": 30.0},
    )  # fmt: skip


def rules(run: RunResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for finding in findings.findings(run):
        out.setdefault(finding.rule, []).append(finding.text)
    return out


def test_most_served_names_the_lead_and_its_cost_in_sessions() -> None:
    run = run_of(result("pool", rps=1200, peak=4), result("connect", rps=300, peak=32, opened=5000))
    [text] = rules(run)["most_served"]
    assert text.startswith("pool serves most: 1,200 req/s, p99 40.0 ms, with 4 server sessions")
    assert "4.0× the next, connect (300 req/s, p99 40.0 ms, 32 server sessions at peak)" in text


def test_most_served_does_not_call_a_lead_within_noise() -> None:
    run = run_of(result("pool", rps=1000), result("sync-pool", rps=950))
    [text] = rules(run)["most_served"]
    assert "serve alike" in text and "serves most" not in text
    assert "most_served" not in rules(run_of(result("pool")))  # one variant: nothing to compare


def test_a_session_per_request_is_said() -> None:
    found = rules(run_of(result("connect", opened=5000, ok=5000, peak=32, mean=20)))
    [text] = found["session_per_request"]
    assert "connect opens a server session per request (5,000 sessions, 1.00 per 2xx" in text
    assert "session_per_request" not in rules(run_of(result("pool", opened=4)))
    # Too few responses to say anything.
    assert not rules(run_of(result("connect", opened=50, ok=50)))


def test_a_pool_opened_but_unused_is_said_once() -> None:
    unused = result("pool-unused", opened=5000, peak=36, mean=21)
    found = rules(run_of(unused))
    [text] = found["pool_unused"]
    assert "held 36 server sessions at peak for 32 requests in flight, yet opens a new" in text
    assert "4 sessions held and not used" in text
    assert "session_per_request" not in found
    # Connecting per request, idle between statements on a busy machine: no pool.
    per_request = result("yield", opened=5000, peak=31, states={"idle": 9.7, "active": 0.6})
    found = rules(run_of(per_request))
    assert "pool_unused" not in found and "session_per_request" in found
    assert "pool_unused" not in rules(run_of(result("pool", peak=4, states={"idle": 4.0})))


def test_overflow_churn() -> None:
    churn = result("sqlalchemy", opened=193, peak=20, mean=12, ok=5000)
    [text] = rules(run_of(churn))["overflow_churn"]
    assert "opened 193 server sessions during the run for at most 20 open at once" in text
    assert "overflow_churn" not in rules(run_of(result("pool", opened=4, peak=4)))
    assert "overflow_churn" not in rules(run_of(result("pool", opened=9, peak=2)))  # too few


def test_idle_in_transaction_after_the_response() -> None:
    held = result("yield", states={"idle in transaction": 3.0, "active": 1.0}, mean=4)
    [text] = rules(run_of(held))["idle_in_transaction"]
    assert "yield keeps sessions idle in transaction (3.0 of its 4.0 on average, 4 at peak)" in text
    # Between two statements of a busy transaction: a quarter of the time, not a pattern.
    busy = result("pool", states={"idle in transaction": 1.0, "active": 3.0}, mean=4)
    assert "idle_in_transaction" not in rules(run_of(busy))


def test_max_connections_reached_at_peak_or_refused() -> None:
    def with_server(*entries: StrategyResult) -> RunResult:
        run = run_of(*entries)
        run.environment.postgres = results.postgres_info(
            "embedded", "16.2", {"max_connections": "100"}, "postgresql://x@h/db"
        )
        return run

    [text] = rules(with_server(result("connect", peak=97, mean=60)))["max_connections"]
    assert "97 sessions at peak of max_connections 100" in text
    refused = result("connect", peak=80, mean=60, errors={"db:53300": 12})
    [text] = rules(with_server(refused))["max_connections"]
    assert "12 requests refused for too many clients" in text
    assert "max_connections" not in rules(with_server(result("pool", peak=20)))
    # Every request refused: the window served nothing, so no peak was sampled (a run of
    # `connect --max-connections 20 -c 64` said "internal error" here).
    nothing = result("connect", peak=None, states={}, errors={"db:TooManyConnections": 91})
    [text] = rules(with_server(nothing))["max_connections"]
    assert "91 requests refused for too many clients" in text and "None" not in text


def test_lost_writes() -> None:
    [text] = rules(run_of(result("yield", lost=3)))["lost_writes"]
    assert "answered 2xx for 3 writes that are not in the table" in text
    assert "lost_writes" not in rules(run_of(result("pool")))


def test_a_saturated_generator_or_app() -> None:
    found = rules(run_of(result("pool", saturated=True, cpu_app=97.0)))
    assert "the load generator was saturated (99% CPU)" in found["generator_saturated"][0]
    assert "the app used 97% of a core with 1 worker" in found["app_saturated"][0]
    calm = rules(run_of(result("pool", cpu_app=97.0, workers=2)))  # 97 % of 2 workers' 200
    assert "generator_saturated" not in calm and "app_saturated" not in calm


def test_an_own_app_next_to_the_best_builtin() -> None:
    run = run_of(
        result("pool", rps=1000, peak=4),
        result("connect", rps=300, peak=32, opened=5000),
        result("api", rps=400, peak=20, kind="app"),
    )
    [text] = rules(run)["own_app"]
    assert text.startswith("Your app api (POST /orders/) serves less than the best built-in")
    assert "pool (GET /visit/): 400 against 1,000 req/s (0.40×)" in text
    assert "20 server sessions at peak against 4 (not the same requests" in text
    alone = run_of(result("api", kind="app"))
    assert "own_app" not in rules(alone)


def test_every_variant_that_connects_per_request_in_one_sentence() -> None:
    run = run_of(
        result("connect", opened=448, ok=448, peak=32, rps=88),
        result("yield", opened=408, ok=408, peak=31, rps=76),
        result("pool", rps=557),
    )
    [text] = rules(run)["session_per_request"]
    assert text.startswith(
        "connect and yield open a server session per request (1.00 sessions per 2xx response each)"
    )


def test_the_leaders_within_noise_of_each_other_lead_together() -> None:
    run = run_of(
        result("pool", rps=557), result("pool-nocheck", rps=578), result("sync-pool", rps=436)
    )
    [text] = rules(run)["most_served"]
    assert text.startswith("pool-nocheck and pool serve most, alike (578 and 557 req/s")
    assert "1.3× the next, sync-pool (436 req/s" in text
