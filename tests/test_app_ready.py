"""An app is ready when its launcher says so (lifespan done, socket listening), not when a
poll happens to get through; a start that hangs or fails still ends with its log's tail."""

import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from connbench.infra import appserver, procs
from connbench.model.errors import ProcessError

APPS = str(Path(__file__).parent / "apps")
pytestmark = pytest.mark.integration


def _serve(target: str, log_path: Path) -> AbstractContextManager[tuple[str, procs.Process]]:
    def once(url: str, proc: procs.Process) -> None:
        if proc.poll() is not None:  # what connbench's own check says of an exited app
            procs.wait_until(lambda: False, what=url, timeout_s=1, proc=proc, log_path=log_path)
        # One request, no retry: it must be answered, lifespan done, the moment the wait ends.
        assert httpx.get(f"{url}/health", timeout=5).json() == {"ready": True}

    return appserver.serve(
        lambda port: appserver.uvicorn_argv(
            target, port, 1, ["-m", "connbench.infra.launch", target, APPS]
        ),
        procs.child_env({}),
        "uvicorn (test)",
        log_path,
        once,
        ready_signal=True,
    )


def test_the_wait_ends_when_the_app_is_ready(tmp_path: Path) -> None:
    started = time.monotonic()
    with _serve("startup_apps:slow_app", tmp_path / "app.log") as (url, proc):
        assert time.monotonic() - started >= 1.0  # its lifespan's second
        assert proc.poll() is None
    assert proc.poll() is not None


def test_a_start_that_hangs_ends_at_the_deadline_with_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(appserver, "READY_TIMEOUT_S", 3.0)
    with pytest.raises(ProcessError, match=r"not ready after \d") as caught:
        with _serve("startup_apps:stuck_app", tmp_path / "app.log"):
            pass
    assert "stuck in the lifespan" in str(caught.value)


def test_a_start_that_fails_ends_at_once_with_the_log(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ProcessError, match="exited with code") as caught:
        with _serve("startup_apps:failing_app", tmp_path / "app.log"):
            pass
    assert "the database is not there" in str(caught.value)
    assert time.monotonic() - started < appserver.READY_TIMEOUT_S
