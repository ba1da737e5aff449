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


def test_clients_of_our_apps_ignore_proxy_settings_and_trust_no_ca(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Our apps answer plain HTTP on loopback: an HTTP_PROXY in the user's environment must
    # not take those requests elsewhere (a default httpx client sends them to the proxy),
    # and an https URL is refused rather than trusted.
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/health"
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        with httpx.Client(timeout=2.0) as default, pytest.raises(httpx.HTTPError):
            default.get(url)  # what the old clients did
        with appserver.loopback_client(2.0) as client:
            assert client.get(url).status_code == 200
        with appserver.loopback_client(2.0) as client, pytest.raises(httpx.HTTPError):
            client.get(f"https://127.0.0.1:{server.server_port}/health")
    finally:
        server.shutdown()
        server.server_close()
