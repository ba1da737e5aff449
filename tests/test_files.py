"""Files connbench writes: private from creation, results only where they belong (issue 7)."""

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from connbench.infra import procs, tempdirs
from connbench.model import files, results

from .conftest import run_of
from .helpers import mounted_tmpfs

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, mount)")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --- private directories and secrets -------------------------------------------------------


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277])
def test_private_dir_is_0700_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    with _umask(mask):
        made = [files.private_dir("x-", tmp_path), tempdirs.make("run", tmp_path)]
        made.append(files.private_subdir(made[0] / "sub"))
    for path in made:
        assert _mode(path) == 0o700, path


def test_temp_dirs_are_never_wider_than_0700_at_any_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every mkdir and chmod connbench makes for its temp dirs: none ever opens them up."""
    seen: list[tuple[str, int]] = []
    real_mkdir, real_chmod = os.mkdir, os.chmod

    def mkdir(path: Any, mode: int = 0o777, **kw: Any) -> None:
        seen.append(("mkdir", mode))
        real_mkdir(path, mode, **kw)

    def chmod(path: Any, mode: int, **kw: Any) -> None:
        seen.append(("chmod", mode))
        real_chmod(path, mode, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "chmod", chmod)
    with _umask(0):
        tempdirs.make("pg", tmp_path, user="nobody")
    assert seen and all(mode & 0o077 == 0 for _, mode in seen), seen


def test_secret_is_created_0600_exclusively_and_never_chmodded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[tuple[int, int]] = []
    real_open = os.open

    def record(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        opened.append((flags, mode))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", record)
    monkeypatch.setattr(os, "chmod", lambda *a, **k: pytest.fail("chmod after creation"))
    with _umask(0):
        path = tempdirs.write_private(tmp_path / "pw", "hunter2\n", "nobody")
    flags, mode = opened[0]
    wanted = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY
    assert flags & wanted == wanted and mode == 0o600
    assert _mode(path) == 0o600
    assert os.stat(path).st_uid == (os.getuid() if os.geteuid() else 65534)


def test_secret_is_never_written_through_a_planted_file_or_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    (tmp_path / "planted").write_text("")
    (tmp_path / "link").symlink_to(target)
    for name in ("planted", "link"):
        with pytest.raises(FileExistsError):
            files.write_secret(tmp_path / name, "secret")
    assert not target.exists()
    assert (tmp_path / "planted").read_text() == ""


@pytest.mark.integration
def test_child_logs_are_created_0600(tmp_path: Path) -> None:
    """A child's log may quote its DSN: only its owner reads it, whatever the umask."""
    with _umask(0), procs.Child(["true"], name="t", log_path=tmp_path / "t.log", env={}):
        pass
    assert _mode(tmp_path / "t.log") == 0o600


def test_stale_removal_leaves_other_users_directories_alone(tmp_path: Path) -> None:
    # A directory that looks like ours, with a dead owner's stamp someone else wrote.
    fake = tmp_path / "connbench-pg-fake"
    fake.mkdir()
    (fake / tempdirs.OWNER_FILE).write_text("999999 1.0\n")
    os.chown(fake / tempdirs.OWNER_FILE, 65534, 65534)
    linked = tmp_path / "connbench-link"
    linked.symlink_to(tmp_path / "victim")
    (tmp_path / "victim").mkdir()
    assert tempdirs.remove_stale((tmp_path,)) == []
    assert fake.exists() and (tmp_path / "victim").exists()


# --- where results may go ---------------------------------------------------------------


@ROOT_ONLY
def test_device_node_is_refused_and_left_alone(tmp_path: Path) -> None:
    device = tmp_path / "null"
    os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null
    with pytest.raises(files.OutputRefused, match="character device"):
        files.check_destination(device)
    with pytest.raises(files.OutputRefused):
        files.write_atomic(device, b"{}")
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_other_non_files_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    (tmp_path / "to-dir").symlink_to(tmp_path / "dir")
    (tmp_path / "to-fifo").symlink_to(fifo)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    for name in ("fifo", "dir", "to-dir", "to-fifo", "dangling", "file/x.json", "."):
        with pytest.raises(files.OutputRefused):
            files.check_destination(tmp_path / name)
    assert not (tmp_path / "nowhere").exists()


