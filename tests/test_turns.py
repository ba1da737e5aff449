"""A sliced round's schedule (``--slices``): the sides' turns never overlap, each side's window
is exactly its measured parts laid end to end, and a side sends only in its turns; then, on a
real PostgreSQL with two real apps, the load really takes turns and each side's figures are
its own."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql
from typer.testing import CliRunner

from connbench import runner
from connbench.apps import STRATEGIES
from connbench.cli import app
from connbench.infra import appserver
from connbench.infra.postgres import Postgres
from connbench.measure import load
from connbench.measure.turns import Turns
from connbench.measure.window import LoadConfig, TurnWindow
from connbench.model import results
from connbench.model.scenario import build
from connbench.present.run_cells import run_context

from .conftest import ROOT, RecordingReporter, part, run_cli
from .helpers import assert_one_line_exit_2
from .processes import (
    Connbench,
    all_gone,
    descendants,
    temp_dirs_made_by,
    wait_for,
)

cli = CliRunner()

MS = 1_000_000


def _plan(k: int = 4, sides: int = 2, duration_s: float = 1.0) -> list[Turns]:
    return Turns.plan(10**12, 0.5, duration_s, k, sides)


@given(
    k=st.integers(1, 12),
    sides=st.integers(2, 4),
    duration_ms=st.integers(100, 5_000),
    probes=st.lists(st.integers(0, 20_000), min_size=1, max_size=50),
)
def test_turns_partition_the_round_and_each_window_is_its_measured_parts(
    k: int, sides: int, duration_ms: int, probes: list[int]
) -> None:
    plans = _plan(k, sides, duration_ms / 1000)
    first = plans[0]
    for plan in plans:
        assert plan.measured_ns == k * plan.turn_ns
        assert abs(plan.measured_ns - duration_ms * MS) <= k  # the duration, to a few ns
    for probe in probes:
        t = first.t0_ns + probe * MS
        sending = [p.sending(t) for p in plans]
        if t < first.base_ns:  # the warm-up: every side at once, none measured
            assert all(s == (True, first.base_ns) for s in sending)
            assert all(p.offset(t) is None for p in plans)
            continue
        # After it: at most one side's turn at any instant, and only in it is it measured.
        inside = [i for i, s in enumerate(sending) if s is not None and s[0]]
        assert len(inside) <= 1
        measured = [i for i, p in enumerate(plans) if p.offset(t) is not None]
        assert set(measured) <= set(inside)
        for plan, state in zip(plans, sending, strict=True):
            if state is None:
                assert t >= plan.turn_start_ns(k - 1)  # its last turn has begun, and ended
                continue
            now_inside, edge = state
            assert edge > t
            # The edge is a turn's start (waiting) or end (inside) of this side's.
            starts = {s for s, _ in plan.turns()}
            ends = {e for _, e in plan.turns()}
            assert edge in (ends if now_inside else starts)
            offset = plan.offset(t)
            if offset is not None:
                assert 0 <= offset < plan.measured_ns
                assert plan.measured_until(t) == offset


def test_a_window_offset_maps_each_measured_part_end_to_end() -> None:
    a, b = _plan(k=4, sides=2, duration_s=1.0)  # turns of 250 ms measured, after 50 ms
    assert a.turn_ns == b.turn_ns == 250 * MS
    assert a.turns()[0] == (a.base_ns, a.base_ns + 300 * MS)
    assert b.turns()[0] == (a.base_ns + 300 * MS, a.base_ns + 600 * MS)
    assert a.turns()[1][0] == a.base_ns + 600 * MS
    base = a.base_ns
    assert a.offset(base) is None  # its re-warm
    assert a.offset(base + 50 * MS) == 0
    assert a.offset(base + 299 * MS) == 249 * MS
    assert a.offset(base + 300 * MS) is None  # b's turn
    assert b.offset(base + 350 * MS) == 0
    assert a.offset(base + 650 * MS) == 250 * MS  # a's second turn picks up where it left
    assert a.measured_until(base + 400 * MS) == 250 * MS  # in b's turn: a's first is done
    assert a.measured_until(base + 10**12) == a.measured_ns == 1000 * MS
    assert b.measured_until(base + 100 * MS) == 0
    assert a.end_ns == base + 3 * 600 * MS + 300 * MS
    assert a.sending(base + 10) == (True, base + 300 * MS)
    assert a.sending(base + 310 * MS) == (False, base + 600 * MS)
    assert b.sending(base + 10) == (False, base + 300 * MS)
    assert a.sending(a.end_ns) is None


def test_a_turn_window_counts_a_2xx_in_its_measured_parts_only() -> None:
    async def go() -> TurnWindow:
        stop = asyncio.Event()
        a, _ = Turns.plan(time.perf_counter_ns(), 0.5, 1.0, 4, 2)
        window = TurnWindow(LoadConfig(4, 1.0, 0.5, 1.0), stop, a)
        base = a.base_ns
        for at_ms in (-100, 10, 60, 299, 310, 650, 2_000, 2_350):
            window.done(base + at_ms * MS - MS, base + at_ms * MS, None)
        window.done(base + 400 * MS - MS, base + 400 * MS, "timeout")  # in b's turn
        window.done(base - 200 * MS, base - 100 * MS, "http_500")  # in the warm-up
        window.fold(final=True)
        return window

    window = asyncio.run(go())
    assert window.ok == 8  # every 2xx, warm-up and pauses included
    assert window.window_ok == 4  # 60, 299, 650 and 2,350 ms: in a's measured parts
    assert [s.ok for s in window.seconds] == [4]
    assert window.window_errors == {"timeout": 1}  # after the warm-up: the window's
    assert window.errors == {"timeout": 1, "http_500": 1}


def _table(pg: Postgres, name: str) -> None:
    with pg.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id bigserial PRIMARY KEY, "
                "timestamp timestamptz NOT NULL DEFAULT clock_timestamp())"
            ).format(sql.Identifier(name))
        )


def _stamps(pg: Postgres, name: str) -> list[float]:
    with pg.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT extract(epoch FROM timestamp)::float8 FROM {}").format(
                sql.Identifier(name)
            )
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.integration
def test_two_apps_take_turns_and_each_window_is_its_own(pg: Postgres, tmp_path: Path) -> None:
    """Two pool apps, each on a table of its own whose rows are stamped by the server's
    clock as each request runs: after the warm-up, nearly every row of each app was written
    in one of its own turns (its re-warm included; a request in flight at a turn's end may
    finish just after it), and each side's window is exactly its measured parts."""
    names = [f"turns_{pg.run_id}_{side}" for side in "ab"]
    for name in names:
        _table(pg, name)
    config = appserver.AppConfig(pool_min=2, pool_max=2)
    strategy = STRATEGIES["pool"]
    with (
        appserver.start(strategy, pg.dsn, names[0], config, tmp_path / "a.log") as one,
        appserver.start(strategy, pg.dsn, names[1], config, tmp_path / "b.log") as two,
    ):

        async def both() -> tuple[list[load.RawLoad], list[Turns], int]:
            # The server's clock is the wall clock: the schedule's instants, mapped onto it.
            wall_minus_perf = time.time_ns() - time.perf_counter_ns()
            plans = Turns.plan(time.perf_counter_ns(), 0.3, 1.2, 4, 2)
            lc = LoadConfig(4, 1.2, 0.3, 5.0)
            sides = zip((one, two), plans, strict=True)
            raws = await asyncio.gather(
                *(load.run(served.visit_url, lc, turns=p) for served, p in sides)
            )
            return list(raws), plans, wall_minus_perf

        raws, plans, shift = asyncio.run(both())
    for raw, plan, name in zip(raws, plans, names, strict=True):
        assert raw.window_s == pytest.approx(1.2, abs=1e-6)
        assert raw.ok > 0 and not raw.interrupted
        grace = 20 * MS
        turns = [(s + shift, e + shift + grace) for s, e in plan.turns()]
        after = [t * 1e9 for t in _stamps(pg, name) if t * 1e9 >= plan.base_ns + shift]
        assert len(after) >= raw.ok  # the window's 2xx are rows written after the warm-up
        outside = [t for t in after if not any(s <= t < e for s, e in turns)]
        assert len(outside) <= 0.03 * len(after), (name, len(outside), len(after))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "pool,connect", "--slices", "4"], "--slices: takes turns between two"),
        (["--app", "a=examples.myapp.main:app", "--slices", "4"], "two or more --app"),
        (
            ["--app", "a=examples.myapp.main:app", "--app", "b=examples.myapp.main:app",
             "--slices", "40", "--duration", "2"],
            "--slices 40: turns of 50 ms; at least 100 ms",
        ),
        (
            ["--app", "a=examples.myapp.main:app", "--app", "b=examples.myapp.main:app",
             "--slices", "4", "--rate", "100"],
            "--slices: needs the closed loop",
        ),
        (["--slices", "0"], "--slices"),
    ],
)  # fmt: skip
def test_bad_slices_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = cli.invoke(app, ["run", *args, "-o", str(tmp_path / "r.json")])
    assert_one_line_exit_2(out, message)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.integration
