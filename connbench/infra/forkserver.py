"""A fork server for the built-in strategies' apps: one process that has imported uvicorn,
uvloop, httptools, FastAPI and psycopg once, and forks each variant's app from that clean state
instead of starting a new interpreter that imports them again (0.4 s a variant, measured).

Started as early as possible (``python -m connbench.infra.forkserver FD``): by
``connbench run`` before it imports the runner (:func:`start_early`), else by the runner
before PostgreSQL, so that its imports overlap those on another core. Besides those above, it
imports what the run's apps (``connbench.apps.X``, the runner's first word on the channel)
import at their top level (SQLAlchemy, asyncpg ...), found by reading their source. It is
reached only through a ``socketpair`` it inherits (never a name in the filesystem or the
abstract namespace: no other process, let alone another local user, can connect to it), and
it runs one module only: :mod:`connbench.infra.ready_uvicorn`, which a cold start would run as
``python -m``.

A request carries the command line, the environment (it holds the DSN's password: it goes
over that private channel and nowhere else), the working directory and the file descriptors
(the log, the ready pipe). The server forks; the child leaves the server behind (its own
session, default signal handlers, a parent-death signal, stdin from /dev/null, the log on
stdout and stderr, exactly the environment asked for, the title ``ps`` shows set to the
command line it stands for) and runs what ``python -m connbench.infra.ready_uvicorn`` runs,
then exits: it never returns into the server's loop. The app's own module (its code, and the
settings it reads from the environment) is imported in the child, after the fork. The server
reaps its children and tells the runner each one's exit status, as ``Popen.returncode`` gives
it (negative: killed by that signal).

The runner's side is :class:`ForkServer`; what it starts is a :class:`Forked`, which serves
the runner as the ``subprocess.Popen`` of a cold start does (``pid``, ``poll``, ``wait``,
``returncode``). Whenever the server cannot serve (it did not start, has died, runs another
interpreter, or the request is not one it runs), :meth:`ForkServer.spawn` returns None and the
app is started cold, as before.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import importlib
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from connbench.apps import STRATEGIES
from connbench.infra import procs, tempdirs
from connbench.model import files
from connbench.model.errors import ProcessError

if TYPE_CHECKING:
    from connbench.model.scenario import Variant

# What the server runs: the module of ``python -m MODULE ...`` (anything else starts cold).
MODULES = ("connbench.infra.ready_uvicorn",)
# Imported before the first fork: what every app of that module imports before its own code
# (uvicorn's main, config and server, the loop, protocol and lifespan it is told to use, the
# web framework and the driver). Not connbench.apps.*: they read their settings from the
# environment as they are imported, so they are imported in the child.
PRELOAD = (
    "uvicorn",
    "uvicorn.main",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "uvicorn.middleware.proxy_headers",
    "uvloop",
    "httptools",
    "fastapi",
    "fastapi.responses",
    "psycopg",
    "psycopg.sql",
    "psycopg_pool",
    "setproctitle",
    # What ready_uvicorn imports; not itself: runpy runs it as __main__, and warns when a
    # module it runs was imported under its own name first.
    "connbench.infra.launch",
)
# Variables the interpreter (and psycopg, PSYCOPG_IMPL) reads as it starts, which a forked
# child cannot read again: a request whose values differ from the server's is started cold.
STARTUP_ENV_PREFIXES = ("PYTHON", "LANG", "LC_", "PSYCOPG")
MAX_MESSAGE = 1 << 20  # a request: the command line and environment, a few kB
MAX_FDS = 8
HELLO_TIMEOUT_S = 60.0  # the server's imports, on a machine as loaded as it may be
REPLY_TIMEOUT_S = 10.0  # a fork, once the server listens
LOST_WAIT_S = 10.0  # for an app to go once its server died (SIGKILLed: at once)
CLOSE_WAIT_S = 5.0  # for the server to stop what it still runs and exit, once told


_SIGCHLD_AT_START: Any = signal.SIG_DFL  # the server's, before it asked for a wake-up


def _startup_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_ENV_PREFIXES)}


def libraries(apps: Sequence[str]) -> list[str]:
    """What the modules ``apps`` (``connbench.apps.X``, by name) import at their top level,
    and so do the ``connbench.apps`` modules they import; read from their source, never
    imported: their code (which reads the environment) runs in each app, after the fork."""
    import connbench.apps

    here = Path(connbench.apps.__file__).parent
    found: list[str] = []
    todo, seen = list(apps), set()
    while todo:
        name = todo.pop()
        package, _, leaf = name.rpartition(".")
        if name in seen or package != "connbench.apps" or not leaf.isidentifier():
            continue
        seen.add(name)
        try:
            tree = ast.parse((here / f"{leaf}.py").read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module == "connbench.apps":  # from connbench.apps import instrument
                    todo += [f"connbench.apps.{alias.name}" for alias in node.names]
            else:
                continue
            for imported in names:
                if imported.startswith("connbench"):
                    todo.append(imported)
                elif imported != "__future__" and imported not in found:
                    found.append(imported)
    return found


def runs(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is a command the server runs: ``python -m MODULE ...``, this python."""
    return len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2] in MODULES


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode())


