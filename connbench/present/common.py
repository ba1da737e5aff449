"""What every format shares: cell marks (rich styles, Markdown emphasis) and the small
formatting helpers used by run and comparison output alike."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

FORMATS = ("table", "markdown", "csv", "json", "html")

# A cell's meaning, styled per format: dim (context), warn (look twice), bad, good.
Mark = Callable[[str, str], str]
RICH_STYLES = {"dim": "dim", "warn": "yellow", "bad": "bold red", "good": "green"}


def rich_mark(text: str, style: str) -> str:
    return f"[{RICH_STYLES[style]}]{text}[/{RICH_STYLES[style]}]"


def markdown_mark(text: str, style: str) -> str:
    return f"**{text}**" if style == "bad" else text


def md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub table: the first ``left`` columns left-aligned, the numbers right-aligned."""
    align = ["---"] * left + ["--:"] * (len(headers) - left)
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(md_cell(c) for c in line) + " |" for line in lines)


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def json_text(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


WARNING = "[yellow]warning:[/yellow] "


def sayer(console: Console) -> Callable[[str, str], None]:
    """Print ``text`` after ``markup``, the text escaped: a reason or a key may hold brackets,
    which rich would take for tags (an open tag in ``markup`` runs to the end of the line)."""

    def say(markup: str, text: str) -> None:
        console.print(markup + escape(text), highlight=False)

    return say
