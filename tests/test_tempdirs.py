import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from connbench.infra import tempdirs


@pytest.mark.integration
def test_live_owner_keeps_its_directory(tmp_path: Path) -> None:
    mine = tempdirs.make("run", tmp_path)
    assert tempdirs.remove_stale((tmp_path,)) == []
    assert mine.exists()
    tempdirs.remove(mine)
    assert not mine.exists()


def _orphan(parent: Path) -> Path:
    """A directory a real process made in ``parent`` before it was killed (SIGKILL: nothing
    of its own clean-up ran)."""
    code = (
        "import os, signal; from connbench.infra import tempdirs; "
        f"p = tempdirs.make('pg', {str(parent)!r}); print(p, flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return Path(out.stdout.strip())


@pytest.mark.integration
def test_directory_of_a_killed_connbench_is_removed(tmp_path: Path) -> None:
    orphan = _orphan(tmp_path)
    assert orphan.exists()
    assert tempdirs.remove_stale((tmp_path,)) == [orphan]
    assert not orphan.exists()


def test_foreign_directories_are_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "connbench-someone-else"
    other.mkdir()
    assert tempdirs.remove_stale((tmp_path,)) == []
    assert other.exists()


def _made(monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> Path:
    from contextlib import ExitStack

    with ExitStack() as stack:
        path = tempdirs.make_for_user("pg", None, stack, **kwargs)  # type: ignore[arg-type]
        assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o700
        made = path
    assert not made.exists(), "its removal is registered on the stack"
    return made


def _disk_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: int) -> Path:
    """A stand-in for /var/tmp (root's, ``mode``), with $TMPDIR unset."""
    disk = tmp_path / "disk"
    disk.mkdir()
    disk.chmod(mode)
    monkeypatch.setattr(tempdirs, "DISK_TMP", disk)
    monkeypatch.setattr(tempdirs, "_owned_by_root", lambda st: True)
    monkeypatch.delenv("TMPDIR", raising=False)
    return disk


def test_a_data_directory_goes_on_disk_unless_tmpdir_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # /var/tmp is on disk by the FHS where /tmp is often a tmpfs (fsync free): a server's
    # data directory goes there when $TMPDIR does not say otherwise.
    disk = _disk_tmp(monkeypatch, tmp_path, 0o1777)
    assert _made(monkeypatch, on_disk=True).parent == disk
    assert _made(monkeypatch).parent != disk, "only a data directory goes there"
    given = tmp_path / "given"
    given.mkdir()
    monkeypatch.setenv("TMPDIR", str(given))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads $TMPDIR again
    assert _made(monkeypatch, on_disk=True).parent == given, "$TMPDIR is the user's word"
    assert disk in tempdirs.parents(), "stale ones are looked for there too"


@pytest.mark.parametrize("mode", [0o700, 0o777])
def test_a_disk_temp_dir_others_could_tamper_with_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: int
) -> None:
    # Without the sticky bit anyone may rename our directory away; 0700 is somebody's own.
    disk = _disk_tmp(monkeypatch, tmp_path, mode)
    assert _made(monkeypatch, on_disk=True).parent != disk


def test_a_full_disk_temp_dir_falls_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    disk = _disk_tmp(monkeypatch, tmp_path, 0o1777)
    real_make = tempdirs.make

    def full(prefix: str, parent: object = None, user: object = None) -> Path:
        if parent == disk:
            raise OSError(28, "No space left on device")
        return real_make(prefix, parent, user)  # type: ignore[arg-type]

    monkeypatch.setattr(tempdirs, "make", full)
    assert _made(monkeypatch, on_disk=True).parent == Path(tempfile.gettempdir())


@pytest.mark.integration
def test_a_server_temp_dir_asks_ext4_to_spread_its_subdirectories(tmp_path: Path) -> None:
    # chattr +T (FS_TOPDIR_FL): each run's data directory then lands in a block group of its
    # own, not beside the inodes the last run freed (see tempdirs.spread_subdirs).
    import shutil

    lsattr = shutil.which("lsattr")
    probe = subprocess.run([lsattr or "lsattr", "-d", str(tmp_path)], capture_output=True)
    if lsattr is None or probe.returncode != 0:
        pytest.skip("lsattr cannot read this file system's flags (not ext2/3/4)")
    tempdirs.spread_subdirs(tmp_path)
    flags = subprocess.run(
        [lsattr, "-d", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert "T" in flags, flags
    tempdirs.spread_subdirs(tmp_path)  # again: nothing changes, nothing fails


@pytest.mark.integration
def test_a_dead_runs_directory_stays_while_its_postgres_runs(tmp_path: Path) -> None:
    # The run was killed, its server not yet (it stops when it notices): removing the data
    # directory under a live postmaster would be removing a live server's files.
    orphan = _orphan(tmp_path)
    data = orphan / f"{tempdirs.DATA_PREFIX}1a2b3c4d"
    data.mkdir()
    (data / "postmaster.pid").write_text(f"{os.getpid()}\n/some/data\n")  # alive: this test
    assert tempdirs.remove_stale((tmp_path,)) == []
    (data / "postmaster.pid").unlink()
    assert tempdirs.remove_stale((tmp_path,)) == [orphan]
