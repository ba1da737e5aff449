"""Domain errors. Each carries a message fit to show a user as one line."""

from __future__ import annotations


class ConnbenchError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class BadInput(ConnbenchError):
    """Something the user gave us is wrong: a flag, a file, a DSN. Exit code 2."""

    exit_code = 2


class ScenarioError(BadInput):
    """A scenario file or option that does not validate."""


class ResultFileError(BadInput):
    """A result file that cannot be read, parsed or understood."""


class MissingDependency(BadInput):
    """A binary or service connbench needs is not there (with an install hint)."""


class PostgresError(ConnbenchError):
    """The throwaway server failed to start or stop, or the database refused us."""


class ProcessError(ConnbenchError):
    """A managed subprocess died or never became ready. The message ends with its log tail."""


def first_line(exc: BaseException) -> str:
    """An exception's message reduced to its first line (psycopg's run to several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
