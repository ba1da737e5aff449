"""Verdicts that must not say "ok" when nothing good happened, and counts that must add up.

The load generator runs against tiny HTTP servers of the test's own (one that never answers,
one that answers at once): real sockets, no database needed to make the point.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import socketserver
from collections.abc import Iterator
from pathlib import Path

import pytest

from connbench import runner
from connbench.analyse import stats
from connbench.apps import STRATEGIES
from connbench.infra import pgbouncer
from connbench.measure import load
from connbench.measure.load import LoadConfig, RawLoad, new_histogram
from connbench.measure.sampler import Samples
from connbench.model.result_types import StrategyResult, VariantRecord
from connbench.model.scenario import build
from connbench.present import run_cells

from .conftest import RecordingReporter, run_of, serving_in_thread, variant_of

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@contextlib.contextmanager
def http_server(answer: bool) -> Iterator[str]:
    """A server on 127.0.0.1 that answers every request with 200 at once, or never answers."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            pending = b""
            while data := self.request.recv(65536):
                if answer:
                    pending += data
                    *requests, pending = pending.split(b"\r\n\r\n")
                    self.request.sendall(OK_RESPONSE * len(requests))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with serving_in_thread(server) as url:
        yield url


def summarize(raw: RawLoad) -> StrategyResult:
    measured = stats.Measurement(raw=raw, samples=Samples(), rows_inserted=raw.all_ok)
    return stats.summarize("pool", VariantRecord.model_validate(variant_of("pool")), measured)


@pytest.mark.parametrize("timeout_s", [0.3, 2.0], ids=["in-window", "in-the-drain"])
def test_requests_that_all_time_out_are_errors_and_a_failed_run(timeout_s: float) -> None:
    with http_server(answer=False) as url:
        raw = load.run_sync(url, LoadConfig(4, duration_s=1.0, warmup_s=0.0, timeout_s=timeout_s))
    # Timeouts that end after the window (a timeout longer than the run) still count.
    assert raw.errors_by_kind["timeout"] >= 4
    result = summarize(raw)
    assert result.requests is not None and result.requests.errors == raw.errors
    assert result.status == "failed"
    assert result.failure is not None and "served no request" in result.failure
    assert "timeout" in result.failure
    run = run_of(result)
    headers, rows = run_cells.run_rows(run, lambda text, style: text)
    assert rows[0][headers.index("errors")] == f"{raw.errors:,}"


def test_a_run_that_served_nothing_and_failed_nothing_is_not_ok() -> None:
    raw = RawLoad(config=LoadConfig(4, 1.0, 0.0, 10.0), histogram=new_histogram())
    raw.all_sent, raw.window_s = 4, 1.0
    result = summarize(raw)
    assert result.status == "failed"
    assert "no error either: 4 requests sent were still in flight" in (result.failure or "")


@pytest.mark.parametrize("rate", [1e6, 1e9])
def test_a_rate_the_generator_cannot_offer_is_invalid_and_its_counts_add_up(rate: float) -> None:
    with http_server(answer=True) as url:
        config = LoadConfig(2, duration_s=1.0, warmup_s=0.3, timeout_s=2.0, rate_rps=rate)
        raw = load.run_sync(url, config)
    info = summarize(raw).open_model
    assert info is not None
    assert info.offered == round(rate * raw.window_s)
    assert raw.ok > 0
    assert 0 < info.not_sent <= info.offered
    assert info.valid is False
    assert any("could not hold the offered rate" in r for r in info.invalid_reasons)


def test_a_held_rate_sends_what_was_offered() -> None:
    with http_server(answer=True) as url:
        config = LoadConfig(4, duration_s=1.0, warmup_s=0.2, timeout_s=2.0, rate_rps=200)
        raw = load.run_sync(url, config)
    info = raw.open_model
    assert info["offered"] == 200
    assert info["not_sent"] <= 2  # the schedule's edges
    # Every request offered in the window is answered in it, give or take the schedule's
    # edges; on a busy machine the warm-up's backlog (0.2 s at 200/s: 40 requests) may end
    # inside the window too, so the bound above is what was offered up to its close. A pacer
    # that sent as fast as it could would answer thousands.
    assert 196 <= raw.ok <= 240, raw.ok


def test_every_pool_passes_the_prepare_threshold_on() -> None:
    # Behind PgBouncer in transaction mode a prepared statement breaks: each pool's connections
    # must take the threshold connbench gives (None there). Connections opened per request run
    # one statement and are never prepared.
    for strategy in STRATEGIES.values():
        path = Path(__file__).parent.parent / "connbench" / "apps" / f"{strategy.module}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "").endswith(
                "ConnectionPool"
            ):
                kwargs = {k.arg: k.value for k in node.keywords}
                assert "kwargs" in kwargs, f"{strategy.name}: pool without kwargs"
                assert "prepare_threshold" in ast.unparse(kwargs["kwargs"]), strategy.name


@pytest.mark.skipif(
    pgbouncer.unavailable("pgbouncer-transaction") is not None, reason="pgbouncer missing"
)
@pytest.mark.integration
def test_pool_nocheck_behind_a_transaction_pooler_has_no_prepared_statement_errors(
    tmp_path: Path,
) -> None:
    scenario = build(
        None,
        {"strategies": ["pool-nocheck"], "topology": "pgbouncer-transaction", "concurrency": "8",
         "duration_s": "2", "warmup_s": "0.5", "pool_min": "0", "pool_max": "4"},
    )  # fmt: skip
    run, _ = runner.execute(scenario, RecordingReporter(), tmp_path / "r.json")
    (result,) = run.results
    assert result.status == "ok", result.failure
    assert result.requests is not None and result.requests.ok > 100
    assert result.requests.errors == 0, result.requests.errors_by_kind
    assert result.integrity is not None and result.integrity.ok is True


def test_memory_follows_what_ran_not_the_duration_asked_for() -> None:
    # --duration 2000 stopped after a second: one second of series, not 2,000 preallocated
    # (each held a 28 KB histogram: --duration 1e9 ran out of memory before it began).
    async def run_and_stop(url: str) -> RawLoad:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, stop.set)
        config = LoadConfig(2, duration_s=2_000.0, warmup_s=0.0, timeout_s=2.0)
        return await load.run(url, config, stop=stop)

    with http_server(answer=True) as url, load.new_runner() as loop:
        raw = loop.run(run_and_stop(url))
    assert raw.interrupted and raw.ok > 0
    assert 1 <= len(raw.seconds) <= 2
    assert sum(s.ok for s in raw.seconds) == raw.ok
    assert len(raw.ok_buckets.counts) <= 150  # 10 ms buckets for ~1 s