def test_regular_file_new_path_and_missing_parents_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "old.json")
    assert files.check_destination(tmp_path / "old.json") == tmp_path / "old.json"
    assert files.check_destination(tmp_path / "link.json") == tmp_path / "old.json"
    assert files.check_destination(tmp_path / "a" / "b" / "new.json").parent.is_dir()
    assert [p.name for p in tmp_path.rglob(".connbench-*")] == []  # the probe is gone


def test_symlink_planted_in_a_sticky_directory_is_not_followed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (tmp_path / "victim").write_text("keep")
    os.symlink(tmp_path / "victim", shared / "out.json")
    os.lchown(shared / "out.json", 65534, 65534)  # made by another user
    with pytest.raises(files.OutputRefused, match="another user"):
        files.check_destination(shared / "out.json")


def test_name_longer_than_the_file_system_allows_is_refused(tmp_path: Path) -> None:
    with pytest.raises(files.OutputRefused, match="file name is 300 bytes"):
        files.check_destination(tmp_path / ("x" * 295 + ".json"))


def test_default_path_of_a_long_or_odd_name_fits(tmp_path: Path) -> None:
    for name in ("n" * 300, "../../etc/passwd", "-rf \x00 é", ""):
        path = results.default_path(run_of(name=name), tmp_path)
        assert path.parent == tmp_path and not path.name.startswith((".", "-"))
        assert files.check_destination(path) == path


@ROOT_ONLY
@pytest.mark.integration
def test_read_only_directory_is_refused(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        with pytest.raises(files.OutputRefused, match="Read-only file system"):
            files.check_destination(ro / "r.json")
        with pytest.raises(files.OutputRefused, match="cannot create directory"):
            files.check_destination(ro / "results" / "r.json")


# --- writing them -----------------------------------------------------------------------


def test_result_is_0644_less_umask_and_keeps_a_replaced_files_mode(tmp_path: Path) -> None:
    with _umask(0o022):
        new = files.write_atomic(tmp_path / "new.json", b"{}")
    with _umask(0o077):
        other = files.write_atomic(tmp_path / "other.json", b"{}")
    kept = tmp_path / "kept.json"
    kept.write_text("old")
    os.chmod(kept, 0o640)
    files.write_atomic(kept, b"{}")
    assert (_mode(new), _mode(other), _mode(kept)) == (0o644, 0o600, 0o640)
    assert kept.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json", "new.json", "other.json"]


def test_failed_save_falls_back_to_a_private_directory(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.mkdir()  # became a directory while the run ran
    saved = files.save_or_fallback(target, b'{"x": 1}', parents=[tmp_path])
    assert saved.path is not None and saved.problem is not None
    assert "now a directory" in saved.problem and files.is_fallback(saved.path)
    assert saved.path.read_bytes() == b'{"x": 1}'
    assert _mode(saved.path.parent) == 0o700


def test_nothing_measured_never_replaces_an_existing_file(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text("committed")
    saved = files.save_or_fallback(baseline, b"{}", replace_existing=False)
    assert saved.path is None and "left as it was" in str(saved.problem)
    assert baseline.read_text() == "committed"


@ROOT_ONLY
@pytest.mark.integration
def test_full_disk_at_save_time_falls_back(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "small", "size=64k") as small:
        target = small / "r.json"
        files.check_destination(target)
        with open(
            small / "filler", "wb", buffering=0
        ) as fh:  # the disk fills up while the run runs
            try:
                while True:
                    fh.write(b"x" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        saved = files.save_or_fallback(target, b"x" * 65536, parents=[tmp_path])
        assert saved.problem is not None and "ENOSPC" in saved.problem
        assert saved.path is not None and saved.path.stat().st_size == 65536
        assert not target.exists() and not list(small.glob(".connbench-*"))