# --- the server (python -m connbench.infra.forkserver FD) ------------------------------------


# What the interpreter added to the environment it was given as it started (LC_CTYPE, when
# it coerces a C locale): a new interpreter would add the same to each app's.
_ADDED_AT_START: dict[str, str] = {}


def _given_env() -> dict[str, str]:
    """The environment this process was started with, before the interpreter changed any of
    it: the block the kernel keeps (this process never retitles itself)."""
    try:
        block = os.fsdecode(Path("/proc/self/environ").read_bytes())
    except OSError:  # pragma: no cover - no /proc
        return dict(os.environ)
    return dict(entry.split("=", 1) for entry in block.split("\0") if "=" in entry)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(sock.fileno(), False)  # nothing the server runs may reach the channel
    given = _given_env()
    _ADDED_AT_START.update({k: v for k, v in os.environ.items() if k not in given})
    hello: dict[str, Any] = {"pid": os.getpid(), "executable": sys.executable}
    try:
        for name in PRELOAD:
            importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any failure: apps start cold, the runner says why
        hello["error"] = f"cannot import {name}: {type(exc).__name__}: {exc}"
    try:  # the runner's first word: the run's apps
        apps = json.loads(sock.recv(MAX_MESSAGE) or b"{}").get("apps", [])
    except (OSError, ValueError, AttributeError):
        return
    for name in libraries(apps):  # their own (SQLAlchemy, asyncpg ...)
        with contextlib.suppress(Exception):  # the app's cold import would say it
            importlib.import_module(name)
    # fork() copies the calling thread only: a thread a library started would be missing
    # from every app, holding whatever lock it held. None of the imports starts one.
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1 or threading.active_count() != 1:
        hello["error"] = f"{threads} threads after the imports; forking needs one"
    hello["env"] = _startup_env(given)
    try:
        _send(sock, {"hello": hello})
        if "error" not in hello:
            _serve(sock)
    except OSError:  # the runner has gone: its apps go with this process
        pass


