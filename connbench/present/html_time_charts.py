"""The Vega-Lite chart specs of a run second by second: throughput, p99 and the server's
connections (in total and by state) over the measured window, the warm-up before it in grey
and a fault as a red rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connbench.model.results import RunResult, StrategyResult
from connbench.present.html_charts import HEIGHT, WIDTH, Chart, Variants, chart_spec, runs_by_key
from connbench.present.html_names import (
    BAD,
    as_mapping,
    finite_number,
    summary_dicts,
)
from connbench.present.run_cells import (
    typical_run,
)

STATES = ("active", "idle", "idle_in_transaction")


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
