"""The git commit a directory is checked out at: what a result records of the measured code.

Read with ``git rev-parse HEAD`` and ``git status``, never by parsing ``.git`` ourselves (a
worktree, a submodule or a packed ref all answer the same way). A directory that is not a
checkout, a missing ``git``, or a checkout git will not read (one owned by another user,
refused by git's ``safe.directory``) gives None: the result then records no commit, and the
run goes on.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from connbench.infra import procs
from connbench.model.result_types import GitCheckout

GIT_TIMEOUT_S = 10.0
# A checkout's own config must not run anything: core.fsmonitor names a command git runs on
# `status`. --no-optional-locks: reading must not rewrite the index under a running build.
_SAFE = ("git", "--no-optional-locks", "-c", "core.fsmonitor=false")
_HASH = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def _git(directory: Path, *args: str) -> str | None:
    """``git -C directory args``' output, or None when it fails, is missing or hangs."""
    try:
        done = procs.run_to_end([*_SAFE, "-C", str(directory), *args], timeout_s=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def checkout(directory: Path) -> GitCheckout | None:
    """The commit ``directory`` is checked out at and whether tracked files differ from it;
    None when it is not a git checkout git will read."""
    if not directory.is_dir():
        return None
    head = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD")
    commit = (head or "").strip()
    if not _HASH.fullmatch(commit):
        return None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return GitCheckout(commit=commit, dirty=None if status is None else bool(status.strip()))
