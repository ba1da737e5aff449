"""Your own app as a variant: what ``--app``, ``--target`` and ``[[app]]`` tables describe.

- ``--app NAME=MODULE:ATTR[@DIR]``: connbench serves ``MODULE:ATTR`` with uvicorn, ``DIR``
  (default: the working directory) on its import path, against a database of its own.
- ``--target NAME=URL``: an app already running at ``URL``; nothing is booted.

Each request the load sends is ``method`` ``path`` with ``headers`` and a JSON ``body``; or,
with ``request`` tables (``--request``), one of several such requests, by weight (a mix), their
values templated per request (:mod:`connbench.model.template`). ``count_sql`` (one number: the
rows the app wrote) turns the integrity check on; ``setup_sql`` and ``count_sql`` may be
``@FILE`` (the file's text, as pgbench's ``-f``).

Pure parsing: values are checked here and errors raised as ``ValueError`` with a message that
names the value; the scenario prefixes where it came from.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from connbench.model import defaults, dsn, files, template

DEFAULT_PATH = "/visit/"
DEFAULT_READY_TIMEOUT_S = 30.0  # an app connbench starts: imports, lifespan, pool
TARGET_READY_TIMEOUT_S = 5.0  # a running app answers now or is not there
# How long setup_sql and count_sql may run (a statement timeout on the server, and a cancel
# from connbench a moment later for SQL that lifts it): a hung query fails its variant, never
# the whole run.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
_IMPORT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
MAX_REQUESTS = 100  # kinds in one mix
MAX_WEIGHT = 1000
MAX_SQL_FILE_BYTES = 1024 * 1024
# ``[WEIGHT] METHOD PATH [BODY]``: a path is one word, but a placeholder in it may hold spaces.
_REQUEST_FLAG = re.compile(
    r"^\s*(?:(?P<weight>\d+)\s+)?(?P<method>[A-Za-z]+)\s+(?P<path>(?:\{\{.*?\}\}|\S)+)"
    r"(?:\s+(?P<body>.*\S))?\s*$",
    re.DOTALL,
)


class Templated(str):
    """A JSON body given as text with placeholders: JSON once they are filled in."""


def body_text(value: Any) -> str | None:
    """The JSON text a body sends (placeholders left in, to fill per request)."""
    if value is None:
        return None
    if isinstance(value, Templated):
        return str(value)
    return template.unquote_numbers(json.dumps(value))


@dataclass(frozen=True)
class Request:
    """One kind of request of a mix: what it sends and how often (``weight`` against the
    others' weights)."""

    method: str = defaults.METHOD
    path: str = DEFAULT_PATH
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None  # JSON text, placeholders in; None: no body
    weight: int = 1
    name: str | None = None
    writes: bool | None = None  # each 2xx adds one row to count_sql; None: a POST does

    @property
    def label(self) -> str:
        return self.name or f"{self.method} {self.path}"

    @property
    def counted(self) -> bool:
        """Whether each of its 2xx should add a row to what ``count_sql`` counts."""
        return self.method == "POST" if self.writes is None else self.writes

    def describe(self) -> dict[str, Any]:
        """As a result records it: header names only (their values may be secrets)."""
        return {
            "name": self.label,
            "weight": self.weight,
            "method": self.method,
            "path": self.path,
            "headers": [name for name, _ in self.headers],
            "body": self.body,
            "writes": self.counted,
        }


# What a request target may hold as written (RFC 3986 path and query characters): every engine
# and the probe then send the very same bytes. Percent-escapes are kept as the user wrote them.
_TARGET = re.compile(r"^/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$")
# A header value: visible ASCII, spaces and tabs (RFC 9110 field-value, without obs-text,
# which clients encode differently).
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]*$")
_HOST = re.compile(r"^[A-Za-z0-9._~-]+$|^[0-9A-Fa-f:.]+$")  # a name, IPv4 or IPv6 (no brackets)
MAX_BODY_BYTES = 1 << 20  # a request body, as JSON: far above any visit's, far below harm


