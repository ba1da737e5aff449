"""The sequential A/B gate's promises, checked by simulation (seeded, pure Python, seconds).

``--repeat auto`` adds rounds until every gated check is decided and judges after each one
with the confidence sequence of :mod:`connbench.analyse.sequential`. What it promises, at
level alpha, however early it stops:

- the interval misses the true mean log ratio at some round with probability <= alpha;
- so a change of at most half the threshold (no change included) fails <= alpha, and a
  change worse than the threshold passes <= alpha.

Each trial below is one synthetic run: per-round log ratios drawn around a set change,
judged after every round by the same functions the runner calls (``sequential.half_width``
and ``paired.verdict_of``), stopped at the first decision or at the budget.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from connbench.analyse import paired, sequential
from connbench.model import metrics

ALPHA = 0.05
BUDGET = 40
THRESHOLD = 0.10
TRIALS = 4000
THROUGHPUT = metrics.lookup("throughput")  # higher is better: a loss is a ratio below 1
P99 = metrics.lookup("p99")


def gaussian(rng: random.Random) -> float:
    return rng.gauss(0, 1)


def heavy(rng: random.Random) -> float:
    """Student's t with 3 degrees of freedom, scaled to unit variance: wild rounds."""
    return rng.gauss(0, 1) / math.sqrt(rng.gammavariate(1.5, 1 / 1.5)) / math.sqrt(3)


Noise = Callable[[random.Random], float]


def trial(
    rng: random.Random, log_ratio: float, spread: float, noise: Noise, metric: metrics.Metric
) -> tuple[str, int, bool]:
    """One run: (verdict, rounds used, whether the interval ever missed the true value)."""
    total = square = 0.0
    missed = False
    for n in range(1, BUDGET + 1):
        d = log_ratio + spread * noise(rng)
        total += d
        square += d * d
        mean = total / n
        half = sequential.half_width(n, max(0.0, square - n * mean * mean), ALPHA)
        if half is None:
            continue
        low, high = mean - half, mean + half
        missed = missed or not low <= log_ratio <= high
        verdict = paired.verdict_of(
            math.exp(mean), math.exp(low), math.exp(high), THRESHOLD, metric
        )
        if verdict != paired.INCONCLUSIVE:
            return verdict, n, missed
    return paired.INCONCLUSIVE, BUDGET, missed


def rates(
    change: float,
    spread: float,
    noise: Noise = gaussian,
    metric: metrics.Metric = THROUGHPUT,
    seed: int = 1,
) -> tuple[dict[str, float], int, float]:
    """Over TRIALS runs: the share of each verdict, the median rounds, the share that missed."""
    rng = random.Random(seed)
    # A loss of ``change`` (throughput down, latency up).
    log_ratio = math.log(1 - change) if metric.higher_is_better else math.log(1 + change)
    outcomes = [trial(rng, log_ratio, spread, noise, metric) for _ in range(TRIALS)]
    share = {v: sum(o[0] == v for o in outcomes) / TRIALS for v in ("pass", "fail", "inconclusive")}
    rounds = sorted(o[1] for o in outcomes)
    return share, rounds[len(rounds) // 2], sum(o[2] for o in outcomes) / TRIALS


# Three standard errors of a share of alpha over TRIALS runs: the simulation's own noise.
SLACK = 3 * math.sqrt(ALPHA * (1 - ALPHA) / TRIALS)


@pytest.mark.parametrize("noise", [gaussian, heavy], ids=["gaussian", "heavy-tailed"])
@pytest.mark.parametrize("spread", [0.05, 0.2])
def test_the_interval_misses_at_any_round_at_most_alpha(noise: Noise, spread: float) -> None:
    _, _, missed = rates(0.0, spread, noise)
    assert missed <= ALPHA + SLACK


@pytest.mark.parametrize("noise", [gaussian, heavy], ids=["gaussian", "heavy-tailed"])
def test_no_change_and_half_the_threshold_fail_at_most_alpha(noise: Noise) -> None:
    for change in (0.0, THRESHOLD / 2):
        share, _, _ = rates(change, 0.2, noise)
        assert share["fail"] <= ALPHA + SLACK, (change, share)


def test_a_change_at_the_threshold_passes_at_most_alpha() -> None:
    for metric in (THROUGHPUT, P99):
        share, _, _ = rates(THRESHOLD, 0.1, metric=metric)
        assert share["pass"] <= ALPHA + SLACK, (metric.name, share)


def test_a_quiet_runner_decides_early() -> None:
    """Per-round spread 0.1 (adjacent 2 s rounds within about 10 %): the issue's goals."""
    same, _, _ = rates(0.0, 0.1)
    assert same["pass"] >= 0.9 and same["fail"] <= 0.05
    loss15, _, _ = rates(0.15, 0.1)
    assert loss15["fail"] >= 0.95
    loss25, median, _ = rates(0.25, 0.1)
    assert loss25["fail"] >= 0.99 and median <= 8


def test_looking_every_round_with_a_fixed_interval_would_not_keep_alpha() -> None:
    """What the test above guards against: a fixed-sample 95 % interval, looked at after
    every round, misses the true mean far more often than 5 % (so these simulations can
    tell a valid procedure from an invalid one)."""
    rng = random.Random(2)
    misses = 0
    for _ in range(TRIALS):
        total = square = 0.0
        for n in range(1, BUDGET + 1):
            d = rng.gauss(0, 1)
            total += d
            square += d * d
            if n < 5:
                continue
            mean = total / n
            sd = math.sqrt(max(0.0, square - n * mean * mean) / (n - 1))
            if abs(mean) > 2.0 * sd / math.sqrt(n):  # about t(0.975) for these n
                misses += 1
                break
    assert misses / TRIALS > 2 * ALPHA


def test_min_rounds_is_where_the_interval_first_closes() -> None:
    least = sequential.min_rounds(ALPHA)
    assert sequential.half_width(least, 1.0, ALPHA) is not None
    assert sequential.half_width(least - 1, 1.0, ALPHA) is None
    assert sequential.min_rounds(0.01) > least


def test_the_interval_shrinks_like_the_square_root_of_the_rounds() -> None:
    a = sequential.half_width(100, 99.0, ALPHA)
    b = sequential.half_width(400, 399.0, ALPHA)
    assert a is not None and b is not None
    # Not exactly 2: the mixture pays a log factor for holding at every round.
    assert 1.6 < a / b < 2.0
    assert sequential.rounds_for(a, 1.0, ALPHA) == 100
