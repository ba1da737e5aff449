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
from rich.table import Table
from rich.text import Text

# The last four are for performance-tracking tools (connbench.present.tracking).
FORMATS = (
    "table", "markdown", "csv", "json", "html",
    "github-action-benchmark", "github-action-benchmark:smaller",
    "github-action-benchmark:bigger", "bmf",
)  # fmt: skip

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


def name_column(table: Table, header: str, names: Sequence[str], **kwargs: Any) -> None:
    """A column of names: never wrapped, never narrower than the longest, so never cut."""
    width = max((Text.from_markup(name).cell_len for name in names), default=len(header))
    table.add_column(header, no_wrap=True, min_width=max(width, len(header)), **kwargs)


def _header(column: Any) -> str:
    header = column.header
    return Text.from_markup(header).plain if isinstance(header, str) else str(header)


def _lines(renderable: Any) -> list[str]:
    text = Text.from_markup(renderable) if isinstance(renderable, str) else Text(str(renderable))
    return text.plain.splitlines() or [""]


def _widths(column: Any, wrap: bool) -> tuple[int, int]:
    """(least, most) width of a column's content: a header may wrap at its spaces; a cell
    only in a ``wrap`` column (a number and its ±CV read best on one line)."""
    header_words = [len(word) for line in _lines(column.header) for word in line.split()]
    header = max(header_words, default=0)
    cells = [line for cell in column._cells for line in _lines(cell)]
    longest = max((Text(line).cell_len for line in cells), default=0)
    words = max((Text(word).cell_len for line in cells for word in line.split()), default=0)
    least = max(header, words if wrap else longest, column.min_width or 0)
    most = max(least, longest, max((len(line) for line in _lines(column.header)), default=0))
    return least, most


def _set_widths(console: Console, table: Table, wrap: Sequence[str]) -> bool:
    """Give every column its least width (nothing cut, numbers on one line), then what is
    left of the console's width to the columns in order, each up to its longest line; False
    when the least widths alone do not fit. (Left to itself, rich narrows the widest columns
    first and cuts a cell such as "(0.00/2xx)" while narrower columns keep room to spare.)"""
    for index, column in enumerate(table.columns):
        column.width = None
        column._index = index  # rich finds the first and last column by it
    ranges = [_widths(column, _header(column) in wrap) for column in table.columns]
    padding = [table._get_padding_width(index) for index in range(len(table.columns))]
    room = (
        console.width
        - table._extra_width
        - sum(ranges[i][0] + padding[i] for i in range(len(ranges)))
    )
    if room < 0:
        return False
    for column, (least, most) in zip(table.columns, ranges, strict=True):
        grow = min(room, most - least)
        column.width = least + grow
        room -= grow
    return True


def fit(console: Console, table: Table, drop: Sequence[str], wrap: Sequence[str] = ()) -> list[str]:
    """Lay ``table`` out within ``console``'s width with no cell cut (headers, and the cells
    of ``wrap`` columns, wrap at spaces), dropping columns by header in ``drop``'s order (the
    least needed first) while it does not fit; returns the headers dropped."""
    dropped: list[str] = []
    pending = list(drop)
    while not _set_widths(console, table, wrap):
        present = {_header(column): i for i, column in enumerate(table.columns)}
        while pending and pending[0] not in present:
            pending.pop(0)
        if not pending:  # nothing left to drop: rich does what it can
            for column in table.columns:
                column.width = None
            break
        del table.columns[present[pending[0]]]
        dropped.append(pending.pop(0))
    return dropped


def say_dropped(console: Console, what: str, dropped: Sequence[str]) -> None:
    """One dim line naming the columns a narrow terminal left out, and how to see them."""
    if dropped:
        console.print(
            f"[dim]{escape(what)}: left out at {console.width} columns: "
            f"{escape(', '.join(dropped))} (a wider terminal, COLUMNS=N, or --format csv "
            "shows them)[/dim]",
            highlight=False,
        )
