"""benchmarks/knob_app.py's tracked loss (``gate_power.py --live-work``): the extra work is
L / (1 - L) of the app's own CPU per request, its spins left out of the estimate (else each
estimate would grow on the last one's spins, and the loss with it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _knob() -> ModuleType:
    spec = importlib.util.spec_from_file_location("knob_app", ROOT / "benchmarks" / "knob_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("knob_app", module)
    spec.loader.exec_module(module)
    return module


def test_the_tracked_work_is_a_share_of_the_apps_own_cost_not_of_its_spins() -> None:
    knob = _knob()
    cost = knob.OwnCost()
    share, own_us = 0.2, 300.0
    assert cost.extra_us(share) == 0.0  # nothing known yet: nothing added
    estimates = []
    for _ in range(3):  # three estimates, each over TRACK_EVERY requests
        for _ in range(knob.TRACK_EVERY - 1):
            knob.spin(own_us)  # the request's own work
            cost.spin(cost.extra_us(share))  # and what the knob adds to it
        knob.spin(own_us)
        estimates.append(cost.extra_us(share))
    expected = own_us * share / (1 - share)  # 75 µs
    for extra in estimates[1:]:  # with spins in the window: still the own cost's share
        assert extra == pytest.approx(expected, rel=0.1)
