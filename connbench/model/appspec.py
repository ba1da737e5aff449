"""Your own app as a variant: what ``--app``, ``--target`` and ``[[app]]`` tables describe.

- ``--app NAME=MODULE:ATTR[@DIR]``: connbench serves ``MODULE:ATTR`` with uvicorn, ``DIR``
  (default: the working directory) on its import path, against a database of its own.
- ``--target NAME=URL``: an app already running at ``URL``; nothing is booted.

Each request the load sends is ``method`` ``path`` with ``headers`` and a JSON ``body``.
``count_sql`` (one number: the rows the app wrote) turns the integrity check on.

Pure parsing: values are checked here and errors raised as ``ValueError`` with a message that
names the value; the scenario prefixes where it came from.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from connbench.model import dsn

DEFAULT_PATH = "/visit/"
DEFAULT_READY_TIMEOUT_S = 30.0  # an app connbench starts: imports, lifespan, pool
TARGET_READY_TIMEOUT_S = 5.0  # a running app answers now or is not there
# How long setup_sql and count_sql may run (a statement timeout on the server, and a cancel
# from connbench a moment later for SQL that lifts it): a hung query fails its variant, never
# the whole run.
SETUP_SQL_TIMEOUT_S = 30.0
COUNT_SQL_TIMEOUT_S = 10.0
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
_IMPORT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
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
    method: str = "GET"
    body: Any = None  # a JSON value, sent as application/json; None: no body
    headers: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # extra environment for the app (not for targets)
    setup_sql: str | None = None  # run on the app's database before it starts
    count_sql: str | None = None  # SELECT one number: the rows written (integrity check)
    ready_path: str | None = None  # probed until it answers; None: ``path`` itself
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    # The target URL's user:password, base64 as HTTP Basic sends it (never shown).
    basic_auth: str | None = field(default=None, repr=False)

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
        for name, value in self.request_headers:
            if dsn.secret_header(name):
                scheme, _, credentials = value.strip().partition(" ")
                found += [value, credentials.strip() or scheme]
        return found

    def remember_secrets(self) -> None:
        """Have :func:`connbench.model.dsn.redact` mask :meth:`secrets` wherever they appear."""
        dsn.remember_secret(*self.secrets())

    @property
    def body_bytes(self) -> bytes | None:
        return None if self.body is None else json.dumps(self.body).encode()

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
        }


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


def parse_path(value: Any) -> str:
    """A request target: ``/path`` with an optional ``?query``, sent exactly as written.

    Spaces, control characters (a CR/LF would end the request line), non-ASCII characters,
    a ``#fragment`` and a ``%`` not starting an escape are refused: percent-encode them.
    """
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {_quoted(str(value))}")
    if not _TARGET.fullmatch(value):
        bad = next(
            (c for c in value if not _TARGET.fullmatch("/" + c) and c != "%"),
            "%",  # every character allowed: a '%' not followed by two hex digits
        )
        what = "a bad percent-escape" if bad == "%" else f"the character {bad!r}"
        raise ValueError(
            f"a path may hold only URL characters (percent-encode the rest), {_quoted(value)} "
            f"has {what}"
        )
    return value


def parse_method(value: Any) -> str:
    method = str(value).strip().upper()
    if method not in METHODS:
        raise ValueError(f"expected one of {', '.join(METHODS)}, got {value!r}")
    return method


def parse_body(value: Any) -> Any:
    """A JSON document given as text (a flag) or a TOML value (a file), of at most
    :data:`MAX_BODY_BYTES` as JSON."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"expected JSON ({exc.args[0]}), got {_quoted(value)}") from None
    size = len(json.dumps(value).encode())
    if size > MAX_BODY_BYTES:
        raise ValueError(f"at most {MAX_BODY_BYTES:,} bytes as JSON, got {size:,}")
    return value


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
    (a CR or LF would start a header of its own). Surrounding blanks are dropped."""
    if not isinstance(value, str | int | float):
        raise ValueError(f"header {_quoted(str(name))}: expected a string value")
    name, text = str(name).strip(), str(value).strip(" \t")
    if not _HEADER.fullmatch(name):
        raise ValueError(
            f"bad header name {_quoted(name)}: expected letters, digits or !#$%&'*+-.^_`|~"
        )
    if not _HEADER_VALUE.fullmatch(text):
        bad = next(c for c in text if not _HEADER_VALUE.fullmatch(c))
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
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an SQL statement, got {_quoted(str(value))}")
    if "\0" in value:  # libpq takes C strings: it would end the query there
        raise ValueError("an SQL statement may not hold a NUL character")
    return value


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
}
_TABLE_KEYS = ("name", "app", "dir", "url", "env", *REQUEST_FIELDS)


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
            changes[key] = REQUEST_FIELDS[key](raw)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return replace(spec, **changes)
