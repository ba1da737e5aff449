"""Temp directories that do not outlive connbench, even when it is killed with SIGKILL.

Each directory connbench makes is named ``connbench-*`` and holds a file with the PID of the
process that made it. ``remove_stale()`` (run when connbench starts) removes the directories
whose owner has died and whose PostgreSQL, if any, has stopped: the one case ``with`` blocks
cannot cover is a parent that never got to run them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil

from connbench.infra import procs
from connbench.model.errors import ConnbenchError

OWNER_FILE = ".connbench-owner"
PREFIX = "connbench-"


def make(prefix: str, parent: str | Path | None = None) -> Path:
    """A new ``connbench-<prefix>-*`` directory stamped with our PID."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{prefix}-", dir=parent))
    (path / OWNER_FILE).write_text(f"{os.getpid()} {psutil.Process().create_time()}\n")
    return path


def make_for_user(
    prefix: str, user: str | None, stack: ExitStack, parent: Path | None = None, mode: int = 0o755
) -> Path:
    """A new directory (see :func:`make`) that ``user`` owns and can write to.

    Its removal is registered on ``stack``. Under ``parent``, by default $TMPDIR, or under /tmp
    when $TMPDIR sits where ``user`` cannot reach (under a 0700 directory, say). Raises
    :class:`ConnbenchError` when ``user`` can write to neither.
    """
    for where in (parent, "/tmp") if parent is None else (parent,):
        path = make(prefix, where)
        stack.callback(remove, path)
        path.chmod(mode)
        if user is None:
            return path
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        if procs.writable_by(path, user):
            return path
    raise ConnbenchError(f"OS user {user!r} cannot write to {path}")


def write_private(path: Path, text: str, user: str | None) -> Path:
    """Write ``text`` to a file only its owner can read, owned by ``user`` (None: us)."""
    path.write_text(text)
    path.chmod(0o600)
    if user is not None:
        os.chown(path, pwd.getpwnam(user).pw_uid, -1)
    return path


def remove(path: Path) -> None:
    """Remove ``path``; once more after a moment if something was still writing into it."""
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        time.sleep(0.2)
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int, created: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        return created is None or abs(proc.create_time() - created) < 1.0
    except psutil.Error:
        return False


def _owner_alive(path: Path) -> bool:
    try:
        fields = (path / OWNER_FILE).read_text().split()
        return _alive(int(fields[0]), float(fields[1]) if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return True  # not ours to judge: leave it


def _postgres_alive(path: Path) -> bool:
    try:
        pid = int((path / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return _alive(pid, None)


def remove_stale(parents: tuple[str | Path, ...] = ()) -> list[Path]:
    """Remove directories left by connbench processes that died; return what was removed."""
    removed = []
    for parent in {Path(p) for p in (tempfile.gettempdir(), "/tmp", *parents)}:
        for path in parent.glob(f"{PREFIX}*"):
            if path.is_dir() and not _owner_alive(path) and not _postgres_alive(path):
                remove(path)
                removed.append(path)
    return removed
