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
from connbench.model import files
from connbench.model.errors import ConnbenchError

OWNER_FILE = ".connbench-owner"
PREFIX = "connbench-"


def owner_of(user: str | None) -> files.Owner | None:
    """(uid, gid) of OS user ``user``; None for us."""
    if user is None:
        return None
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def make(prefix: str, parent: str | Path | None = None, user: str | None = None) -> Path:
    """A new ``connbench-<prefix>-*`` directory, 0700 from its creation and owned by ``user``
    (None: us), stamped with our PID (a file only we can write, see :func:`remove_stale`)."""
    path = files.private_dir(f"{PREFIX}{prefix}-", parent, owner_of(user))
    try:
        stamp = f"{os.getpid()} {psutil.Process().create_time()}\n"
        files.write_secret(path / OWNER_FILE, stamp)
    except BaseException:
        remove(path)
        raise
    return path


def make_for_user(
    prefix: str, user: str | None, stack: ExitStack, parent: Path | None = None
) -> Path:
    """A new private directory (see :func:`make`) that ``user`` owns and can write to.

    Its removal is registered on ``stack``. Under ``parent``, by default $TMPDIR, or under /tmp
    when $TMPDIR sits where ``user`` cannot reach (under a 0700 directory, say). Raises
    :class:`ConnbenchError` when ``user`` can write to neither, or a directory cannot be made
    there at all (ENOSPC, EACCES: the cause first).
    """
    for where in (parent, "/tmp") if parent is None else (parent,):
        try:
            path = make(prefix, where, user)
        except OSError as exc:
            raise ConnbenchError(
                f"cannot create a temp directory in {where or tempfile.gettempdir()}: "
                f"{exc.strerror}"
            ) from None
        stack.callback(remove, path)
        if user is None or procs.writable_by(path, user):
            return path
    raise ConnbenchError(f"OS user {user!r} cannot write to {path}")


def write_private(path: Path, text: str, user: str | None) -> Path:
    """Create ``path`` 0600 with ``text``, owned by ``user`` (None: us); see
    :func:`connbench.model.files.write_secret`."""
    return files.write_secret(path, text, owner_of(user))


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
    stamp = path / OWNER_FILE
    try:
        if path.is_symlink() or stamp.is_symlink() or stamp.stat().st_uid != os.geteuid():
            return True  # not made by a connbench of ours: never remove another user's files
        fields = stamp.read_text().split()
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
