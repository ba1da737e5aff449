"""Results and comparisons as one self-contained HTML page: readable text at the top, the
terminal's table as an HTML table, then charts drawn by Vega-Lite.

The page loads nothing: Vega's JavaScript (bundled by vl-convert) and the chart specs are
inline, and a Content-Security-Policy forbids any request. A result file is untrusted input:
every string from it is HTML-escaped, and in the charts it is only ever data (text Vega draws),
never part of an expression.
"""

from __future__ import annotations

import colorsys
import functools
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any

import vl_convert

from connbench import __version__
from connbench.analyse import charts, findings, trend
from connbench.analyse.compare import Comparison
from connbench.analyse.paired import (
    FAIL,
    INCONCLUSIVE,
    SEQUENTIAL,
    PairedComparison,
    interval_path,
)
from connbench.analyse.stats import BREAKDOWN_PARTS, MEASURED
from connbench.model import metrics
from connbench.model.results import RunResult, StrategyResult
from connbench.present import paired as paired_view
from connbench.present import sink
from connbench.present.compare import COMPARE_HEADERS, compare_rows
from connbench.present.run import (
    BREAKDOWN_NOTE,
    REQUEST_HEADERS,
    limit_lines,
    request_rows,
    run_context,
    run_rows,
    run_title,
    shown_dimensions,
    typical_run,
    variant_label,
    warning_lines,
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
WIDTH, HEIGHT = 560, 240
# Sweepable settings: (variant field, axis title with its unit).
SWEEPS = (
    ("concurrency", "concurrency (requests in flight)"),
    ("pool_max", "pool max_size (connections)"),
    ("workers", "uvicorn workers (processes)"),
    ("rate", "offered rate (req/s)"),
)
STATES = ("active", "idle", "idle_in_transaction")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


# --- marks: the terminal table's cells, styled as HTML ------------------------------------------

_MARK = re.compile("\x00(dim|warn|bad|good)\x01(.*?)\x02", re.DOTALL)
_STRAY = dict.fromkeys((0, 1, 2))  # placeholders that came from the result itself


def html_mark(text: str, style: str) -> str:
    """Mark ``text`` with placeholders that survive escaping, turned into spans by :func:`cell`."""
    return f"\x00{style}\x01{text}\x02"


def cell(text: str) -> str:
    """A table cell's text, escaped, its marks as ``<span class="mark-STYLE">``."""
    return _MARK.sub(r'<span class="mark-\1">\2</span>', esc(text)).translate(_STRAY)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{cell(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        '<div class="table-wrap"><table class="results">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
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
        variants = [_mapping(s.get("variant")) | {"key": s["key"]} for s in summaries]
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


# --- chart specs (Vega-Lite) --------------------------------------------------------------------

CONFIG: dict[str, Any] = {
    "font": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
    "title": {
        "fontSize": 14,
        "subtitleFontSize": 12,
        "subtitleColor": "#59636e",
        "anchor": "start",
    },
    "axis": {
        "labelFontSize": 11,
        "titleFontSize": 12,
        "titleFontWeight": "normal",
        "labelOverlap": True,  # drop every other label rather than print two over each other
    },
    "legend": {"labelFontSize": 11, "labelLimit": 320, "symbolStrokeWidth": 3},
    "view": {"stroke": None},
}


def _spec(title: str, subtitle: str | None, **body: Any) -> dict[str, Any]:
    heading: dict[str, Any] = {"text": title}
    if subtitle:
        heading["subtitle"] = subtitle
    return {"config": CONFIG, "title": heading, **body}


def _legend(count: int) -> dict[str, Any]:
    return {
        "title": None,
        "orient": "bottom",
        "columns": min(4, max(1, count)),  # filled row by row, in the table's order
        "direction": "horizontal",
    }


@dataclass
class Chart:
    spec: dict[str, Any]
    caption: str = ""
    wide: bool = False


@dataclass
class Variants:
    """The variants one chart draws: their labels (data values) and their colour scale."""

    keys: list[str]
    names: Names
    colours: Colours

    @property
    def labels(self) -> list[str]:
        return [self.names.label[k] for k in self.keys]

    def colour(self, legend: bool = True) -> dict[str, Any]:
        return {
            "field": "variant",
            "type": "nominal",
            "scale": self.colours.scale(self.labels, self.keys),
            "legend": _legend(len(self.keys)) if legend else None,
        }

    def axis(self, title: str | None = None) -> dict[str, Any]:
        """The variants on the y axis of a bar chart, in the table's order."""
        return {
            "field": "variant",
            "type": "nominal",
            "sort": self.labels,
            "title": title,
            "axis": {"labelLimit": 320},
        }


def _time_chart(
    title: str,
    y_title: str,
    rows: list[dict[str, Any]],
    variants: Variants,
    marks: list[dict[str, Any]],
    y_max: float | None = None,
) -> Chart:
    """One line per variant over the measured window, with the warm-up band and fault rules."""
    y: dict[str, Any] = {"field": "value", "type": "quantitative", "title": y_title}
    if y_max is not None:
        y["scale"] = {"domain": [0, y_max]}
    layers: list[dict[str, Any]] = [*marks]
    layers.append(
        {
            "data": {"values": rows},
            "mark": {
                "type": "line",
                "point": {"size": 14},
                "strokeWidth": 2,
                "interpolate": "linear",
            },
            "encoding": {
                "x": {
                    "field": "t",
                    "type": "quantitative",
                    "title": "seconds into the measured window (s)",
                },
                "y": y,
                "color": variants.colour(),
                "tooltip": [
                    {"field": "variant", "type": "nominal"},
                    {"field": "t", "type": "quantitative", "title": "second"},
                    {"field": "value", "type": "quantitative", "title": y_title, "format": ",.2f"},
                ],
            },
        }
    )
    return Chart(_spec(title, None, width=WIDTH, height=HEIGHT, layer=layers))


def _window_marks(run: RunResult, chosen: Sequence[StrategyResult]) -> list[dict[str, Any]]:
    """The warm-up before the window (shaded; not measured) and each fault's instant."""
    out: list[dict[str, Any]] = []
    warmup = _number(_mapping(run.scenario).get("warmup_s"))
    if warmup:
        out.append(
            {
                "data": {"values": [{"from": -warmup, "to": 0, "label": "warm-up (not measured)"}]},
                "layer": [
                    {
                        "mark": {"type": "rect", "color": "#8c959f", "opacity": 0.18},
                        "encoding": {
                            "x": {"field": "from", "type": "quantitative"},
                            "x2": {"field": "to"},
                        },
                    },
                    {
                        "mark": {
                            "type": "text",
                            "align": "left",
                            "baseline": "top",
                            "dx": 4,
                            "dy": 4,
                            "color": "#59636e",
                            "fontSize": 11,
                        },
                        "encoding": {
                            "x": {"field": "from", "type": "quantitative"},
                            "y": {"value": 0},
                            "text": {"field": "label"},
                        },
                    },
                ],
            }
        )
    # Each variant's fault lands at its own instant (a few ms apart): one rule each, and one
    # label per kind, or the labels would print over each other.
    faults: dict[str, list[float]] = {}
    for result in chosen:
        fault = _mapping(result.fault)
        at = _number(fault.get("injected_at_s"))
        if at is not None:
            faults.setdefault(str(fault.get("kind", "fault")), []).append(at)
    if faults:
        values = []
        for kind, instants in faults.items():
            low, high = min(instants), max(instants)
            when = f"{low:.1f} s" if high - low < 0.05 else f"{low:.1f}-{high:.1f} s"
            values += [
                {"at": at, "label": f"{kind} at {when}" if i == 0 else ""}
                for i, at in enumerate(sorted(instants))
            ]
        out.append(
            {
                "data": {"values": values},
                "layer": [
                    {
                        "mark": {
                            "type": "rule",
                            "color": BAD,
                            "strokeDash": [6, 3],
                            "strokeWidth": 2,
                        },
                        "encoding": {"x": {"field": "at", "type": "quantitative"}},
                    },
                    {
                        "mark": {
                            "type": "text",
                            "align": "left",
                            "baseline": "top",
                            "dx": 4,
                            "dy": 16,
                            "color": BAD,
                            "fontSize": 11,
                            "fontWeight": "bold",
                        },
                        "encoding": {
                            "x": {"field": "at", "type": "quantitative"},
                            "y": {"value": 0},
                            "text": {"field": "label"},
                        },
                    },
                ],
            }
        )
    return out


def _mapping(value: Any) -> dict[str, Any]:
    """A section of a result as a dict (a typed model dumped); {} when it is not one."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    return value if isinstance(value, dict) else {}


def _summaries(run: RunResult) -> list[dict[str, Any]]:
    return [_mapping(summary) for summary in run.summary]


def _series(result: StrategyResult) -> dict[str, list[Any]]:
    """The per-second series by name, the connections by state as ``connections_STATE``
    (spaces as underscores), whether a result keeps them flat or under one key."""
    series = _mapping(result.timeseries)
    by_state = _mapping(series.get("connections_by_state"))
    out = {name: values for name, values in series.items() if isinstance(values, list)}
    for state, values in by_state.items():
        if isinstance(values, list):
            out[f"connections_{state.replace(' ', '_')}"] = values
    return out


def _number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (a result file is untrusted)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def time_charts(run: RunResult, variants: Variants) -> list[Chart]:
    """Throughput, p99 and server connections (in total and by state) per second."""
    by_key = _runs_by_key(run)
    chosen: dict[str, StrategyResult] = {}
    for summary in run.summary:
        typical = typical_run(summary, by_key.get(summary.key, []))
        if typical is not None and _series(typical).get("ok"):
            chosen[summary.key] = typical
    if not chosen:
        return []
    drawn = Variants([k for k in variants.keys if k in chosen], variants.names, variants.colours)
    marks = _window_marks(run, list(chosen.values()))

    def rows(series: str) -> list[dict[str, Any]]:
        """One row per interval, drawn at its middle (the ``t_s`` it starts at, if saved)."""
        out = []
        for key, result in chosen.items():
            found = _series(result)
            starts = found.get("t_s") or []
            step = _number(_mapping(result.timeseries).get("interval_s")) or 1.0
            for i, value in enumerate(found.get(series) or []):
                number = _number(value)
                start = _number(starts[i]) if i < len(starts) else None
                t = (i * step if start is None else start) + step / 2
                if number is not None:
                    out.append({"variant": drawn.names.label[key], "t": t, "value": number})
        return out

    out = [
        _time_chart(
            "Throughput per second", "2xx responses per second (req/s)", rows("ok"), drawn, marks
        ),
        _time_chart("p99 latency per second", "p99 latency (ms)", rows("p99_ms"), drawn, marks),
        _time_chart(
            "Server connections",
            "the app's server sessions (connections)",
            rows("connections"),
            drawn,
            marks,
        ),
    ]
    by_state = {state: rows(f"connections_{state}") for state in STATES}
    top = max((r["value"] for found in by_state.values() for r in found), default=0.0)
    for state, found in by_state.items():
        shown = state.replace("_", " ")
        out.append(
            _time_chart(
                f"Server connections {shown}",
                f"sessions {shown} (connections)",
                found,
                drawn,
                marks,
                y_max=max(1.0, top),
            )
        )
    repeats = max((int(s.get("runs", 1)) for s in _summaries(run)), default=1)
    if repeats > 1:
        for chart in out:
            chart.spec["title"]["subtitle"] = (
                f"the repeat whose throughput is closest to the median of {repeats}"
            )
    return out


TICKS = {2: "p50", 10: "p90", 100: "p99", 1000: "p99.9", 10000: "p99.99"}


def latency_chart(run: RunResult, variants: Variants) -> Chart | None:
    """The HdrHistogram plotter's view: latency at each percentile, the x axis logarithmic."""
    by_key = _runs_by_key(run)
    rows, drawn = [], []
    for key in variants.keys:
        measured = [r for r in by_key.get(key, []) if r.status in MEASURED]
        histogram = charts.merged([r.histogram for r in measured])
        if histogram is None:
            continue
        drawn.append(key)
        for x, percentile, ms in charts.percentile_curve(histogram):
            rows.append(
                {"variant": variants.names.label[key], "x": x, "percentile": percentile, "ms": ms}
            )
    if not rows:
        return None
    shown = Variants(drawn, variants.names, variants.colours)
    label = " : ".join(f"datum.value == {x} ? '{name}'" for x, name in TICKS.items()) + " : ''"
    repeats = max((int(s.get("runs", 1)) for s in _summaries(run)), default=1)
    subtitle = "from the saved HDR histograms" + (
        f", all {repeats} repeats merged" if repeats > 1 else ""
    )
    spec = _spec(
        "Latency by percentile",
        subtitle,
        width=2 * WIDTH + 40,
        height=HEIGHT + 60,
        data={"values": rows},
        mark={"type": "line", "point": {"size": 10}, "strokeWidth": 2},
        encoding={
            "x": {
                "field": "x",
                "type": "quantitative",
                "title": "percentile (log scale: 1 / (1 - percentile))",
                "scale": {"type": "log", "domain": [2, 10000]},
                "axis": {"values": list(TICKS), "labelExpr": label, "grid": True},
            },
            "y": {
                "field": "ms",
                "type": "quantitative",
                "title": "latency (ms, log scale)",
                "scale": {"type": "log"},
            },
            "color": shown.colour(),
            "tooltip": [
                {"field": "variant", "type": "nominal"},
                {"field": "percentile", "type": "quantitative", "format": ".3f"},
                {"field": "ms", "type": "quantitative", "title": "latency ms", "format": ",.2f"},
            ],
        },
    )
    caption = (
        "A line stops where fewer than one request lies beyond the percentile: the histogram "
        "cannot tell that tail."
    )
    return Chart(spec, caption=caption, wide=True)


def _bars_with_spread(
    title: str,
    subtitle: str,
    x_title: str,
    rows: list[dict[str, Any]],
    variants: Variants,
) -> Chart:
    """Horizontal bars (the median), the repeats' min to max as an error bar."""
    height = max(60, 26 * len(variants.keys))
    y = variants.axis()
    spec = _spec(
        title,
        subtitle,
        width=WIDTH - 160,
        height=height,
        data={"values": rows},
        layer=[
            {
                "mark": {"type": "bar", "height": {"band": 0.7}},
                "encoding": {
                    "y": y,
                    "x": {"field": "median", "type": "quantitative", "title": x_title},
                    "color": variants.colour(legend=False),
                    "tooltip": [
                        {"field": "variant", "type": "nominal"},
                        {"field": "median", "type": "quantitative", "format": ",.2f"},
                        {"field": "min", "type": "quantitative", "format": ",.2f"},
                        {"field": "max", "type": "quantitative", "format": ",.2f"},
                        {"field": "repeats", "type": "quantitative"},
                    ],
                },
            },
        ],
    )
    if any(row["min"] != row["max"] for row in rows):  # one run each: no spread to draw
        spec["layer"].append(
            {
                "mark": {"type": "errorbar", "ticks": True, "color": "#1f2328"},
                "encoding": {
                    "y": y,
                    "x": {"field": "min", "type": "quantitative", "title": x_title},
                    "x2": {"field": "max"},
                },
            }
        )
    return Chart(spec)


def side_by_side(run: RunResult, variants: Variants) -> list[Chart]:
    """Throughput and p99 with their spread over repeats; sessions per 2xx; rows against 2xx."""
    summaries = {str(s["key"]): s for s in _summaries(run) if s.get("status") in MEASURED}
    keys = [k for k in variants.keys if k in summaries]
    if not keys:
        return []
    shown = Variants(keys, variants.names, variants.colours)
    repeats = max(int(summaries[k].get("runs", 1)) for k in keys)
    subtitle = (
        f"median of {repeats} repeats; the error bar spans the fastest to the slowest"
        if repeats > 1
        else "one run each (repeat with --repeat for the spread)"
    )

    def spread_rows(get: Any) -> list[dict[str, Any]]:
        out = []
        for key in keys:
            values = get(summaries[key]) or {}
            if values.get("median") is None:
                continue
            out.append(
                {
                    "variant": shown.names.label[key],
                    "median": values["median"],
                    "min": values.get("min", values["median"]),
                    "max": values.get("max", values["median"]),
                    "repeats": len(values.get("values") or []),
                }
            )
        return out

    out = [
        _bars_with_spread(
            "Throughput",
            subtitle,
            "2xx responses per second (req/s)",
            spread_rows(lambda s: s.get("throughput_rps")),
            shown,
        ),
        _bars_with_spread(
            "p99 latency",
            subtitle,
            "p99 latency (ms)",
            spread_rows(lambda s: (s.get("latency_ms") or {}).get("p99")),
            shown,
        ),
    ]
    sessions = [
        {"variant": shown.names.label[k], "per": summaries[k]["sessions_per_ok_response"]}
        for k in keys
        if _number(summaries[k].get("sessions_per_ok_response")) is not None
    ]
    if sessions:
        y = shown.axis()
        out.append(
            Chart(
                _spec(
                    "Server sessions opened per 2xx response",
                    "about 1: a new connection per request; near 0: connections reused",
                    width=WIDTH - 160,
                    height=max(60, 26 * len(sessions)),
                    data={"values": sessions},
                    layer=[
                        {
                            "mark": {"type": "bar", "height": {"band": 0.7}},
                            "encoding": {
                                "y": y,
                                "x": {
                                    "field": "per",
                                    "type": "quantitative",
                                    "title": "sessions per 2xx response (median)",
                                },
                                "color": shown.colour(legend=False),
                                "tooltip": [
                                    {"field": "variant", "type": "nominal"},
                                    {"field": "per", "type": "quantitative", "format": ".3f"},
                                ],
                            },
                        },
                        {
                            "mark": {"type": "text", "align": "left", "dx": 4, "fontSize": 11},
                            "encoding": {
                                "y": y,
                                "x": {"field": "per", "type": "quantitative"},
                                "text": {"field": "per", "type": "quantitative", "format": ".3f"},
                            },
                        },
                    ],
                )
            )
        )
    integrity = rows_against_responses(run, shown)
    if integrity is not None:
        out.append(integrity)
    return out


def rows_against_responses(run: RunResult, variants: Variants) -> Chart | None:
    """Rows inserted beside 2xx responses, summed over the repeats: they should be equal."""
    by_key = _runs_by_key(run)
    rows, unequal = [], []
    for key in variants.keys:
        ran = [_mapping(r.integrity) for r in by_key.get(key, []) if r.status in MEASURED]
        ran = [integrity for integrity in ran if integrity]
        inserted = [_number(integrity.get("rows_inserted")) for integrity in ran]
        responses = [_number(integrity.get("ok_responses")) for integrity in ran]
        if not ran or None in inserted or None in responses:
            continue
        label = variants.names.label[key]
        rows_total, ok_total = sum(v or 0 for v in inserted), sum(v or 0 for v in responses)
        if rows_total != ok_total:
            unequal.append(label)
        rows.append({"variant": label, "what": "rows inserted", "count": rows_total})
        rows.append({"variant": label, "what": "2xx responses", "count": ok_total})
    if not rows:
        return None
    subtitle = (
        "equal for every variant, summed over the repeats"
        if not unequal
        else f"NOT equal for {len(unequal)}: {', '.join(unequal)}"
    )
    y = variants.axis()
    count = len(rows) // 2
    spec = _spec(
        "Rows inserted vs 2xx responses",
        subtitle,
        width=WIDTH - 160,
        height=max(70, 34 * count),
        data={"values": rows},
        mark={"type": "bar"},
        encoding={
            "y": y,
            "yOffset": {"field": "what", "sort": ["rows inserted", "2xx responses"]},
            "x": {"field": "count", "type": "quantitative", "title": "count (over all repeats)"},
            "color": {
                "field": "what",
                "type": "nominal",
                "scale": {
                    "domain": ["rows inserted", "2xx responses"],
                    "range": ["#4e79a7", "#a0cbe8"],
                },
                "legend": {"title": None, "orient": "bottom"},
            },
            "tooltip": [
                {"field": "variant", "type": "nominal"},
                {"field": "what", "type": "nominal"},
                {"field": "count", "type": "quantitative", "format": ","},
            ],
        },
    )
    if unequal:
        spec["title"]["subtitleColor"] = BAD
    return Chart(spec)


def breakdown_chart(run: RunResult, variants: Variants) -> Chart | None:
    """Where a request's time goes: the app's mean ms per part, stacked, per variant."""
    summaries = {str(s["key"]): s for s in _summaries(run) if s.get("breakdown")}
    keys = [k for k in variants.keys if k in summaries]
    rows = []
    for key in keys:
        parts = summaries[key]["breakdown"]
        for order, part in enumerate(BREAKDOWN_PARTS):
            value = _number(parts.get(part.key))
            if value is not None:
                rows.append(
                    {
                        "variant": variants.names.label[key],
                        "part": part.label,
                        "order": order,
                        "ms": round(max(0.0, value), 3),
                    }
                )
    if not rows:
        return None
    shown = Variants(keys, variants.names, variants.colours)
    spec = _spec(
        "Where the time goes",
        "mean ms per request over the measured window (medians over repeats); "
        "strategies whose app keeps no timings are not shown",
        width=WIDTH + 120,
        height=max(60, 26 * len(keys)),
        data={"values": rows},
        mark={"type": "bar", "height": {"band": 0.7}},
        encoding={
            "y": shown.axis(),
            "x": {
                "field": "ms",
                "type": "quantitative",
                "stack": "zero",
                "title": "mean time per request (ms)",
            },
            "color": {
                "field": "part",
                "type": "nominal",
                "scale": {
                    "domain": [part.label for part in BREAKDOWN_PARTS],
                    "range": [part.chart_colour for part in BREAKDOWN_PARTS],
                },
                "legend": {"title": None, "orient": "bottom", "direction": "horizontal"},
            },
            "order": {"field": "order", "type": "quantitative"},
            "tooltip": [
                {"field": "variant", "type": "nominal"},
                {"field": "part", "type": "nominal"},
                {"field": "ms", "type": "quantitative", "format": ",.3f"},
            ],
        },
    )
    return Chart(spec, caption=BREAKDOWN_NOTE, wide=True)


def sweep_charts(run: RunResult, names: Names, colours: Colours) -> list[Chart]:
    """For each swept setting: throughput and p99 over its values, one line per series."""
    out = []
    measured = [s for s in _summaries(run) if s.get("status") in MEASURED]
    for name, axis_title in names.swept:
        for metric, title, y_title in (
            ("throughput_rps", "Throughput", "2xx responses per second (req/s)"),
            ("p99", "p99 latency", "p99 latency (ms)"),
        ):
            rows = []
            for summary in measured:
                x = _number(_mapping(summary.get("variant")).get(name))
                values = (
                    summary.get(metric)
                    if metric == "throughput_rps"
                    else (summary.get("latency_ms") or {}).get(metric)
                ) or {}
                if x is None or values.get("median") is None:
                    continue
                rows.append(
                    {
                        "series": names.series[str(summary["key"])],
                        "x": x,
                        "median": values["median"],
                        "min": values.get("min", values["median"]),
                        "max": values.get("max", values["median"]),
                    }
                )
            if not rows:
                continue
            out.append(
                _sweep_chart(
                    f"{title} over {axis_title.split(' (')[0]}", axis_title, y_title, rows, colours
                )
            )
    return out


def _sweep_chart(
    title: str, x_title: str, y_title: str, rows: list[dict[str, Any]], colours: Colours
) -> Chart:
    xs = sorted({r["x"] for r in rows})
    log = xs[0] > 0 and xs[-1] / xs[0] >= 8
    series = list(dict.fromkeys(r["series"] for r in rows))
    x: dict[str, Any] = {
        "field": "x",
        "type": "quantitative",
        "title": x_title + (", log scale" if log else ""),
        "axis": {"values": xs, "grid": True},
        "scale": {"type": "log", "domain": [xs[0], xs[-1]]} if log else {"zero": False},
    }
    colour = {
        "field": "series",
        "type": "nominal",
        "scale": {"domain": series, "range": [colours.of_series(s) for s in series]},
        "legend": _legend(len(series)),
    }
    spec = _spec(
        title,
        "median over repeats; the error bar spans the fastest to the slowest",
        width=WIDTH,
        height=HEIGHT,
        data={"values": rows},
        layer=[
            {
                "mark": {"type": "line", "point": {"size": 40}, "strokeWidth": 2},
                "encoding": {
                    "x": x,
                    "y": {"field": "median", "type": "quantitative", "title": y_title},
                    "color": colour,
                    "tooltip": [
                        {"field": "series", "type": "nominal", "title": "variant"},
                        {"field": "x", "type": "quantitative", "title": x_title},
                        {"field": "median", "type": "quantitative", "format": ",.2f"},
                        {"field": "min", "type": "quantitative", "format": ",.2f"},
                        {"field": "max", "type": "quantitative", "format": ",.2f"},
                    ],
                },
            },
            {
                "mark": {"type": "errorbar", "ticks": True},
                "encoding": {
                    "x": x,
                    "y": {"field": "min", "type": "quantitative", "title": y_title},
                    "y2": {"field": "max"},
                    "color": colour,
                },
            },
        ],
    )
    return Chart(spec)


def compare_chart(comparison: Comparison) -> Chart | None:
    """Each metric's change, variant by variant, with its interval; failed checks in red."""
    rows = []
    for variant in comparison.variants:
        verdicts = {v.metric: v for v in variant.verdicts}
        for name, change in variant.metrics.items():
            if change.change is None:
                continue
            interval = charts.change_interval(change) or (change.change, change.change)
            verdict = verdicts.get(name)
            metric = metrics.lookup(name)
            rows.append(
                {
                    "variant": variant.key,
                    "metric": metric.label + (f" ({metric.unit})" if metric.unit else ""),
                    "change": round(change.change, 5),
                    "low": round(interval[0], 5),
                    "high": round(interval[1], 5),
                    "check": "not gated"
                    if verdict is None
                    else ("failed" if verdict.failed else "passed"),
                    "better": "higher" if metric.higher_is_better else "lower",
                }
            )
    if not rows:
        return None
    keys = list(dict.fromkeys(r["variant"] for r in rows))
    y = {
        "field": "variant",
        "type": "nominal",
        "sort": keys,
        "title": None,
        "axis": {"labelLimit": 260},
    }
    x = {
        "field": "change",
        "type": "quantitative",
        "title": "change (NEW vs BASE)",
        "axis": {"format": "+.2~%"},
    }
    colour = {
        "field": "check",
        "type": "nominal",
        "scale": {"domain": ["failed", "passed", "not gated"], "range": [BAD, GOOD, NEUTRAL]},
        "legend": {"title": "gate check", "orient": "bottom", "direction": "horizontal"},
    }
    spec = _spec(
        "Change of each metric, NEW against BASE",
        "dot: change of the medians; bar: range over every pairing of a BASE and a NEW repeat",
        data={"values": rows},
        columns=4,
        facet={
            "field": "metric",
            "type": "nominal",
            "sort": list(dict.fromkeys(r["metric"] for r in rows)),
            "title": None,
            "header": {"labelFontSize": 13, "labelFontWeight": "bold"},
        },
        spec={
            "width": 230,
            "height": max(40, 24 * len(keys)),
            "layer": [
                {"mark": {"type": "rule", "color": "#8c959f"}, "encoding": {"x": {"datum": 0}}},
                {
                    "mark": {"type": "rule", "strokeWidth": 2},
                    "encoding": {
                        "y": y,
                        "x": {**x, "field": "low"},
                        "x2": {"field": "high"},
                        "color": colour,
                    },
                },
                {
                    "mark": {"type": "point", "filled": True, "size": 70},
                    "encoding": {
                        "y": y,
                        "x": x,
                        "color": colour,
                        "tooltip": [
                            {"field": "variant", "type": "nominal"},
                            {"field": "metric", "type": "nominal"},
                            {"field": "change", "type": "quantitative", "format": "+.1%"},
                            {"field": "low", "type": "quantitative", "format": "+.1%"},
                            {"field": "high", "type": "quantitative", "format": "+.1%"},
                            {"field": "better", "type": "nominal", "title": "better when"},
                            {"field": "check", "type": "nominal"},
                        ],
                    },
                },
            ],
        },
        resolve={"scale": {"x": "independent"}},
    )
    return Chart(spec, wide=True)


def _runs_by_key(run: RunResult) -> dict[str, list[StrategyResult]]:
    out: dict[str, list[StrategyResult]] = {}
    for result in run.results:
        out.setdefault(result.key, []).append(result)
    return out


# --- the page ----------------------------------------------------------------------------------


@dataclass
class Page:
    """The page being written: its HTML parts and its charts' specs, by element id."""

    parts: list[str] = field(default_factory=list)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    colours: Colours = field(default_factory=Colours)

    def add(self, text: str) -> None:
        self.parts.append(text)

    def charts(self, heading: str, found: Sequence[Chart | None], note: str = "") -> None:
        drawn = [c for c in found if c is not None]
        if not drawn:
            return
        self.add(f"<h3>{esc(heading)}</h3>")
        if note:
            self.add(f'<p class="muted">{esc(note)}</p>')
        self.add('<div class="grid">')
        for chart in drawn:
            chart_id = f"chart-{len(self.specs) + 1}"
            self.specs[chart_id] = chart.spec
            caption = f"<figcaption>{esc(chart.caption)}</figcaption>" if chart.caption else ""
            wide = " wide" if chart.wide else ""
            self.add(
                f'<figure class="chart{wide}"><div id="{chart_id}" data-chart></div>'
                f"{caption}</figure>"
            )
        self.add("</div>")


def _facts(title: str, facts: Sequence[tuple[str, Any]]) -> str:
    items = "".join(
        f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>"
        for name, value in facts
        if value not in (None, "", [], {})
    )
    return f"<div><h4>{esc(title)}</h4><dl>{items}</dl></div>"


def _environment(run: RunResult) -> str:
    env = _mapping(run.environment)
    pg = _mapping(env.get("postgres"))
    settings = _mapping(pg.get("settings"))
    facts = [
        ("PostgreSQL", f"{pg.get('version', '?')} ({pg.get('backend', '?')})" if pg else None),
        ("max_connections", settings.get("max_connections")),
        (
            "CPU",
            f"{env.get('cpu_model') or '?'} · {env.get('cpu_count')} cores"
            + (f" · {env['cpu_freq_mhz']} MHz" if env.get("cpu_freq_mhz") else ""),
        ),
        ("memory", f"{env.get('memory_gib')} GiB" if env.get("memory_gib") else None),
        ("load average (1 min)", env.get("load_average_1m")),
        ("Python", f"{env.get('python', '?')} ({env.get('python_implementation', '?')})"),
        ("platform", env.get("platform")),
        ("connbench", run.connbench_version),
        ("created", run.created_at),
    ]
    packages = _mapping(env.get("packages"))
    versions = ", ".join(f"{name} {version}" for name, version in packages.items() if version)
    if versions:
        facts.append(("packages", versions))
    return _facts("Environment", facts)


# Scenario fields a reader did not set and need not see: derived, or where it came from.
_SCENARIO_INTERNAL = {"source", "source_text", "pool_min_effective", "pool_max_effective"}
_LOCUST_ONLY = {"locust_workers", "expect_workers", "locust_bind", "locust_port"}


@functools.cache
def _scenario_defaults() -> dict[str, Any]:
    from connbench.model.scenario import Scenario  # psycopg behind it: only for a page

    return Scenario(name="").to_dict()


def _fact_text(value: Any) -> str:
    """A scenario value on one line: lists joined, tables as ``key: value · ...``."""
    if isinstance(value, dict):
        shown = {k: v for k, v in value.items() if v not in (None, "", [], {})}
        return " · ".join(f"{k}: {_fact_text(v)}" for k, v in shown.items())
    if isinstance(value, list):
        return ", ".join(_fact_text(v) for v in value)
    return " ".join(str(value).split())  # a newline in a value (SQL, a body) read as a space


def scenario_facts(scenario: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) for what the user set: its name and description, the strategies, and
    each field that differs from the default; Locust's only when Locust ran; own apps and
    targets one line each."""
    defaults = _scenario_defaults()
    locust = scenario.get("engine") == "locust"
    facts = [("name", _fact_text(scenario.get("name", ""))),
             ("strategies", _fact_text(scenario.get("strategies", [])))]  # fmt: skip
    for key, value in scenario.items():
        if key in ("name", "strategies") or key in _SCENARIO_INTERNAL:
            continue
        if key in _LOCUST_ONLY and not locust:
            continue
        if value in (None, "", [], {}) or value == defaults.get(key):
            continue
        if key in ("app", "target") and isinstance(value, list):
            for entry in value:
                spec = dict(entry) if isinstance(entry, dict) else {"": entry}
                name = spec.pop("name", "")
                facts.append((f"{key} {name}".strip(), _fact_text(spec)))
            continue
        facts.append((key, _fact_text(value)))
    return facts


def _scenario(run: RunResult) -> str:
    scenario = _mapping(run.scenario)
    out = _facts("Scenario", scenario_facts(scenario))
    source = scenario.get("source_text")
    if isinstance(source, str) and source.strip():
        out += f"<details><summary>scenario file</summary><pre>{esc(source)}</pre></details>"
    return out


def _warning_list(run: RunResult) -> str:
    items = []
    if run.interrupted:
        items.append('<li class="bad">interrupted: these numbers are partial</li>')
    for summary in _summaries(run):
        if summary.get("status") in ("failed", "unavailable"):
            label = summary["key"] if len(run.summary) > 1 else summary["strategy"]
            items.append(
                f'<li class="bad">{esc(label)}: {esc(summary["status"])}: '
                f"{esc(summary.get('failure') or '')}</li>"
            )
    for crossed, line in limit_lines(run):
        mark = "bad" if crossed else "good"
        items.append(f'<li class="{mark}">{"✗" if crossed else "✓"} limit {esc(line)}</li>')
    warnings = [f"<li>{esc(w)}</li>" for w in warning_lines(run)]
    out = f'<ul class="warnings">{"".join(items)}</ul>' if items else ""
    out += _folded(warnings, "warning", "warn")
    return out or '<p class="muted">No warnings.</p>'


def _folded(items: Sequence[str], what: str, style: str, fold_past: int | None = None) -> str:
    """A list under its count (``3 warnings``), folded past ``fold_past`` items (default
    :data:`FOLD_WARNINGS`): many would bury what follows."""
    if not items:
        return ""
    limit = FOLD_WARNINGS if fold_past is None else fold_past
    shown = " open" if len(items) <= limit else ""
    icon = {"warn": "⚠ ", "bad": "✗ ", "good": "✓ "}.get(style, "")
    return (
        f'<details class="{style}"{shown}><summary>{icon}{len(items)} {what}'
        f"{'s' if len(items) > 1 else ''}</summary>"
        f'<ul class="warnings">{"".join(items)}</ul></details>'
    )


FOLD_WARNINGS = 5
FOLD_ROWS = 24


def run_section(page: Page, label: str, run: RunResult) -> None:
    """One result: the facts, the terminal's table, then its charts."""
    names = Names(_summaries(run))
    page.colours.assign(names)
    variants = Variants(names.keys, names, page.colours)
    page.add(f"<section><h2>{cell(run_title(run, html_mark))}</h2>")
    page.add(f'<p class="muted">{esc(label)} · {esc(run_context(run))}</p>')
    found = findings.findings(run)
    if found:
        items = "".join(f'<li class="{esc(f.severity)}">{esc(f.text)}</li>' for f in found)
        page.add(f'<div class="findings"><h3>Findings</h3><ul>{items}</ul></div>')
    headers, rows = run_rows(run, html_mark)
    page.add(html_table(headers, rows))
    kinds = request_rows(run, html_mark)
    if kinds:
        page.add("<h3>By kind of request</h3>" + html_table(["strategy", *REQUEST_HEADERS], kinds))
    page.add(_warning_list(run))
    page.add(f'<div class="facts">{_scenario(run)}{_environment(run)}</div>')
    page.charts(
        "Over the run",
        time_charts(run, variants),
        "Per second of the measured window, one line per variant. Grey: the warm-up "
        "before it (not measured); red dashes: a fault.",
    )
    page.charts("Latency distribution", [latency_chart(run, variants)])
    if len(variants.keys) > 1:
        page.charts("Side by side", side_by_side(run, variants))
    else:
        page.charts("Integrity", [rows_against_responses(run, variants)])
    page.charts("Where the time goes", [breakdown_chart(run, variants)])
    page.charts(
        "Sweeps",
        sweep_charts(run, names, page.colours),
        "Each swept setting on the x axis, so the knee shows.",
    )
    page.add("</section>")


def compare_section(page: Page, comparison: Comparison) -> None:
    page.add(
        f"<section><h2>Compare: {esc(comparison.base_label)} → {esc(comparison.new_label)}</h2>"
    )
    checks: dict[bool, list[str]] = {True: [], False: []}
    for verdict in comparison.verdicts:
        checks[verdict.failed].append(
            f'<li class="{"bad" if verdict.failed else "good"}">'
            f"{esc(verdict.variant)} {esc(verdict.metric)}: {esc(verdict.reason)}</li>"
        )
    page.add(_folded(checks[True], "failed check", "bad"))
    page.add(_folded(checks[False], "passed check", "good", fold_past=0))
    items = []
    if comparison.nothing_matched:
        items.append('<li class="bad">no variant matched: the gate has nothing to check</li>')
    items += [f"<li>{esc(w)}</li>" for w in comparison.warnings]
    for what, keys in (
        ("only in BASE", comparison.only_in_base),
        ("only in NEW", comparison.only_in_new),
    ):
        if keys:
            items.append(f"<li>{what}: {esc(', '.join(keys))}</li>")
    for diff in comparison.environment:
        items.append(
            f"<li>environment differs: {esc(diff.what)}: {esc(diff.base)} → {esc(diff.new)}</li>"
        )
    if items:
        page.add(f'<ul class="warnings">{"".join(items)}</ul>')
    page.charts("Changes", [compare_chart(comparison)])
    rows = compare_rows(comparison, html_mark)
    shown = " open" if len(rows) <= FOLD_ROWS else ""  # a long table would bury what follows
    page.add(f"<details{shown}><summary>the table ({len(rows)} rows)</summary>")
    page.add(html_table(COMPARE_HEADERS, rows) + "</details>")
    page.add("</section>")


VERDICT_CLASS = {FAIL: "bad", INCONCLUSIVE: "warn", "pass": "good"}
VERDICT_SIGNS = {FAIL: "✗", INCONCLUSIVE: "?", "pass": "✓"}  # drawn by any font, unlike emoji


VERDICT_CLASS = {FAIL: "bad", INCONCLUSIVE: "warn", "pass": "good"}
VERDICT_SIGNS = {FAIL: "✗", INCONCLUSIVE: "?", "pass": "✓"}  # drawn by any font, unlike emoji


def paired_chart(comparison: PairedComparison, metric_name: str, threshold: float | None) -> Chart:
    """One metric of an A/B run: each round's head/base ratio (dots), and the estimate and
    its interval over the rounds so far (line and band), as they narrowed round by round;
    ×1, the threshold and half of it as rules."""
    paired = comparison.metrics[metric_name]
    metric = metrics.lookup(metric_name)
    dots = [
        {"round": r, "ratio": round(ratio, 5)}
        for r, ratio in zip(paired.rounds, paired.ratios, strict=False)
    ]
    path = [
        {
            "round": step.rounds,
            "estimate": round(step.ratio, 5),
            "low": None if step.low is None else round(step.low, 5),
            "high": None if step.high is None else round(step.high, 5),
            "verdict": step.verdict or "",
        }
        for step in interval_path(comparison, metric_name, threshold)
    ]
    rules = [{"at": 1.0, "what": "no change"}]
    if threshold is not None:
        sign = -1 if metric.higher_is_better else 1
        rules += [
            {"at": 1 + sign * threshold, "what": f"threshold ({threshold:.0%} worse)"},
            {"at": 1 + sign * threshold / 2, "what": f"half of it ({threshold / 2:.0%})"},
        ]
    x = {"field": "round", "type": "quantitative", "title": "round", "axis": {"tickMinStep": 1}}
    y_scale = {"type": "log", "zero": False}
    kind = (
        "confidence sequence (valid at every round)"
        if comparison.method == SEQUENTIAL
        else "signed-rank interval over the first n rounds"
    )
    what = [r["what"] for r in rules]
    spec = _spec(
        f"{metric.label}: head/base, round by round",
        f"dots: each round's ratio; line and band: the estimate and its {kind}",
        width=420,
        height=240,
        layer=[
            {
                "data": {"values": [p for p in path if p["low"] is not None]},
                "mark": {"type": "area", "opacity": 0.25, "color": "#4e79a7"},
                "encoding": {
                    "x": x,
                    "y": {
                        "field": "low",
                        "type": "quantitative",
                        "scale": y_scale,
                        "title": "head / base",
                    },
                    "y2": {"field": "high"},
                },
            },
            {
                "data": {"values": path},
                "mark": {"type": "line", "color": "#4e79a7"},
                "encoding": {
                    "x": x,
                    "y": {"field": "estimate", "type": "quantitative", "scale": y_scale},
                    "tooltip": [
                        {"field": "round", "type": "quantitative", "title": "rounds"},
                        {"field": "estimate", "type": "quantitative", "format": ".3f"},
                        {"field": "low", "type": "quantitative", "format": ".3f"},
                        {"field": "high", "type": "quantitative", "format": ".3f"},
                        {"field": "verdict", "type": "nominal"},
                    ],
                },
            },
            {
                "data": {"values": dots},
                "mark": {"type": "point", "filled": True, "size": 50, "color": "#333333"},
                "encoding": {
                    "x": x,
                    "y": {"field": "ratio", "type": "quantitative", "scale": y_scale},
                    "tooltip": [
                        {"field": "round", "type": "quantitative"},
                        {"field": "ratio", "type": "quantitative", "format": ".3f"},
                    ],
                },
            },
            {
                "data": {"values": rules},
                "mark": {"type": "rule", "strokeWidth": 1.5},
                "encoding": {
                    "y": {"field": "at", "type": "quantitative", "scale": y_scale},
                    "color": {
                        "field": "what",
                        "type": "nominal",
                        "scale": {"domain": what, "range": [NEUTRAL, BAD, "#b58105"][: len(what)]},
                        "legend": {"title": None, "orient": "bottom"},
                    },
                    "strokeDash": {
                        "field": "what",
                        "type": "nominal",
                        "scale": {"domain": what, "range": [[1, 0], [6, 4], [2, 3]][: len(what)]},
                        "legend": None,
                    },
                },
            },
        ],
    )
    return Chart(spec, caption=f"{len(paired.ratios)} rounds")


def paired_section(page: Page, comparison: PairedComparison) -> None:
    """An A/B run judged round by round: the verdict, each check, the rounds, the table."""
    page.add(f"<section><h2>A/B: {esc(paired_view.title(comparison))}</h2>")
    verdict = comparison.verdict
    page.add(
        f'<ul class="warnings"><li class="{VERDICT_CLASS[verdict]}" id="ab-verdict">'
        f"{VERDICT_SIGNS[verdict]} <strong>{esc(paired_view.summary(comparison))}"
        "</strong></li></ul>"
    )
    page.add(f'<p class="muted">{esc(paired_view.gate_line(comparison))}</p>')
    if comparison.order:
        page.add(f'<p class="muted">order: {esc(comparison.order)}</p>')
    items = [f'<li class="bad">missing: {esc(line)}</li>' for line in comparison.missing]
    for check in comparison.checks:
        more = ""
        if check.verdict == INCONCLUSIVE and check.more_rounds is not None:
            more = f" (about {check.more_rounds} rounds in all would likely decide it)"
        items.append(
            f'<li class="{VERDICT_CLASS[check.verdict]}">{esc(check.verdict)}: '
            f"{esc(check.reason)}{esc(more)}<br><small>rule: {esc(check.rule)} "
            f"({esc(check.threshold_source)})</small></li>"
        )
    items += [f"<li>{esc(w)}</li>" for w in comparison.warnings]
    page.add(f'<ul class="warnings">{"".join(items)}</ul>')
    thresholds = {t.metric: t.fraction for t in comparison.gate.thresholds}
    shown = list(thresholds) or ["throughput", "p99"]
    page.charts(
        "Round by round",
        [
            paired_chart(comparison, name, thresholds.get(name))
            for name in shown
            if comparison.metrics[name].ratios
        ],
    )
    page.add(html_table(paired_view.HEADERS, paired_view.table_rows(comparison, html_mark)))
    page.add("</section>")


# Draws every chart of the page; marks each drawn one (data-drawn), says why one was not.
DRAW = """
const specs = JSON.parse(document.getElementById("connbench-charts").textContent);
for (const [id, spec] of Object.entries(specs)) {
  const el = document.getElementById(id);
  vegaEmbed(el, spec, { renderer: "svg", actions: false, tooltip: true })
    .then(() => el.setAttribute("data-drawn", "1"))
    .catch((err) => {
      el.textContent = "this chart could not be drawn: " + err;
      el.classList.add("chart-error");
      console.error("connbench: chart " + id + ": " + err);
    });
}
"""


@functools.cache
def _bundle() -> str:
    """Vega, Vega-Lite and vega-embed, minified, with :data:`DRAW`: one classic script."""
    return vl_convert.javascript_bundle(DRAW)


def _finite(data: Any) -> Any:
    """``data`` with NaN and infinities (which JSON cannot hold) as null."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def _inline_json(data: Any) -> str:
    """JSON that cannot end the <script> element it sits in, whatever its strings hold."""
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def report(
    runs: Sequence[tuple[str, RunResult]],
    comparisons: Sequence[Comparison] = (),
    paired: Sequence[PairedComparison] = (),
) -> str:
    """The page: each A/B verdict, each comparison, then each result (labelled, e.g. by its
    file name). Every string from them is redacted (:func:`connbench.present.sink.safe`), and
    so is every part of the page but Vega's own JavaScript."""
    runs = [(sink.text(label), sink.safe(run)) for label, run in runs]
    comparisons = sink.safe(list(comparisons))
    paired = sink.safe(list(paired))
    page = Page()
    names = ", ".join(label for label, _ in runs)
    page.add("<header><h1>connbench report</h1>")
    page.add(f'<p class="lead">{esc(names)} · made by connbench {esc(__version__)}</p></header>')
    for ab in paired:
        paired_section(page, ab)
    for comparison in comparisons:
        compare_section(page, comparison)
    for label, run in runs:
        run_section(page, label, run)
    title = "connbench · " + " · ".join(
        str(_mapping(run.scenario).get("name", "")) for _, run in runs
    )
    return _document(title, page)


def _document(title: str, page: Page) -> str:
    """The whole HTML document of ``page``: the template with its parts, specs and Vega."""
    template = Template(resources.files("connbench.present").joinpath("report.html").read_text())
    return template.substitute(
        title=sink.text(esc(title)),
        version=esc(__version__),
        body=sink.text("\n".join(page.parts)),
        specs=sink.text(_inline_json(page.specs)),
        bundle=_bundle(),
    )


# --- the trend over many results ----------------------------------------------------------------


def _at(point: trend.TrendPoint) -> str:
    """A point's place on the x axis: its number, and its commit or else its date."""
    where = point.commit[:8] + ("+" if point.dirty else "") if point.commit else None
    return f"{point.index} · {where or point.created_at[:16].replace('T', ' ')}"


def trend_chart(
    metric: metrics.Metric,
    points: Sequence[trend.TrendPoint],
    variants: Variants,
    order: Sequence[str],
) -> Chart:
    """One metric over the results (``order``: every result's place, so a result that did
    not measure it leaves a gap): a line per variant, the repeats' min..max as an error bar,
    a red diamond where a gate failed."""
    rows = [
        {
            "at": _at(p),
            "variant": variants.names.label[p.figure.variant],
            "value": p.figure.value,
            "low": p.figure.low,
            "high": p.figure.high,
            "repeats": p.figure.repeats,
            "commit": p.commit or "-",
            "date": p.created_at,
            "file": p.label,
            "failed": "; ".join(p.failed),
        }
        for p in points
    ]
    unit = metric.unit_stated
    x = {
        "field": "at",
        "type": "ordinal",
        "sort": list(order),
        "scale": {"domain": list(order)},
        "title": "result (commit, or date)",
        "axis": {"labelAngle": -30, "labelLimit": 160},
    }
    y_title = f"{metric.label} ({unit})" if unit else metric.label
    tooltip = [
        {"field": "variant", "type": "nominal"},
        {"field": "value", "type": "quantitative", "format": ",.4~g"},
        {"field": "low", "type": "quantitative", "format": ",.4~g", "title": "min"},
        {"field": "high", "type": "quantitative", "format": ",.4~g", "title": "max"},
        {"field": "repeats", "type": "quantitative"},
        {"field": "commit", "type": "nominal"},
        {"field": "date", "type": "nominal"},
        {"field": "file", "type": "nominal"},
        {"field": "failed", "type": "nominal", "title": "gate failed"},
    ]
    layers: list[dict[str, Any]] = [
        {
            "mark": {"type": "line", "point": {"filled": True, "size": 40}},
            "encoding": {
                "x": x,
                "y": {
                    "field": "value",
                    "type": "quantitative",
                    "title": y_title,
                    # Counts from 0 (a flat 4 then reads as 4); times and rates zoom in.
                    "scale": {"zero": not metric.unit},
                },
                "color": variants.colour(),
                "tooltip": tooltip,
            },
        }
    ]
    if any(row["low"] is not None for row in rows):
        layers.append(
            {
                "transform": [{"filter": "isValid(datum.low)"}],
                "mark": {"type": "errorbar", "ticks": True, "opacity": 0.7},
                "encoding": {
                    "x": x,
                    "y": {"field": "low", "type": "quantitative", "title": y_title},
                    "y2": {"field": "high"},
                    "color": variants.colour(legend=False),
                },
            }
        )
    if any(row["failed"] for row in rows):
        layers.append(
            {
                "transform": [{"filter": "datum.failed != ''"}],
                "mark": {
                    "type": "point",
                    "shape": "diamond",
                    "size": 260,
                    "filled": True,
                    "color": BAD,
                    "stroke": "#ffffff",
                    "strokeWidth": 1,
                },
                "encoding": {
                    "x": x,
                    "y": {"field": "value", "type": "quantitative"},
                    "tooltip": tooltip,
                },
            }
        )
    better = "higher" if metric.higher_is_better else "lower"
    subtitle = f"{better} is better; median over repeats, bar: min..max; red: a gate failed"
    title = metric.description[:1].upper() + metric.description[1:]
    spec = _spec(title, subtitle, width=WIDTH, height=HEIGHT, data={"values": rows}, layer=layers)
    return Chart(spec)


def trend_report(runs: Sequence[tuple[str, RunResult]]) -> str:
    """One page: each tracked metric over the results (by date, labelled by commit)."""
    points = trend.trend(runs)
    page = Page()
    page.add("<header><h1>connbench trend</h1>")
    page.add(
        f'<p class="lead">{len(runs)} results · made by connbench {esc(__version__)}</p></header>'
    )
    seen: dict[str, dict[str, Any]] = {}
    for _, run in sorted(runs, key=lambda item: item[1].created_at):
        for summary in _summaries(run):
            seen.setdefault(str(summary.get("key")), summary)
    names = Names(list(seen.values()))
    page.colours.assign(names)
    variants = Variants(names.keys, names, page.colours)
    rows, done = [], set()
    for p in points:
        if p.index in done:
            continue
        done.add(p.index)
        failed = sum(1 for q in points if q.index == p.index and q.failed)
        rows.append(
            [
                str(p.index),
                p.created_at,
                (p.commit or "-") + (" (with local changes)" if p.dirty else ""),
                p.label,
                html_mark(f"{failed} failed", "bad") if failed else "-",
            ]
        )
    page.add(html_table(["#", "date", "commit", "file", "gate"], rows))
    failures = [
        f'<li class="bad">{esc(_at(p))} {esc(p.figure.variant)} {esc(p.figure.metric.name)}: '
        f"{esc(reason)}</li>"
        for p in points
        for reason in p.failed
    ]
    if failures:
        page.add(f'<ul class="warnings">{"".join(failures)}</ul>')
    by_metric = [
        (metric, [p for p in points if p.figure.metric is metric]) for metric in metrics.TRACKED
    ]
    order = list(dict.fromkeys(_at(p) for p in points))  # points come in date order
    page.charts(
        "Over the results",
        [trend_chart(metric, found, variants, order) for metric, found in by_metric if found],
        "One line per variant, results in date order; hover a point for its commit and file.",
    )
    return _document("connbench trend", page)
