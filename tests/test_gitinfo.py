"""The commit a result records of the measured code (``environment.git``, an app's ``git``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connbench.infra import gitinfo

from .helpers import git


def make_repo(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    git(directory, "init", "-q")
    (directory / "main.py").write_text("x = 1\n")
    git(directory, "add", "main.py")
    git(directory, "commit", "-q", "-m", "first")
    return git(directory, "rev-parse", "HEAD")


@pytest.mark.integration
def test_a_checkout_gives_its_commit_and_whether_it_changed(tmp_path: Path) -> None:
    commit = make_repo(tmp_path / "repo")
    found = gitinfo.checkout(tmp_path / "repo")
    assert found is not None and found.commit == commit and found.dirty is False
    (tmp_path / "repo" / "main.py").write_text("x = 2\n")
    found = gitinfo.checkout(tmp_path / "repo")
    assert found is not None and found.dirty is True
    (tmp_path / "repo" / "sub").mkdir()
    sub = gitinfo.checkout(tmp_path / "repo" / "sub")  # a directory inside one: the same
    assert sub is not None and sub.commit == commit


@pytest.mark.integration
def test_not_a_checkout_gives_none(tmp_path: Path) -> None:
    assert gitinfo.checkout(tmp_path) is None
    assert gitinfo.checkout(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    git(tmp_path / "empty", "init", "-q")  # a repository with no commit yet
    assert gitinfo.checkout(tmp_path / "empty") is None


@pytest.mark.integration
def test_a_checkouts_config_runs_nothing(tmp_path: Path) -> None:
    # core.fsmonitor names a command git runs on `status`: a checkout must not get to run it.
    make_repo(tmp_path / "repo")
    marker = tmp_path / "ran"
    git(tmp_path / "repo", "config", "core.fsmonitor", f"touch {marker}; false")
    found = gitinfo.checkout(tmp_path / "repo")
    assert found is not None
    assert not marker.exists()
