"""Taking turns: the schedule of a sliced round (``--slices K``), in which every side's app is up
at once and the load alternates between them, K turns a side.

A round measures each of its ``n`` sides for the scenario's duration ``D``. Sliced, the sides
share one time line, from one instant ``t0`` on the generator's clock:

- the warm-up, ``[t0, t0 + W)``: every side is loaded at once (its pool connects, its caches
  fill), none is measured;
- then ``K`` periods of ``n`` turns, one a side, in the round's order (A B, A B, ...): a turn
  is ``D / K`` measured seconds after a short re-warm (:data:`REWARM_S`) in which the switch's
  transient falls (the connections' first requests after a pause); outside its turns a side
  sends nothing, so its app idles while the other is measured.

Each side's measured parts, laid end to end, make its *window*: ``D`` seconds on a virtual time
line that starts at the warm-up's end (``base``); :meth:`Turns.offset` maps a completion's real
time onto it, which is where the window's per-second figures and 10 ms counts are kept.

Why: on a shared machine a neighbour's burst of a second or two lands on one side of a paired
round and not the other; turns of 0.25-0.5 s a side spread it over both. Measured with
``benchmarks/alternation.py`` beside the seeded noise of ``benchmarks/noise.py``: the A/A
round's spread of the log ratio 0.31 with 2 s a side, one after the other, 0.08-0.10 with 8
turns of 0.25 s (docs/ci.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from connbench.model.defaults import MIN_TURN_S as MIN_TURN_S
from connbench.model.defaults import REWARM_S as REWARM_S


@dataclass(frozen=True)
class Turns:
    """One side's share of a sliced round, on the generator's clock (``perf_counter_ns``)."""

    t0_ns: int  # the round's start: every side's warm-up begins here
    warmup_ns: int
    turn_ns: int  # a turn's measured part
    count: int  # K: turns a side
    sides: int  # n
    index: int  # this side's place in the round's order
    rewarm_ns: int = int(REWARM_S * 1e9)

    @classmethod
    def plan(
        cls, t0_ns: int, warmup_s: float, duration_s: float, count: int, sides: int
    ) -> list[Turns]:
        """Every side's turns of one round, in the round's order."""
        turn_ns = int(duration_s * 1e9 / count)
        return [
            cls(t0_ns, int(warmup_s * 1e9), turn_ns, count, sides, index) for index in range(sides)
        ]

    @property
    def slot_ns(self) -> int:
        """A turn from its re-warm to its end."""
        return self.rewarm_ns + self.turn_ns

    @property
    def period_ns(self) -> int:
        return self.sides * self.slot_ns

    @property
    def base_ns(self) -> int:
        """The warm-up's end: the first period's start and the window's virtual origin."""
        return self.t0_ns + self.warmup_ns

    @property
    def measured_ns(self) -> int:
        return self.count * self.turn_ns

    @property
    def end_ns(self) -> int:
        """This side's last turn's end: nothing of it is sent from here on."""
        return self.turn_start_ns(self.count - 1) + self.slot_ns

    def turn_start_ns(self, k: int) -> int:
        """Turn ``k``'s start (its re-warm's) on the real clock."""
        return self.base_ns + k * self.period_ns + self.index * self.slot_ns

    def _place(self, t_ns: int) -> tuple[int, int]:
        """(k, ns since turn k's start): the turn of this side's that ``t_ns`` follows."""
        return divmod(t_ns - self.turn_start_ns(0), self.period_ns)

    def turns(self) -> list[tuple[int, int]]:
        """(start, end) of every turn, re-warm included, on the real clock."""
        return [(s, s + self.slot_ns) for s in map(self.turn_start_ns, range(self.count))]

    def sending(self, now_ns: int) -> tuple[bool, int] | None:
        """Whether this side may send at ``now_ns``, and until when (True) or from when
        (False); None once its last turn is over."""
        if now_ns < self.base_ns:
            return True, self.base_ns  # the warm-up: everyone at once
        k = (now_ns - self.base_ns) // self.period_ns
        if k >= self.count:
            return None
        start = self.turn_start_ns(k)
        if now_ns < start:
            return False, start
        if now_ns < start + self.slot_ns:
            return True, start + self.slot_ns
        if k + 1 >= self.count:
            return None
        return False, self.turn_start_ns(k + 1)

    def offset(self, t_ns: int) -> int | None:
        """Where ``t_ns`` falls on this side's window (ns from its virtual origin), or None when
        it falls in no measured part (the warm-up, a re-warm, another side's turn, later)."""
        if t_ns < self.base_ns:
            return None
        k, within = self._place(t_ns)
        if not 0 <= k < self.count or not self.rewarm_ns <= within < self.slot_ns:
            return None
        return k * self.turn_ns + within - self.rewarm_ns

    def measured_until(self, t_ns: int) -> int:
        """How much of this side's window lies before ``t_ns`` (ns): where a completion outside
        every measured part (an error in a pause, say) is put, and the window's length when the
        round is cut short at ``t_ns``."""
        if t_ns < self.base_ns:
            return 0
        k, within = self._place(t_ns)
        if k < 0:
            return 0
        if k >= self.count:
            return self.measured_ns
        return k * self.turn_ns + min(self.turn_ns, max(0, within - self.rewarm_ns))
