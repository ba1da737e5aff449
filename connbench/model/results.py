"""The result file: a versioned JSON document, validated on save and on load, written atomically.

Its shape is :mod:`connbench.model.result_types` (the JSON Schema is generated from it and
shipped as ``result.schema.json``, printed by ``connbench schema``). Older versions are
migrated on load, here, one step per version: :data:`MIGRATIONS`.

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
6. One typed model, published as a JSON Schema (``connbench schema``): parts a run did not
   measure are ``null`` instead of ``{}`` (``requests``, ``latency_ms``, ``server``,
   ``integrity``, ``generator``, ``cpu_percent``, ``timeseries``, ``open_model``, ``fault``,
   ``breakdown``, ``open_model.latency_uncorrected_ms``, ``calibration``); PostgreSQL settings
   are typed (``max_connections`` an integer, ``fsync`` a boolean, where they were strings);
   ``timeseries`` states its time base (``interval_s``, and ``t_s``: each value's offset from
   the window's start) and keeps the per-state connection series in ``connections_by_state``
   (by state name) instead of one ``connections_<state>`` key each. Unknown fields are refused.
   Versions 2 to 5 are migrated on load. ``calibration`` may add ``by_concurrency`` (pgbench's
   figures at each concurrency the run used, keyed by it) and ``pgbench_connect_threads``
   (optional: files without them read as before).
7. Own apps and targets: ``variant.kind`` (``strategy``, ``app`` or ``target``) and
   ``variant.app`` (what the app is: import string or URL, the request it was sent, its
   ``count_sql``; header and environment names only); scenario ``app`` and ``target`` lists;
   ``integrity.ok`` and the summary's ``integrity_ok`` are null when nothing was checked (an own
   app without ``count_sql``). Version 6 files read as they are.
8. Paired rounds: the order of the variants is reversed every other round (A B, B A, ...),
   and each run records its ``position`` in its round (0-based), so that ``compare --base
   --head`` can pair two variants round by round and say which ran first. Older files load
   with no position (null).
9. The measured code's commit: ``environment.git`` (``commit``, ``dirty``) when connbench ran
   inside a git checkout, and ``git`` on an own app whose ``dir`` is one (``scenario.app``),
   so results can be laid out over commits (``report --trend``). Older files load without.
10. Request mixes: ``variant.app.requests`` (each kind's name, weight, method, path, header
    names and body text, placeholders unfilled) and, per run of a mix of more than one kind,
    ``by_request`` (each kind's sent, ok, errors by kind, req/s and latency). Older files load
    with neither (null): they sent one request.
11. The A/B gate in the run and who generated the load: ``scenario.base``, ``head`` and
    ``sequential`` (``--repeat auto``), ``python`` on an own app (the
    interpreter it ran under), ``scenario.locust_token_file`` and ``generator.locust.refused``
    (Locust workers that were turned away). Older files load without (no gate in the run, no
    worker refused).
12. Rounds in turns: ``scenario.slices`` (``--slices K``: every own app of a round up at once,
    the load taking K turns a side; a run's window is then its turns' measured parts laid end
    to end, and its ``timeseries`` is on that time line). Older files load with 1 (each side
    measured after the other).
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from connbench import __version__
from connbench.model import files
from connbench.model.dsn import redact_all
from connbench.model.errors import ResultFileError
from connbench.model.result_types import (
    Environment,
    PostgresInfo,
    PostgresSettings,
    RunResult,
    ScenarioRecord,
    StrategyResult,
)

__all__ = ["RunResult", "StrategyResult", "SCHEMA_VERSION", "load", "save", "new_run"]

SCHEMA_VERSION = 12  # bump on any change a reader must know about; add its step to MIGRATIONS
SCHEMA_PATH = Path(__file__).with_name("result.schema.json")
PACKAGES = (
    "fastapi", "starlette", "uvicorn", "psycopg", "psycopg-binary", "psycopg-pool",
    "aiohttp", "httpx", "uvloop", "httptools", "pydantic", "pgserver", "locust",
    "sqlalchemy", "asyncpg", "sqlmodel",
)  # fmt: skip


def new_run(scenario: dict[str, Any]) -> RunResult:
    """An empty result for ``scenario`` (``Scenario.to_dict()``), stamped now."""
    return RunResult(
        schema_version=SCHEMA_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        connbench_version=__version__,
        interrupted=False,
        environment=environment(),
        scenario=ScenarioRecord.model_validate(scenario),
        results=[],
    )


def environment() -> Environment:
    """Where the numbers come from: interpreter, packages, machine. Postgres is added later."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    freq = psutil.cpu_freq()
    return Environment(
        python=sys.version.split()[0],
        python_implementation=platform.python_implementation(),
        platform=_platform(),
        machine=platform.machine(),
        cpu_model=_cpu_model(),
        cpu_count=os.cpu_count(),
        cpu_freq_mhz=round(freq.current) if freq else None,
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        load_average_1m=round(os.getloadavg()[0], 2),
        packages=versions,
    )