@dataclass(frozen=True)
class AppSpec:
    """One own app (``app`` set) or running target (``url`` set)."""

    name: str
    app: str | None = None  # MODULE:ATTR
    dir: str | None = None  # on the import path; None: the working directory
    url: str | None = None  # scheme://host:port of a running app (never its userinfo)
    path: str = DEFAULT_PATH
    method: str = defaults.METHOD
    body: Any = None  # a JSON value, sent as application/json; None: no body
    headers: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the app (not for targets)
    setup_sql: str | None = None  # run on the app's database before it starts
    count_sql: str | None = None  # SELECT one number: the rows written (integrity check)
    ready_path: str | None = None  # probed until it answers; None: ``path`` itself
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    requests: tuple[Request, ...] = ()  # a mix (request tables); () : the one request above
    # The target URL's user:password, base64 as HTTP Basic sends it (never shown).
    basic_auth: str | None = field(default=None, repr=False)
    python: str | None = None  # the interpreter uvicorn runs under; None: connbench's own

    @property
    def kind(self) -> str:
        return "target" if self.url is not None else "app"

    @property
    def request_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers each request sends: a target URL's userinfo as ``Authorization:
        Basic`` (as aiohttp and httpx send it), then ``headers``."""
        if self.basic_auth is None:
            return self.headers
        return (("Authorization", f"Basic {self.basic_auth}"), *self.headers)

    def secrets(self) -> list[str]:
        """Values no output may show: every ``env`` value, the secret-looking headers'
        values (see :func:`connbench.model.dsn.secret_header`) and the part after their
        scheme (``Bearer``, ``Basic``: a log may show it alone), the URL's credentials."""
        found = [value for _, value in self.env]
        every = [*self.request_headers, *(h for r in self.requests for h in r.headers)]
        for name, value in every:
            if dsn.secret_header(name):
                scheme, _, credentials = value.strip().partition(" ")
                found += [value, credentials.strip() or scheme]
        return found

    def remember_secrets(self) -> None:
        """Have :func:`connbench.model.dsn.redact` mask :meth:`secrets` wherever they appear."""
        dsn.remember_secret(*self.secrets())

    @property
    def body_bytes(self) -> bytes | None:
        """The one request's body as sent (placeholders unfilled)."""
        text = body_text(self.body)
        return None if text is None else text.encode()

    @property
    def mix(self) -> tuple[Request, ...]:
        """Every kind of request sent, with the app's headers (before each request's own)."""
        common = self.request_headers  # the URL's credentials too, as every engine sends them
        if not self.requests:
            return (Request(self.method, self.path, common, body_text(self.body)),)
        return tuple(replace(r, headers=common + r.headers) for r in self.requests)

    @property
    def sent(self) -> str:
        """What it is sent, in a few words: ``GET /visit/``, ``POST /orders/ (mix of 3)``."""
        return sent_label(self.mix)

    def describe(self) -> dict[str, Any]:
        """What a result records: header and environment *names* only (they may hold secrets)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "app": self.app,
            "dir": self.dir,
            "url": self.url,
            "path": self.path,
            "method": self.method,
            "body": self.body,
            "headers": [name for name, _ in self.headers],
            "env": [name for name, _ in self.env],
            "setup_sql": self.setup_sql,
            "count_sql": self.count_sql,
            "ready_path": self.ready_path,
            "requests": [r.describe() for r in self.mix] if self.requests else None,
            "python": self.python,
        }


class Compiled:
    """A request with its placeholders compiled once: each :meth:`render` fills in the next
    values (a static request renders the same every time, and draws no sequence number)."""

    def __init__(self, request: Request) -> None:
        compile_ = template.compile_template
        self.request = request
        self.path = compile_(request.path, "path")
        self.headers = [(name, compile_(value, "header")) for name, value in request.headers]
        self.body = compile_(request.body, "body") if request.body is not None else None
        self.static = self.path.static and all(t.static for _, t in self.headers)
        self.static = self.static and (self.body is None or self.body.static)
        self.typed = any(name.lower() == "content-type" for name, _ in request.headers)
        self.count = itertools.count()

    def render(self) -> tuple[str, list[tuple[str, str]], bytes | None]:
        """(path, headers, body) of the next request of this kind, its values filled in; a
        body comes with ``Content-Type: application/json`` unless the request sets one."""
        seq, count = (0, 0) if self.static else (template.next_seq(), next(self.count))
        headers = [(name, value.render(seq, count)) for name, value in self.headers]
        body = self.body.render(seq, count).encode() if self.body is not None else None
        if body is not None and not self.typed:
            headers.insert(0, ("Content-Type", "application/json"))
        return self.path.render(seq, count), headers, body


def sent_label(mix: tuple[Request, ...]) -> str:
    """The heaviest request (the first of equals), and how many kinds the mix has."""
    if not mix:
        return f"GET {DEFAULT_PATH}"
    first = max(mix, key=lambda r: r.weight)
    label = f"{first.method} {first.path}"
    return label if len(mix) == 1 else f"{label} (mix of {len(mix)})"


def _name(text: str) -> str:
    if not _NAME.match(text):
        raise ValueError(
            f"app name {text!r}: expected a letter then letters, digits, '.', '_' or '-'"
        )
    return text


def _split(text: Any, form: str) -> tuple[str, str]:
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"expected {form}, got {text!r}")
    name, _, rest = text.partition("=")
    return _name(name.strip()), rest.strip()


def parse_app(text: Any) -> AppSpec:
    """``NAME=MODULE:ATTR[@DIR]``."""
    name, rest = _split(text, "NAME=MODULE:ATTR[@DIR]")
    target, _, directory = rest.partition("@")
    return AppSpec(name=name, app=_import_string(target), dir=directory.strip() or None)


def parse_target(text: Any) -> AppSpec:
    """``NAME=URL``; a path in the URL is the path each request goes to."""
    name, rest = _split(text, "NAME=URL")
    base, path, basic = _url(rest)
    return AppSpec(
        name=name,
        url=base,
        path=path or DEFAULT_PATH,
        ready_timeout_s=TARGET_READY_TIMEOUT_S,
        basic_auth=basic,
    )


def _import_string(text: str) -> str:
    if not _IMPORT.match(text.strip()):
        raise ValueError(f"expected MODULE:ATTR (e.g. examples.myapp.main:app), got {text!r}")
    return text.strip()


def _url(text: str) -> tuple[str, str | None, str | None]:
    """(scheme://host:port, the path or None, the userinfo as HTTP Basic credentials or None).
    The userinfo is remembered as a secret and kept out of the URL: it goes on the wire as
    an ``Authorization`` header (as aiohttp and httpx send it), never as part of ``Host``."""
    # urlsplit drops tabs, CRs and LFs silently (bpo-43882): refuse them before it sees them.
    bad = [char for char in text.strip() if not char.isprintable() or char.isspace()]
    if bad:  # named, not the URL quoted: its userinfo may hold a password
        raise ValueError(f"a URL may not hold spaces or control characters, found {bad[0]!r}")
    parts = urlsplit(text.strip())
    if parts.username is not None or parts.password is not None:
        dsn.remember_secret(parts.password or "", parts.netloc.rpartition("@")[0])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {dsn.redact(repr(text))}")
    if "#" in text:
        raise ValueError("a URL's #fragment is never sent: leave it out, or percent-encode '#'")
    if not _HOST.fullmatch(parts.hostname):
        raise ValueError(f"bad host {_quoted(parts.hostname)}: expected a name or an IP address")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError(f"bad port in {dsn.redact(repr(text))}") from None
    path = parts.path if parts.path not in ("", "/") else None
    if path and parts.query:
        path += "?" + parts.query
    host = parts.netloc.rpartition("@")[2]
    basic = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        basic = base64.b64encode(credentials.encode()).decode("ascii")
        dsn.remember_secret(basic)
    return f"{parts.scheme}://{host}", parse_path(path) if path else None, basic


def _quoted(text: str) -> str:
    """``text`` quoted with control characters escaped, cut short (a message is one line)."""
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def parse_python(value: Any) -> str:
    """An interpreter: a path (made absolute, symlinks kept: a virtualenv's ``bin/python`` is
    one, and resolving it would leave the virtualenv) or a name looked up on ``PATH``."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ValueError(f"expected the path of a Python interpreter, got {value!r}")
    text = value.strip()
    return os.path.abspath(os.path.expanduser(text)) if os.sep in text else text


def parse_app_python(text: Any) -> tuple[str, str]:
    """``NAME=PATH`` (--app-python): the own app NAME runs under the interpreter PATH."""
    name, rest = _split(text, "NAME=PATH")
    return name, parse_python(rest)


def parse_path(value: Any) -> str:
    """A request target: ``/path`` with an optional ``?query``, sent exactly as written.

    Spaces, control characters (a CR/LF would end the request line), non-ASCII characters,
    a ``#fragment`` and a ``%`` not starting an escape are refused: percent-encode them.
    """
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {_quoted(str(value))}")
    sample = _sample(value, "path")  # its placeholders filled in: what is sent
    if not _TARGET.fullmatch(sample):
        bad = next(
            (c for c in sample if not _TARGET.fullmatch("/" + c) and c != "%"),
            "%",  # every character allowed: a '%' not followed by two hex digits
        )
        what = "a bad percent-escape" if bad == "%" else f"the character {bad!r}"
        raise ValueError(
            f"a path may hold only URL characters (percent-encode the rest), {_quoted(value)} "
            f"has {what}"
        )
    return value


def _sample(text: str, where: str) -> str:
    """``text`` with its placeholders filled once (checked, not sent)."""
    if not template.has_placeholder(text):
        return text
    return template.compile_template(text, where).render(0, 0)


def parse_method(value: Any) -> str:
    method = str(value).strip().upper()
    if method not in METHODS:
        raise ValueError(f"expected one of {', '.join(METHODS)}, got {value!r}")
    return method


def parse_body(value: Any) -> Any:
    """A JSON document given as text (a flag) or a TOML value (a file), of at most
    :data:`MAX_BODY_BYTES` as JSON; text with placeholders stays text, checked to be JSON
    once they are filled in."""
    if isinstance(value, str):
        if template.has_placeholder(value):
            _json_sample(value)
            if len(value.encode()) > MAX_BODY_BYTES:
                raise ValueError(f"at most {MAX_BODY_BYTES:,} bytes, got {len(value.encode()):,}")
            return Templated(value)
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"expected JSON ({exc.args[0]}), got {_quoted(value)}") from None
    else:
        text = body_text(value)
        if text is not None and template.has_placeholder(text):
            _json_sample(text)
    size = len(json.dumps(value).encode())
    if size > MAX_BODY_BYTES:
        raise ValueError(f"at most {MAX_BODY_BYTES:,} bytes as JSON, got {size:,}")
    return value


