"""Locust as a load engine: load from many processes and hosts, figures in connbench's terms.

One event loop on one core is enough for one uvicorn worker, not for a service behind several
workers and hosts. For that connbench does not grow a cluster of its own: it runs Locust's
(a master and workers over ZeroMQ) and keeps the part no load tool does (the server side,
integrity, faults, compare).

How a run goes:

- connbench writes a locustfile for the variant's request (``locustfile.py.tmpl``), starts a
  headless Locust master bound to loopback (or ``bind_host``) and either ``workers`` local
  worker processes or none, waiting then for ``expect_workers`` remote ones
  (``connbench worker --master HOST:PORT``, or plain ``locust --worker``).
- Every request is recorded on its worker by Locust's ``request`` event and shipped with the
  worker's report to the master, which appends it to a JSON-lines file connbench follows. The
  window (warm-up, measured seconds) starts when the master says every user is spawned, and
  the same :class:`~connbench.measure.load.RawLoad` as the default engine's is built from the
  samples, so histograms, series, errors and verdicts are computed the same way.
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
import json
import math
import signal
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
from connbench.measure.load import (
    LoadConfig,
    Progress,
    RawLoad,
    _fill,
    _Window,
    new_histogram,
)
from connbench.model.errors import MissingDependency, ProcessError

INSTALL_HINT = "the locust engine needs Locust: pip install 'connbench[locust]'"
TEMPLATE = Path(__file__).with_name("locustfile.py.tmpl")
READY_TIMEOUT_S = 60.0  # workers to connect and users to spawn
STOP_TIMEOUT_S = 15.0  # master to stop its workers and quit after the run time
POLL_INTERVAL_S = 0.25
LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class LocustOptions:
    workers: int = 1  # local worker processes
    expect_workers: int = 0  # remote workers to wait for as well
    bind_host: str = LOCAL_HOST  # where the master listens for workers
    port: int = 0  # the master's port; 0: a free one

    @property
    def total_workers(self) -> int:
        return self.workers + self.expect_workers


@dataclass(frozen=True)
class Request:
    """What each request sends (the variant's path, method, body and headers)."""

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
    request: Request,
    *,
    concurrency: int,
    timeout_s: float,
    rate_rps: float | None = None,
    title: str = "GET /visit/",
) -> str:
    """The locustfile for one variant: ``rate_rps`` (open model) is split evenly over users."""
    return TEMPLATE.read_text().format(
        title=title,
        path=request.path,
        method=request.method,
        body=request.body,
        headers=dict(request.headers),
        rate_per_user=(rate_rps / concurrency) if rate_rps else None,
        timeout_s=timeout_s,
    )


@dataclass
class _Follow:
    """What the master has written so far, read as it grows."""

    path: Path
    offset: int = 0
    spawned_at: float | None = None
    stopped_at: float | None = None
    samples: list[tuple[float, float, float | None, str | None]] = field(default_factory=list)
    errors: int = 0  # of the samples, for progress without a pass over all of them
    by_worker: dict[str, dict[str, Any]] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)  # worker id -> when it went missing

    def read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        for line in chunk[:end].splitlines():
            self._take(json.loads(line))

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
        elif event == "samples":
            worker = record["worker"]
            info = self.by_worker.setdefault(worker, {"requests": 0})
            info.update(pid=record.get("pid"), host=record.get("host"))
            info["requests"] += len(record["samples"])
            self.samples.extend(
                (float(t), float(rt), None if i is None else float(i), k)
                for t, rt, i, k in record["samples"]
            )
            self.errors += sum(1 for *_, kind in record["samples"] if kind is not None)


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
            request,
            concurrency=config.concurrency,
            timeout_s=config.timeout_s,
            rate_rps=config.rate_rps,
        )
    )
    follow = _Follow(tmp / "samples.jsonl")
    port = options.port or procs.free_port()
    run_time_s = math.ceil(config.warmup_s + config.duration_s + 1)
    env = procs.child_env({"CONNBENCH_LOCUST_OUT": str(follow.path)})
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
                f"--host={host}",
                "--only-summary",
            ],
            env,
        )
        wildcard = options.bind_host in ("0.0.0.0", "::", "*")
        connect_to = LOCAL_HOST if wildcard else options.bind_host
        workers = [
            children.start(
                f"locust-worker-{n + 1}",
                [*locust, "--worker", f"--master-host={connect_to}", f"--master-port={port}"],
                env,
            )
            for n in range(options.workers)
        ]
        spawned_at = await _wait_for_spawn(follow, master, stop)
        window = _Window(config, stop)
        window.clock = time.time_ns
        window.t0 = int(spawned_at * 1e9)
        window.start_ns = window.t0 + int(config.warmup_s * 1e9)
        window.end_ns = window.start_ns + int(config.duration_s * 1e9)
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
    window: _Window,
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
            ok = len(follow.samples) - follow.errors
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


def window_seconds(window: _Window) -> float:
    return max(0.0, (window.end_ns - window.start_ns) / 1e9)


def _raw(
    config: LoadConfig, window: _Window, follow: _Follow, cpu: dict[str, dict[str, float | None]]
) -> RawLoad:
    """The samples as the default engine would have tallied them."""
    for end_s, response_ms, intended_s, kind in sorted(follow.samples):
        done_ns = int(end_s * 1e9)
        window.sent += 1
        intended_ns = int(intended_s * 1e9) if intended_s else 0
        window.done(done_ns - int(response_ms * 1e6), done_ns, kind, intended_ns)
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
    _fill(raw, window)
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
                "id": worker_id,
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
        }
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


def run_workers(argv: list[str], processes: int) -> list[int]:
    """Run ``processes`` workers in the foreground, their output on ours; their exit codes.

    Ctrl-C (or any exit) stops every worker's process group before it goes on."""
    children = [
        subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    try:
        return [child.wait() for child in children]
    finally:
        for child in children:
            procs.stop_group(child, signal.SIGTERM, 5.0)