def _platform() -> str:
    """``platform.platform()``'s text (``Linux-6.1.0-x86_64-with-glibc2.36``) without the
    ``uname -p`` it runs on Linux for the processor, which it drops there anyway ("unknown"):
    that child would inherit a PGPASSWORD the user gave us, and only the apps get credentials.
    Elsewhere, ``platform.platform()`` itself."""
    if sys.platform != "linux":
        return platform.platform()
    uname = os.uname()
    libc, version = platform.libc_ver()
    parts = [uname.sysname, uname.release, uname.machine, "with", libc + version]
    text = "-".join(part.strip().replace(" ", "_") for part in parts if part)
    while "--" in text:
        text = text.replace("--", "-")
    return text.removesuffix("-with").rstrip("-")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None  # not platform.processor(): see _platform


def postgres_info(backend: str, version: str, settings: dict[str, str], dsn: str) -> PostgresInfo:
    """The server as a result records it, its ``SHOW`` strings typed."""
    return PostgresInfo(
        backend=backend,
        version=version,
        settings=PostgresSettings.model_validate(_typed_settings(settings)),
        dsn=dsn,
    )


def _typed_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """``{"max_connections": "100", "fsync": "on"}`` -> ``{..: 100, ..: True}``; a value that
    is not what its setting takes is left for validation to name."""
    out = dict(settings)
    value = out.get("max_connections")
    if isinstance(value, str) and value.strip().isdigit():
        out["max_connections"] = int(value)
    value = out.get("fsync")
    if isinstance(value, str) and value in ("on", "off"):
        out["fsync"] = value == "on"
    return out


def to_dict(run: RunResult) -> dict[str, Any]:
    return run.model_dump(mode="json")


def validated(run: RunResult, where: str = "result") -> RunResult:
    """``run`` checked again as a whole (lists appended to are not checked as they grow)."""
    try:
        return RunResult.model_validate(run.model_dump(warnings=False))
    except ValidationError as exc:
        raise ResultFileError(f"{where}: {describe(exc)}") from None


def dump(run: RunResult, where: str = "result") -> bytes:
    """The document as saved: validated (raises :class:`ResultFileError` naming the field
    that does not: a bug in connbench), then JSON with every string redacted (a DSN's
    password, in any spelling, never reaches a file people commit)."""
    document = redact_all(to_dict(validated(run, f"{where}: not saved")))
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()


