"""The Vega-Lite chart specs of one run: the latency distribution, the variants side by side,
where the time goes and each swept setting (those second by second are in
:mod:`html_time_charts`).

A spec carries the result's strings only as data (text Vega draws), never in an expression.
"""

from __future__ import annotations

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

WIDTH, HEIGHT = 560, 240


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
