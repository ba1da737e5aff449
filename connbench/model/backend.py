"""The ``--postgres`` value: which server to benchmark against, parsed and checked (starting it
is :mod:`connbench.infra.postgres`' job)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict

from connbench.model.dsn import redact, remember
from connbench.model.errors import BadInput, first_line

DEFAULT_DOCKER_IMAGE = "postgres:16-alpine"
# The image `--postgres docker` uses when none is named (make docker-engine prints it).
DOCKER_IMAGE_ENV = "CONNBENCH_DOCKER_IMAGE"


# An image reference as Docker spells one: [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], the
# name's components lowercase.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


def docker_image() -> str:
    """The image of a bare ``--postgres docker``: ``$CONNBENCH_DOCKER_IMAGE``, else
    ``DEFAULT_DOCKER_IMAGE``."""
    return os.environ.get(DOCKER_IMAGE_ENV, "").strip() or DEFAULT_DOCKER_IMAGE


def _checked_image(image: str, given: str) -> str:
    if not _IMAGE.fullmatch(image):
        raise BadInput(
            f"{given}: {image!r} is not an image reference; expected "
            "[REGISTRY/]NAME[:TAG][@sha256:DIGEST], lowercase name"
        )
    return image


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
        named = value.partition(":")[2].strip()
        if named:
            return Backend("docker", image=_checked_image(named, "--postgres docker:IMAGE"))
        return Backend("docker", image=_checked_image(docker_image(), DOCKER_IMAGE_ENV))
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
