import subprocess
import sys
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


@pytest.mark.integration
def test_directory_of_a_killed_connbench_is_removed(tmp_path: Path) -> None:
    # A real process makes the directory and is killed without cleaning up.
    code = (
        "import os, signal, sys; from connbench.infra import tempdirs; "
        f"p = tempdirs.make('pg', {str(tmp_path)!r}); print(p, flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    orphan = Path(out.stdout.strip())
    assert orphan.exists()
    assert tempdirs.remove_stale((tmp_path,)) == [orphan]
    assert not orphan.exists()


def test_foreign_directories_are_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "connbench-someone-else"
    other.mkdir()
    assert tempdirs.remove_stale((tmp_path,)) == []
    assert other.exists()
