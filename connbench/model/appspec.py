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
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,39}$")
_IMPORT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token


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
    parts = urlsplit(text.strip())
    if parts.username is not None or parts.password is not None:
        dsn.remember_secret(parts.password or "", parts.netloc.rpartition("@")[0])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL, got {dsn.redact(repr(text))}")
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
    return f"{parts.scheme}://{host}", path, basic


def parse_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {value!r}")
    return value


def parse_method(value: Any) -> str:
    method = str(value).strip().upper()
    if method not in METHODS:
        raise ValueError(f"expected one of {', '.join(METHODS)}, got {value!r}")
    return method


def parse_body(value: Any) -> Any:
    """A JSON document given as text (a flag) or a TOML value (a file)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ValueError(f"expected JSON ({exc.args[0]}), got {value!r}") from None


def parse_header(value: Any) -> tuple[str, str]:
    """``Name: value``."""
    if not isinstance(value, str) or ":" not in value:
        # Its first word only: the rest may be a credential written without its colon.
        shown = f"{value.split()[0]!r}..." if isinstance(value, str) and value.split() else ""
        raise ValueError(f"expected 'Name: value', got {shown or repr(value)}")
    name, _, text = value.partition(":")
    if not _HEADER.match(name.strip()):
        raise ValueError(f"bad header name {name.strip()!r}")
    return name.strip(), text.strip()


def parse_headers(value: Any) -> tuple[tuple[str, str], ...]:
    """A table ``{Name = "value"}`` (a file) or a list of ``Name: value`` (flags)."""
    if isinstance(value, Mapping):
        return tuple(parse_header(f"{k}: {v}") for k, v in value.items())
    items = value if isinstance(value, list) else [value]
    return tuple(parse_header(item) for item in items)


def _env(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a table of environment variables")
    return tuple((str(k), str(v)) for k, v in value.items())


def _sql(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an SQL statement, got {value!r}")
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
    if "env" in value:
        spec = replace(spec, env=_env(value["env"]))
    try:
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