def _serve(sock: socket.socket) -> None:
    """Fork what each request asks for, tell the runner each child's pid and, once reaped,
    its exit status; return when the runner closes the channel (or has gone)."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    global _SIGCHLD_AT_START
    # A wake-up byte, nothing else.
    _SIGCHLD_AT_START = signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    children: set[int] = set()
    started_in = os.getcwd()
    startup_env = _startup_env(_given_env())
    try:
        while True:
            ready = select.select([sock.fileno(), wake_r], [], [])[0]
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            _reap(sock, children)
            if sock.fileno() not in ready:
                continue
            data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
            if not data:
                return  # the runner closed the channel
            try:
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    raise ValueError("request too large")
                pid = _fork(json.loads(data), fds, started_in, startup_env)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                _send(sock, {"refused": f"{type(exc).__name__}: {exc}"})
            else:
                children.add(pid)
                _send(sock, {"spawned": pid})
            finally:
                for fd in fds:
                    os.close(fd)
    finally:
        # The runner stops its apps before it closes the channel: any left now are orphans
        # (an app whose start a Ctrl-C cut short), and go before the server does.
        for pid in children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)


def _reap(sock: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _fork(
    request: dict[str, Any], fds: list[int], started_in: str, startup_env: dict[str, str]
) -> int:
    argv = [str(a) for a in request["argv"]]
    env = {str(k): str(v) for k, v in request["env"].items()}
    targets = [int(fd) for fd in request["fds"]]
    if len(fds) != len(targets) + 1:
        raise ValueError(f"{len(fds)} file descriptors for {len(targets)} + the log")
    if not runs(argv):
        raise ValueError("not a command this server runs")
    if _startup_env(env) != startup_env:
        raise ValueError("the interpreter's start-up environment differs")
    for stream in (sys.stdout, sys.stderr):  # else the child would write the server's buffer
        stream.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _become(argv, env, str(request["cwd"]), fds, targets, parent, started_in, request)
    return pid


def _become(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    fds: list[int],
    targets: list[int],
    parent: int,
    started_in: str,
    request: dict[str, Any],
) -> NoReturn:
    """In the child: leave the server behind, run ``python -m MODULE ARGS`` as a new
    interpreter would, exit with its code. Never returns into the server's loop."""
    code = 1
    try:
        _detach(fds, targets, parent, int(request.get("stop_signal", signal.SIGTERM)))
        import setproctitle

        # Before the environment changes: setproctitle finds the memory it rewrites (the
        # command line's, and the initial environment's after it) through it.
        setproctitle.setproctitle(" ".join(argv))  # what ps and /proc/PID/cmdline show
        setproctitle.setthreadtitle(os.path.basename(argv[0]))  # comm: as exec sets it
        _take_environment(env, cwd, started_in, int(request.get("nofile", 0)))
        sys.orig_argv = list(argv)
        sys.argv = [argv[0], *argv[3:]]  # argv[0]: runpy puts the module's file there
        code = _run_module(argv[2])
    except BaseException:  # noqa: BLE001 - whatever happens, the child ends here
        with contextlib.suppress(BaseException):
            traceback.print_exc()
            sys.stderr.flush()
    finally:
        if code < 0:
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)


def _detach(fds: list[int], targets: list[int], parent: int, death_signal: int) -> None:
    os.setsid()
    # The signals as the server found them when it started, a new interpreter's: it changed
    # only SIGCHLD's (and the wake-up descriptor); the mask it never touched.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, _SIGCHLD_AT_START)
    procs.die_with_parent(death_signal)
    if os.getppid() != parent:  # the server died before the signal was asked for
        os._exit(1)
    # The descriptors: stdin from /dev/null, the log on 1 and 2, the others at the numbers
    # the environment names (as Popen's pass_fds), nothing else (the channel above all).
    import fcntl

    log, passed = fds[0], fds[1:]
    high = max([3, *targets, *fds]) + 1  # where the sources wait, out of the targets' way
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, high) for fd in passed]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for source, target in zip(moved, targets, strict=True):
        os.dup2(source, target)  # inheritable, as pass_fds leaves them
    start = 3
    for keep in [*sorted(set(targets)), os.sysconf("SC_OPEN_MAX")]:
        if keep > start:
            os.closerange(start, keep)
        start = max(start, keep + 1)


def _take_environment(env: dict[str, str], cwd: str, started_in: str, nofile: int) -> None:
    os.environ.clear()
    os.environ.update({**env, **_ADDED_AT_START})
    time.tzset()  # TZ may differ from the server's
    os.chdir(cwd)
    # python -m puts the working directory first on the path: the child's, not the server's.
    if sys.path and sys.path[0] == started_in:
        sys.path[0] = os.getcwd()
    if nofile:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if nofile != soft and (hard == resource.RLIM_INFINITY or nofile <= hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))


def _run_module(module: str) -> int:
    """``python -m module``: run it as ``__main__``, then what the interpreter does on its
    way out (threads joined, atexit handlers, streams flushed); its exit code."""
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT  # the interpreter ends killed by SIGINT then
    except BaseException:  # noqa: BLE001 - as the interpreter: the traceback, code 1
        traceback.print_exc()
        code = 1
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    return code


