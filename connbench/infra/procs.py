"""Managed subprocesses: own process group, log file, readiness deadline, TERM then KILL.

Every child connbench starts goes through :class:`Child`, a context manager, so that however
the parent leaves the ``with`` block (normal exit, exception, Ctrl-C) the whole process
group is stopped and waited for. Children also get a parent-death signal, so a parent killed
with SIGKILL does not leave them running.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import pwd
import re
import resource
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from connbench.model import files
from connbench.model.errors import BadInput, MissingDependency, ProcessError

_PR_SET_PDEATHSIG = 1
LOG_TAIL_LINES = 20
# The most of a log read for its tail, from its end: a child that wrote a gigabyte of log
# costs connbench these bytes, not the gigabyte (one line longer than this is cut).
LOG_TAIL_BYTES = 64 * 1024
POLL_INTERVAL_S = 0.02


def die_with_parent(sig: int = signal.SIGTERM) -> None:  # in the child, between fork and exec
    """Have the kernel send ``sig`` to this child when its parent thread dies. ``sig`` is the
    child's own stop signal: SIGTERM is only a "smart" shutdown for PostgreSQL, which waits
    for its clients, so an orphaned server with an app still connected would never go."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)
    except Exception:  # noqa: BLE001 - best effort, Linux only
        pass


class Process(Protocol):
    """What connbench uses of a child process: a ``subprocess.Popen``, or an app forked from
    the fork server (:class:`connbench.infra.forkserver.Forked`)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None:
        """None while it runs; its exit code (negative: killed by that signal) once reaped."""
        ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code; raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        ...


class Spawner(Protocol):
    """Starts a child some other way than ``Popen`` (the fork server), or declines (None)."""

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None,
        log_path: Path,
        pass_fds: Sequence[int],
        stop_signal: int,
    ) -> Process | None: ...


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none. At most
    ``max_bytes`` are read, from the end (the log may be huge, or still growing)."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - max_bytes))
            data = log.read(max_bytes)
    except OSError:
        return "(no log)"
    if size > max_bytes:
        # Not from a line's start: drop the partial first line, unless it is the only one.
        data = data.split(b"\n", 1)[-1] if b"\n" in data.rstrip(b"\n") else data
    tail = data.decode(errors="replace").strip().splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


# What a failing child's output says first about why, most telling first: an OS error names the
# cause outright; PostgreSQL's and PgBouncer's FATAL/ERROR lines say what they were doing.
_CAUSES = (
    re.compile(
        r"No space left on device|Disk quota exceeded|Permission denied|Read-only file system"
        r"|Too many open files|Cannot allocate memory|Address already in use"
    ),
    re.compile(r"\b(FATAL|PANIC|ERROR|error|could not|cannot|invalid)\b"),
)


def cause(text: str) -> str | None:
    """The line of a child's output that best says why it failed, or None."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in _CAUSES:
        for line in lines:
            if pattern.search(line):
                return line
    return None


def with_cause(headline: str, tail: str) -> str:
    """``headline: <cause>`` then the tail: the reason must be on the line a user reads."""
    found = cause(tail)
    return f"{headline}: {found}\n{tail}" if found else f"{headline}\n{tail}"


OPEN_FILES_SPARE = 512  # descriptors beyond one per connection: logs, pools, the sampler ...


