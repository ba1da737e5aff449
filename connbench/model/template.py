"""Values that change with every request: ``{{randint A B}}``, ``{{uuid}}``, ``{{seq}}`` and
``{{csv FILE COLUMN}}`` in a request's path, header values and body.

- ``{{randint A B}}``: an integer from A to B, both included, uniformly.
- ``{{uuid}}``: a random UUID (version 4).
- ``{{seq}}``: 1, 2, 3, ... over the whole connbench process (every request of every kind gets
  its own number; the check's requests come first), so that unique keys do not collide.
- ``{{csv FILE COLUMN}}``: COLUMN of the next row of FILE (a CSV file with a header line,
  relative to the working directory), the rows in turn and from the top again after the last;
  every ``csv`` placeholder of one request reads the same row.

A template is compiled once (its file read, its arguments checked: a ``ValueError`` naming
the placeholder otherwise) into parts that each cost a function call at most per request:
the load generator's cost per request is part of what a 2-core machine measures.

Where the value goes decides how it is escaped: inside a JSON body, CSV values are escaped as
in a JSON string; in a path, they are percent-encoded; a header value must hold no line break.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

from connbench.model import files

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
# A JSON string that is one number-valued placeholder ("{{randint 1 9}}") becomes the number.
_NUMERIC_STRING = re.compile(r'"(\{\{\s*(?:randint|seq)\b[^{}"]*\}\})"')
MAX_CSV_BYTES = 64 * 1024 * 1024
MAX_CSV_ROWS = 1_000_000
MAX_RANDINT = 2**63 - 1
FUNCTIONS = ("randint", "uuid", "seq", "csv")

_SEQ = itertools.count(1)  # process-wide: a number is never sent twice by one connbench

# A part's value from (the request's sequence number, its kind's own count).
Part = Callable[[int, int], str]
Escape = Callable[[str], str]


def _json_escape(text: str) -> str:
    return json.dumps(text)[1:-1]


def _path_escape(text: str) -> str:
    return quote(text, safe="")


def _header_escape(text: str) -> str:
    if "\r" in text or "\n" in text or "\0" in text:
        raise ValueError("a header value cannot hold a line break")
    return text


ESCAPES: dict[str, Escape] = {"body": _json_escape, "path": _path_escape, "header": _header_escape}


class Template:
    """A compiled template: literal text and placeholders in turn, as a format string (its
    literal braces doubled) and the functions that fill its fields, so that a render is one
    ``str.format`` call."""

    def __init__(self, source: str, parts: tuple[str | Part, ...]) -> None:
        self.source = source
        self.parts = parts
        text = "".join(
            p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else "{}" for p in parts
        )
        self._format = text.format
        self._text = "".join(p for p in parts if isinstance(p, str))
        self._funcs = tuple(p for p in parts if not isinstance(p, str))

    @property
    def static(self) -> bool:
        return not self._funcs

    def render(self, seq: int, count: int) -> str:
        funcs = self._funcs
        if not funcs:
            return self._text
        return self._format(*[f(seq, count) for f in funcs])


def next_seq() -> int:
    return next(_SEQ)


def has_placeholder(text: str) -> bool:
    return "{{" in text


def unquote_numbers(json_text: str) -> str:
    """``{"id": "{{seq}}"}`` -> ``{"id": {{seq}}}``: a table's number-valued placeholder sends
    a number, not a string holding one."""
    return _NUMERIC_STRING.sub(r"\1", json_text)


def compile_template(source: str, where: str = "body") -> Template:
    """``source`` compiled for ``where`` (``body``, ``path`` or ``header``)."""
    escape = ESCAPES[where]
    parts: list[str | Part] = []
    last = 0
    for match in PLACEHOLDER.finditer(source):
        if match.start() > last:
            parts.append(source[last : match.start()])
        parts.append(_placeholder(match.group(1), escape))
        last = match.end()
    rest = source[last:]
    if "{{" in rest or "}}" in rest:
        raise ValueError(f"unbalanced '{{{{' or '}}}}' in {source[:80]!r}")
    if rest:
        parts.append(rest)
    return Template(source, tuple(parts))


def _placeholder(text: str, escape: Escape) -> Part:
    words = text.split()
    if not words:
        raise ValueError("empty placeholder {{}}")
    name, args = words[0], words[1:]
    shown = "{{" + text.strip() + "}}"
    if name == "randint":
        return _randint(args, shown)
    if name in ("uuid", "seq"):
        if args:
            raise ValueError(f"{shown}: {name} takes no arguments")
        if name == "uuid":
            return _uuid4
        return lambda seq, count: str(seq)
    if name == "csv":
        if len(args) != 2:
            raise ValueError(f"{shown}: expected {{{{csv FILE COLUMN}}}}")
        values = [escape(value) for value in read_column(args[0], args[1])]
        n = len(values)
        return lambda seq, count: values[count % n]
    raise ValueError(f"{shown}: unknown placeholder (known: {', '.join(FUNCTIONS)})")


def _randint(args: Sequence[str], shown: str) -> Part:
    try:
        low, high = (int(arg) for arg in args)
    except ValueError:
        raise ValueError(f"{shown}: expected {{{{randint LOW HIGH}}}} with two integers") from None
    if low > high or max(abs(low), abs(high)) > MAX_RANDINT:
        raise ValueError(f"{shown}: expected LOW <= HIGH, within +-{MAX_RANDINT}")
    span = high - low + 1
    if span <= 2**32:  # random() has 53 bits: uniform enough here, and 10x randint's speed
        unit = random.Random().random
        return lambda seq, count: str(low + int(unit() * span))
    draw = random.Random().randint
    return lambda seq, count: str(draw(low, high))


_bits = random.Random().getrandbits  # seeded from os.urandom: runs never share a sequence
_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)
_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))


def _uuid4(seq: int, count: int) -> str:
    """A version-4 UUID, without uuid4's system call and UUID object per request."""
    h = f"{(_bits(128) & _VERSION_MASK) | _VERSION_4:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def read_column(path: str, column: str) -> list[str]:
    """Every value of ``column`` in the CSV file at ``path`` (a header line first)."""
    try:
        text = files.read_text(Path(path), MAX_CSV_BYTES)
    except ValueError as exc:
        raise ValueError(f"{{{{csv {path} {column}}}}}: {exc}") from None
    try:
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames is None or column not in reader.fieldnames:
            known = ", ".join(reader.fieldnames or ()) or "none"
            raise ValueError(f"{path}: no column {column!r} (columns: {known})")
        values = []
        for row in reader:
            value = row.get(column)
            if value is not None:
                values.append(value)
            if len(values) > MAX_CSV_ROWS:
                raise ValueError(f"{path}: more than {MAX_CSV_ROWS:,} rows")
    except csv.Error as exc:
        raise ValueError(f"{path}: not CSV ({exc})") from None
    if not values:
        raise ValueError(f"{path}: no rows under the header line")
    return values
