"""A confidence sequence for the mean per-round log ratio: look after every round, stop when
it decides, and the error rate stays at alpha however early that is. Pure: no I/O.

A fixed-sample interval (the signed-rank one of :mod:`connbench.analyse.paired`) is valid for
the number of rounds fixed in advance. Looked at after every round and stopped at the first
that decides, its false-alarm rate grows with every look. A *confidence sequence* holds at
every round at once: ``P(for some n, the n-th interval misses the true mean) <= alpha``
(Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist. 2021). So a run may add rounds until the interval
decides, and stop there.

The one used here is the scale-invariant normal-mixture sequence for a Gaussian mean with
unknown variance (Lai 1976; as a test martingale in the reduced filtration, Wang and Ramdas,
"Anytime-valid t-tests and confidence sequences for Gaussian means with unknown variance",
2023). For ``n`` log ratios ``d`` with mean ``m``, and ``S = sum(d - mu)``,
``V = sum((d - mu)**2)``, the mixture (over the effect in units of sigma, ``N(0, 1/c)``)

    M_n(mu) = sqrt(c / (n + c)) * (1 - S**2 / ((n + c) * V)) ** (-n / 2)

is a nonnegative martingale when ``mu`` is the true mean, so by Ville's inequality
``M_n(mu) < 1 / alpha`` for every ``n`` with probability at least ``1 - alpha``. Solved for
``mu``: the interval ``m ± h`` with

    r = (alpha * sqrt(c / (n + c))) ** (2 / n),   k = (1 - r) * (n + c),
    h = sqrt(k * Q / (n * (n - k)))   where Q = sum((d - m)**2),

unbounded while ``n <= k`` (the first rounds cannot decide anything: :func:`min_rounds`).
``c`` (:data:`MIXTURE`) sets where it is tightest; 1 was chosen by simulation for 10 %
thresholds at per-round spreads of 0.05 to 0.4 (``tests/test_sequential.py`` checks the
error rates by simulation, Gaussian and heavy-tailed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIXTURE = 1.0  # c: the prior precision of the standardised effect (see the module docstring)
MAX_PROJECTED = 10_000  # rounds: beyond this, "more rounds" is no answer


@dataclass(frozen=True)
class ConfidenceSequence:
    """The confidence sequence at the current round, in log-ratio units."""

    mean: float
    low: float
    high: float
    rounds: int


def _k(n: int, alpha: float, c: float) -> float:
    r: float = (alpha * math.sqrt(c / (n + c))) ** (2 / n)
    return (1 - r) * (n + c)


def half_width(n: int, q: float, alpha: float, c: float = MIXTURE) -> float | None:
    """``h`` for ``n`` values whose squared deviations from their mean sum to ``q``; None
    while the interval is still unbounded."""
    if n < 2:
        return None
    k = _k(n, alpha, c)
    if n <= k:
        return None
    return math.sqrt(k * q / (n * (n - k)))


def min_rounds(alpha: float, c: float = MIXTURE) -> int:
    """The first round at which the interval is bounded: no budget below it can decide."""
    n = 2
    while n <= _k(n, alpha, c):
        n += 1
    return n


def interval(d: Sequence[float], alpha: float, c: float = MIXTURE) -> ConfidenceSequence | None:
    """The sequence's interval after the rounds ``d`` (log ratios); None while unbounded."""
    n = len(d)
    if n == 0:
        return None
    mean = math.fsum(d) / n
    q = math.fsum((v - mean) ** 2 for v in d)
    h = half_width(n, q, alpha, c)
    if h is None:
        return None
    return ConfidenceSequence(mean, mean - h, mean + h, n)


def rounds_for(
    half: float, spread: float, alpha: float, c: float = MIXTURE, start: int = 2
) -> int | None:
    """The first round count (from ``start``) whose half-width, for rounds of per-round
    standard deviation ``spread``, is at most ``half``; None beyond :data:`MAX_PROJECTED`."""
    if half <= 0:
        return None
    n = max(start, 2)
    while n <= MAX_PROJECTED:
        h = half_width(n, spread**2 * (n - 1), alpha, c)
        if h is not None and h <= half:
            return n
        n += 1 if n < 100 else max(1, n // 20)
    return None
