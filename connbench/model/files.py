"""Files connbench writes, written so another local user cannot read a secret or lose a result.

- Private directories are 0700 from the ``mkdir`` on (``mkdtemp``), never created wider and
  narrowed later; a directory another OS user needs is given to them (chown) before anything
  is written into it.
- Secrets (password files, PgBouncer's auth file, logs that may quote a DSN) are created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 in one call: never a window where they are
  readable, never through a symlink or into a file someone else made.
- Results hold no secret and are meant to be shared: they are created 0644 (less what the
  umask takes away), atomically (a temp file in the same directory, fsync, rename), only over
  a regular file or at a new path. :func:`check_destination` says before a run whether a path
  will do; :func:`save_or_fallback` never loses what was measured.

This module imports nothing else of connbench.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
SECRET_MODE = 0o600
RESULT_MODE = 0o666  # less the umask: 0644 usually
TEMP_PREFIX = ".connbench-"  # short: a result's own name may use all of NAME_MAX
FALLBACK_PREFIX = "connbench-unsaved-"
_SECRET_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputRefused(ValueError):
    """A result cannot (or must not) be written at this path; the message says why."""


Owner = tuple[int, int]  # (uid, gid)


def read_text(path: Path, max_bytes: int) -> str:
    """A UTF-8 file the user named (an SQL or CSV file), read whole up to ``max_bytes``.
    Raises ValueError naming the file and what is wrong (unreadable, too large, not UTF-8)."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror})") from None
    if len(raw) > max_bytes:
        raise ValueError(f"{path}: larger than {max_bytes:,} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None


def private_dir(prefix: str, parent: str | Path | None = None, owner: Owner | None = None) -> Path:
    """A new directory ``<parent>/<prefix>XXXXXXXX`` that only its owner can enter.

    ``mkdtemp`` creates it 0700 (a umask can only take bits away); it is then set to exactly
    0700 (a umask of 0o277 would leave even its owner unable to write) and given to ``owner``
    before anything is written into it.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, PRIVATE_DIR_MODE)
    if owner is not None:
        os.chown(path, *owner)
    return path


def private_subdir(path: Path, owner: Owner | None = None) -> Path:
    """``mkdir path`` at 0700, given to ``owner``; raises FileExistsError if it exists."""
    os.mkdir(path, PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)
    if owner is not None:
        os.chown(path, *owner)
    return path


def write_secret(path: Path, text: str, owner: Owner | None = None) -> Path:
    """Create ``path`` 0600 (``O_EXCL``: it must not exist, nor be a symlink), give it to
    ``owner``, then write ``text``. Raises OSError (FileExistsError ...) and leaves nothing."""
    return _write_exclusive(path, text.encode(), SECRET_MODE, owner)


def _write_exclusive(path: Path, data: bytes, mode: int, owner: Owner | None = None) -> Path:
    fd = os.open(path, _SECRET_FLAGS, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken the owner's bits
        if owner is not None:
            os.fchown(fd, *owner)
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def open_log(path: Path) -> int:
    """A file descriptor appending to ``path``, created 0600 if new (a log may quote a DSN)."""
    return os.open(path, _LOG_FLAGS, SECRET_MODE)


def umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)  # pragma: no cover - no /proc
    os.umask(current)
    return current


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISLNK: "a symlink",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def _name_max(directory: Path) -> int:
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _nearest_existing(directory: Path) -> Path:
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    return directory


def _follow(path: Path) -> Path:
    """The file a symlink at ``path`` names, following it only where the kernel's
    ``protected_symlinks`` would: in a sticky world-writable directory (/tmp), only links
    that we or the directory's owner made. Raises :class:`OutputRefused`."""
    link = os.lstat(path)
    parent = os.stat(path.parent)
    shared = parent.st_mode & stat.S_ISVTX and parent.st_mode & stat.S_IWOTH
    if shared and link.st_uid not in (os.geteuid(), parent.st_uid):
        raise OutputRefused(
            f"{path}: a symlink another user made in a shared directory; not followed"
        )
    target = Path(os.path.realpath(path))
    if not target.exists():
        raise OutputRefused(f"{path}: a symlink to {target}, which does not exist")
    return target


def check_destination(path: Path) -> Path:
    """Whether a result can be written at ``path``: return the path to write (a symlink to a
    regular file is resolved), creating missing parent directories like ``mkdir -p``.

    Refused (:class:`OutputRefused`): anything but a regular file or a new name (directory,
    device, FIFO, socket, symlink to one, a dangling symlink), a name longer than the file
    system allows, a directory we cannot create or write a file in (tried, not guessed), a file
    in a sticky directory that someone else owns (the rename would fail).
    """
    if not path.name or path.name in (".", ".."):
        raise OutputRefused(f"{path}: names a directory, not a file")
    name_max = _name_max(_nearest_existing(path.parent))
    if len(os.fsencode(path.name)) > name_max:
        raise OutputRefused(
            f"{path.name[:40]}...: file name is {len(os.fsencode(path.name))} bytes; "
            f"the file system allows {name_max}"
        )
    if os.path.islink(path):
        path = _follow(path)
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputRefused(f"{path}: {exc.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputRefused(
            f"{path}: is {_kind(st.st_mode)}; results are written only to a regular file "
            "or a new path"
        )
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputRefused(f"{directory}: exists and is not a directory") from None
    except OSError as exc:
        raise OutputRefused(f"{directory}: cannot create directory ({exc.strerror})") from None
    if not directory.is_dir():
        raise OutputRefused(f"{directory}: not a directory")
    _probe(directory)
    if st is not None:
        parent = os.stat(directory)
        euid = os.geteuid()
        if parent.st_mode & stat.S_ISVTX and euid not in (0, st.st_uid, parent.st_uid):
            raise OutputRefused(
                f"{path}: belongs to another user in a sticky directory; cannot replace it"
            )
    return path


def _probe(directory: Path) -> None:
    """Create and remove a file in ``directory``: the one honest test that we can write."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".probe", dir=directory)
    except OSError as exc:
        raise OutputRefused(f"{directory}: cannot write there ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def write_atomic(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically: a temp file in the same directory, fsync,
    rename, fsync of the directory. Readers see the old file or the new, never a part.

    A new file is created ``RESULT_MODE`` less the umask; a replaced one keeps its mode (and,
    as root, its owner). Raises :class:`OutputRefused` when ``path`` is (now) something other
    than a regular file, OSError when writing fails; the temp file is removed either way.
    """
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputRefused(f"it is now {_kind(st.st_mode)}, not a regular file")
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) if st else RESULT_MODE & ~umask())
            if st is not None and os.geteuid() == 0:
                os.fchown(fd, st.st_uid, st.st_gid)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_new(path: Path, data: bytes) -> Path:
    """Write ``data`` at ``path``, or, when that name is taken (by another run started in the
    same second, say), at the first free ``STEM-2.SUFFIX``, ``STEM-3.SUFFIX``...; return where.

    Never replaces a file: the name is claimed with a hard link of a complete temp file
    (``link`` fails if the name exists), so it holds the whole result from its first moment.
    Where the file system has no hard links, ``O_CREAT | O_EXCL`` claims it instead. Raises
    OSError when writing fails; the temp file is removed either way.
    """
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, RESULT_MODE & ~umask())
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        for candidate in _candidates(path):
            try:
                os.link(tmp, candidate, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                written = _create_new(candidate, data)
                if written is None:
                    continue
            else:
                written = candidate
            _fsync_dir(path.parent)
            return written
    finally:
        Path(tmp).unlink(missing_ok=True)
    raise FileExistsError(errno.EEXIST, "every name is taken", str(path))  # pragma: no cover


def _candidates(path: Path, most: int = 10_000) -> Iterator[Path]:
    yield path
    for n in range(2, most):
        yield path.with_name(f"{path.stem}-{n}{path.suffix}")


def _create_new(path: Path, data: bytes) -> Path | None:
    """``path`` created with ``O_EXCL`` and written; None if the name is taken."""
    try:
        return _write_exclusive(path, data, RESULT_MODE & ~umask())
    except FileExistsError:
        return None


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` while the block runs: what two runs write
    side by side there (a result and its HTML report) is then the one run's or the other's,
    never one file of each. Best effort: a directory that cannot be locked is not."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - best effort
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass(frozen=True)
class Saved:
    """Where a result went: ``path``, or ``problem`` says why not and ``path`` is the fallback
    (None when even that failed)."""

    path: Path | None
    problem: str | None = None


def is_fallback(path: Path) -> bool:
    """Whether ``path`` is where :func:`save_or_fallback` put a result it could not save."""
    return path.parent.name.startswith(FALLBACK_PREFIX)


def fallback_parents() -> list[Path]:
    """Where a result goes when its own path fails: $TMPDIR, /tmp, /var/tmp, then home."""
    found = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp"), Path.home()]
    return list(dict.fromkeys(found))


def save_or_fallback(
    path: Path,
    data: bytes,
    *,
    replace_existing: bool = True,
    parents: list[Path] | None = None,
    new_name: bool = False,
) -> Saved:
    """Write ``data`` to ``path`` (see :func:`write_atomic`); if that fails, write it into a
    new private directory (``connbench-unsaved-*``, 0700) under the first of ``parents`` that
    takes it. When ``path`` exists and ``replace_existing`` is False, write nothing. With
    ``new_name`` (a name connbench chose), never replace a file: see :func:`write_new`.
    Never raises for a file system error: the returned :class:`Saved` says what happened.
    """
    if not replace_existing and not new_name and os.path.lexists(path):
        return Saved(None, f"nothing was measured: {path} left as it was")
    try:
        return Saved(write_new(path, data) if new_name else write_atomic(path, data))
    except (OSError, OutputRefused) as exc:
        problem = f"could not write {path}: {_reason(exc)}"
    name = path.name if 0 < len(os.fsencode(path.name)) <= 200 else "result.json"
    for parent in parents if parents is not None else fallback_parents():
        try:
            directory = private_dir(FALLBACK_PREFIX, parent)
        except OSError:
            continue
        try:
            return Saved(write_atomic(directory / name, data), problem)
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
    return Saved(None, problem)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        name = errno.errorcode.get(exc.errno or 0, "")
        return f"{exc.strerror} ({name})" if name else exc.strerror
    return str(exc)
