"""The cache of initialised clusters: never used when another user could have touched it, a
damaged entry rebuilt, no secret kept in it, and each run its own copy with its own password."""

import os
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from connbench.infra import clusters, postgres

# Someone else: any uid but ours (as root, nobody's; as a user, root's).
OTHER = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else 0


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv(clusters.CACHE_ENV, str(home / "connbench"))
    return home / "connbench"


def _entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))


def test_made_private_without_following_anything(cache: Path) -> None:
    assert clusters.root() == cache
    st = os.lstat(cache)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700


def test_a_symlink_planted_at_its_place_is_never_followed(cache: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    cache.symlink_to(target)
    assert clusters.root() is None
    assert clusters.lookup("pg-x") is None
    clusters.store("pg-x", tmp_path)  # what a run does after its initdb: must write nothing
    assert cache.is_symlink() and list(target.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="planting a directory for someone else needs root")
def test_a_directory_planted_by_someone_else_is_left_alone(cache: Path, tmp_path: Path) -> None:
    cache.mkdir(mode=0o700)
    planted = cache / clusters.key("x")
    planted.mkdir(mode=0o700)
    (planted / clusters.STAMP).write_text(planted.name)
    os.chown(cache, OTHER, OTHER)
    assert clusters.root() is None
    assert clusters.lookup(planted.name) is None
    assert planted.exists() and os.stat(cache).st_uid == OTHER


def test_ours_with_another_mode_is_emptied_and_made_private_again(cache: Path) -> None:
    cache.mkdir(mode=0o700)
    os.chmod(cache, 0o755)
    planted = cache / clusters.key("x")
    planted.mkdir(mode=0o700)
    (planted / clusters.STAMP).write_text(planted.name)
    assert clusters.root() == cache
    assert os.lstat(cache).st_mode & 0o777 == 0o700
    assert not planted.exists()  # anyone could have written it: not used


def test_no_directory_is_made_above_the_cache_s_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(clusters.CACHE_ENV, str(tmp_path / "no-such-home" / ".cache" / "connbench"))
    assert clusters.root() is None
    assert not (tmp_path / "no-such-home").exists()


def test_a_parent_other_users_may_write_to_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # not sticky: anyone could rename our directory away
    monkeypatch.setenv(clusters.CACHE_ENV, str(shared / "connbench"))
    assert clusters.root() is None
    assert not (shared / "connbench").exists()


@pytest.mark.parametrize("damage", ["no stamp", "wrong stamp", "symlink", "fifo", "mode"])
def test_a_damaged_entry_is_removed_not_copied(cache: Path, tmp_path: Path, damage: str) -> None:
    name = clusters.key("x")
    source = tmp_path / "source"
    (source / "base").mkdir(parents=True, mode=0o700)
    (source / "base" / "1").write_text("page")
    clusters.store(name, source)
    entry = cache / name
    assert clusters.lookup(name) == entry / "data"
    if damage == "no stamp":
        (entry / clusters.STAMP).unlink()
    elif damage == "wrong stamp":
        (entry / clusters.STAMP).unlink()
        (entry / clusters.STAMP).write_text(clusters.key("y"))
    elif damage == "symlink":
        (entry / "data" / "base" / "2").symlink_to("/etc/shadow")
    elif damage == "fifo":
        os.mkfifo(entry / "data" / "base" / "2")
    else:
        os.chmod(entry, 0o755)
    dest = tmp_path / "copy"
    assert clusters.take(name, dest, None) is False
    assert not dest.exists() and not entry.exists()


def test_a_copy_is_private_and_given_to_its_owner(cache: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "global").mkdir(parents=True)
    (source / "global" / "pg_control").write_bytes(b"\0" * 8192 + b"x")
    os.chmod(source / "global" / "pg_control", 0o644)
    name = clusters.key("x")
    clusters.store(name, source)
    owner = (OTHER, OTHER) if os.geteuid() == 0 else None
    dest = tmp_path / "copy"
    assert clusters.take(name, dest, owner)
    copied = dest / "global" / "pg_control"
    assert copied.read_bytes() == b"\0" * 8192 + b"x"
    for path, mode in ((dest, 0o700), (dest / "global", 0o700), (copied, 0o600)):
        st = os.lstat(path)
        assert st.st_mode & 0o777 == mode
        assert st.st_uid == (OTHER if owner else os.geteuid())


# Two runs at once on an empty cache: each starts its server, says where it is, and waits.
RUN = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from connbench.infra import postgres
    with postgres.start(postgres.parse_backend("embedded")) as pg:
        print(pg.dsn, os.readlink(f"/proc/{pg.server_pid}/cwd"), sep="\\t", flush=True)
        while not Path(sys.argv[1]).exists():
            time.sleep(0.05)
    """
)


@pytest.mark.integration
def test_two_runs_at_once_each_get_their_own_copy_and_password(cache: Path, tmp_path: Path) -> None:
    done = tmp_path / "done"
    env = {**os.environ, clusters.CACHE_ENV: str(cache)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RUN, str(done)], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    try:
        started = [
            (run.stdout.readline() if run.stdout else "").strip().split("\t") for run in runs
        ]
        assert all(len(s) == 2 for s in started), started
        (dsn_a, dir_a), (dsn_b, dir_b) = started
        assert dir_a != dir_b
        pw_a, pw_b = (conninfo_to_dict(d)["password"] for d in (dsn_a, dsn_b))
        assert pw_a and pw_b and pw_a != pw_b
        for dsn in (dsn_a, dsn_b):
            psycopg.connect(dsn, connect_timeout=5).close()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(make_conninfo(dsn_b, password=pw_a), connect_timeout=5).close()
    finally:
        done.touch()
        for run in runs:
            run.communicate(timeout=60)  # waits, and closes its pipe
    assert [run.returncode for run in runs] == [0, 0]
    assert len(_entries(cache)) == 1  # one published; the other's build was dropped


@pytest.mark.integration
def test_the_cache_holds_no_password_and_a_copy_is_used_next(cache: Path) -> None:
    backend = postgres.parse_backend("embedded")
    with postgres.start(backend) as first:
        password = str(conninfo_to_dict(first.dsn)["password"])
    (entry,) = _entries(cache)
    stamp = os.stat(cache / entry / clusters.STAMP).st_mtime_ns
    for path in (cache / entry).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"SCRAM-SHA-256$" not in data and password.encode() not in data, path
    with postgres.start(backend) as second:
        assert second.count_rows() == 0
        assert conninfo_to_dict(second.dsn)["password"] != password
    # The same entry served the second run (not rebuilt).
    assert os.stat(cache / entry / clusters.STAMP).st_mtime_ns == stamp


def test_the_cache_keeps_the_most_recently_used_entries_only(cache: Path, tmp_path: Path) -> None:
    # Each virtualenv's PostgreSQL build is a key of its own: without a bound, a CI job that
    # makes a virtualenv per revision would add 40 MB to the cache every time.
    source = tmp_path / "source"
    (source / "base").mkdir(parents=True)
    (source / "base" / "1").write_text("page")
    names = [clusters.key(str(i)) for i in range(clusters.KEEP)]
    for age, name in enumerate(names):
        clusters.store(name, source)
        os.utime(cache / name, (1000.0 + age, 1000.0 + age))
    assert set(_entries(cache)) == set(names)  # as many as it keeps: none removed
    assert clusters.take(names[0], tmp_path / "copy", None)  # the oldest, used again: kept
    stale = cache / f"{clusters.BUILD_PREFIX}killed"
    stale.mkdir()
    os.utime(stale, (1.0, 1.0))
    fresh = cache / f"{clusters.BUILD_PREFIX}building"
    fresh.mkdir()  # another run's build in progress: left alone
    newer = [clusters.key("newer"), clusters.key("newest")]
    for name in newer:
        clusters.store(name, source)
    assert set(_entries(cache)) == {names[0], names[-1], *newer}
    assert not stale.exists() and fresh.exists()
