"""Connection strings without their secrets: one redaction for every way a DSN is written.

:func:`redact` is the one function every message, log line, exception text and saved field
goes through before a user or a file sees it. It hides passwords

- in URIs, whatever the scheme or its typos (``postgresql://u:pw@h``, ``postgres:/u:pw@h``,
  ``mysql://root:pw@h``, ``u:pw@h``), percent-escaped or not;
- in ``key=value`` conninfo (``password=pw``, ``password = 'p w'``, ``sslpassword=...``),
  quoted or not, and in URI query strings (``?password=pw``);
- and anywhere else a known secret appears as such (libpq quoting a piece of a malformed
  DSN, a traceback): :func:`remember` records the secrets of each DSN connbench is given, in
  every spelling (as written, decoded, percent-encoded), and :func:`redact` masks them all.

Over-masking is preferred to a leak: anything that looks like ``something:secret@`` is masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

MASK = "***"
# Shorter secrets are masked only where a pattern finds them: masking every "ab" in the
# output would make it unreadable and would tell the password anyway.
MIN_SECRET_LEN = 4

# scheme (possibly mistyped: one slash, none) + user, then ":password@". The password runs to
# the last "@" of the token, as over-masking is safer than a half-masked password.
_USERINFO = re.compile(
    r"(?P<head>(?:\b[A-Za-z][A-Za-z0-9+.\-]*:/{0,3})?[^\s:/@'\"=]*):(?P<pw>(?!/)[^\s'\"\[\]]*)@"
)
# password=..., sslpassword=..., PGPASSWORD=...: bare, 'single' or "double" quoted
# (with backslash escapes, as libpq reads them), also inside a URI query string.
_KEYWORD = re.compile(
    r"(?P<key>\b\w*password\s*=\s*)"
    r"(?P<val>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s'\"]*)",
    re.IGNORECASE,
)

# A whole value given as a DSN: its password may hold anything, spaces and "@" included (the
# host follows the last "@").
_WHOLE_URI = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.\-]*:/{0,3})?[^\s:/@]*:(?P<pw>.+)@[^@]*", re.DOTALL
)

_known: set[str] = set()


def redact(text: str) -> str:
    """``text`` with every password in it replaced by ``***`` (see the module docstring)."""
    if not text:
        return text
    # Known secrets first: the patterns below could cut one in two and leave a piece.
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _KEYWORD.sub(lambda m: f"{m['key']}{MASK}", text)


def redact_all(value: Any) -> Any:
    """:func:`redact` applied to every string in a JSON-like value (dicts, lists, keys too)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_all(k): redact_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_all(v) for v in value]
    return value


def remember(dsn: str) -> None:
    """Record the secrets ``dsn`` holds, in every spelling, so :func:`redact` masks them."""
    found: list[str] = []
    try:
        found.append(str(conninfo_to_dict(dsn).get("password") or ""))
    except psycopg.Error:
        pass  # malformed: the patterns below still find what it holds
    whole = _WHOLE_URI.match(dsn.strip())
    found += [whole["pw"]] if whole else []
    found += [m["pw"] for m in _USERINFO.finditer(dsn)]
    found += [_unquote_value(m["val"]) for m in _KEYWORD.finditer(dsn)]
    remember_secret(*found)


def remember_secret(*secrets: str) -> None:
    """Record passwords (PGPASSWORD, one read from a password file ...) for :func:`redact`."""
    for secret in secrets:
        for spelling in _spellings(secret):
            if len(spelling) >= MIN_SECRET_LEN:
                _known.add(spelling)


def forget_all() -> None:
    """Drop every remembered secret (for tests)."""
    _known.clear()


def _spellings(secret: str) -> Iterable[str]:
    yield secret
    yield unquote(secret)
    yield quote(secret, safe="")
    yield quote(secret)
    yield secret.replace("\\", "\\\\").replace("'", "\\'")  # as written in a quoted conninfo


def _unquote_value(value: str) -> str:
    if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def display(dsn: str) -> str:
    """The DSN as ``postgresql://user@host:port/dbname``: what to show of a server, no secret."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://(unparseable)"
    user = str(params.get("user") or "")
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    db = str(params.get("dbname") or user)
    return redact(f"postgresql://{user + '@' if user else ''}{host}:{port}/{db}")
