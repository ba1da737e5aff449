"""Initialised PostgreSQL clusters kept between runs: a run copies one instead of running initdb.

initdb costs 1-1.5 s (it probes the machine's limits, bootstraps the catalogs, creates three
databases); copying what it made costs a tenth of that. The cache keeps one cluster per
PostgreSQL build and set of initdb options (the key), cleanly shut down, holding no secret: its
superuser has no password and its ``pg_hba.conf`` admits nobody over TCP. Each run writes its
own ``pg_hba.conf`` and sets a new random password once its copy is up (see
:mod:`connbench.infra.postgres`).

Where: ``$CONNBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/connbench``, else ``~/.cache/connbench``.
Safe from another local user: that directory is created 0700 with ``mkdir`` (which fails rather
than reuse what exists), then checked with ``lstat`` (never following a symlink) to be a
directory we own, mode 0700, in a parent no other user can rename it in. One planted by someone
else, or a symlink, is never used nor touched: the run makes a fresh cluster instead. One of
ours with another mode is removed and made again. A cluster is copied out of it only if it was
completely written (its stamp names its key) and holds nothing but directories and regular
files that we own; else it is removed and rebuilt. Two runs at once each copy for themselves;
two that both build publish the first one's (a rename, which never replaces a directory).

Bounded: each virtualenv's PostgreSQL build is a key of its own (about 40 MB), and a CI job
that makes a virtualenv per revision makes new ones every time. Storing an entry removes all
but the :data:`KEEP` most recently used (a copy taken marks its entry used), and a build that
a killed run left half-written once it is an hour old. A run copying from an entry that is
removed meanwhile makes its cluster with initdb instead.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from connbench.model import files

CACHE_ENV = "CONNBENCH_CACHE_DIR"
FORMAT = 1  # bump when what a cached cluster must hold changes: older entries are not used
STAMP = "complete"  # written last, holding the key: an entry without it is half-written
BUILD_PREFIX = ".build-"
ENTRY_PREFIX = "pg-"  # every entry's name (see key): what evict() may remove
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
COPY_CHUNK = 1 << 24
KEEP = 4  # entries kept: the most recently used
STALE_BUILD_S = 3600.0  # a half-written build older than this was left by a killed run


class Damaged(Exception):
    """A cached cluster holds what connbench never puts there (or not all it should)."""


def cache_dir() -> Path:
    """Where the cache lives (see the module's docstring); it may not exist yet."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "connbench"


def key(*parts: str) -> str:
    """The entry name for a cluster made by ``parts`` (the server's version line, its
    binaries' identity, initdb's options): a digest, so no part needs escaping."""
    digest = hashlib.sha256("\0".join((f"format {FORMAT}", *parts)).encode()).hexdigest()
    return f"{ENTRY_PREFIX}{digest[:24]}"


def _private(st: os.stat_result) -> bool:
    """A real directory of ours that nobody else may enter."""
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == os.geteuid()
        and stat.S_IMODE(st.st_mode) == files.PRIVATE_DIR_MODE
    )


def _safe_parent(path: Path) -> bool:
    """No other user can rename or replace ``path``: its directory is writable by no one else
    but its owner (us or root), or is sticky (/tmp: only an entry's owner may rename it)."""
    try:
        st = os.stat(path.parent)
    except OSError:
        return False
    if st.st_uid not in (0, os.geteuid()):
        return False
    return not (st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)) or bool(st.st_mode & stat.S_ISVTX)


def root() -> Path | None:
    """The cache directory, created if missing; None when it must not be used (someone
    else's, a symlink, not a directory, in a parent another user can write to) or cannot be
    made. Ours with another mode: removed and made again, since others may have written in
    it."""
    try:
        path = cache_dir()
        # ~/.cache if it is missing, but never a home directory that does not exist.
        path.parent.mkdir(exist_ok=True, mode=files.PRIVATE_DIR_MODE)
        if not _safe_parent(path):
            return None
        for _ in range(2):
            try:
                os.mkdir(path, files.PRIVATE_DIR_MODE)
                os.chmod(path, files.PRIVATE_DIR_MODE, follow_symlinks=False)
            except FileExistsError:
                pass
            st = os.lstat(path)
            if _private(st):
                return path
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
                shutil.rmtree(path)  # ours, but opened to others: start again
                continue
            return None  # a symlink, a file, someone else's: leave it be
    except (OSError, RuntimeError, KeyError):  # no home directory to be found, say
        return None
    return None


