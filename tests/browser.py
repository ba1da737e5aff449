"""A headless Chromium driven over its DevTools protocol (CDP), for the HTML report's tests.

A small client over ``websockets`` (installed with uvicorn[standard]): nothing is downloaded at
test time; the browser is the distribution's ``chromium`` (scripts/install-chromium.sh).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from connbench.infra import procs, tempdirs

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# As root in a container: no sandbox, no GPU; and nothing the browser would fetch on its own
# (updates, sync, QUIC probes), so any network request seen comes from the page.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
START_TIMEOUT_S = 30.0


def find() -> str | None:
    """The Chromium to use: $CONNBENCH_CHROMIUM, else the first on PATH."""
    explicit = os.environ.get("CONNBENCH_CHROMIUM")
    if explicit:
        return explicit
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


@dataclass
class Visit:
    """What a page did: console errors, requests, dialogs, and what a script read from it."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    state: Any = None
    screenshot: bytes = b""


class Tab:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.visit = Visit()

    def call(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its answer, recording the events that come meanwhile."""
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"CDP {method}: no answer in {timeout_s} s")
            message = json.loads(self.ws.recv(timeout=left))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"CDP {method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.visit.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.visit.errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.visit.errors.append(
                details.get("exception", {}).get("description") or details.get("text", "")
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.visit.errors.append(params["entry"]["text"])
        elif method == "Page.javascriptDialogOpening":
            self.visit.dialogs.append(params.get("message", ""))
            self.ws.send(
                json.dumps(
                    {
                        "id": 10**9,
                        "method": "Page.handleJavaScriptDialog",
                        "params": {"accept": False},
                    }
                )
            )

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate: {result['exceptionDetails']}")
        return result["result"].get("value")


@contextmanager
def chromium(executable: str) -> Iterator[str]:
    """A headless Chromium with a new empty profile; yields its DevTools HTTP endpoint."""
    profile = Path(tempfile.mkdtemp(prefix="connbench-chromium-"))
    log = open(profile.parent / f"{profile.name}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists() or not port_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = Path(log.name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"chromium did not start in {START_TIMEOUT_S} s:\n{tail}")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        yield f"http://127.0.0.1:{port}"
    finally:
        # The whole session: the browser's own children (its network service among them)
        # outlive a signal to the browser alone and write into the profile after it is gone,
        # which left a profile directory in /tmp behind every test run. connbench's own stop
        # (the group, then SIGKILL for stragglers) and removal (once more if written into).
        procs.stop_group(proc, timeout_s=10)
        log.close()
        tempdirs.remove(profile)
        Path(log.name).unlink(missing_ok=True)


def _page_socket(endpoint: str) -> str:
    with urllib.request.urlopen(f"{endpoint}/json/list", timeout=10) as answer:  # loopback
        targets = json.load(answer)
    page = next(t for t in targets if t.get("type") == "page")
    return str(page["webSocketDebuggerUrl"])


def visit(
    endpoint: str, url: str, ready: str, probe: str, width: int = 1400, timeout_s: float = 60.0
) -> Visit:
    """Open ``url``, wait until the JS expression ``ready`` is true, read ``probe`` and take a
    full-page screenshot. Records every request, console error and dialog on the way."""
    with connect(_page_socket(endpoint), max_size=None, open_timeout=10) as ws:
        tab = Tab(ws)
        for domain in ("Page", "Runtime", "Log", "Network"):
            tab.call(f"{domain}.enable")
        tab.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        tab.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while not tab.evaluate(f"document.readyState === 'complete' && ({ready})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}: not ready in {timeout_s} s ({ready})")
            time.sleep(0.2)
        time.sleep(0.3)  # let late console messages arrive
        tab.evaluate("0")
        tab.visit.state = tab.evaluate(probe)
        size = tab.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = tab.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
        )
        tab.visit.screenshot = base64.b64decode(shot["data"])
        return tab.visit


# --- the HTML reports, opened offline --------------------------------------------------------

CHROMIUM = find()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: scripts/install-chromium.sh (run by `make test`) installs it with "
    "apt-get as root; set CONNBENCH_CHROMIUM to use another",
)
READY = (
    "document.querySelectorAll('[data-chart]').length > 0 && "
    "document.querySelectorAll('[data-chart]').length === "
    "document.querySelectorAll('[data-chart][data-drawn], .chart-error').length"
)
# Per chart: drawn, its SVG's size, how many data marks it drew, its titles, whether it uses red.
PROBE = """
Array.from(document.querySelectorAll('[data-chart]')).map(el => {
  const svg = el.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {
    id: el.id, drawn: el.dataset.drawn === '1', width: box.width, height: box.height,
    marks: el.querySelectorAll('g.role-mark > path, g.role-mark > line, g.role-mark > text').length,
    titles: Array.from(el.querySelectorAll('.role-title-text text')).map(t => t.textContent),
    red: el.innerHTML.toLowerCase().includes('#c62828'),
  };
})
"""


def open_in_chromium(page: str, tmp_path: Path, name: str) -> tuple[Visit, Path]:
    """``page`` (a report) opened offline in Chromium: every chart drawn, no error, no dialog,
    no request but the page; what it showed and its screenshot's path."""
    assert CHROMIUM is not None
    path = tmp_path / f"{name}.html"
    path.write_text(page)
    with chromium(CHROMIUM) as endpoint:
        seen = visit(endpoint, path.as_uri(), READY, PROBE)
    shot = tmp_path / f"{name}.png"
    shot.write_bytes(seen.screenshot)
    assert seen.screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", seen.screenshot[16:24])
    assert width >= 1000 and height >= 600
    assert seen.errors == []
    assert seen.dialogs == []
    assert seen.requests == [path.as_uri()]  # nothing but the page itself
    for chart in seen.state:
        assert chart["drawn"] and chart["width"] > 100 and chart["height"] > 50, chart
        assert chart["marks"] > 0, chart
    return seen, shot
