"""The HTML page's names and colours for a run's variants, and the result's parts read as
plain data (a result file is untrusted: a part may be missing or of another type).

Each variant is named by :meth:`connbench.model.scenario.Variant.label`, like the terminal's
rows, and takes one colour in every chart of the page; a sweep's variants take shades of one
hue.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from connbench.model.results import RunResult
from connbench.present.run_cells import (
    shown_dimensions,
    variant_label,
)

# Categorical colours, one per variant or per series of a sweep (whose variants then take
# shades of it): Tableau 20, its ten strong hues first and their light partners after, so up
# to 20 variants are told apart (14 strategies took 12 colours, two pairs alike).
PALETTE = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1",
    "#9c755f", "#499894", "#d37295", "#b6992d", "#79706e",
    "#a0cbe8", "#ffbe7d", "#8cd17d", "#ff9d9a", "#d4a6c8",
    "#d7b5a6", "#86bcb6", "#fabfd2", "#f1ce63", "#bab0ac",
)  # fmt: skip
BAD, GOOD, NEUTRAL = "#c62828", "#2e7d32", "#6e7781"
# Sweepable settings: (variant field, axis title with its unit).
SWEEPS = (
    ("concurrency", "concurrency (requests in flight)"),
    ("pool_max", "pool max_size (connections)"),
    ("workers", "uvicorn workers (processes)"),
    ("rate", "offered rate (req/s)"),
)


# --- colours and names --------------------------------------------------------------------------


def _mix(colour: str, amount: float) -> str:
    """``colour`` made lighter (amount > 0) or darker (< 0), keeping its hue."""
    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    h, lightness, s = colorsys.rgb_to_hls(r, g, b)
    lightness = lightness + (1 - lightness) * amount if amount > 0 else lightness * (1 + amount)
    r, g, b = colorsys.hls_to_rgb(h, lightness, s)
    return "#" + "".join(f"{round(v * 255):02x}" for v in (r, g, b))


@dataclass
class Colours:
    """One colour per variant key and per sweep series, the same in every chart of the page."""

    series: dict[str, str] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)

    def of_series(self, name: str) -> str:
        if name not in self.series:
            self.series[name] = PALETTE[len(self.series) % len(PALETTE)]
        return self.series[name]

    def assign(self, names: Names) -> None:
        """Variants of one sweep series take shades of its hue, darkest at the lowest value."""
        families: dict[str, list[str]] = {}
        for key in names.keys:
            families.setdefault(names.series[key], []).append(key)
        for series, keys in families.items():
            base = self.of_series(series)
            for i, key in enumerate(keys):
                amount = 0.0 if len(keys) == 1 else -0.35 + 0.65 * i / (len(keys) - 1)
                self.variants.setdefault(key, _mix(base, amount))

    def scale(self, labels: Sequence[str], keys: Sequence[str]) -> dict[str, Any]:
        return {"domain": list(labels), "range": [self.variants[k] for k in keys]}


class Names:
    """Short names for a run's variants: the strategy and only the settings that vary.

    ``series`` names a variant without the swept settings (its line in a sweep chart)."""

    def __init__(self, summaries: Sequence[dict[str, Any]]) -> None:
        self.keys = [str(s["key"]) for s in summaries]
        variants = [as_mapping(s.get("variant")) | {"key": s["key"]} for s in summaries]
        dims = shown_dimensions(variants)
        swept = shown_dimensions(variants, rate=False)
        self.swept = [(name, title) for name, title in SWEEPS if name in swept]
        self.label: dict[str, str] = {}
        self.series: dict[str, str] = {}
        for key, variant in zip(self.keys, variants, strict=True):
            self.series[key] = variant_label(variant, [d for d in dims if d == "topology"])
            self.label[key] = variant_label(variant, dims)
        if len(set(self.label.values())) < len(self.keys):  # something else varies: say all
            self.label = {key: key for key in self.keys}


def as_mapping(value: Any) -> dict[str, Any]:
    """A section of a result as a dict (a typed model dumped); {} when it is not one."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    return value if isinstance(value, dict) else {}


def summary_dicts(run: RunResult) -> list[dict[str, Any]]:
    return [as_mapping(summary) for summary in run.summary]


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (a result file is untrusted)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