def _exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


# --- the runner's side -----------------------------------------------------------------------


class Forked:
    """An app the fork server started: what the runner uses of a ``subprocess.Popen``."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self._server = server
        self.pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):
            self.pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            self._server.pump(0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            if not self._server.serving:  # pragma: no cover - its end stops every app
                self._lost()
                break
            self._server.pump(procs.POLL_INTERVAL_S if left is None else min(left, 0.5))
        assert self.returncode is not None
        return self.returncode

    def _exited(self, code: int) -> None:
        self.returncode = code
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def _lost(self) -> None:
        """The server died before it told how this app ended: the app is stopped now (it was
        sent its parent-death signal already) and reported killed by SIGKILL."""
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            select.select([self.pidfd], [], [], LOST_WAIT_S)  # readable once it has exited
        self._exited(-signal.SIGKILL)


class ForkServer:
    """The runner's side of the fork server: :meth:`start` it as early as possible (it does
    not wait for the server's imports), :meth:`spawn` apps, :meth:`close` at the end.

    ``apps`` (module names): the strategies' apps of the run, whose libraries (what they
    import at their top level: SQLAlchemy, asyncpg ...) the server imports too.
    ``warn`` is told, once, when the server fails unexpectedly (it could not start, its
    imports failed, it died); apps are then started cold, and nothing is raised.
    """

    def __init__(
        self, log_path: Path, warn: Callable[[str], None], apps: Sequence[str] = ()
    ) -> None:
        self.log_path = log_path
        self.apps = list(apps)  # modules whose libraries the server imports too
        self.warn = warn
        self._child: procs.Child | None = None
        self._sock: socket.socket | None = None
        self._hello: dict[str, Any] | None = None
        self._replies: list[dict[str, Any]] = []
        self._apps: dict[int, Forked] = {}
        self._lock = threading.RLock()
        self.problem: str | None = None  # why it does not serve (None: it does, or may)
        self.told = False  # of the run's apps (see tell)

    @property
    def pid(self) -> int | None:
        try:
            return self._child.proc.pid if self._child is not None else None
        except RuntimeError:  # it could not be started
            return None

    @property
    def serving(self) -> bool:
        return self._sock is not None

    def start(self, *, tell: bool = True) -> None:
        """Spawn the server; with ``tell``, tell it :attr:`apps` now (else :meth:`tell` does,
        later: it imports uvicorn, FastAPI and psycopg meanwhile)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._child = procs.Child(
            [sys.executable, "-m", __name__, str(theirs.fileno())],
            name="connbench's fork server",
            log_path=self.log_path,
            env=procs.child_env({}),
            pass_fds=(theirs.fileno(),),
        )
        try:
            self._child.spawn()
        except Exception as exc:  # noqa: BLE001 - whatever it is, apps start cold
            ours.close()
            self._give_up(str(exc) if isinstance(exc, ProcessError) else repr(exc))
            return
        finally:
            theirs.close()  # the server's copy is the only one: EOF for it when we close
        self._sock = ours
        if tell:
            self.tell(self.apps)

    def tell(self, apps: Sequence[str]) -> None:
        """Tell the server the run's apps, whose libraries it imports once its own are in
        (see :func:`main`); once."""
        self.apps, self.told = list(apps), True
        if self._sock is None:
            return  # it could not be started: said already
        try:
            _send(self._sock, {"apps": self.apps})
        except OSError as exc:
            self._gone(f"could not be told the run's apps ({exc})")

    def close(self) -> None:
        """Close the channel and stop the server (and whatever it still runs); idempotent."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()  # the server's end of the channel: it stops what it runs
                self._sock = None
                if self._child is not None and self._hello is not None:  # it listens
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._child.proc.wait(timeout=CLOSE_WAIT_S)
            # The runner stops its apps first: any left now go with the server.
            for app in list(self._apps.values()):
                app._lost()
            self._apps.clear()
        if self._child is not None:
            self._child.stop()
            for line in self._child.strays:
                self.warn(line)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None,
        log_path: Path,
        pass_fds: Sequence[int],
        stop_signal: int,
    ) -> Forked | None:
        """``argv`` forked from the server, or None when the server cannot run it (then the
        caller starts it cold). Must run on the main thread, as every child's start."""
        argv = list(argv)
        if not runs(argv):
            return None
        with self._lock:
            self.pump(0.0)  # has it ended since the last app?
            if not self._ready():
                return None
            assert self._hello is not None and self._sock is not None
            if _startup_env(env) != self._hello.get("env"):
                return None
            log = files.open_log(log_path)  # 0600 if new: a log may quote a DSN
            request = {
                "argv": argv,
                "env": dict(env),
                "cwd": str(cwd or Path.cwd()),
                "fds": list(pass_fds),
                "stop_signal": int(stop_signal),
                "nofile": _nofile(),
            }
            try:
                socket.send_fds(self._sock, [json.dumps(request).encode()], [log, *pass_fds])
            except OSError as exc:
                self._gone(f"could not send it a request ({exc})")
                return None
            finally:
                os.close(log)
            reply = self._reply()
            if reply is None or "spawned" not in reply:
                if reply is not None:  # refused: a cold start then, said nowhere else
                    self.warn(f"connbench's fork server refused an app: {reply.get('refused')}")
                return None
            app = Forked(self, int(reply["spawned"]), argv)
            self._apps[app.pid] = app
            return app

    def _ready(self) -> bool:
        """Whether the server serves, after waiting for its hello (its imports done)."""
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while self._hello is None and self._sock is not None:
            if time.monotonic() >= deadline:
                self._gone(f"not ready after {HELLO_TIMEOUT_S:g} s")
                return False
            self.pump(procs.POLL_INTERVAL_S * 5)
        if self._hello is None or self._sock is None:
            return False
        if "error" in self._hello:
            self._gone(str(self._hello["error"]))
            return False
        if self._hello.get("executable") != sys.executable:  # pragma: no cover - same argv
            self._gone(f"it runs {self._hello.get('executable')}, not {sys.executable}")
            return False
        return True

    def _reply(self) -> dict[str, Any] | None:
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while not self._replies and self._sock is not None:
            if time.monotonic() >= deadline:
                self._gone(f"no answer to a request in {REPLY_TIMEOUT_S:g} s")
                return None
            self.pump(procs.POLL_INTERVAL_S * 5)
        return self._replies.pop(0) if self._replies else None

    def pump(self, timeout_s: float) -> None:
        """Read what the server has said (waiting up to ``timeout_s`` for the first word):
        its hello, replies, apps' exits. An end of the channel means the server has gone."""
        with self._lock:
            sock = self._sock
            if sock is None:
                return
            if not select.select([sock], [], [], timeout_s)[0]:
                return
            while True:
                try:
                    data = sock.recv(MAX_MESSAGE, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return
                except ConnectionResetError:  # it died with a word of ours unread
                    data = b""
                except OSError as exc:
                    self._gone(f"its channel failed ({exc})")
                    return
                if not data:
                    self._gone(None)
                    return
                self._dispatch(json.loads(data))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "hello" in message:
            self._hello = message["hello"]
        elif "exited" in message:
            app = self._apps.pop(int(message["exited"]), None)
            if app is not None:
                app._exited(int(message["code"]))
        else:
            self._replies.append(message)

    def _gone(self, why: str | None) -> None:
        """The server serves no more (``why``; None: it ended): apps start cold from now on.
        The apps it still ran, whose end it can no longer tell, are stopped."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if why is None and self._child is not None:  # it ended: how?
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.proc.wait(timeout=1.0)
            code = self._child.proc.poll()
            why = procs.describe_exit(code) if code is not None else "closed its channel"
        lost = list(self._apps.values())
        self._apps.clear()
        for app in lost:
            app._lost()
        self.problem = f"connbench's fork server (pid {self.pid}) {why}"
        message = f"{self.problem}; the next apps are started cold"
        if lost:
            pids = ", ".join(str(app.pid) for app in lost)
            message += f"; the app it had started (pid {pids}) was stopped with it (SIGKILL)"
        self.warn(message)

    def _give_up(self, why: str) -> None:
        self.problem = why
        self.warn(f"{why}; apps are started cold")


def _nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def apps_of(variants: Iterable[Variant]) -> list[str]:
    """The app modules of ``variants`` that would be forked: built-in strategies of one
    worker (own apps, several workers start cold, as they really run). Sorted, each once."""
    return sorted(
        {
            STRATEGIES[v.strategy].app_path.partition(":")[0]
            for v in variants
            if v.kind == "strategy" and v.workers == 1 and v.strategy in STRATEGIES
        }
    )


# A fork server started before the runner was imported (see start_early), until it is taken.
_early: tuple[ForkServer, Path, list[str]] | None = None


def _started(apps: Sequence[str], *, tell: bool) -> tuple[ForkServer, Path, list[str]]:
    """A fork server for ``apps``, started in a private temp dir of its own, with what it
    said meanwhile (for :func:`take_early` to pass on)."""
    where = tempdirs.make("forks")
    said: list[str] = []
    server = ForkServer(where / "forkserver.log", said.append, apps)
    try:
        server.start(tell=tell)
    except BaseException:
        tempdirs.remove(where)
        raise
    return server, where, said


def spawn_early() -> None:
    """Start a fork server before the run's apps are known (:func:`start_early` tells it
    them, or stops it when there are none): the command line calls this first thing, so
    that the server's own imports (uvicorn, FastAPI, psycopg: 0.5-0.75 s of a core, the
    longest step before the first app can start) begin before the scenario is read rather
    than after. A run of own apps only pays the start of a process it then stops."""
    global _early
    if _early is None:
        _early = _started((), tell=False)


def start_early(variants: Iterable[Variant]) -> None:
    """Start the fork server for ``variants`` now, in a private temp dir of its own, for the
    runner to take (:func:`take_early`): the command line calls this before it imports the
    runner, whose import (0.4 s) then overlaps the server's. One :func:`spawn_early` started
    is told the apps instead. Nothing when no app would be forked (one spawned early is
    stopped); what goes wrong is said when the runner takes it."""
    global _early
    apps = apps_of(variants)
    if _early is not None and not _early[0].told:
        if apps:
            _early[0].tell(apps)
        else:
            _close_early()
    elif apps and _early is None:
        _early = _started(apps, tell=True)


def take_early(
    apps: Sequence[str], warn: Callable[[str], None], stack: ExitStack
) -> ForkServer | None:
    """The server :func:`start_early` started, if it serves ``apps``, now closed (and its
    temp dir removed) by ``stack`` and warning through ``warn``; None if there is none."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    server, where, said = early
    stack.callback(tempdirs.remove, where)
    stack.callback(server.close)
    if server.apps != list(apps):  # pragma: no cover - the same scenario's variants
        return None
    server.warn = warn
    for line in said:
        warn(line)
    return server


@contextmanager
def early_closed() -> Iterator[None]:
    """Close a server :func:`start_early` started that no run took (the command failed
    before it ran) on the way out."""
    try:
        yield
    finally:
        _close_early()


def _close_early() -> None:
    """Stop the server :func:`start_early` or :func:`spawn_early` started and remove its
    temp dir, as a run that took it would on its way out."""
    with ExitStack() as stack:
        take_early([], lambda line: None, stack)


@contextmanager
def started(
    log_path: Path, warn: Callable[[str], None], apps: Sequence[str] = ()
) -> Iterator[ForkServer]:
    """A :class:`ForkServer` for ``apps`` (see :class:`ForkServer`), started (not waited
    for), closed on the way out."""
    server = ForkServer(log_path, warn, apps)
    try:
        server.start()
        yield server
    finally:
        server.close()


def _main_then_exit() -> NoReturn:
    """:func:`main`, then out at once: the interpreter's teardown of every module the server
    imported would add a tenth of a second to the end of every run."""
    code = 0
    try:
        main()
    except BaseException:  # noqa: BLE001 - said in its log, as the interpreter would
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    _main_then_exit()