def ensure_open_files(connections: int) -> None:
    """Let this process (and the children it starts, which inherit it) open ``connections``
    sockets and then some: raise the soft ``RLIMIT_NOFILE`` up to the hard one if needed.

    Raises :class:`BadInput` naming the limit when even the hard limit is too low.
    """
    needed = connections + OPEN_FILES_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise BadInput(
            f"--concurrency {connections:,} needs about {needed:,} open files, more than this "
            f"process may open (ulimit -n: {soft:,}, at most {hard:,})"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (for servers that must bind themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """An explicit environment for a child: the basics from ours plus ``extra``."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(extra)
    return env


def stop_group(proc: Process, first_signal: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    """Stop ``proc``'s whole process group: ``first_signal``, wait, SIGKILL, wait.

    Idempotent; never raises for a process that has already gone.
    """
    try:
        pgid: int | None = os.getpgid(proc.pid)
    except ProcessLookupError:
        # Already reaped (a watchdog's poll()). Its group may live on (a SIGKILLed postmaster's
        # backends, uvicorn's workers): connbench starts every child as a session leader, so
        # the group's id is the child's pid.
        pgid = proc.pid
    if proc.poll() is None and pgid is not None:
        _signal_group(pgid, first_signal)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    if pgid is not None:
        # Stragglers in the group (uvicorn workers, postgres backends) get no second chance.
        _signal_group(pgid, signal.SIGKILL)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable process
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# Every child carries its own tag in its environment, and so does everything it starts: a
# process that left the child's process group (a double fork, setsid: a daemon) still has it,
# and is found in /proc by it when the child is stopped.
TAG_ENV = "CONNBENCH_CHILD_TAG"
STRAY_ROUNDS = 5  # a process forking as fast as it is killed gets this many sweeps
STRAY_WAIT_S = 2.0


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(name, state, session id) of ``pid`` from /proc, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # "pid (comm) S ppid pgrp session ...": comm may hold spaces and parentheses.
    name = data[data.find(b"(") + 1 : data.rfind(b")")].decode(errors="replace")
    fields = data[data.rfind(b")") + 2 :].split()
    return name, fields[0].decode(), int(fields[3])


def _carries(pid: int, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return marker in b"\0" + f.read()
    except OSError:  # gone, or not ours to read
        return False


def strays(tag: str, session: int | None) -> list[int]:
    """Live processes (zombies aside) carrying ``tag`` in their environment, or in
    ``session``: what is left of a child that should have stopped."""
    marker = f"\0{TAG_ENV}={tag}\0".encode()
    me, found = os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None or stat[1] in "ZX":
            continue
        # Its session, bar a leader: the child (the session's leader) has been reaped, and a
        # new leader with its pid would be a stranger's.
        if (session is not None and stat[2] == session != pid) or _carries(pid, marker):
            found.append(pid)
    return found


def kill_strays(tag: str, session: int | None = None) -> tuple[list[str], list[str]]:
    """SIGKILL every stray of the child tagged ``tag`` (see :func:`strays`), sweeping again for
    what they started meanwhile, and wait up to ``STRAY_WAIT_S`` for them to go.

    Returns (killed, left running), each as ``pid 123 (name)``; never raises.
    """
    seen: dict[int, str] = {}
    for _ in range(STRAY_ROUNDS):
        found = strays(tag, session)
        if not found:
            break
        for pid in found:
            stat = _stat(pid)
            seen.setdefault(pid, f"pid {pid} ({stat[0] if stat else '?'})")
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + STRAY_WAIT_S
    alive = list(seen)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if (stat := _stat(pid)) is not None and stat[1] not in "ZX"]
        if alive:
            time.sleep(POLL_INTERVAL_S)
    return [seen[pid] for pid in seen if pid not in alive], [seen[pid] for pid in alive]


class Keeper(threading.Thread):
    """A thread that may start children (see :meth:`Child.spawn`) because it outlives them:
    its target stops every child it started before it returns. The parent-death signal fires
    when the *thread* that forked exits, so a child of any other thread but the main one
    would be stopped by the kernel as soon as that thread ended. Daemonic: should its target
    hang, the process's exit still ends it (and then its children get that signal)."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(target=target, name=name, daemon=True)


def may_start_children() -> bool:
    """Whether this thread outlives what it starts: the main thread, or a :class:`Keeper`."""
    current = threading.current_thread()
    return current is threading.main_thread() or isinstance(current, Keeper)


class Child:
    """A managed child: ``with Child(argv, ...) as child`` runs ``argv`` in its own session with
    its output in ``log_path``, and stops the whole group on exit. It can also be stopped and
    started again with the same command line (a server restart): the exit stops whichever
    process is current.

    :meth:`spawn` raises :class:`ProcessError` (with the log tail) when the program cannot be
    started, and must run on the main thread or a :class:`Keeper`: the parent-death signal
    fires when the *thread* that forked exits.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        log_path: Path,
        env: Mapping[str, str],
        cwd: Path | None = None,
        user: str | None = None,
        pass_fds: Sequence[int] = (),
        stop_signal: int = signal.SIGTERM,
        stop_timeout_s: float = 10.0,
        strays: list[str] | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        self.argv = list(argv)
        self.name = name
        self.log_path = log_path
        self.env = dict(env)
        self.cwd = cwd
        self.user = user
        self.pass_fds = tuple(pass_fds)
        self.stop_signal = stop_signal
        self.stop_timeout_s = stop_timeout_s
        # Asked first to start the program (it may decline: then it is started here).
        self.spawner = spawner
        self._proc: Process | None = None
        self.tag = secrets.token_hex(8)  # in its environment and its descendants'
        # What :meth:`stop` found running outside the group, one line each ("killed ..." or
        # "could not stop ..."): appended to the caller's list, if it gave one.
        self.strays = strays if strays is not None else []

    @property
    def proc(self) -> Process:
        """The current process (the latest one :meth:`spawn` started)."""
        if self._proc is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._proc

    def __enter__(self) -> Child:
        self.spawn()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def spawn(self) -> Process:
        """Start the program (again), in its own session, output appended to the log."""
        if not may_start_children():
            raise RuntimeError(
                f"{self.name}: child processes must be started on the main thread or a Keeper"
            )
        env = {**self.env, TAG_ENV: self.tag}
        if self.spawner is not None and self.user is None:
            forked = self.spawner.spawn(
                self.argv,
                env=env,
                cwd=self.cwd,
                log_path=self.log_path,
                pass_fds=self.pass_fds,
                stop_signal=self.stop_signal,
            )
            if forked is not None:
                self._proc = forked
                return forked
        log = files.open_log(self.log_path)  # 0600 if new: a log may quote a DSN
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                user=self.user,
                start_new_session=True,
                pass_fds=self.pass_fds,
                preexec_fn=functools.partial(die_with_parent, self.stop_signal),
            )
        except OSError as exc:
            raise ProcessError(
                f"could not start {self.name} ({self.argv[0]}): {exc.strerror}"
            ) from None
        finally:
            os.close(log)
        return self._proc

    def stop(self) -> None:
        """Stop the current process group (see :func:`stop_group`), then kill whatever of the
        child is left outside it (see :func:`kill_strays`); idempotent."""
        if self._proc is not None:
            stop_group(self._proc, self.stop_signal, self.stop_timeout_s)
            self._kill_strays()

    def _kill_strays(self) -> None:
        assert self._proc is not None
        killed, left = kill_strays(self.tag, self._proc.pid)
        if killed:
            self.strays.append(
                f"{self.name} left {len(killed)} process(es) running after it stopped, outside "
                f"its process group; killed: {', '.join(killed[:5])}"
            )
        if left:
            self.strays.append(f"{self.name}: could not stop {', '.join(left[:5])}")

    async def stop_async(self) -> None:
        """:meth:`stop` for an event loop: the process is polled, never waited for, so the
        loop keeps serving everything else while the child shuts down."""
        proc = self._proc
        if proc is None:
            return
        deadline = time.monotonic() + self.stop_timeout_s
        if proc.poll() is None:
            # start_new_session: the child leads its own group, whose id is its pid.
            _signal_group(proc.pid, self.stop_signal)
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(POLL_INTERVAL_S)
        _signal_group(proc.pid, signal.SIGKILL)
        while proc.poll() is None:
            await asyncio.sleep(POLL_INTERVAL_S)
        await asyncio.to_thread(self._kill_strays)  # a /proc sweep: not on the loop


def describe_exit(returncode: int) -> str:
    """``exited with code 1`` or ``was killed by SIGKILL`` (Popen's negative codes)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def run_to_end(
    argv: Sequence[str], *, user: str | None = None, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived command in its own process group and capture its output.

    If anything interrupts the wait (Ctrl-C, timeout), the whole group is killed and reaped
    before the exception goes on: a killed ``initdb`` must not leave its ``postgres --boot``
    child writing into a directory we are about to remove.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env({}),  # not ours: it may hold PGPASSWORD, and `user` is someone else
        user=user,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


class _Wait:
    """The bookkeeping of one wait for readiness: its deadline and what to say when it fails."""

    def __init__(
        self,
        what: str,
        timeout_s: float,
        proc: Process | None,
        log_path: Path | None,
    ) -> None:
        self.what, self.proc, self.log_path = what, proc, log_path
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s

    def _tail(self) -> str:
        return log_tail(self.log_path) if self.log_path else ""

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            headline = (
                f"{self.what}: process exited with code {self.proc.returncode} before it was ready"
            )
            raise ProcessError(with_cause(headline, self._tail()))

    def check_deadline(self) -> None:
        if time.monotonic() >= self.deadline:
            waited = time.monotonic() - self.started
            raise ProcessError(f"{self.what}: not ready after {waited:.1f} s\n{self._tail()}")


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout_s: float,
    proc: Process | None = None,
    log_path: Path | None = None,
    interval_s: float = 0.05,
) -> None:
    """Poll ``ready()`` until it returns True.

    Raises :class:`ProcessError` naming ``what``, the time waited and the log tail when the
    deadline passes or ``proc`` exits first.
    """
    wait = _Wait(what, timeout_s, proc, log_path)
    while True:
        wait.check_alive()
        if ready():
            return
        wait.check_deadline()
        time.sleep(interval_s)


def unprivileged_user() -> str | None:
    """The OS user to run servers as (PostgreSQL and PgBouncer refuse root), None unless root.

    ``CONNBENCH_PG_OS_USER`` if set, else ``postgres`` if it exists, else a ``connbench``
    system user, created on first use. Raises :class:`MissingDependency` when none can be had.
    """
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("CONNBENCH_PG_OS_USER")
    for name in [wanted] if wanted else ["postgres", "connbench"]:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    if wanted:
        raise MissingDependency(f"CONNBENCH_PG_OS_USER={wanted}: no such OS user")
    result = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "connbench"],
        capture_output=True,
        text=True,
        env=child_env({}),
    )
    if result.returncode != 0:
        raise MissingDependency(
            "PostgreSQL and PgBouncer refuse to run as root and no 'postgres' OS user exists; "
            f"create one or set CONNBENCH_PG_OS_USER (useradd said: {result.stderr.strip()})"
        )
    return "connbench"


def writable_by(path: Path, user: str) -> bool:
    """Whether OS user ``user`` can write to ``path`` (asked as that user, not computed)."""
    return run_to_end(["test", "-w", str(path)], user=user).returncode == 0


async def wait_until_async(
    ready: Callable[[], Awaitable[bool]],
    *,
    what: str,
    timeout_s: float,
    proc: Process | None = None,
    log_path: Path | None = None,
    interval_s: float = 0.05,
) -> None:
    """:func:`wait_until` for an event loop: ``ready`` is awaited, and so is the pause."""
    wait = _Wait(what, timeout_s, proc, log_path)
    while True:
        wait.check_alive()
        if await ready():
            return
        wait.check_deadline()
        await asyncio.sleep(interval_s)
