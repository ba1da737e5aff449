"""A paired A/B comparison (``compare RESULT --base --head``) as a rich table, Markdown, CSV
or JSON."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from connbench.analyse.paired import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    SEQUENTIAL,
    PairedCheck,
    PairedComparison,
    PairedMetric,
)
from connbench.model import metrics
from connbench.present import sink, tracking
from connbench.present.common import (
    WARNING,
    Mark,
    csv_text,
    json_text,
    markdown_mark,
    md_table,
    rich_mark,
    sayer,
)

HEADERS = ("metric", "base", "head", "ratio", "interval", "p", "detectable", "gate")


def _amount(values: list[float], unit: str) -> str:
    return metrics.amount(statistics.median(values) if values else None, unit, show_unit=False)


def _ratio_cell(metric: PairedMetric, check: PairedCheck | None, mark: Mark) -> str:
    if metric.ratio is None:
        return "-"
    text = f"×{metric.ratio:.3f}"
    if check is not None and check.failed:
        return mark(text, "bad")
    worse = metric.worse_by
    return mark(text, "warn") if worse is not None and worse > 0 else text


def _interval_cell(metric: PairedMetric) -> str:
    if metric.low is None or metric.high is None or metric.confidence is None:
        return "-"
    return f"×{metric.low:.3f}..×{metric.high:.3f} ({metric.confidence:.1%})"


def _gate_cell(check: PairedCheck | None, mark: Mark) -> str:
    if check is None:
        return ""
    limit = f"{check.threshold:.0%}"
    if check.verdict == FAIL:
        return mark(f"FAIL {limit}", "bad")
    if check.verdict == INCONCLUSIVE:
        return mark(f"inconclusive {limit}", "warn")
    return mark(f"pass {limit}", "good")


def table_rows(comparison: PairedComparison, mark: Mark) -> list[list[str]]:
    checks = {c.metric: c for c in comparison.checks}
    rows = []
    for name, metric in comparison.metrics.items():
        info = metrics.lookup(name)
        check = checks.get(name)
        rows.append(
            [
                info.label + (f" {info.unit}" if info.unit else ""),
                _amount(metric.base_values, info.unit),
                _amount(metric.head_values, info.unit),
                _ratio_cell(metric, check, mark),
                _interval_cell(metric),
                "-" if metric.p_value is None else f"{metric.p_value:.3g}",
                "-" if metric.detectable is None else f"{metric.detectable:.1%}",
                _gate_cell(check, mark),
            ]
        )
    return rows


def _rounds_text(metric: PairedMetric) -> str:
    """``1: ×0.83 · 2: ×0.85 · ...``: each round's head/base ratio."""
    return " · ".join(
        f"{r}: ×{ratio:.3f}" for r, ratio in zip(metric.rounds, metric.ratios, strict=False)
    )


def title(comparison: PairedComparison) -> str:
    rounds = f"{comparison.rounds} rounds"
    if comparison.max_rounds is not None:
        rounds += f" (of at most {comparison.max_rounds}: --repeat auto)"
    if comparison.slices > 1:
        rounds += f", each in {comparison.slices} turns a side"
    return (
        f"{comparison.label}: head {comparison.head!r} against base {comparison.base!r}, {rounds}"
    )


def gate_line(comparison: PairedComparison) -> str:
    if not comparison.gate.thresholds:
        return (
            "no gate: nothing can fail (give --fail-on METRIC:PERCENT, or a [gate] table in "
            "the scenario)"
        )
    sources = "; ".join(sorted({t.source for t in comparison.gate.thresholds}))
    if comparison.method == SEQUENTIAL:
        how = (
            "its estimate is the mean log ratio, its interval the confidence sequence at "
            f"α={comparison.alpha:g} (Lai's normal mixture, valid at every round: the run "
            "stopped when the gate decided)"
        )
    else:
        how = (
            "its estimate is Hodges-Lehmann, its interval the exact signed-rank one at "
            f"α={comparison.alpha:g}"
        )
    return (
        f"gate ({sources}): per round the head/base ratio; {how}. A check passes when the "
        "interval rules out a change worse than its threshold, fails when the estimate is "
        "worse than the threshold and the interval rules out a change of less than half of "
        "it, and is inconclusive otherwise; a variant that failed, was unavailable or served "
        "nothing in a round fails the gate"
        + (" (unless --allow-missing: here it is)" if comparison.allow_missing else "")
    )


