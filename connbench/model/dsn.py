"""Text without its secrets: one redaction for every output connbench writes.

:func:`redact` is the one function every message, log line, exception text, report and saved
field goes through before a user or a file sees it (``connbench.present.sink`` applies it at
the boundary of every output). It hides

- passwords in URIs, whatever the scheme or its typos (``postgresql://u:pw@h``,
  ``postgres:/u:pw@h``, ``mysql://root:pw@h``, ``u:pw@h``), percent-escaped or not;
- passwords in ``key=value`` conninfo (``password=pw``, ``password = 'p w'``,
  ``sslpassword=...``), quoted or not, and in URI query strings (``?password=pw``);
- and anywhere else a known secret appears as such: :func:`remember` records the secrets of
  each DSN connbench is given, :func:`remember_secret` those it makes or is handed (an app
  role's password, ``[[app]] env`` values, secret-looking header values, a target URL's
  userinfo), each in every spelling an output may give it (as written, percent-encoded,
  JSON-, Python-, HTML- or conninfo-escaped).

Over-masking is preferred to a leak: anything that looks like ``something:secret@`` is masked
(``postgresql://user@host`` has no password and is left as it is). Every step is linear in the
length of the text: a megabyte of log is redacted in a fraction of a second.
"""

from __future__ import annotations

import html
import json
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

# A URI's password sits in a run of text without spaces, quotes or brackets (quotes delimit a
# string in a JSON, Python or libpq message, and masking must never cross one; brackets hold
# an IPv6 host, or "[@DIR]" in a usage line).
_TOKEN = re.compile(r"[^\s'\"\[\]]+")
# ... one holding an "@", matched from its first character only (the lookbehind): a token
# without "@" is scanned once, not once per character as an unanchored search would.
_AT_TOKEN = re.compile(r"(?<![^\s'\"\[\]])[^\s'\"\[\]@]*@[^\s'\"\[\]]*")
# password=..., sslpassword=..., PGPASSWORD=...: bare, 'single' or "double" quoted
# (with backslash escapes, as libpq reads them), also inside a URI query string. (No "\w*"
# before "password": on a long run of letters it would backtrack at every position.)
_KEYWORD = re.compile(
    r"(?P<key>password\s*=\s*)"
    r"(?P<val>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s'\"]*)",
    re.IGNORECASE,
)
# Header names whose values are credentials (the others, Content-Type and the like, are not
# remembered: masking "application/json" everywhere would hide the world).
_SECRET_HEADER = re.compile(r"auth|cookie|key|token|secret|passw|session|credential", re.I)

_known: set[str] = set()


def redact(text: str) -> str:
    """``text`` with every password in it replaced by ``***`` (see the module docstring)."""
    if not text:
        return text
    # Known secrets first: the patterns below could cut one in two and leave a piece.
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    if "@" in text:
        text = _AT_TOKEN.sub(_masked_token, text)
    if "assword" in text or "ASSWORD" in text:
        text = _KEYWORD.sub(lambda m: f"{m['key']}{MASK}", text)
    return text


def userinfo_password(text: str) -> tuple[int, int] | None:
    """Where the password of ``scheme://user:password@host...`` is in ``text`` (start, end),
    or None when it holds no ``:password@``. The password runs from the first colon after
    the user (a scheme's own colon, followed by a slash, is skipped) to the last "@": a
    password may hold "@" and ":", and over-masking is safer than half a password."""
    at = text.rfind("@")
    if at < 0:
        return None
    colon = text.find(":", 0, at)
    if colon >= 0 and text.startswith("/", colon + 1):  # scheme:/ scheme:// scheme:///
        after = colon + 1
        while after < at and text[after] == "/":
            after += 1
        colon = text.find(":", after, at)
    if colon < 0:
        return None
    return colon + 1, at