def save(run: RunResult, path: Path) -> Path:
    """Validate ``run`` and write it to ``path`` atomically, only over a regular file (see
    :func:`connbench.model.files.write_atomic`). Raises :class:`ResultFileError` when it does
    not validate (nothing is written), OSError or
    :class:`~connbench.model.files.OutputRefused` when it cannot be written."""
    data = dump(run, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return files.write_atomic(path, data)


NAME_BYTES = 120  # of the scenario name in a default file name: far below any NAME_MAX


def default_path(run: RunResult, directory: Path = Path("results")) -> Path:
    stamp = run.created_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    # The name is free text: keep what is safe in a file name, and not too much of it.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", run.scenario.name or "run")
    name = name.lstrip(".-")[:NAME_BYTES] or "run"
    return directory / f"{name}-{stamp}.json"


# The largest result file read (show, compare, report): about 8 days of measured seconds in one
# result (each second of each series is a line of its own), and 30 s of parsing and checking
# on a loaded 2-core machine. Anything bigger is refused, not read.
MAX_RESULT_BYTES = 64 << 20


def load(path: Path) -> RunResult:
    """Read a result file of any readable version, migrated to this one.

    Raises :class:`ResultFileError` with one line naming what is wrong: unreadable, larger
    than :data:`MAX_RESULT_BYTES` (never read whole), not JSON, an unknown version, or the
    first field that does not validate (``summary.0.status: ...``).
    """
    try:
        # Opened without waiting: a FIFO with no writer is read as empty, not waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        with open(fd, "rb") as f:
            # A regular file by its size; a device or a pipe by a bounded read.
            too_big = os.fstat(f.fileno()).st_size > MAX_RESULT_BYTES
            raw = b"" if too_big else f.read(MAX_RESULT_BYTES + 1)
        if too_big or len(raw) > MAX_RESULT_BYTES:
            raise ResultFileError(
                f"{path}: larger than {MAX_RESULT_BYTES >> 20} MiB, connbench's bound on a "
                "result file: not read"
            )
        data = json.loads(raw)
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read result file ({exc.strerror})") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both
        raise ResultFileError(f"{path}: not valid JSON ({_one_line(str(exc))})") from None
    except RecursionError:
        raise ResultFileError(f"{path}: not a connbench result (nested too deep)") from None
    return parse(data, str(path))


def parse(data: Any, where: str) -> RunResult:
    """A decoded result document, migrated and validated (see :func:`load`)."""
    if not isinstance(data, dict):
        raise ResultFileError(f"{where}: not a connbench result (expected a JSON object)")
    data = migrate(data, where)
    try:
        return RunResult.model_validate(data)
    except ValidationError as exc:
        raise ResultFileError(f"{where}: {describe(exc)}") from None
    except RecursionError:  # nested deeper than any result: not one of ours
        raise ResultFileError(f"{where}: not a connbench result (nested too deep)") from None


# --- what a validation error says ---------------------------------------------------------------

_EXPECTED = {
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "missing": "missing",
    "extra_forbidden": "unknown field",
}


def describe(exc: ValidationError) -> str:
    """The first error as ``summary.0.throughput_rps.median: expected a number, got "abc"``."""
    error: ErrorDetails = exc.errors()[0]
    where = ".".join(_name(part) for part in error["loc"]) or "the document"
    kind = error["type"]
    if kind in ("missing", "extra_forbidden"):
        return f"{where}: {_EXPECTED[kind]}"
    expected = _EXPECTED.get(kind) or _one_line(error["msg"]).replace("Input should be", "expected")
    return f"{where}: {expected}, got {_shown(error['input'])}"


def _name(part: int | str) -> str:
    """A path element as it can stand in one line: a field named with a newline, quotes or
    control characters (a hostile file) is escaped, a very long one cut."""
    text = json.dumps(part, ensure_ascii=False)[1:-1] if isinstance(part, str) else str(part)
    return text if len(text) <= 60 else text[:57] + "..."


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- migrations: every older version, one step each, in one place ---------------------------------

Document = dict[str, Any]


def migrate(data: Document, where: str) -> Document:
    """``data`` brought to :data:`SCHEMA_VERSION`, step by step; a shape a step does not
    recognise is left alone, for validation to name."""
    version = data.get("schema_version")
    if isinstance(version, bool) or version not in (*MIGRATIONS, SCHEMA_VERSION):
        readable = f"{min(MIGRATIONS)} to {SCHEMA_VERSION}"
        raise ResultFileError(
            f"{where}: schema_version {_shown(version)} is not supported "
            f"(this connbench reads versions {readable})"
        )
    while data["schema_version"] != SCHEMA_VERSION:
        step = MIGRATIONS[data["schema_version"]]
        data = step(data)
        data["schema_version"] += 1
    return data


def _objects(value: Any) -> list[Document]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _unchanged(data: Document) -> Document:
    """Everything the next version added is optional: a file of this version reads as is."""
    return data


# The parts of a run that were ``{}`` when not measured, and are null since version 6.
_MEASURED_PARTS = (
    "requests", "latency_ms", "server", "integrity", "generator", "cpu_percent", "timeseries",
    "open_model", "fault", "breakdown",
)  # fmt: skip


def _v5_to_v6(data: Document) -> Document:
    environment = data.get("environment")
    postgres = environment.get("postgres") if isinstance(environment, dict) else None
    if isinstance(postgres, dict) and isinstance(postgres.get("settings"), dict):
        postgres["settings"] = _typed_settings(postgres["settings"])
    if data.get("calibration") == {}:
        data["calibration"] = None
    for run in _objects(data.get("results")):
        for part in _MEASURED_PARTS:
            if run.get(part) == {}:
                run[part] = None
        open_model = run.get("open_model")
        if isinstance(open_model, dict) and open_model.get("latency_uncorrected_ms") == {}:
            open_model["latency_uncorrected_ms"] = None
        series = run.get("timeseries")
        if isinstance(series, dict):
            run["timeseries"] = _timeseries_v6(series)
    return data


def _timeseries_v6(series: Document) -> Document:
    """Per-second series gain their time base; ``connections_<state>`` keys (spaces were
    underscores) move into ``connections_by_state``."""
    fixed = {"ok", "errors", "p50_ms", "p99_ms", "connections"}
    by_state = {
        key.removeprefix("connections_").replace("_", " "): values
        for key, values in series.items()
        if key.startswith("connections_") and key not in fixed
    }
    out = {key: value for key, value in series.items() if not key.startswith("connections_")}
    ok = series.get("ok")
    seconds = len(ok) if isinstance(ok, list) else 0
    return {
        "interval_s": 1.0,
        "t_s": [float(i) for i in range(seconds)],
        **out,
        "connections_by_state": by_state,
    }


# From version N to N + 1.
MIGRATIONS: dict[int, Callable[[Document], Document]] = {
    2: _unchanged,  # 3 added topologies: a variant without one went direct
    3: _unchanged,  # 4 added faults and the breakdown: absent, they stay empty
    4: _unchanged,  # 5 added limits and requests_total / error_rate: absent, none
    5: _v5_to_v6,
    6: _unchanged,  # 7 added own apps and targets: a variant without a kind is a strategy
    7: _unchanged,  # 8 added each run's position in its round: absent, null
    8: _unchanged,  # 9 added the git commit of the checkout and of own apps: absent, null
    9: _unchanged,  # 10 added request mixes: absent, one request
    10: _unchanged,  # 11 added the run's A/B gate, an app's interpreter, refused workers
    11: _unchanged,  # 12 added sliced rounds: absent, 1 (one side after the other)
}


# --- the published schema ---------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema of this version's document, generated from the model."""
    schema = RunResult.model_json_schema()
    schema["properties"]["schema_version"]["const"] = SCHEMA_VERSION
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"connbench result, schema version {SCHEMA_VERSION}: connbench schema",
        **schema,
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"
