"""The Vega-Lite chart specs of a change: two results compared, an A/B run's rounds, and
each tracked metric over many results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connbench.analyse import charts, trend
from connbench.analyse.compare import Comparison
from connbench.analyse.paired import (
    SEQUENTIAL,
    PairedComparison,
    interval_path,
)
from connbench.model import metrics
from connbench.present.html_charts import (
    HEIGHT,
    WIDTH,
    Chart,
    Variants,
    chart_spec,
)
from connbench.present.html_names import (
    BAD,
    GOOD,
    NEUTRAL,
)


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
    spec = chart_spec(
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
    spec = chart_spec(
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


# --- the trend over many results ----------------------------------------------------------------


def point_label(point: trend.TrendPoint) -> str:
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
            "at": point_label(p),
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
    spec = chart_spec(
        title, subtitle, width=WIDTH, height=HEIGHT, data={"values": rows}, layer=layers
    )
    return Chart(spec)
