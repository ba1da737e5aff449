"""The boundary of every output: nothing reaches a terminal, a pipe or a file but through here.

Redaction and escaping are properties of the output, not of each formatter (as an HTML
template escapes at render time). Every sink applies them in one place:

- terminals (run, show, compare, serve, progress, warnings): :func:`console` gives a
  :class:`SafeConsole`, which redacts every string it lays out (a table cell, a line) and
  escapes the control characters in it (ESC, CSI, OSC, C1, BEL, CR, bidi overrides), then
  strips any control character left in the text it writes;
- text formats on stdout (markdown, csv, json, html): :func:`write`;
- files (``--summary``, the HTML report): :func:`text` before writing them;
- one-line messages on stderr (errors, exit reasons): :func:`echo`;
- the data a formatter reads: :func:`safe` (every string redacted; for Markdown, escaped too,
  so a result string cannot open a heading, a ``<details>``, an image or a link).

The saved result is redacted by :func:`connbench.model.results.dump` with the same function.
``tests/test_sinks.py`` checks that nothing else in the package writes to an output.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import IO, Any, TypeVar

from pydantic import BaseModel
from rich.console import Console, RenderableType
from rich.segment import Segment
from rich.text import Text

from connbench.model.dsn import redact, redact_all

# C0 but tab and newline, DEL, C1 (a lone 0x9b is a CSI to some terminals), and the Unicode
# marks that reorder what a terminal or a browser shows (bidi overrides and isolates).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What Markdown (GitHub's flavour) would read as markup in a result string: HTML, links and
# images ("[", "]"), autolinks (scheme:// and www.).
_MARKDOWN = re.compile(r"\r\n|[\r\n<>\[\]]|://|\bwww\.")
_MARKDOWN_AS = {"\r\n": " ", "\r": " ", "\n": " ", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]"}
# A zero-width space keeps a URL readable but no longer a link.
_MARKDOWN_AS |= {"://": ":\u200b//", "www.": "www\u200b."}

T = TypeVar("T")


def escape_controls(text: str) -> str:
    """``text`` with every control character written out (``\\x1b``, ``\\u202e``): shown,
    never obeyed by a terminal."""
    return _CONTROL.sub(_written_out, text)


def _written_out(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text(content: str) -> str:
    """What any text output may hold: ``content`` redacted, its control characters written
    out (newlines and tabs kept)."""
    return escape_controls(redact(content))


def json_document(content: str) -> str:
    """A JSON text with every string in it redacted (as data: a mask never breaks the JSON)."""
    return json.dumps(redact_all(json.loads(content)), indent=2) + "\n"


def csv_document(content: str) -> str:
    """A CSV text with every cell through :func:`text` (cell by cell: a mask never merges
    two cells)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([text(cell) for cell in row] for row in csv.reader(io.StringIO(content)))
    return buffer.getvalue()


# The tracking tools' formats (present/tracking.py) are JSON documents too.
JSON_FORMATS = ("github-action-benchmark", "github-action-benchmark:smaller",
                "github-action-benchmark:bigger", "bmf")  # fmt: skip


def write(content: str, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Write ``content`` (a whole report in format ``fmt``) to stdout, through :func:`text`
    (JSON and CSV as documents; an HTML page as it is: ``html.report`` made every
    part of it safe but Vega's own JavaScript, which no redaction may touch)."""
    out = stream if stream is not None else sys.stdout
    if fmt == "json" or fmt in JSON_FORMATS:
        content = json_document(content)
    elif fmt == "csv":
        content = csv_document(content)
    elif fmt != "html":
        content = text(content)
    out.write(content)


def echo(message: str, err: bool = True) -> None:
    """One plain line on stderr (or stdout), redacted and without control characters."""
    out = sys.stderr if err else sys.stdout
    out.write(text(message) + "\n")
    out.flush()


def markdown_text(content: str) -> str:
    """A result string as Markdown shows it and reads nothing in it as markup: one line, no
    HTML, no link or image, no autolink (``|`` is escaped by the table cell itself)."""
    return _MARKDOWN.sub(lambda m: _MARKDOWN_AS[m[0]], escape_controls(redact(content)))


def safe(value: T, markdown: bool = False) -> T:
    """A copy of ``value`` (a result, a comparison: models, dataclasses, lists, dicts) with
    every string redacted, and for Markdown escaped (:func:`markdown_text`)."""
    safe_value: T = map_strings(value, markdown_text if markdown else redact)
    return safe_value


def map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` rebuilt with ``fn`` applied to every string in it."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return value.model_copy(
            update={name: map_strings(getattr(value, name), fn) for name in fields}
        )
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: map_strings(getattr(value, f.name), fn)
            for f in dataclasses.fields(value)
            if f.init
        }
        return dataclasses.replace(value, **changes)
    if isinstance(value, list):
        # A result's series and histograms: lists of numbers, as typed (no string among them).
        if value and isinstance(value[0], int | float) and not isinstance(value[0], bool):
            return value
        return [map_strings(item, fn) for item in value]
    if isinstance(value, tuple):
        items = [map_strings(item, fn) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, dict):
        return {map_strings(k, fn): map_strings(v, fn) for k, v in value.items()}
    return value


class SafeConsole(Console):
    """A rich console that redacts and escapes every string it lays out, and writes no
    control character it was not asked to (its own colours and cursor moves only)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        rendered = super().render_str(text, **kwargs)
        plain = rendered.plain
        cleaned = escape_controls(redact(plain))
        if cleaned == plain:
            return rendered
        # The styles of a string that held a secret or a control character are dropped:
        # their spans no longer fit the text.
        return Text(
            cleaned,
            style=rendered.style,
            justify=rendered.justify,
            overflow=rendered.overflow,
            no_wrap=rendered.no_wrap,
            end=rendered.end,
        )

    def render(self, renderable: RenderableType, options: Any = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and _CONTROL.search(segment.text):
                segment = Segment(_CONTROL.sub("", segment.text), segment.style)
            yield segment


def console(stderr: bool = False, default_width: int = 100) -> SafeConsole:
    """A console for stdout (or stderr) as it is now: a terminal's own width; in a pipe or a
    CI log, ``COLUMNS`` when set (rich reads it), otherwise ``default_width``."""
    out = SafeConsole(stderr=stderr)
    if not out.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        out = SafeConsole(stderr=stderr, width=default_width)
    return out