def test_a_sliced_ab_run_records_each_side_on_its_own_window(tmp_path: Path) -> None:
    """``run --slices``: two own apps, two rounds in turns; each result has its own window of
    the scenario's duration, its own CPU and sessions, and the order flips by round."""
    out = tmp_path / "sliced.json"
    proc = run_cli(
        "run", "--app", "a=examples.myapp.main:app", "--app", "b=examples.myapp.main:app",
        "--slices", "4", "--repeat", "2", "--duration", "1.2", "--warmup", "0.3",
        "--concurrency", "4", "--progress", "0", "-o", str(out), "--format", "json",
        cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = results.load(out)
    assert run.scenario.slices == 4
    assert [(r.strategy, r.repeat, r.position) for r in run.results] == [
        ("a", 0, 0), ("b", 0, 1), ("b", 1, 0), ("a", 1, 1),
    ]  # fmt: skip
    for result in run.results:
        assert result.status == "ok", result.failure
        assert result.duration_s == pytest.approx(1.2, abs=0.001)
        assert result.cpu_percent is not None and result.cpu_percent.app
        assert result.server is not None and result.server.sessions_opened is not None
        assert result.timeseries is not None and len(result.timeseries.t_s) == 2
    assert "1.2 s measured in 4 turns a side after 0.3 s warm-up" in run_context(run)


@pytest.mark.integration
def test_an_app_that_dies_in_its_turns_fails_alone(tmp_path: Path, pg: Postgres) -> None:
    """One side's app exits mid-round: that side fails with the cause and keeps what it
    measured; the other side's turns go on to the end of its window."""
    scenario_file = tmp_path / "turns.toml"
    scenario_file.write_text(
        "slices = 4\nduration_s = 2\nwarmup_s = 0.3\nconcurrency = 4\n"
        '[[app]]\nname = "fine"\napp = "examples.myapp.main:app"\n'
        '[[app]]\nname = "exits"\napp = "tests.apps.exiting_app:app"\n'
        'env = { EXIT_AFTER_S = "1.0" }\n'
    )
    out = tmp_path / "r.json"
    scenario = build(scenario_file, {"postgres": pg.dsn})
    runner.execute(scenario, RecordingReporter(), out)
    fine, exits = results.load(out).results
    for warning in exits.warnings:  # a failed app's log outlives the run by design
        if "whole log is kept in" in warning:
            shutil.rmtree(Path(warning.rsplit(" ", 1)[1]).parent, ignore_errors=True)
    assert exits.status == "failed" and "exited with code 3" in (exits.failure or "")
    assert part(exits.requests).ok > 0  # what it measured until then is kept
    assert fine.status == "ok", fine.failure
    assert fine.duration_s == pytest.approx(2.0, abs=0.001)


@pytest.mark.integration
def test_ctrl_c_in_a_round_of_turns_keeps_both_sides_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with Connbench(
        "run", "--app", "a=examples.myapp.main:app", "--app", "b=examples.myapp.main:app",
        "--slices", "30", "--duration", "30", "--warmup", "0.5", "--concurrency", "4",
        "--progress", "0.5s", "-o", str(out),
    ) as proc:  # fmt: skip
        # Turns of 1 s a side: 3 s into the measured load, both sides have measured a turn or
        # more. Its first progress line says the round measures: a client connected to an
        # app said less (the check before the round also connects, 2-3 s before the load).
        proc.wait_for_line(r".* in turns .* measure", 60)
        time.sleep(2.5)
        children = descendants(proc.pid)
        made = temp_dirs_made_by(proc.process, Path("/tmp"))
        assert children and made
        proc.stop(signal.SIGINT)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    wait_for(lambda: all_gone(children), 10)
    assert not {p for p in made if p.exists()}, "temp files left behind in /tmp"
    saved = results.load(out)
    assert saved.interrupted is True
    assert [r.strategy for r in saved.results] == ["a", "b"]
    for result in saved.results:
        assert result.status == "interrupted", result.failure
        assert part(result.requests).ok > 0
        assert 0 < result.duration_s < 30
