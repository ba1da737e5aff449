"""The ``--postgres`` value: which server to benchmark against, parsed and checked (starting it
is :mod:`connbench.infra.postgres`' job)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from connbench.model.dsn import redact, remember
from connbench.model.errors import BadInput, first_line

DEFAULT_DOCKER_IMAGE = "postgres:16-alpine"
# The image `--postgres docker` uses when none is named (make docker-engine prints it).
DOCKER_IMAGE_ENV = "CONNBENCH_DOCKER_IMAGE"


def docker_image() -> str:
    """The image of a bare ``--postgres docker``: ``$CONNBENCH_DOCKER_IMAGE``, else
    ``DEFAULT_DOCKER_IMAGE``."""
    return os.environ.get(DOCKER_IMAGE_ENV, "").strip() or DEFAULT_DOCKER_IMAGE


@dataclass(frozen=True)
class Backend:
    """A parsed ``--postgres`` value."""

    kind: str  # embedded | local | docker | external
    image: str | None = None
    dsn: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "docker":
            return f"docker:{self.image}"
        if self.kind == "external":
            return "external"
        return self.kind


def parse_backend(value: str) -> Backend:
    """Parse a ``--postgres`` value; raises :class:`BadInput` with the accepted forms."""
    value = value.strip()
    if value in ("embedded", "local"):
        return Backend(value)
    if value == "docker" or value.startswith("docker:"):
        image = value.partition(":")[2] or docker_image()
        return Backend("docker", image=image)
    # Whatever else it is, it may be a DSN with a password (or a mistyped one): from here on
    # no message, log or saved field shows that password.
    remember(value)
    if value.startswith(("postgresql://", "postgres://")) or "=" in value:
        try:
            conninfo_to_dict(value)
        except psycopg.ProgrammingError as exc:
            reason = redact(first_line(exc))
            raise BadInput(f"--postgres: not a valid connection string: {reason}") from None
        return Backend("external", dsn=value)
    hint = " (a postgresql:// DSN needs two slashes)" if value.startswith("postgres") else ""
    raise BadInput(
        f"--postgres: unknown backend {redact(value)!r}{hint}; expected embedded, local, "
        "docker[:IMAGE] or a postgresql:// DSN"
    )