def _masked_token(match: re.Match[str]) -> str:
    token = match[0]
    span = userinfo_password(token)
    if span is None or span[0] == span[1]:
        return token
    return f"{token[: span[0]]}{MASK}{token[span[1] :]}"


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
    # The whole value is one DSN: its password may hold anything, spaces included.
    for text in (dsn.strip(), *_TOKEN.findall(dsn)):
        span = userinfo_password(text)
        if span is not None:
            found.append(text[span[0] : span[1]])
    found += [_unquote_value(m["val"]) for m in _KEYWORD.finditer(dsn)]
    remember_secret(*found)


def remember_secret(*secrets: str) -> None:
    """Record secrets (PGPASSWORD, an app role's password, an ``[[app]] env`` value ...) for
    :func:`redact`, in every spelling; those shorter than ``MIN_SECRET_LEN`` are not."""
    for secret in secrets:
        for spelling in _spellings(secret):
            if len(spelling) >= MIN_SECRET_LEN:
                _known.add(spelling)


def secret_header(name: str) -> bool:
    """Whether a request header's value is a credential (Authorization, Cookie, X-API-Key,
    any name with key, token, secret, auth, password, session or credential in it)."""
    return bool(_SECRET_HEADER.search(name))


def forget_all() -> None:
    """Drop every remembered secret (for tests)."""
    _known.clear()


def _spellings(secret: str) -> Iterable[str]:
    yield secret
    yield unquote(secret)
    yield quote(secret, safe="")
    yield quote(secret)
    yield secret.replace("\\", "\\\\").replace("'", "\\'")  # as written in a quoted conninfo
    yield json.dumps(secret)[1:-1]  # in a JSON document
    yield json.dumps(secret, ensure_ascii=False)[1:-1]
    yield repr(secret)[1:-1]  # in a Python traceback or repr()
    yield html.escape(secret)  # in the HTML report


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


def redact_toml(text: str, values: Iterable[str] = ()) -> str:
    """TOML ``text`` (a scenario file) with every string literal whose *parsed* value is one
    of ``values`` (or holds one of 4 characters or more, or a remembered secret) written as
    ``"***"``, then :func:`redact`: a secret is found however the file spells it (``"\\u0045"``,
    ``"a\\\\b"``, ``'literal'``, multi-line), and never saved as written."""
    exact = {value for value in values if value}
    inside = {value for value in exact if len(value) >= MIN_SECRET_LEN} | _known
    out: list[str] = []
    last = i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "#":  # a comment, to the end of its line
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
        elif char in "\"'":
            end = _toml_string_end(text, i)
            value = _toml_string_value(text[i:end])
            if value is not None and (value in exact or any(s in value for s in inside)):
                out += [text[last:i], f'"{MASK}"']
                last = end
            i = end
        else:
            i += 1
    out.append(text[last:])
    return redact("".join(out))


# TOML's four kinds of string literal. Each alternative starts with its own character, so a
# literal is matched in one pass, never by backtracking. Up to two quotes just before a
# multi-line string's delimiter belong to it ("""a"""" is a"").
_TOML_STRINGS = (
    ('"""', re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*""""{0,2}', re.DOTALL)),
    ("'''", re.compile(r"'''(?:[^']|'(?!''))*''''{0,2}")),
    ('"', re.compile(r'"(?:[^"\\\n]|\\.)*"')),
    ("'", re.compile(r"'[^'\n]*'")),
)


def _toml_string_end(text: str, start: int) -> int:
    """The end of the TOML string literal opening at ``start`` (or of its line, if it is
    not one: the file was parsed by tomllib, so that does not happen)."""
    for opening, pattern in _TOML_STRINGS:
        if text.startswith(opening, start):
            match = pattern.match(text, start)
            if match is not None:
                return match.end()
    newline = text.find("\n", start)
    return len(text) if newline < 0 else newline


def _toml_string_value(literal: str) -> str | None:
    import tomllib

    one_line = len(literal) >= 2 and literal[:2] not in ('""', "''")
    if one_line and (literal[0] == "'" or "\\" not in literal):
        return literal[1:-1]  # as written: no escape (a body of a megabyte is not parsed)
    try:
        value = tomllib.loads(f"v = {literal}")["v"]
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, str) else None
