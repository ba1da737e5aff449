"""One per-variant path for built-in strategies, own apps and targets (runner._run_one): the
verdicts that once drifted between two copies of it are held here, on the real thing.

An app that exits before the load has drained fails its variant, whoever wrote the app: the
measured window is not one to trust. The watchdog sees an exit within 0.1 s while the load
runs; the check after the load catches one in the last tenth of a second, which no test can
aim at. So the watchdog is made to look only once, at the start: the app's exit mid-window is
then seen only by that check, the path an exit in the drain takes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connbench import runner
from connbench.infra import postgres
from connbench.measure import watchdog
from connbench.model import results
from connbench.model.errors import BadInput
from connbench.model.scenario import build

from .conftest import RecordingReporter, part

SHORT = {"duration_s": "2", "warmup_s": "0.3", "concurrency": "4"}


def test_an_own_app_that_exits_unseen_by_the_watchdog_fails_its_variant(
    tmp_path: Path, pg: postgres.Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario_file = tmp_path / "exits.toml"
    scenario_file.write_text(
        '[[app]]\nname = "exits"\napp = "tests.apps.exiting_app:app"\n'
        'env = { EXIT_AFTER_S = "1.2" }\n'
    )
    monkeypatch.setattr(watchdog, "WATCH_INTERVAL_S", 3600.0)  # one look, at the start
    out = tmp_path / "r.json"
    scenario = build(scenario_file, {**SHORT, "postgres": pg.dsn})
    runner.execute(scenario, RecordingReporter(), out)
    (result,) = results.load(out).results
    kept = [w for w in result.warnings if "whole log is kept in" in w]
    for warning in kept:  # outlives the run by design: not this test's to leave behind
        shutil.rmtree(Path(warning.rsplit(" ", 1)[1]).parent, ignore_errors=True)
    assert result.status == "failed", result.warnings
    assert result.failure == "the app's uvicorn exited with code 3 during the run"
    assert part(result.requests).ok > 0  # what was measured until then is kept
    assert any(w.startswith("the app's log:") for w in result.warnings)
    assert kept


def test_serve_takes_one_variant_before_starting_anything() -> None:
    scenario = build(None, {"strategies": ["pool", "connect"]})
    with pytest.raises(BadInput, match="serve takes exactly one strategy"):
        runner.serve(scenario, RecordingReporter(), lambda pg, route, app: None)