def power_lines(comparison: PairedComparison) -> list[str]:
    """The smallest change these rounds could have detected, per gated (or every) metric."""
    thresholds = {t.metric: t.fraction for t in comparison.gate.thresholds}
    checks = {c.metric: c for c in comparison.checks}
    names = list(thresholds) or ["throughput", "p99"]
    lines = []
    for name in names:
        metric = comparison.metrics[name]
        label = metrics.lookup(name).label
        if metric.detectable is None:
            if metric.ratio is not None:
                lines.append(f"{label}: too few rounds for an interval")
            continue
        line = (
            f"{label}: {metric.detectable:.1%} (the interval's reach from the estimate, over "
            f"{len(metric.ratios)} rounds)"
        )
        check = checks.get(name)
        if check is not None and check.verdict == INCONCLUSIVE and check.more_rounds:
            line += f"; about {check.more_rounds} rounds in all would likely decide it"
        lines.append(line)
    return lines


def summary(comparison: PairedComparison) -> str:
    checks = comparison.checks
    failed = sum(c.failed for c in checks)
    missing = len(comparison.missing)
    if comparison.missing_fails:
        what = f"{missing} missing or failed round(s)"
        return f"REGRESSION: {what}" + (
            f", {failed} of {len(checks)} checks failed" if failed else ""
        )
    count = f"{len(checks)} check" + ("s" if len(checks) != 1 else "")
    if failed:
        return f"REGRESSION: {failed} of {count} failed"
    if not checks:
        return "no checks"
    open_ = [c for c in checks if c.verdict == INCONCLUSIVE]
    if open_:
        return (
            f"INCONCLUSIVE: {len(open_)} of {count} undecided after {comparison.rounds} rounds"
            + (f" ({more_rounds_text(open_)})" if more_rounds_text(open_) else "")
        )
    return f"no regression ({count} passed)"


def more_rounds_text(checks: list[PairedCheck]) -> str:
    """``about 23 rounds in all would likely decide it``, for the undecided checks."""
    counts = [c.more_rounds for c in checks if c.verdict == INCONCLUSIVE]
    if not counts:
        return ""
    if any(n is None for n in counts):
        return "no affordable number of rounds is likely to decide: the estimate sits at a boundary"
    most = max(n for n in counts if n is not None)
    return f"about {most} rounds in all would likely decide it at this spread"


VERDICT_MARKS = {FAIL: "❌", INCONCLUSIVE: "⚠️", PASS: "✅"}
HEADLINES = {FAIL: "❌ regression", INCONCLUSIVE: "⚠️ inconclusive", PASS: "✅ no regression"}


def render_paired(console: Console, comparison: PairedComparison) -> None:
    table = Table(title=f"connbench compare · {title(comparison)}", title_justify="left")
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "metric" else "right")
    for row in table_rows(comparison, rich_mark):
        table.add_row(*row)
    console.print(table)
    say = sayer(console)
    say("[dim]", gate_line(comparison))
    if comparison.order:
        say("[dim]", f"order: {comparison.order}")
    for line in comparison.missing:
        say("[bold red]missing:[/bold red] " if comparison.missing_fails else WARNING, line)
    for warning in comparison.warnings:
        say(WARNING, warning)
    marks = {
        FAIL: "[bold red]✗ FAIL[/bold red] ",
        INCONCLUSIVE: "[yellow]? inconclusive[/yellow] ",
        PASS: "[green]✓ pass[/green] ",
    }
    for check in sorted(comparison.checks, key=lambda c: (not c.failed, c.verdict == PASS)):
        say(marks[check.verdict], check.reason)
        if check.verdict == INCONCLUSIVE and check.more_rounds is not None:
            say("[dim]", f"    about {check.more_rounds} rounds in all would likely decide it")
        if check.failed:
            say(
                "[dim]", f"    rounds (head/base): {_rounds_text(comparison.metrics[check.metric])}"
            )
            say("[dim]", f"    rule: {check.rule}")
    for line in power_lines(comparison):
        say("[dim]", f"smallest detectable change: {line}")
    style = {FAIL: "[bold red]", INCONCLUSIVE: "[yellow]", PASS: "[green]"}
    say(style[comparison.verdict], summary(comparison))


