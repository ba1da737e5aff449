"""Results and comparisons as one self-contained HTML page: readable text at the top, the
terminal's table as an HTML table, then charts drawn by Vega-Lite.

The page loads nothing: Vega's JavaScript (bundled by vl-convert) and the chart specs are
inline, and a Content-Security-Policy forbids any request. A result file is untrusted input:
every string from it is HTML-escaped, and in the charts it is only ever data (text Vega draws),
never part of an expression.

This module assembles the page; the variants' names and colours are in :mod:`html_names`, the
charts' specs in :mod:`html_charts` and :mod:`html_time_charts` (one run) and
:mod:`html_change_charts` (a change).
"""

from __future__ import annotations

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
from connbench.analyse import findings, trend
from connbench.analyse.compare import Comparison
from connbench.analyse.paired import (
    FAIL,
    INCONCLUSIVE,
    PairedComparison,
)
from connbench.model import metrics
from connbench.model.results import RunResult
from connbench.present import paired as paired_view
from connbench.present import sink
from connbench.present.compare import COMPARE_HEADERS, compare_rows
from connbench.present.html_change_charts import (
    compare_chart,
    paired_chart,
    point_label,
    trend_chart,
)
from connbench.present.html_charts import (
    Chart,
    Variants,
    breakdown_chart,
    latency_chart,
    rows_against_responses,
    side_by_side,
    sweep_charts,
)
from connbench.present.html_names import (
    Colours,
    Names,
    as_mapping,
    summary_dicts,
)
from connbench.present.html_time_charts import time_charts
from connbench.present.run import (
    warning_lines,
)
from connbench.present.run_cells import (
    REQUEST_HEADERS,
    limit_lines,
    request_rows,
    run_context,
    run_rows,
    run_title,
)


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
    env = as_mapping(run.environment)
    pg = as_mapping(env.get("postgres"))
    settings = as_mapping(pg.get("settings"))
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
    packages = as_mapping(env.get("packages"))
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
    scenario = as_mapping(run.scenario)
    out = _facts("Scenario", scenario_facts(scenario))
    source = scenario.get("source_text")
    if isinstance(source, str) and source.strip():
        out += f"<details><summary>scenario file</summary><pre>{esc(source)}</pre></details>"
    return out


def _warning_list(run: RunResult) -> str:
    items = []
    if run.interrupted:
        items.append('<li class="bad">interrupted: these numbers are partial</li>')
    for summary in summary_dicts(run):
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
    names = Names(summary_dicts(run))
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
        str(as_mapping(run.scenario).get("name", "")) for _, run in runs
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
        for summary in summary_dicts(run):
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
        f'<li class="bad">{esc(point_label(p))} {esc(p.figure.variant)} '
        f"{esc(p.figure.metric.name)}: {esc(reason)}</li>"
        for p in points
        for reason in p.failed
    ]
    if failures:
        page.add(f'<ul class="warnings">{"".join(failures)}</ul>')
    by_metric = [
        (metric, [p for p in points if p.figure.metric is metric]) for metric in metrics.TRACKED
    ]
    order = list(dict.fromkeys(point_label(p) for p in points))  # points come in date order
    page.charts(
        "Over the results",
        [trend_chart(metric, found, variants, order) for metric, found in by_metric if found],
        "One line per variant, results in date order; hover a point for its commit and file.",
    )
    return _document("connbench trend", page)