def _json_sample(text: str) -> None:
    sample = _sample(text, "body")
    try:
        json.loads(sample)
    except ValueError as exc:
        raise ValueError(
            f"expected JSON once its placeholders are filled in ({exc.args[0]}), got {text!r}"
        ) from None


def parse_header(value: Any) -> tuple[str, str]:
    """``Name: value``."""
    if not isinstance(value, str) or ":" not in value:
        # Its first word only: the rest may be a credential written without its colon.
        shown = f"{value.split()[0]!r}..." if isinstance(value, str) and value.split() else ""
        raise ValueError(f"expected 'Name: value', got {shown or _quoted(str(value))}")
    name, _, text = value.partition(":")
    return header(name, text)


def header(name: Any, value: Any) -> tuple[str, str]:
    """A header checked: the name an RFC 9110 token, the value visible ASCII, spaces and tabs
    (a CR or LF would start a header of its own), its placeholders filled in too. Surrounding
    blanks are dropped."""
    if not isinstance(value, str | int | float):
        raise ValueError(f"header {_quoted(str(name))}: expected a string value")
    name, text = str(name).strip(), str(value).strip(" \t")
    if not _HEADER.fullmatch(name):
        raise ValueError(
            f"bad header name {_quoted(name)}: expected letters, digits or !#$%&'*+-.^_`|~"
        )
    sample = _sample(text, "header")
    if not _HEADER_VALUE.fullmatch(sample):
        bad = next(c for c in sample if not _HEADER_VALUE.fullmatch(c))
        raise ValueError(
            f"header {name}: its value may hold only printable ASCII, spaces and tabs, "
            f"found {bad!r}"
        )
    return name, text


