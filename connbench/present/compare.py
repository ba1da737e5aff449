"""A comparison of results as a rich table, Markdown, CSV or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from connbench.analyse import stats
from connbench.analyse.compare import (
    Comparison,
    MetricChange,
    VariantComparison,
    difference_kinds,
)
from connbench.model import metrics
from connbench.model.metrics import amount
from connbench.present import sink
from connbench.present.common import (
    WARNING,
    Mark,
    csv_text,
    fit,
    json_text,
    markdown_mark,
    md_table,
    name_column,
    rich_mark,
    say_dropped,
    sayer,
)


def _change_cell(change: MetricChange, failed: bool, mark: Mark) -> str:
    if change.change is None:
        return "-"
    text = f"{change.change:+.1%}"
    if failed:
        return mark(text, "bad")
    worse = change.worse_by
    return mark(text, "warn") if worse is not None and worse > 0 else text


def _p_cell(change: MetricChange) -> str:
    n = f"{len(change.base_values)}+{len(change.new_values)}"
    return f"{change.p_value:.3g} ({n})" if change.p_value is not None else f"- ({n})"


def _spread_cell(value: float | None, cv: float | None, unit: str, mark: Mark) -> str:
    text = amount(value, unit, show_unit=False)
    if cv is not None:
        text += mark(f" ±{cv:.0%}", "warn" if cv >= stats.UNSTABLE_CV else "dim")
    return text


def _gate_cell(variant: VariantComparison, metric: str, mark: Mark) -> str:
    for verdict in variant.verdicts:
        if verdict.metric == metric:
            limit = f"{verdict.threshold:.0%}"
            if verdict.verdict == "inconclusive":
                return mark(f"? {limit}", "warn")
            return mark(f"FAIL {limit}", "bad") if verdict.failed else mark(f"pass {limit}", "good")
    return ""


COMPARE_HEADERS = ("variant", "metric", "BASE", "NEW", "change", "p (n)", "gate")
# What a narrow terminal drops first (the CSV, Markdown and JSON keep every column).
COMPARE_DROP = ("p (n)", "BASE", "NEW")


def compare_rows(comparison: Comparison, mark: Mark) -> list[list[str]]:
    rows = []
    for variant in comparison.variants:
        failed = {v.metric for v in variant.verdicts if v.failed}
        for i, (name, change) in enumerate(variant.metrics.items()):
            metric = metrics.lookup(name)
            label = metric.label + (f" {metric.unit}" if metric.unit else "")
            rows.append(
                [
                    variant.key if i == 0 else "",
                    label,
                    _spread_cell(change.base, change.base_cv, metric.unit, mark),
                    _spread_cell(change.new, change.new_cv, metric.unit, mark),
                    _change_cell(change, name in failed, mark),
                    _p_cell(change),
                    _gate_cell(variant, name, mark),
                ]
            )
    return rows


def _gate_line(comparison: Comparison) -> str:
    gate = comparison.gate
    if not gate.thresholds:
        return (
            "no gate: nothing can fail (give --fail-on METRIC:PERCENT, or a [gate] table in "
            "the scenario)"
        )
    sources = sorted({t.source for t in gate.thresholds})
    limits = ", ".join(
        f"{(m := metrics.lookup(t.metric)).label} "
        f"{'-' if m.higher_is_better else '+'}{t.fraction:.0%}"
        for t in gate.thresholds
    )
    return (
        f"gate: fail when worse than {limits} ({'; '.join(sources)}) and significant at "
        f"α={gate.alpha:g} (two-sided Mann-Whitney U over the per-repeat values)"
    )


def _matched_lines(comparison: Comparison) -> list[str]:
    return [
        f"matched {v.base_key!r} with {v.new_key!r}"
        for v in comparison.variants
        if v.base_key != v.new_key
    ]


def _verdict_summary(comparison: Comparison) -> str:
    verdicts = comparison.verdicts
    failed = sum(v.failed for v in verdicts)
    if comparison.nothing_matched:
        return "REGRESSION GATE FAILED: no variant in common, nothing could be checked"
    checks = f"{len(verdicts)} check" + ("s" if len(verdicts) != 1 else "")
    if comparison.missing_fails:
        lost = f"{len(comparison.missing)} variant(s) missing or failed in NEW"
        return f"REGRESSION: {lost}" + (f", {failed} of {checks} failed" if failed else "")
    if failed:
        return f"REGRESSION: {failed} of {checks} failed"
    if not verdicts:
        return "no checks"
    undecided = sum(v.verdict == "inconclusive" for v in verdicts)
    if undecided:
        return f"INCONCLUSIVE: {undecided} of {checks} worse than the threshold but not significant"
    return f"no regression ({checks} passed)"


def render_compare(console: Console, comparisons: Sequence[Comparison]) -> None:
    for comparison in comparisons:
        table = Table(
            title=f"connbench compare · {comparison.base_label} → {comparison.new_label}",
            title_justify="left",
        )
        rows = compare_rows(comparison, rich_mark)
        for index, header in enumerate(COMPARE_HEADERS):
            if header in ("variant", "metric"):  # names: never cut, never wrapped
                name_column(table, header, [row[index] for row in rows])
            else:
                table.add_column(header, justify="right", no_wrap=True)
        for row in rows:
            if row[0] and table.row_count:
                table.add_section()
            table.add_row(*row)
        dropped = fit(console, table, COMPARE_DROP)
        console.print(table)
        say_dropped(console, "compare", dropped)
        say = sayer(console)
        say("[dim]", _gate_line(comparison))
        for line in _matched_lines(comparison):
            say("[dim]", line)
        for label, keys in (("only in BASE", comparison.only_in_base),
                            ("only in NEW", comparison.only_in_new)):  # fmt: skip
            if keys:
                say(f"[yellow]{label}:[/yellow] ", ", ".join(keys))
        for line in comparison.missing:
            say("[bold red]missing:[/bold red] " if comparison.missing_fails else WARNING, line)
        if comparison.environment:
            say(WARNING, environment_line(comparison))
        for warning in comparison.warnings:
            say(WARNING, warning)
        marks = {
            "fail": "[bold red]✗ FAIL[/bold red] ",
            "inconclusive": "[yellow]? inconclusive[/yellow] ",
            "pass": "[green]✓ pass[/green] ",
        }
        for verdict in sorted(comparison.verdicts, key=lambda v: ORDER[v.verdict]):
            say(marks[verdict.verdict], f"{verdict.variant}: {verdict.reason}")
        style = "[bold red]" if comparison.failed else "[green]"
        say("[yellow]" if comparison.inconclusive else style, _verdict_summary(comparison))


def _matters(comparison: Comparison) -> str:
    kinds = difference_kinds(comparison.environment)
    if any(matters for _, matters, _, _ in kinds):
        return "the numbers may not be comparable."
    return "only in ways that rarely matter."


def environment_line(comparison: Comparison) -> str:
    """Every environment difference in one warning: grouped by kind, whether each matters."""
    parts = []
    for kind, matters, why, diffs in difference_kinds(comparison.environment):
        changes = "; ".join(f"{d.what} {d.base} → {d.new}" for d in diffs)
        parts.append(f"{kind} ({changes}): {'matters' if matters else 'minor'}, {why}")
    return f"BASE and NEW ran in different environments, {_matters(comparison)} " + ". ".join(parts)


ORDER = {"fail": 0, "inconclusive": 1, "pass": 2}


def compare_markdown(comparisons: Sequence[Comparison]) -> str:
    failed = [c for c in comparisons if c.failed]
    undecided = [c for c in comparisons if c.inconclusive]
    head = "❌ regression" if failed else "⚠️ inconclusive" if undecided else "✅ no regression"
    out = [f"## connbench compare: {head}"]
    for comparison in comparisons:
        out += ["", f"### `{comparison.base_label}` → `{comparison.new_label}`", ""]
        icon = "❌" if comparison.failed else "⚠️" if comparison.inconclusive else "✅"
        out.append(f"{icon} **{_verdict_summary(comparison)}**")
        out += ["", _gate_line(comparison)]
        if comparison.missing:
            verdict = (
                "fails the gate"
                if comparison.missing_fails
                else "allowed by --allow-missing"
                if comparison.allow_missing
                else "no gate"
            )
            out += ["", f"**Missing or failed in NEW** ({verdict}):", ""]
            out += [f"- ❌ {line}" for line in comparison.missing]
        verdicts = comparison.verdicts
        bad = [v for v in verdicts if v.failed]
        if bad:
            out += ["", "**Failed checks**", ""]
            out += [f"- ❌ **{v.variant}** · {v.reason}" for v in bad]
        open_ = [v for v in verdicts if v.verdict == "inconclusive"]
        if open_:
            out += ["", "**Inconclusive checks**", ""]
            out += [f"- ⚠️ **{v.variant}** · {v.reason}" for v in open_]
        good = [v for v in verdicts if v.verdict == "pass"]
        if good:
            out += ["", "<details><summary>Passed checks</summary>", ""]
            out += [f"- ✅ {v.variant} · {v.reason}" for v in good]
            out += ["", "</details>"]
        if comparison.variants:
            rows = compare_rows(comparison, markdown_mark)
            out += ["", md_table(COMPARE_HEADERS, rows, left=2)]
        matched = _matched_lines(comparison)
        if matched:
            out += [""] + [f"- {line}" for line in matched]
        for label, keys in (("Only in BASE", comparison.only_in_base),
                            ("Only in NEW", comparison.only_in_new)):  # fmt: skip
            if keys:
                out += ["", f"**{label}:** " + ", ".join(f"`{k}`" for k in keys)]
        if comparison.environment:
            out += ["", "> ⚠️ **Different environments**: " + _matters(comparison), ">"]
            for kind, matters, why, diffs in difference_kinds(comparison.environment):
                changes = "; ".join(f"{d.what}: `{d.base}` → `{d.new}`" for d in diffs)
                out.append(
                    f"> - **{kind}** ({'matters' if matters else 'minor'}: {why}): {changes}"
                )
        if comparison.warnings:
            out += [""] + [f"- ⚠️ {w}" for w in comparison.warnings]
    return "\n".join(out) + "\n"


def compare_csv(comparisons: Sequence[Comparison]) -> str:
    """One row per NEW file and variant: gate outcome, then BASE/NEW/change/p per metric."""
    rows = []
    for comparison in comparisons:
        for variant in comparison.variants:
            row: dict[str, Any] = {
                "base": comparison.base_label,
                "new": comparison.new_label,
                "variant": variant.key,
                "base_variant": variant.base_key,
                "new_variant": variant.new_key,
                "base_status": variant.base_status,
                "new_status": variant.new_status,
                "gate": (
                    "fail"
                    if variant.failed
                    else "inconclusive"
                    if any(v.verdict == "inconclusive" for v in variant.verdicts)
                    else "pass"
                )
                if variant.verdicts
                else "",
                "failed_checks": ";".join(v.metric for v in variant.verdicts if v.failed),
            }
            for name, change in variant.metrics.items():
                row[f"{name}_base"] = change.base
                row[f"{name}_new"] = change.new
                row[f"{name}_change"] = None if change.change is None else round(change.change, 4)
                row[f"{name}_p"] = None if change.p_value is None else round(change.p_value, 4)
            rows.append(row)
    return csv_text(rows)


def compare_json(comparisons: Sequence[Comparison]) -> str:
    return json_text(
        {
            "failed": any(c.failed for c in comparisons),
            "comparisons": [asdict(c) | {"failed": c.failed} for c in comparisons],
        }
    )


def format_compare(comparisons: Sequence[Comparison], fmt: str) -> str:
    """Comparisons as Markdown, CSV or JSON text (``table`` goes through render_compare)."""
    formats = {"markdown": compare_markdown, "csv": compare_csv, "json": compare_json}
    return formats[fmt](sink.safe(list(comparisons), markdown=fmt == "markdown"))
