"""The Vega-Lite chart specs of one run: per second over the window, the latency
distribution, the variants side by side, where the time goes and each swept setting.

A spec carries the result's strings only as data (text Vega draws), never in an expression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connbench.analyse import charts
from connbench.analyse.breakdown import BREAKDOWN_PARTS
from connbench.analyse.stats import MEASURED
from connbench.model.results import RunResult, StrategyResult
from connbench.present.html_names import (
    BAD,
    Colours,
    Names,
    as_mapping,
    finite_number,
    summary_dicts,
)
from connbench.present.run import (
    BREAKDOWN_NOTE,
)
from connbench.present.run_cells import (
    typical_run,
)

WIDTH, HEIGHT = 560, 240
STATES = ("active", "idle", "idle_in_transaction")


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


def chart_spec(title: str, subtitle: str | None, **body: Any) -> dict[str, Any]:
    heading: dict[str, Any] = {"text": title}
    if subtitle:
        heading["subtitle"] = subtitle
    return {"config": CONFIG, "title": heading, **body}


def legend_spec(count: int) -> dict[str, Any]:
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
            "legend": legend_spec(len(self.keys)) if legend else None,
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
    return Chart(chart_spec(title, None, width=WIDTH, height=HEIGHT, layer=layers))


def _window_marks(run: RunResult, chosen: Sequence[StrategyResult]) -> list[dict[str, Any]]:
    """The warm-up before the window (shaded; not measured) and each fault's instant."""
    out: list[dict[str, Any]] = []
    warmup = finite_number(as_mapping(run.scenario).get("warmup_s"))
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
        fault = as_mapping(result.fault)
        at = finite_number(fault.get("injected_at_s"))
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


def _series(result: StrategyResult) -> dict[str, list[Any]]:
    """The per-second series by name, the connections by state as ``connections_STATE``
    (spaces as underscores), whether a result keeps them flat or under one key."""
    series = as_mapping(result.timeseries)
    by_state = as_mapping(series.get("connections_by_state"))
    out = {name: values for name, values in series.items() if isinstance(values, list)}
    for state, values in by_state.items():
        if isinstance(values, list):
            out[f"connections_{state.replace(' ', '_')}"] = values
    return out


def time_charts(run: RunResult, variants: Variants) -> list[Chart]:
    """Throughput, p99 and server connections (in total and by state) per second."""
    by_key = runs_by_key(run)
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
            step = finite_number(as_mapping(result.timeseries).get("interval_s")) or 1.0
            for i, value in enumerate(found.get(series) or []):
                number = finite_number(value)
                start = finite_number(starts[i]) if i < len(starts) else None
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
    repeats = max((int(s.get("runs", 1)) for s in summary_dicts(run)), default=1)
    if repeats > 1:
        for chart in out:
            chart.spec["title"]["subtitle"] = (
                f"the repeat whose throughput is closest to the median of {repeats}"
            )
    return out


TICKS = {2: "p50", 10: "p90", 100: "p99", 1000: "p99.9", 10000: "p99.99"}


def latency_chart(run: RunResult, variants: Variants) -> Chart | None:
    """The HdrHistogram plotter's view: latency at each percentile, the x axis logarithmic."""
    by_key = runs_by_key(run)
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
    repeats = max((int(s.get("runs", 1)) for s in summary_dicts(run)), default=1)
    subtitle = "from the saved HDR histograms" + (
        f", all {repeats} repeats merged" if repeats > 1 else ""
    )
    spec = chart_spec(
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
    spec = chart_spec(
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
    summaries = {str(s["key"]): s for s in summary_dicts(run) if s.get("status") in MEASURED}
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
        if finite_number(summaries[k].get("sessions_per_ok_response")) is not None
    ]
    if sessions:
        y = shown.axis()
        out.append(
            Chart(
                chart_spec(
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
    by_key = runs_by_key(run)
    rows, unequal = [], []
    for key in variants.keys:
        ran = [as_mapping(r.integrity) for r in by_key.get(key, []) if r.status in MEASURED]
        ran = [integrity for integrity in ran if integrity]
        inserted = [finite_number(integrity.get("rows_inserted")) for integrity in ran]
        responses = [finite_number(integrity.get("ok_responses")) for integrity in ran]
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
    spec = chart_spec(
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
    summaries = {str(s["key"]): s for s in summary_dicts(run) if s.get("breakdown")}
    keys = [k for k in variants.keys if k in summaries]
    rows = []
    for key in keys:
        parts = summaries[key]["breakdown"]
        for order, part in enumerate(BREAKDOWN_PARTS):
            value = finite_number(parts.get(part.key))
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
    spec = chart_spec(
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
    measured = [s for s in summary_dicts(run) if s.get("status") in MEASURED]
    for name, axis_title in names.swept:
        for metric, title, y_title in (
            ("throughput_rps", "Throughput", "2xx responses per second (req/s)"),
            ("p99", "p99 latency", "p99 latency (ms)"),
        ):
            rows = []
            for summary in measured:
                x = finite_number(as_mapping(summary.get("variant")).get(name))
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
        "legend": legend_spec(len(series)),
    }
    spec = chart_spec(
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


def runs_by_key(run: RunResult) -> dict[str, list[StrategyResult]]:
    out: dict[str, list[StrategyResult]] = {}
    for result in run.results:
        out.setdefault(result.key, []).append(result)
    return out