def parse_headers(value: Any) -> tuple[tuple[str, str], ...]:
    """A table ``{Name = "value"}`` (a file) or a list of ``Name: value`` (flags)."""
    if isinstance(value, Mapping):
        return tuple(header(k, v) for k, v in value.items())
    items = value if isinstance(value, list) else [value]
    return tuple(parse_header(item) for item in items)


def _env(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a table of environment variables")
    for key, text in value.items():
        if not isinstance(text, str | int | float):
            raise ValueError(f"env: {_quoted(str(key))}: expected a string value")
        # execve takes neither: a NUL ends the string, '=' ends the name.
        if not str(key) or "=" in str(key) or "\0" in str(key) or "\0" in str(text):
            raise ValueError(
                f"env: {_quoted(str(key))}: expected a name without '=' or NUL, a value without NUL"
            )
    return tuple((str(k), str(v)) for k, v in value.items())


def _sql(value: Any) -> str:
    """SQL text, or ``@FILE``: the text of that file (as pgbench's ``-f``)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an SQL statement or @FILE, got {_quoted(str(value))}")
    if value.startswith("@"):
        path = Path(value[1:])
        value = files.read_text(path, MAX_SQL_FILE_BYTES)
        if not value.strip():
            raise ValueError(f"{path} is empty")
    if "\0" in value:  # libpq takes C strings: it would end the query there
        raise ValueError("an SQL statement may not hold a NUL character")
    return str(value)


def _weight(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WEIGHT:
        raise ValueError(f"expected a weight from 1 to {MAX_WEIGHT}, got {value!r}")
    return value


_REQUEST_KEYS = ("name", "weight", "method", "path", "headers", "body", "writes")


def parse_request(value: Any) -> Request:
    """One request of a mix: a table (a file) or ``[WEIGHT] METHOD PATH [BODY]`` (a flag)."""
    if isinstance(value, str):
        match = _REQUEST_FLAG.match(value)
        if match is None:
            raise ValueError(f"expected '[WEIGHT] METHOD PATH [JSON BODY]', got {value!r}")
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        if "weight" in fields:
            fields["weight"] = int(fields["weight"])
    elif isinstance(value, Mapping):
        unknown = [key for key in value if key not in _REQUEST_KEYS]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(_REQUEST_KEYS)})")
        fields = dict(value)
    else:
        raise ValueError(
            f"expected [[app.request]] tables or '[WEIGHT] METHOD PATH', got {value!r}"
        )
    name = fields.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 80):
        raise ValueError(f"name: expected a short text, got {name!r}")
    method = parse_method(fields.get("method", "GET"))
    path = parse_path(fields.get("path", DEFAULT_PATH))
    body = parse_body(fields["body"]) if "body" in fields else None
    return Request(
        method=method,
        path=path,
        headers=parse_headers(fields["headers"]) if "headers" in fields else (),
        body=body_text(body),
        weight=_weight(fields.get("weight", 1)),
        name=name.strip() if isinstance(name, str) else None,
        writes=_writes(fields.get("writes")),
    )


def _writes(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"writes: expected true or false, got {value!r}")
    return value


def parse_requests(value: Any) -> tuple[Request, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_REQUESTS:
        raise ValueError(f"expected 1 to {MAX_REQUESTS} requests, got {len(items)}")
    out = []
    for i, item in enumerate(items, 1):
        try:
            out.append(parse_request(item))
        except ValueError as exc:
            raise ValueError(f"#{i}: {exc}") from None
    labels = [r.label for r in out]
    for label in labels:
        if labels.count(label) > 1:
            raise ValueError(f"two requests are both {label!r}: give them a name each")
    return tuple(out)


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected seconds > 0, got {value!r}")
    if value <= 0:
        raise ValueError(f"expected seconds > 0, got {value!r}")
    return float(value)


# How each request flag (and [[app]] key) is checked; applied to every own app and target.
REQUEST_FIELDS = {
    "path": parse_path,
    "method": parse_method,
    "body": parse_body,
    "headers": parse_headers,
    "setup_sql": _sql,
    "count_sql": _sql,
    "ready_path": parse_path,
    "ready_timeout_s": _timeout,
    "request": parse_requests,
}
_FIELD = {"request": "requests"}  # a key whose AppSpec field is named otherwise
_ONE_REQUEST = ("path", "method", "body")  # what a mix's requests say each for itself
_TABLE_KEYS = ("name", "app", "dir", "url", "env", "python", *REQUEST_FIELDS)


def parse_table(value: Any) -> AppSpec:
    """One ``[[app]]`` table: ``name`` and either ``app`` (with ``dir``) or ``url``."""
    if not isinstance(value, Mapping):
        raise ValueError("expected [[app]] tables")
    unknown = [key for key in value if key not in _TABLE_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(_TABLE_KEYS)})")
    name = value.get("name")
    if not isinstance(name, str):
        raise ValueError("every [[app]] needs a name")
    if ("app" in value) == ("url" in value):
        raise ValueError(f"app {name!r}: give either app = 'MODULE:ATTR' or url = 'http://...'")
    if "app" in value:
        spec = AppSpec(name=_name(name), app=_import_string(str(value["app"])))
        if "dir" in value:
            spec = replace(spec, dir=str(value["dir"]))
    else:
        spec = parse_target(f"{name}={value['url']}")
    if "python" in value:
        if spec.kind != "app":
            raise ValueError(f"app {name!r}: python applies to app = '...', not to a url")
        try:
            spec = replace(spec, python=parse_python(value["python"]))
        except ValueError as exc:
            raise ValueError(f"app {name!r}: python: {exc}") from None
    try:
        if "env" in value:
            spec = replace(spec, env=_env(value["env"]))
        return with_request(spec, {k: v for k, v in value.items() if k in REQUEST_FIELDS})
    except ValueError as exc:
        raise ValueError(f"app {name!r}: {exc}") from None


def with_request(spec: AppSpec, values: Mapping[str, Any]) -> AppSpec:
    """``spec`` with request fields set from raw ``values`` (checked by ``REQUEST_FIELDS``)."""
    changes = {}
    for key, raw in values.items():
        try:
            changes[_FIELD.get(key, key)] = REQUEST_FIELDS[key](raw)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    mixed = "requests" in changes or spec.requests
    single = [key for key in _ONE_REQUEST if key in values]
    if mixed and single:
        raise ValueError(
            f"request: give each request its {single[0]} in its own request table "
            f"(--request), not {single[0]} beside them"
        )
    return replace(spec, **changes)
