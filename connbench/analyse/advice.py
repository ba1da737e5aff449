"""Warnings that earn their line: one line per kind, with how many variants and the fix.

A run records its warnings per variant (``VariantSummary.warnings``, kept whole in the JSON).
Shown one per variant they drown the signal: fourteen "p99 rests on 318 requests" lines say
one thing. :func:`grouped` folds the kinds that recur into one line each, naming the variants
and what to do about it; a warning of any other kind (integrity, errors, a saturated
generator: each is news about its variant) stays a line of its own.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from connbench.analyse.stats import MIN_REQUESTS_FOR

_REPEATS = r"(?: \(in \d+ of \d+ repeats\))?$"
FEW_REQUESTS = re.compile(r"^(?P<pct>p\d+) rests on (?P<n>\d+) requests \(want >= \d+\)" + _REPEATS)
UNSTABLE = re.compile(r"^unstable: (?P<what>\w+) varies by (?P<cv>\d+%) \(CV\) over \d+ repeats$")
OUTLIER = re.compile(r"^first repeat is an outlier \((?P<by>[+-]\d+%) against the others\)")
NAMED = 3  # variants named in a grouped line before "+N more"


@dataclass(frozen=True)
class _Kind:
    pattern: re.Pattern[str]
    head: str  # what, with {group} for the pattern's first group
    fix: str


_KINDS = (
    _Kind(
        FEW_REQUESTS, "{group} rests on fewer than {need} requests", "measure longer, e.g. -d 30s"
    ),
    _Kind(
        UNSTABLE,
        "{group} varies by 10 % or more (CV) between repeats",
        "more or longer repeats (-r 10, -d 30s), or a quieter machine",
    ),
    _Kind(OUTLIER, "the first repeat is an outlier", "a longer warm-up, e.g. -w 5s"),
)


def few_requests(warning: str) -> str | None:
    """The percentile a "rests on N requests" warning is about, or None for another kind."""
    found = FEW_REQUESTS.match(warning)
    return found["pct"] if found else None


def grouped(
    warnings: Sequence[tuple[str, str]], shown: Collection[str] = ("p50", "p90", "p99")
) -> list[str]:
    """One line per kind for ``(variant label, warning)`` pairs, in the order first seen.

    A "rests on N requests" warning about a percentile not in ``shown`` is left out: it is
    about a figure the reader is not shown (the JSON keeps it)."""
    lines: dict[str, list[str]] = {}  # line head -> the variants (with a detail each)
    fixes: dict[str, str] = {}
    for label, warning in warnings:
        pct = few_requests(warning)
        if pct is not None and pct not in shown:
            continue
        for kind in _KINDS:
            found = kind.pattern.match(warning)
            if found is None:
                continue
            group = found.group(1) if found.re.groups else ""
            need = f"{MIN_REQUESTS_FOR.get(group, 0):,}"
            head = kind.head.format(group=group, need=need)
            detail = found.groupdict().get("n") or found.groupdict().get("cv") or ""
            lines.setdefault(head, []).append(f"{label} {detail}".strip())
            fixes[head] = kind.fix
            break
        else:
            lines.setdefault(f"{label}: {warning}", [])
    out = []
    for head, variants in lines.items():
        if head not in fixes:
            out.append(head)
            continue
        count = len(variants)
        names = ", ".join(variants[:NAMED]) + (f", +{count - NAMED} more" if count > NAMED else "")
        noun = "variant" if count == 1 else "variants"
        out.append(f"{head} in {count} {noun} ({names}): {fixes[head]}")
    return out
