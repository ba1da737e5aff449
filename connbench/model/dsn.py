"""Connection strings shown to people: without their secrets."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict


def redact(dsn: str) -> str:
    """The DSN as ``postgresql://user@host:port/dbname``, without password or other secrets."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://(unparseable)"
    user = str(params.get("user") or "")
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    db = str(params.get("dbname") or user)
    return f"postgresql://{user + '@' if user else ''}{host}:{port}/{db}"
