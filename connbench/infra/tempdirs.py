"""Temp directories that do not outlive connbench, even when it is killed with SIGKILL.

Each directory connbench makes is named ``connbench-*`` and holds a file with the PID of the
process that made it. ``remove_stale()`` (run when connbench starts) removes the directories
whose owner has died and whose PostgreSQL, if any, has stopped: the one case ``with`` blocks
cannot cover is a parent that never got to run them.
"""

from __future__ import annotations

import array
import os
import platform
import pwd
import shutil
import stat
import sys
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
DATA_PREFIX = "data-"  # a PostgreSQL data directory in one of ours: data-<random>


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


# Where a PostgreSQL data directory goes when $TMPDIR does not say: on disk, as a real
# server's is. /tmp is often a tmpfs (Fedora, Arch, Debian 13), where fsync, which every
# commit waits for, costs nothing it costs on a disk; /var/tmp is on disk by the FHS. (What
# made the cluster's copy slow on this project's VMs was not /tmp: see spread_subdirs.)
DISK_TMP = Path("/var/tmp")


def parents() -> tuple[Path, ...]:
    """Every directory connbench makes its temp directories in (see :func:`remove_stale`)."""
    return tuple(dict.fromkeys(Path(p) for p in (tempfile.gettempdir(), "/tmp", DISK_TMP)))


def _on_disk() -> Path | None:
    """:data:`DISK_TMP` when $TMPDIR is not set and it is a directory anyone may make a private
    directory in (mode 1777, as /tmp: another user cannot rename or remove ours); else None."""
    if os.environ.get("TMPDIR"):
        return None
    try:
        st = os.lstat(DISK_TMP)
    except OSError:
        return None
    usable = stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o1777 == 0o1777
    return DISK_TMP if usable and _owned_by_root(st) else None


def _owned_by_root(st: os.stat_result) -> bool:
    return st.st_uid == 0


def make_for_user(
    prefix: str,
    user: str | None,
    stack: ExitStack,
    parent: Path | None = None,
    *,
    on_disk: bool = False,
) -> Path:
    """A new private directory (see :func:`make`) that ``user`` owns and can write to.

    Its removal is registered on ``stack``. Under ``parent``, by default $TMPDIR, or under /tmp
    when $TMPDIR sits where ``user`` cannot reach (under a 0700 directory, say). ``on_disk``
    (a PostgreSQL data directory): first under :data:`DISK_TMP` when $TMPDIR is not set (see
    there), the default's turn next when that fails. Raises :class:`ConnbenchError` when
    ``user`` can write to none, or a directory cannot be made there at all (ENOSPC, EACCES:
    the cause first).
    """
    disk = _on_disk() if on_disk and parent is None else None
    if parent is not None:
        candidates: tuple[Path | str | None, ...] = (parent,)
    else:
        candidates = (disk, None, "/tmp") if disk is not None else (None, "/tmp")
    for where in candidates:
        try:
            path = make(prefix, where, user)
        except OSError as exc:
            if disk is not None and where is disk:
                continue  # no space on it, say: the default temp dir's turn
            raise ConnbenchError(
                f"cannot create a temp directory in {where or tempfile.gettempdir()}: "
                f"{exc.strerror}"
            ) from None
        stack.callback(remove, path)
        if user is None or procs.writable_by(path, user):
            return path
    raise ConnbenchError(f"OS user {user!r} cannot write to {path}")


# chattr +T: ext2/3/4 place the subdirectories of a directory with this flag as they place
# the file system's top-level ones, each in a block group of its own choosing, rather than
# beside their parent. The ioctls' numbers are the generic _IOR/_IOW('f', 1/2, long) of
# x86, ARM, RISC-V and s390; elsewhere nothing is asked.
_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000
_GENERIC_IOCTLS = ("x86_64", "i686", "aarch64", "armv7l", "riscv64", "s390x")


def spread_subdirs(path: Path) -> None:
    """Ask the file system to place the directories made in ``path`` (ours) in block groups
    of their own (``chattr +T``), best effort: a file system without the flag says no, and
    nothing changes. Why: a journal-less ext4 (this project's VMs) does not reuse an inode
    freed in the last 30 s, so each file made beside the ~970 a previous run removed scans
    past them all (``recently_deleted``): 1 ms a file back to back, against 30 us in a
    group of its own. Placement only: no file's content, mode or owner changes."""
    if platform.machine() not in _GENERIC_IOCTLS or sys.platform != "linux":
        return
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        flags = array.array("i", [0, 0])  # the kernel reads and writes an int
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & _FS_TOPDIR_FL:
            flags[0] |= _FS_TOPDIR_FL
            fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags)
    except OSError:
        pass  # tmpfs, xfs, btrfs...: not asked, not needed
    finally:
        os.close(fd)


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
        pids = [int(f.read_text().split()[0]) for f in path.glob(f"{DATA_PREFIX}*/postmaster.pid")]
    except (OSError, ValueError, IndexError):
        return False
    return any(_alive(pid, None) for pid in pids)


def remove_stale(extra: tuple[str | Path, ...] = ()) -> list[Path]:
    """Remove directories left by connbench processes that died; return what was removed."""
    removed = []
    for parent in dict.fromkeys((*parents(), *(Path(p) for p in extra))):
        for path in parent.glob(f"{PREFIX}*"):
            if path.is_dir() and not _owner_alive(path) and not _postgres_alive(path):
                remove(path)
                removed.append(path)
    return removed
