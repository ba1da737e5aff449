"""The result file: a versioned JSON document, written atomically, validated on load.

Schema history (bump ``SCHEMA_VERSION`` on any change a reader must know about):

1. First version: environment, scenario, one entry per strategy with requests, throughput,
   latency percentiles (+ the encoded HDR histogram), server connections and sessions,
   integrity, generator and server CPU, per-second series and warnings.
2. Sweeps and repeats: ``results`` holds one entry per run (``variant`` with its ``key``,
   ``repeat``); ``summary`` one per variant (median, min, max, CV over the repeats, stability
   warnings). Scenario ``concurrency``, ``workers`` and ``pool_max`` are lists.
   Open model (``--rate``): ``open_model`` per run (offered, sent late, not sent, in flight at
   the end, schedule lag, uncorrected latency, validity); ``latency_ms`` is then measured
   from the intended send time.
3. Topologies and capacity: ``variant.topology`` (direct unless through PgBouncer, named in
   the key as ``via=...``), scenario ``topology`` (a list) and ``pgbouncer_pool_size``;
   status ``unavailable`` (PgBouncer not installed); ``server.predicted`` (the most server
   connections the variant can hold, and how that was worked out); ``server.pgbouncer``
   (PgBouncer's pools and waits) and ``cpu_percent.pgbouncer`` behind PgBouncer. Version 2
   files are read too: everything added is optional, and a variant without a topology went
   direct.
4. Faults and where the time goes: scenario ``fault`` (``{kind, at_s}`` or null); per run
   ``fault`` (what was injected and when, errors after it by kind, the pre-fault baseline and
   ``recovered_after_s``) and ``breakdown`` (mean ms per request connecting, waiting for a
   pooled connection, in queries, in the rest of the app, outside it and after the response;
   the pool's statistics); ``integrity`` gains ``lost_writes`` and ``unacknowledged_writes``;
   ``summary`` entries gain ``breakdown`` medians. Versions 2 and 3 still load (those fields
   are then empty).
5. Gates and limits: ``limits`` holds one verdict per ``--fail-if`` expression and variant
   (``limit``, ``variant``, ``value``, ``failed``, ``reason``); the scenario records its
   ``gate`` (metric: fraction, ``alpha``) and ``fail_if``; each summary adds
   ``requests_total`` and ``error_rate``. Versions 2 to 4 still load (with no limits).
6. Paired rounds: the order of the variants is reversed every other round (A B, B A, ...),
   and each run records its ``position`` in its round (0-based), so that ``compare --base
   --head`` can pair the two variants round by round. Older files load with no position.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from connbench import __version__
from connbench.model.errors import ResultFileError

SCHEMA_VERSION = 6
READABLE_VERSIONS = (2, 3, 4, 5, 6)  # older results lack what came later; it is all optional
PACKAGES = (
    "fastapi", "starlette", "uvicorn", "psycopg", "psycopg-binary", "psycopg-pool",
    "aiohttp", "httpx", "uvloop", "httptools", "pydantic", "pgserver",
)  # fmt: skip


@dataclass
class StrategyResult:
    """One strategy's run. Field names carry units; see the README for each field."""

    strategy: str
    status: str  # ok | failed | interrupted | unavailable
    failure: str | None = None
    variant: dict[str, Any] = field(default_factory=dict)  # Variant.to_dict(), with its key
    repeat: int = 0  # 0-based: which round of an interleaved --repeat run
    position: int | None = None  # 0-based place in its round (None: before version 6)
    requests: dict[str, Any] = field(default_factory=dict)
    throughput_rps: float = 0.0
    duration_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    histogram: str | None = None  # HdrHistogram compressed encoding (base64), microseconds
    server: dict[str, Any] = field(default_factory=dict)
    integrity: dict[str, Any] = field(default_factory=dict)
    generator: dict[str, Any] = field(default_factory=dict)
    cpu_percent: dict[str, float | None] = field(default_factory=dict)
    timeseries: dict[str, list[float]] = field(default_factory=dict)
    open_model: dict[str, Any] = field(default_factory=dict)  # --rate runs only
    fault: dict[str, Any] = field(default_factory=dict)  # empty unless a fault was injected
    breakdown: dict[str, Any] = field(default_factory=dict)  # empty when the app kept no totals
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The variant's identity (``pool c=32 w=1 pool=4..4``); the strategy name if none."""
        return str(self.variant.get("key") or self.strategy)


@dataclass
class RunResult:
    schema_version: int
    created_at: str
    connbench_version: str
    interrupted: bool
    environment: dict[str, Any]
    scenario: dict[str, Any]
    results: list[StrategyResult]
    summary: list[dict[str, Any]] = field(default_factory=list)  # per variant, see stats
    calibration: dict[str, Any] = field(default_factory=dict)  # run --calibrate: the ceilings
    limits: list[dict[str, Any]] = field(default_factory=list)  # limits.LimitVerdict, as dicts


def new_run(scenario: dict[str, Any]) -> RunResult:
    return RunResult(
        schema_version=SCHEMA_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        connbench_version=__version__,
        interrupted=False,
        environment=environment(),
        scenario=scenario,
        results=[],
    )


def environment() -> dict[str, Any]:
    """Where the numbers come from: interpreter, packages, machine. Postgres is added later."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    freq = psutil.cpu_freq()
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_freq_mhz": round(freq.current) if freq else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "packages": versions,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def to_dict(run: RunResult) -> dict[str, Any]:
    return asdict(run)


def save(run: RunResult, path: Path) -> Path:
    """Write ``run`` to ``path`` atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(to_dict(run), fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def default_path(run: RunResult, directory: Path = Path("results")) -> Path:
    stamp = run.created_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    name = str(run.scenario.get("name") or "run").replace("/", "_")
    return directory / f"{name}-{stamp}.json"


_OPTIONAL_KEYS = {"summary", "calibration", "limits"}
_TOP_KEYS = {f for f in RunResult.__dataclass_fields__} - _OPTIONAL_KEYS
_STRATEGY_KEYS = {f for f in StrategyResult.__dataclass_fields__}


def load(path: Path) -> RunResult:
    """Read a result file; raises :class:`ResultFileError` saying what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read result file ({exc.strerror})") from None
    except ValueError as exc:
        raise ResultFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: not a connbench result (expected a JSON object)")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        readable = f"{READABLE_VERSIONS[0]} to {READABLE_VERSIONS[-1]}"
        raise ResultFileError(
            f"{path}: schema_version {version!r} is not supported "
            f"(this connbench reads versions {readable})"
        )
    missing = _TOP_KEYS - data.keys()
    if missing:
        raise ResultFileError(f"{path}: missing {', '.join(sorted(missing))}")
    if not isinstance(data["results"], list):
        raise ResultFileError(f"{path}: results: expected a list")
    entries = []
    for i, entry in enumerate(data["results"]):
        if not isinstance(entry, dict) or not {"strategy", "status"} <= entry.keys():
            raise ResultFileError(f"{path}: results[{i}]: expected an object with a strategy")
        unknown = entry.keys() - _STRATEGY_KEYS
        if unknown:
            raise ResultFileError(f"{path}: results[{i}]: unknown keys {sorted(unknown)}")
        entries.append(StrategyResult(**entry))
    fields = {key: data[key] for key in _TOP_KEYS}
    fields["results"] = entries
    fields["summary"] = data.get("summary") or []
    fields["calibration"] = data.get("calibration") or {}
    fields["limits"] = data.get("limits") or []
    return RunResult(**fields)