def lookup(name: str) -> Path | None:
    """The data directory of the complete entry ``name``, or None (an entry found incomplete
    or not private is removed, so that it is built again)."""
    top = root()
    if top is None:
        return None
    entry = top / name
    try:
        st = os.lstat(entry)
    except OSError:
        return None
    try:
        stamp = (entry / STAMP).read_text() if _private(st) else ""
    except OSError:
        stamp = ""
    if stamp == name:
        return entry / "data"
    forget(name)
    return None


def forget(name: str) -> None:
    """Remove the entry ``name`` (damaged, or unusable); never raises."""
    top = root()
    if top is None:
        return
    entry = top / name
    try:
        st = os.lstat(entry)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
            shutil.rmtree(entry)  # rmtree never follows a symlink inside
        else:
            os.unlink(entry)
    except OSError:
        pass


def store(name: str, data: Path) -> None:
    """Keep a copy of the cluster in ``data`` (cleanly shut down) as the entry ``name``;
    best effort: a cache that cannot be written costs the next run an initdb, nothing more."""
    top = root()
    if top is None:
        return
    try:
        build = Path(tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=top))
    except OSError:
        return
    try:
        copy_tree(data, build / "data", None, check_owner=False)
        files.write_secret(build / STAMP, name)
        os.rename(build, top / name)  # fails if another run published it first: fine
    except (OSError, Damaged):
        pass
    finally:
        shutil.rmtree(build, ignore_errors=True)
    evict(top)


def evict(top: Path, keep: int = KEEP) -> list[str]:
    """Remove all but the ``keep`` most recently used entries under ``top``, and builds left
    half-written over :data:`STALE_BUILD_S` ago; only directories we own. Returns the names
    removed; never raises."""
    entries: list[tuple[float, str]] = []
    removed: list[str] = []
    now = time.time()
    try:
        with os.scandir(top) as found:
            for item in found:
                st = item.stat(follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                    continue
                if item.name.startswith(ENTRY_PREFIX):
                    entries.append((st.st_mtime, item.name))
                elif item.name.startswith(BUILD_PREFIX) and now - st.st_mtime > STALE_BUILD_S:
                    removed.append(item.name)
    except OSError:
        return []
    entries.sort(reverse=True)
    removed += [name for _, name in entries[keep:]]
    for name in removed:
        shutil.rmtree(top / name, ignore_errors=True)  # rmtree never follows a symlink inside
    return removed


def take(name: str, dest: Path, owner: files.Owner | None) -> bool:
    """Copy the entry ``name`` to ``dest`` (new), every file 0600 and directory 0700, owned
    by ``owner`` (None: us); False, with nothing left at ``dest``, when there is no usable
    entry (a damaged one is removed)."""
    source = lookup(name)
    if source is None:
        return False
    try:
        os.utime(source.parent)  # used: the last to be evicted
        copy_tree(source, dest, owner)
    except Damaged:
        forget(name)
        shutil.rmtree(dest, ignore_errors=True)
        return False
    except OSError:  # removed by another run meanwhile, or no space: make one instead
        shutil.rmtree(dest, ignore_errors=True)
        return False
    return True


def copy_tree(src: Path, dest: Path, owner: files.Owner | None, check_owner: bool = True) -> None:
    """Copy the directory ``src`` to the new ``dest``; directories 0700, files 0600, given to
    ``owner``. Raises :class:`Damaged` for anything in ``src`` but directories and regular
    files (and, with ``check_owner``, anything we do not own); nothing is followed."""
    files.private_subdir(dest, owner)
    with os.scandir(src) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if check_owner and st.st_uid != os.geteuid():
                raise Damaged(f"{entry.path}: not ours")
            target = dest / entry.name
            if stat.S_ISDIR(st.st_mode):
                copy_tree(Path(entry.path), target, owner, check_owner)
            elif stat.S_ISREG(st.st_mode):
                _copy_file(entry.path, target, owner)
            else:
                raise Damaged(f"{entry.path}: neither a directory nor a regular file")


def _copy_data(fd_in: int, fd_out: int) -> None:
    """In the kernel: copy_file_range, or sendfile where it cannot (another file system on
    an older kernel: EXDEV)."""
    try:
        while os.copy_file_range(fd_in, fd_out, COPY_CHUNK):
            pass
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    offset = os.lseek(fd_out, 0, os.SEEK_CUR)
    while sent := os.sendfile(fd_out, fd_in, offset, COPY_CHUNK):
        offset += sent


def _copy_file(src: str, dest: Path, owner: files.Owner | None) -> None:
    fd_in = os.open(src, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd_in).st_mode):
            raise Damaged(f"{src}: not a regular file")
        fd_out = os.open(dest, _CREATE_FLAGS, files.SECRET_MODE)
        try:
            os.fchmod(fd_out, files.SECRET_MODE)
            if owner is not None:
                os.fchown(fd_out, *owner)
            _copy_data(fd_in, fd_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
