"""Locust as a load engine: load from many processes and hosts, figures in connbench's terms.

One event loop on one core is enough for one uvicorn worker, not for a service behind several
workers and hosts. For that connbench does not grow a cluster of its own: it runs Locust's
(a master and workers over ZeroMQ) and keeps the part no load tool does (the server side,
integrity, faults, compare).

How a run goes:

- connbench writes a locustfile (``locustfile.py.tmpl``) that holds nothing of the request,
  since any worker that reaches the master can download it, starts a headless Locust master
  bound to loopback (or ``bind_host``) and either ``workers`` local worker processes or none,
  waiting then for ``expect_workers`` remote ones (``connbench worker --master HOST:PORT
  --token-file F``, or plain ``locust --worker``).
- Only workers holding the run's token join: each sends an HMAC of its ZeroMQ identity before
  Locust's ``client_ready``; the master then sends it the request (host, method, path,
  headers, body), and drops everything from any other worker, naming it as refused.
- Every request is recorded on its worker by Locust's ``request`` event and shipped with the
  worker's report to the master, which appends it to a JSON-lines file connbench follows,
  checks (a malformed report fails the variant, naming the worker) and folds into the window
  as it comes, so nothing grows with the duration. The window (warm-up, measured seconds)
  starts when the master says every user is spawned, and the same
  :class:`~connbench.measure.load.RawLoad` as the default engine's is built from the samples,
  so histograms, series, errors and verdicts are computed the same way.
- Latencies are Locust's own response times (milliseconds as floats, not the rounded buckets
  of its statistics table). Sample times are the workers' wall clocks: remote workers need
  synchronised clocks (NTP) for the window to cut their samples in the right place.
- The generator's CPU is read from the local master and workers; a worker at
  ``GENERATOR_SATURATED_PERCENT`` of a core or more marks the run as the default engine's
  saturated loop does. Remote workers' CPU is unknown here.
- A worker that dies or stops answering is reported (which, when, how many requests it had
  completed); the run goes on with the others and carries a warning.

Locust is optional (``pip install 'connbench[locust]'``) and is never imported here: it
monkey-patches the standard library with gevent, so it only ever runs in its own processes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import json
import math
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from connbench.infra import procs, tempdirs
from connbench.measure.load import LoadConfig, Progress, RawLoad
from connbench.measure.window import SECOND_NS, Window, clamped, fill, new_histogram
from connbench.model import defaults, files
from connbench.model.errors import MissingDependency, ProcessError

INSTALL_HINT = "the locust engine needs Locust: pip install 'connbench[locust]'"
TEMPLATE = Path(__file__).with_name("locustfile.py.tmpl")
READY_TIMEOUT_S = 60.0  # workers to connect and users to spawn
STOP_TIMEOUT_S = 15.0  # master to stop its workers and quit after the run time
POLL_INTERVAL_S = 0.25
LOCAL_HOST = "127.0.0.1"
TOKEN_ENV = "CONNBENCH_LOCUST_TOKEN"  # the run's secret, in a worker's environment
TOKEN_FILE_ENV = "CONNBENCH_LOCUST_TOKEN_FILE"  # or the file that holds it
TOKEN_MIN_CHARS = 16
# Samples are folded into the window once they are this much older than the master's clock:
# workers report every second, so by then every worker's samples up to that time are in.
SAMPLE_HOLD_S = 3.0
# What a sample may be. Anything else is a fault of the worker that sent it.
MAX_CLOCK_SKEW_S = 3600.0  # a worker's clock this far from ours: wrong, or forged
MAX_RESPONSE_MS = 3_600_000.0
MAX_ERROR_KINDS = 256
_KIND = re.compile(r"[ -~]{1,100}")  # printable ASCII: kinds reach the terminal
_NAME_CHARS = 80
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.:@-]")


@dataclass(frozen=True)
class LocustOptions:
    workers: int = defaults.LOCUST_WORKERS  # local worker processes
    expect_workers: int = defaults.EXPECT_WORKERS  # remote workers to wait for as well
    bind_host: str = defaults.LOCUST_BIND  # where the master listens for workers
    port: int = defaults.LOCUST_PORT  # the master's port; 0: a free one
    token: str | None = None  # what every worker must prove it holds; None: a fresh one

    @property
    def total_workers(self) -> int:
        return self.workers + self.expect_workers


@dataclass(frozen=True)
class Request:
    """What each request sends (the variant's path, method, body and headers).

    None of it is written in the locustfile (any worker that reaches the master can download
    that): the master sends it to each worker once the worker has proved it holds the token."""

    path: str = "/visit/"
    method: str = "GET"
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def version() -> str | None:
    try:
        return metadata.version("locust")
    except metadata.PackageNotFoundError:
        return None


def require() -> None:
    """Raise :class:`MissingDependency` with the install line when Locust is not installed."""
    if importlib.util.find_spec("locust") is None:
        raise MissingDependency(INSTALL_HINT)


def locustfile(
    *,
    concurrency: int,
    timeout_s: float,
    rate_rps: float | None = None,
    title: str = "connbench's load",
) -> str:
    """The locustfile for one variant: ``rate_rps`` (open model) is split evenly over users.

    It holds nothing of the request (see :class:`Request`)."""
    return TEMPLATE.read_text().format(
        title=title,
        rate_per_user=(rate_rps / concurrency) if rate_rps else None,
        timeout_s=timeout_s,
    )


def new_token() -> str:
    return secrets.token_hex(32)


def read_token(path: Path) -> str:
    """The token in ``path``, a file only its owner can read; :class:`ValueError` otherwise
    (a token others could read would let them join, and forge the run's figures)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror}") from None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"the token file {path} is not a regular file")
        if st.st_uid != os.getuid():
            raise ValueError(
                f"the token file {path} belongs to uid {st.st_uid}, not you: whoever owns it "
                "could change the token"
            )
        if st.st_mode & 0o077:
            raise ValueError(
                f"the token file {path} must be readable by you alone "
                f"(chmod 600; it is {stat.S_IMODE(st.st_mode):o})"
            )
        token = f.read(4096).strip()
    if len(token) < TOKEN_MIN_CHARS or not token.isprintable():
        raise ValueError(
            f"the token file {path} holds no usable token (at least {TOKEN_MIN_CHARS} "
            "printable characters)"
        )
    return token


def token_file(path: Path) -> str:
    """The token in ``path``, or a fresh one written there (0600, created exclusively)."""
    try:
        files.write_secret(path, new_token() + "\n")
    except FileExistsError:
        pass
    except OSError as exc:
        raise ValueError(f"cannot write the token file {path}: {exc.strerror}") from None
    return read_token(path)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (the master's bind address) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name, or a wildcard such as *: assume it reaches further


def printable(text: object, limit: int = _NAME_CHARS) -> str:
    """Text from outside, safe on a terminal: printable ASCII, at most ``limit`` characters."""
    out = "".join(c if " " <= c <= "~" else "?" for c in str(text))
    return out if len(out) <= limit else out[: limit - 3] + "..."


def name(text: object) -> str:
    """A worker's id or host, as it chose it, safe anywhere it is shown (a terminal, Markdown,
    HTML): letters, digits and ``_.:@-``, anything else ``?``."""
    return printable(_UNSAFE_NAME.sub("?", str(text)))


class _Malformed(Exception):
    """A report a worker should not have sent."""


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed(f"{what} is {type(value).__name__}, not a number")
    out = float(value)
    if not math.isfinite(out):
        raise _Malformed(f"{what} is {out}")
    return out


Sample = tuple[float, float, float | None, str | None]


def _checked(data: object, now_s: float) -> tuple[int | None, str | None, list[Sample]]:
    """(pid, host, samples) of one worker's report; :class:`_Malformed` says what is wrong."""
    if not isinstance(data, dict):
        raise _Malformed(f"the report is {type(data).__name__}, not an object")
    pid, host, samples = data.get("pid"), data.get("host"), data.get("samples")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
        raise _Malformed(f"pid is {type(pid).__name__}")
    if host is not None and not isinstance(host, str):
        raise _Malformed(f"host is {type(host).__name__}")
    if not isinstance(samples, list):
        raise _Malformed(f"samples is {type(samples).__name__}, not a list")
    out: list[Sample] = []
    for sample in samples:
        if not isinstance(sample, list) or len(sample) != 4:
            raise _Malformed("a sample is not [time, response ms, intended time, kind]")
        t, rt, intended, kind = sample
        end_s = _number(t, "a sample's time")
        if abs(end_s - now_s) > MAX_CLOCK_SKEW_S:
            raise _Malformed(f"a sample's time is {end_s - now_s:+.0f} s from ours")
        response_ms = _number(rt, "a response time")
        if not 0 <= response_ms <= MAX_RESPONSE_MS:
            raise _Malformed(f"a response time is {response_ms} ms")
        intended_s = None if intended is None else _number(intended, "an intended time")
        if intended_s is not None and abs(intended_s - now_s) > MAX_CLOCK_SKEW_S:
            raise _Malformed(f"an intended time is {intended_s - now_s:+.0f} s from ours")
        if kind is not None and not (isinstance(kind, str) and _KIND.fullmatch(kind)):
            raise _Malformed(f"an error kind is {printable(repr(kind), 40)}")
        out.append((end_s, response_ms, intended_s, kind))
    return pid, None if host is None else name(host), out


@dataclass
class _Follow:
    """What the master has written so far, read as it grows, the samples folded into the
    window as they come (nothing in here grows with the run's duration)."""

    path: Path
    offset: int = 0
    spawned_at: float | None = None
    stopped_at: float | None = None
    window: Window | None = None  # set once the users are spawned; samples wait until then
    pending: list[Sample] = field(default_factory=list)  # received, not yet folded
    folded_to: float = -math.inf  # the latest completion folded so far
    received: int = 0
    errors: int = 0  # of the samples, for progress without a pass over all of them
    kinds: set[str] = field(default_factory=set)
    by_worker: dict[str, dict[str, Any]] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)  # worker id -> when it went missing
    refused: dict[str, dict[str, Any]] = field(default_factory=dict)  # no or a wrong token

    def read(self) -> None:
        """Take in every whole line written since the last read. Raises :class:`ProcessError`
        naming the worker when one sent something that is not a report of samples."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict):
                raise ProcessError(
                    f"the Locust master wrote a line connbench cannot read: {printable(line)}"
                )
            self._take(record)

    def _take(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == "spawned" and self.spawned_at is None:
            self.spawned_at = float(record["t"])
        elif event == "stopped":
            self.stopped_at = float(record["t"])
        elif event == "workers":
            for worker, state in record["states"].items():
                self.by_worker.setdefault(worker, {"requests": 0})
                if state == "missing" and worker not in self.lost:
                    self.lost[worker] = float(record["t"])
        elif event == "refused":
            for worker, info in record["workers"].items():
                self.refused[worker] = info
        elif event == "samples":
            self._samples(str(record.get("worker")), record.get("data"))

    def _samples(self, worker: str, data: object) -> None:
        info = self.by_worker.setdefault(worker, {"requests": 0})
        try:
            pid, host, samples = _checked(data, time.time())
            kinds = {kind for *_, kind in samples if kind is not None} - self.kinds
            if len(self.kinds) + len(kinds) > MAX_ERROR_KINDS:
                raise _Malformed(f"more than {MAX_ERROR_KINDS} kinds of error")
        except _Malformed as exc:
            raise ProcessError(
                f"Locust worker {name(worker)} (host {info.get('host')}, pid "
                f"{info.get('pid')}) sent a malformed report ({exc}); its figures cannot be "
                "trusted, so the variant is not measured"
            ) from None
        self.kinds |= kinds
        info.update(pid=pid, host=host)
        info["requests"] += len(samples)
        self.received += len(samples)
        self.errors += sum(1 for *_, kind in samples if kind is not None)
        self.pending.extend(samples)

    def fold(self, now_s: float, final: bool = False) -> None:
        """Fold the samples that ended ``SAMPLE_HOLD_S`` before ``now_s`` (all, ``final``)
        into the window, in time order, as the default engine folds its own."""
        window = self.window
        if window is None or not self.pending:
            return
        if final:
            ready, self.pending = self.pending, []
        else:
            horizon = now_s - SAMPLE_HOLD_S
            ready = [s for s in self.pending if s[0] < horizon]
            self.pending = [s for s in self.pending if s[0] >= horizon]
        ready.sort(key=lambda s: s[0])
        for end_s, response_ms, intended_s, kind in ready:
            done_ns = int(end_s * 1e9)
            start_ns = done_ns - int(response_ms * 1e6)
            intended_ns = int(intended_s * 1e9) if intended_s else 0
            window.sent += 1
            if kind is None and end_s < self.folded_to:
                _fold_late(window, start_ns, done_ns, intended_ns)
            else:
                window.done(start_ns, done_ns, kind, intended_ns)
        if ready:
            self.folded_to = max(self.folded_to, ready[-1][0])
        window.fold()


def _fold_late(window: Window, start_ns: int, end_ns: int, intended_ns: int) -> None:
    """A success that ended before samples already folded (a worker's report came late): it
    counts everywhere but in its second's percentiles, whose histogram is gone."""
    window.ok += 1
    if not window.start_ns <= end_ns < window.end_ns:
        return
    window.histogram.record_value(clamped((end_ns - (intended_ns or start_ns)) // 1000))
    if intended_ns:
        window.uncorrected.record_value(clamped((end_ns - start_ns) // 1000))
    offset = end_ns - window.start_ns
    window._second(min(offset // SECOND_NS, window.last_second)).ok += 1
    window.ok_buckets.add(offset)
    window.window_ok += 1


class _Processes:
    """The master and the local workers, each in its own process group."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.children: list[procs.Child] = []
        self.exited: dict[str, tuple[float, int]] = {}  # name -> (wall time, exit code)

    def check(self) -> None:
        """Note each child that has exited, and when (a dead worker is reported by name)."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None and child.name not in self.exited:
                self.exited[child.name] = (time.time(), code)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> procs.Child:
        child = procs.Child(
            argv, name=name, log_path=self.tmp / f"{name}.log", env=env, stop_timeout_s=5.0
        )
        child.spawn()
        self.children.append(child)
        return child

    def cpu_s(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for child in self.children:
            try:
                times = psutil.Process(child.proc.pid).cpu_times()
                out[child.name] = times.user + times.system
            except psutil.Error:
                out[child.name] = None
        return out

    async def stop(self) -> None:
        await asyncio.gather(*(child.stop_async() for child in reversed(self.children)))


async def run(
    url: str,
    config: LoadConfig,
    *,
    options: LocustOptions | None = None,
    request: Request | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_edge: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RawLoad:
    """Drive ``config.concurrency`` Locust users at ``url``: warm-up, window, drain.

    Raises :class:`MissingDependency` when Locust is not installed and :class:`ProcessError`
    (with the master's log tail) when the master exits early or its workers have not all
    connected and spawned their users within ``READY_TIMEOUT_S``. Setting ``stop`` ends the
    run early, as for the default engine.
    """
    require()
    options = options or LocustOptions()
    stop = stop or asyncio.Event()
    parts = urlsplit(url)
    host = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # userinfo: a header
    request = request or Request(path=parts.path or "/")
    tmp = tempdirs.make("locust")
    try:
        return await _run(host, request, config, options, tmp, on_progress, on_edge, stop)
    finally:
        tempdirs.remove(tmp)


async def _run(
    host: str,
    request: Request,
    config: LoadConfig,
    options: LocustOptions,
    tmp: Path,
    on_progress: Callable[[Progress], None] | None,
    on_edge: Callable[[str], None] | None,
    stop: asyncio.Event,
) -> RawLoad:
    file = tmp / "locustfile.py"
    file.write_text(
        locustfile(
            concurrency=config.concurrency,
            timeout_s=config.timeout_s,
            rate_rps=config.rate_rps,
        )
    )
    # What only proven workers get, from the master (see the locustfile): never in argv, nor
    # in the file above.
    request_file = files.write_secret(
        tmp / "request.json",
        json.dumps(
            {
                "host": host,
                "method": request.method,
                "path": request.path,
                "body": request.body,
                "headers": dict(request.headers),
            }
        ),
    )
    follow = _Follow(tmp / "samples.jsonl")
    port = options.port or procs.free_port()
    run_time_s = math.ceil(config.warmup_s + config.duration_s + 1)
    token = {TOKEN_ENV: options.token or new_token()}
    master_env = procs.child_env(
        {"CONNBENCH_LOCUST_OUT": str(follow.path), "CONNBENCH_LOCUST_REQUEST": str(request_file)}
        | token
    )
    locust = [sys.executable, "-m", "locust", "-f", str(file), "--skip-log-setup"]
    children = _Processes(tmp)
    try:
        master = children.start(
            "locust-master",
            [
                *locust,
                "--headless",
                "--master",
                f"--master-bind-host={options.bind_host}",
                f"--master-bind-port={port}",
                f"--expect-workers={options.total_workers}",
                f"--users={config.concurrency}",
                f"--spawn-rate={config.concurrency}",
                f"--run-time={run_time_s}s",
                f"--stop-timeout={math.ceil(config.timeout_s)}s",
                "--only-summary",
            ],
            master_env,
        )
        wildcard = options.bind_host in ("0.0.0.0", "::", "*")
        connect_to = LOCAL_HOST if wildcard else options.bind_host
        workers = [
            children.start(
                f"locust-worker-{n + 1}",
                [*locust, "--worker", f"--master-host={connect_to}", f"--master-port={port}"],
                procs.child_env(token),
            )
            for n in range(options.workers)
        ]
        spawned_at = await _wait_for_spawn(follow, master, stop)
        window = Window(config, stop)
        window.clock = time.time_ns
        window.t0 = int(spawned_at * 1e9)
        window.start_ns = window.t0 + int(config.warmup_s * 1e9)
        window.end_ns = window.start_ns + int(config.duration_s * 1e9)
        follow.window = window
        cpu = await _drive(follow, master, window, children, on_progress, on_edge, stop)
    finally:
        await children.stop()
    follow.read()
    raw = _raw(config, window, follow, cpu)
    raw.engine_info = _generator(options, follow, workers, children, cpu, raw.window_s)
    return raw


async def _wait_for_spawn(follow: _Follow, master: procs.Child, stop: asyncio.Event) -> float:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while follow.spawned_at is None:
        follow.read()
        if master.proc.poll() is not None:
            raise ProcessError(
                f"the Locust master exited (code {master.proc.returncode}) before the users "
                f"were spawned; its log:\n{procs.log_tail(master.log_path)}"
            )
        if stop.is_set():
            raise ProcessError("interrupted while waiting for Locust workers")
        if time.monotonic() > deadline:
            raise ProcessError(
                f"Locust's users were not spawned within {READY_TIMEOUT_S:.0f} s (workers not "
                f"connected?); the master's log:\n{procs.log_tail(master.log_path)}"
            )
        await asyncio.sleep(POLL_INTERVAL_S)
    return follow.spawned_at


async def _drive(
    follow: _Follow,
    master: procs.Child,
    window: Window,
    children: _Processes,
    on_progress: Callable[[Progress], None] | None,
    on_edge: Callable[[str], None] | None,
    stop: asyncio.Event,
) -> dict[str, dict[str, float | None]]:
    """Follow the run to its end: the window's edges, progress, the master's exit."""
    cpu: dict[str, dict[str, float | None]] = {}
    wall: dict[str, float] = {}
    stop_deadline: float | None = None
    while master.proc.poll() is None:
        follow.read()
        follow.fold(time.time())
        children.check()
        now = time.time_ns()
        for edge, at in (("start", window.start_ns), ("end", window.end_ns)):
            if edge not in cpu and now >= at:
                cpu[edge], wall[edge] = children.cpu_s(), time.monotonic()
                if on_edge is not None:
                    on_edge(edge)
        if stop.is_set() and stop_deadline is None:
            window.cut()
            if "start" in cpu and "end" not in cpu:
                cpu["end"], wall["end"] = children.cpu_s(), time.monotonic()
                if on_edge is not None:
                    on_edge("end")
            await master.stop_async()
            break
        if on_progress is not None:
            ok = follow.received - follow.errors
            phase = (
                "warmup" if now < window.start_ns else "measure" if now < window.end_ns else "drain"
            )
            on_progress(Progress(phase, (now - window.t0) / 1e9, ok, follow.errors))
        if now > window.end_ns and stop_deadline is None:
            stop_deadline = time.monotonic() + STOP_TIMEOUT_S + 2 * window_seconds(window)
        if stop_deadline is not None and time.monotonic() > stop_deadline:
            await master.stop_async()
            break
        await asyncio.sleep(POLL_INTERVAL_S)
    cpu["wall"] = {"start": wall.get("start"), "end": wall.get("end")}
    return cpu


def window_seconds(window: Window) -> float:
    return max(0.0, (window.end_ns - window.start_ns) / 1e9)


def _raw(
    config: LoadConfig, window: Window, follow: _Follow, cpu: dict[str, dict[str, float | None]]
) -> RawLoad:
    """The samples as the default engine would have tallied them."""
    follow.fold(time.time(), final=True)
    raw = RawLoad(config=config, histogram=new_histogram())
    raw.interrupted = window.stop.is_set()
    # The samples carry wall-clock times; the sampler and faults use perf_counter_ns.
    shift = time.perf_counter_ns() - time.time_ns()
    raw.window_start_ns = window.start_ns + shift
    raw.window_end_ns = max(window.start_ns, window.end_ns) + shift
    raw.window_s = (raw.window_end_ns - raw.window_start_ns) / 1e9
    raw.all_sent, raw.all_ok, raw.all_errors_by_kind = window.sent, window.ok, window.errors
    start, end, wall = cpu.get("start", {}), cpu.get("end", {}), cpu.get("wall", {})
    spent = {
        name: (end[name] or 0.0) - (start.get(name) or 0.0)
        for name in end
        if end.get(name) is not None and start.get(name) is not None
    }
    elapsed = (wall.get("end") or 0.0) - (wall.get("start") or 0.0)
    if spent and elapsed > 0:
        # The generator's bottleneck is its busiest worker, as the default engine's is its
        # single event loop; the process figure is everything Locust ran here.
        scale = raw.window_s / elapsed
        raw.cpu_process_s = sum(spent.values()) * scale
        busiest = [v for k, v in spent.items() if k.startswith("locust-worker")]
        raw.cpu_loop_s = max(busiest, default=0.0) * scale
    fill(raw, window)
    return raw


def _generator(
    options: LocustOptions,
    follow: _Follow,
    workers: list[procs.Child],
    children: _Processes,
    cpu: dict[str, dict[str, float | None]],
    window_s: float,
) -> dict[str, Any]:
    """Locust's version, its workers and what became of each, for the result."""
    start, end = cpu.get("start", {}), cpu.get("end", {})
    local = {child.proc.pid: child for child in workers}
    listed = []
    for worker_id, info in sorted(follow.by_worker.items()):
        child = local.get(info.get("pid") or -1)
        cpu_percent = None
        if child is not None and window_s > 0:
            a, b = start.get(child.name), end.get(child.name)
            if a is not None and b is not None:
                cpu_percent = round(100 * (b - a) / window_s, 1)
        lost_at = follow.lost.get(worker_id)
        exited = children.exited.get(child.name) if child is not None else None
        if exited is not None and exited[0] < (follow.stopped_at or float("inf")):
            lost_at = min(lost_at or exited[0], exited[0])  # died before the run ended
        elif lost_at is not None and follow.stopped_at and lost_at >= follow.stopped_at:
            lost_at = None  # went quiet while the run was being stopped: not lost
        listed.append(
            {
                "id": name(worker_id),
                "host": info.get("host"),
                "pid": info.get("pid"),
                "local": child is not None,
                "requests": info["requests"],
                "cpu_percent": cpu_percent,
                "exit_code": exited[1] if exited is not None and lost_at is not None else None,
                "lost_after_s": (
                    round(lost_at - follow.spawned_at, 1)
                    if lost_at is not None and follow.spawned_at is not None
                    else None
                ),
            }
        )
    return {
        "locust": {
            "version": version(),
            "local_workers": options.workers,
            "remote_workers": options.expect_workers,
            "bind_host": options.bind_host,
            "workers_lost": sum(1 for w in listed if w["lost_after_s"] is not None),
            "workers": listed,
            "refused": [_refused(worker, info) for worker, info in sorted(follow.refused.items())],
        }
    }


def _refused(worker: str, info: object) -> dict[str, Any]:
    """A worker the master refused, as the result names it (its id is its own choice)."""
    entry = info if isinstance(info, dict) else {}

    def count(key: str) -> int:
        value = entry.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    return {
        "id": name(worker),
        "why": printable(entry.get("why", "unknown"), 40),
        "messages": count("messages"),
        "samples": count("samples"),
    }


def worker_argv(master: str, locustfile_path: str | None = None) -> list[str]:
    """``locust --worker`` for ``HOST:PORT``; with no file, it is fetched from the master."""
    host, _, port = master.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--master: expected HOST:PORT, got {master!r}")
    return [
        sys.executable,
        "-m",
        "locust",
        "--worker",
        "-f",
        locustfile_path or "-",
        f"--master-host={host}",
        f"--master-port={port}",
    ]


def run_workers(argv: list[str], processes: int, env: dict[str, str]) -> list[int]:
    """Run ``processes`` workers in the foreground with ``env`` (and nothing else of ours),
    their output on ours; their exit codes.

    Ctrl-C (or any exit) stops every worker's process group before it goes on."""
    children = [
        subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, env=env)
        for _ in range(processes)
    ]
    try:
        return [child.wait() for child in children]
    finally:
        for child in children:
            procs.stop_group(child, signal.SIGTERM, 5.0)