def paired_markdown(comparison: PairedComparison) -> str:
    head = HEADLINES[comparison.verdict]
    out = [f"## connbench compare (A/B): {head}", "", f"`{title(comparison)}`"]
    icon = VERDICT_MARKS[comparison.verdict]
    out += ["", f"{icon} **{summary(comparison)}**", "", gate_line(comparison)]
    if comparison.order:
        out += ["", f"Order: {comparison.order}."]
    if comparison.missing:
        verdict = "fails the gate" if comparison.missing_fails else "left out of the pairs"
        out += ["", f"**Missing or failed** ({verdict}):", ""]
        out += [f"- ❌ {line}" for line in comparison.missing]
    bad = [c for c in comparison.checks if c.failed]
    if bad:
        out += ["", "**Failed checks**", ""]
        for check in bad:
            metric = comparison.metrics[check.metric]
            out.append(f"- ❌ **{check.reason}**")
            out.append(f"  - rounds (head/base): {_rounds_text(metric)}")
            out.append(f"  - rule: {check.rule} ({check.threshold_source})")
    undecided = [c for c in comparison.checks if c.verdict == INCONCLUSIVE]
    if undecided:
        out += ["", "**Inconclusive checks** (neither pass nor fail: more rounds needed)", ""]
        for check in undecided:
            metric = comparison.metrics[check.metric]
            out.append(f"- ⚠️ **{check.reason}**")
            if check.more_rounds is not None:
                out.append(
                    f"  - about **{check.more_rounds} rounds** in all would likely decide it "
                    f"(now {check.rounds}), if the per-round spread stays as it is"
                )
            else:
                out.append("  - no affordable number of rounds is likely to decide it")
            out.append(f"  - rounds (head/base): {_rounds_text(metric)}")
            out.append(f"  - rule: {check.rule} ({check.threshold_source})")
    good = [c for c in comparison.checks if c.verdict == PASS]
    if good:
        out += ["", "<details><summary>Passed checks</summary>", ""]
        out += [f"- ✅ {c.reason}" for c in good]
        out += ["", "</details>"]
    power = power_lines(comparison)
    if power:
        out += ["", "**Smallest change these rounds could have detected**", ""]
        out += [f"- {line}" for line in power]
    out += ["", md_table(HEADERS, table_rows(comparison, markdown_mark))]
    if comparison.warnings:
        out += [""] + [f"- ⚠️ {w}" for w in comparison.warnings]
    return "\n".join(out) + "\n"


def paired_csv(comparison: PairedComparison) -> str:
    """One row per metric: both sides' medians, the estimate, its interval, the gate."""
    checks = {c.metric: c for c in comparison.checks}
    rows: list[dict[str, Any]] = []
    for name, metric in comparison.metrics.items():
        check = checks.get(name)
        rows.append(
            {
                "result": comparison.label,
                "base": comparison.base,
                "head": comparison.head,
                "metric": name,
                "rounds": len(metric.ratios),
                "base_median": statistics.median(metric.base_values)
                if metric.base_values
                else None,
                "head_median": statistics.median(metric.head_values)
                if metric.head_values
                else None,
                "ratio": metric.ratio,
                "low": metric.low,
                "high": metric.high,
                "confidence": metric.confidence,
                "p": metric.p_value,
                "detectable": metric.detectable,
                "gate": "" if check is None else check.verdict,
            }
        )
    return csv_text(rows)


def paired_json(comparison: PairedComparison) -> str:
    return json_text(
        {
            "failed": comparison.failed,
            "verdict": comparison.verdict,
            "comparisons": [
                asdict(comparison) | {"failed": comparison.failed, "verdict": comparison.verdict}
            ],
        }
    )


def format_paired(comparison: PairedComparison, fmt: str) -> str:
    """The comparison as Markdown, CSV or JSON text, or each metric's ratio for a tracking
    tool (``table`` goes through render_paired)."""
    if fmt in tracking.FORMATS:
        return tracking.format_paired(comparison, fmt)
    formats = {"markdown": paired_markdown, "csv": paired_csv, "json": paired_json}
    return formats[fmt](sink.safe(comparison, markdown=fmt == "markdown"))
