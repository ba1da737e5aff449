"""Process helpers for the tests, in one place (as locust's ``test/subprocess_utils.py``).

``Connbench`` runs ``python -m connbench ARGS`` as a child in its own session, with its output
read by threads, so that every wait has a deadline and says what it saw; ``serving`` is the
"serve until Ctrl-C" pattern. The rest looks at what a connbench process started: its
descendants, whether they are gone, the temp dirs it stamped with its pid.

A process is known by its PID *and* its creation time, never its PID alone: the kernel hands
PIDs out again (this machine wraps at 32,768, and a run of the ``connect`` strategy forks a
postgres backend per request), so a PID a run had may belong, by the time a test looks, to
another test's process (a ``postgres -D`` of a concurrent xdist worker, say). Only what the
run itself started counts as left behind; what it did leave is still found.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from connbench.infra import tempdirs

from .conftest import ROOT, connbench_cmd

START_TIMEOUT_S = 120  # connbench serve: a PostgreSQL, maybe PgBouncer, then the app
STOP_TIMEOUT_S = 60


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(name_part: str, pid: int) -> bool:
    """Whether a live descendant of ``pid`` has ``name_part`` in its command line."""
    for proc in descendants(pid):
        try:
            if name_part in " ".join(proc.cmdline()):
                return True
        except psutil.Error:  # gone, or a zombie, since we listed it
            continue
    return False


def all_gone(processes: list[psutil.Process]) -> bool:
    """Whether none of ``processes`` (taken while they ran) still runs; a zombie is gone. A PID
    now held by a process started since is gone too: ``is_running`` compares creation times."""
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def connected_to(name_part: str, pid: int) -> bool:
    """Whether a live descendant of ``pid`` running ``name_part`` has TCP clients."""
    for proc in descendants(pid):
        try:
            if name_part not in " ".join(proc.cmdline()):
                continue
            conns = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        listening = {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
        if any(c.status == psutil.CONN_ESTABLISHED and c.laddr.port in listening for c in conns):
            return True
    return False


def postmasters(pid: int) -> set[int]:
    """The PostgreSQL servers (postmasters) among ``pid``'s children."""
    found = set()
    for child in descendants(pid):
        try:
            if child.ppid() == pid and "postgres -D" in " ".join(child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def wait_for(
    predicate: Callable[[], bool],
    timeout_s: float,
    proc: subprocess.Popen[str] | Connbench | None = None,
    what: str = "condition",
) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout_s``, or as soon as ``proc`` (the
    process the condition depends on) exits, with its output."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            said = proc.said() if isinstance(proc, Connbench) else proc.communicate()
            raise AssertionError(f"connbench exited early: {said}")
        time.sleep(0.1)
    raise AssertionError(f"{what} not met in {timeout_s:g} s")


def temp_dirs_made_by(maker: psutil.Process, *dirs: Path) -> set[Path]:
    """connbench temp dirs stamped by ``maker`` (its PID and creation time, as
    :func:`connbench.infra.tempdirs.make` writes them; ``maker`` may have ended since): other
    runs (other test workers, colleagues' suites on the same machine) make and remove their
    own in /tmp meanwhile, so a before/after diff of the directory would race, and one of them
    may have had the same PID. Searched: ``dirs`` and every parent connbench makes its temp
    dirs in (:func:`connbench.infra.tempdirs.parents`: /var/tmp for a server's data too)."""
    created = maker.create_time()
    found = set()
    searched = dict.fromkeys((*dirs, *tempdirs.parents()))
    for path in (p for d in searched for p in d.glob(f"{tempdirs.PREFIX}*")):
        try:
            pid, stamped = (path / tempdirs.OWNER_FILE).read_text().split()[:2]
            if int(pid) == maker.pid and abs(float(stamped) - created) < 1.0:
                found.add(path)
        except (OSError, ValueError):
            continue
    return found


class Connbench:
    """``python -m connbench ARGS`` in its own session (a leftover can be killed with its whole
    group), stdout and stderr collected by threads: :meth:`wait_for_line` and :meth:`stop` wait
    with a deadline and fail with what the process said. As a context manager, a process still
    running on the way out is killed with its group, so a failed test leaves nothing behind."""

    def __init__(
        self,
        *args: str,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], Any] | None = None,
    ) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            connbench_cmd(*args),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        # Who it is (PID and creation time), for the checks made after it ended: its PID
        # alone may be another process's by then.
        self.process = psutil.Process(self.proc.pid)
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr"))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None, name: str) -> None:
        assert stream is not None
        for line in stream:
            with self._changed:
                self._lines[name].append(line)
                self._changed.notify_all()
        stream.close()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def stdout(self) -> str:
        with self._changed:
            return "".join(self._lines["stdout"])

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self._lines["stderr"])

    def said(self) -> str:
        return f"`connbench {' '.join(self.args)}` said:\n{self.stdout}\n{self.stderr}"

    def wait_for_line(
        self, pattern: str, timeout_s: float = START_TIMEOUT_S, stream: str = "stdout"
    ) -> re.Match[str]:
        """The first line of ``stream`` that ``pattern`` matches (from its start); fails when
        the process ends or ``timeout_s`` passes without one."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in self._lines[stream]:
                    found = re.match(pattern, line)
                    if found:
                        return found
                if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                    raise AssertionError(
                        f"exited ({self.proc.returncode}) before {pattern!r}; {self.said()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.5))
        raise AssertionError(f"no {pattern!r} in {timeout_s:g} s; {self.said()}")

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Send ``sig`` (to connbench alone, as ``kill`` does) and wait for it to exit and for
        its output to end; fails, after killing the group, when it outlives ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout_s:g} s; {self.said()}") from None
        for reader in self._readers:
            reader.join(timeout_s)
        return code

    def kill(self) -> None:
        """SIGKILL to the whole group (connbench and whatever it started), then reap."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for reader in self._readers:
            reader.join(5)

    def __enter__(self) -> Connbench:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()


@dataclass
class Served:
    """A ``connbench serve`` that said where it serves."""

    process: Connbench
    strategy: str
    url: str


@contextmanager
def serving(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], Any] | None = None,
) -> Iterator[Served]:
    """``connbench serve ARGS`` until it prints ``serving STRATEGY at URL``; on the way out, a
    serve still running gets Ctrl-C (SIGINT) and must exit within ``STOP_TIMEOUT_S``. A test
    that checks how it stops calls ``served.process.stop(...)`` itself."""
    with Connbench("serve", *args, cwd=cwd, env=env, preexec_fn=preexec_fn) as process:
        found = process.wait_for_line(r"serving (\S+) at (\S+)")
        yield Served(process, found.group(1), found.group(2))
        process.stop(signal.SIGINT)
