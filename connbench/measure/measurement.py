"""What one repeat of one variant measured: the record the measuring loop fills
(:mod:`connbench.measure.measuring`) and :func:`connbench.analyse.stats.summarize` reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connbench.measure.faults import Injected
from connbench.measure.load import RawLoad
from connbench.measure.sampler import PoolSamples, Samples


@dataclass(frozen=True)
class Measurement:
    """What was measured in one repeat of one variant: what :func:`summarize` reads.

    ``app_stats``: the app's timing totals at the window's start and end, when it kept them;
    ``pool_samples``: what PgBouncer's admin console showed, when there was one.
    """

    raw: RawLoad
    samples: Samples
    cpu_percent: dict[str, float | None] = field(default_factory=dict)
    sessions_opened: int | None = None
    rows_inserted: int | None = None
    pool_samples: PoolSamples | None = None
    injected: Injected | None = None
    app_stats: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)
