"""The saved result, typed: one pydantic model per object of the JSON document.

The JSON Schema (``result.schema.json`` beside this file, ``connbench schema``) is generated
from these classes, and every result is validated against them when it is saved and when it is
loaded (:mod:`connbench.model.results`, which also holds the schema's version history).

Conventions: units are in the field names; a part a run did not measure is ``null``, never an
empty object; numbers are finite numbers (no ``"100"``, no ``NaN``). Validation is strict (no
string-to-number coercion) and unknown fields are refused, so a typo or a hand edit is caught
on load.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["ok", "failed", "interrupted", "unavailable"]


class Model(BaseModel):
    # NaN and the infinities are not JSON, and no measurement of ours is one.
    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
        defer_build=True,  # built on first use: `connbench --help` does not pay for it
    )


# --- environment -------------------------------------------------------------------------------


class PostgresSettings(Model):
    """The server settings connbench records (``SHOW``); sizes keep PostgreSQL's units."""

    max_connections: int | None = None
    shared_buffers: str | None = None
    fsync: bool | None = None
    synchronous_commit: str | None = None
    wal_level: str | None = None
    max_wal_size: str | None = None
    password_encryption: str | None = None


class PostgresInfo(Model):
    backend: str
    version: str
    settings: PostgresSettings
    dsn: str = Field(description="Without its password.")


class GitCheckout(Model):
    """The git commit a directory was checked out at when the run started."""

    commit: str = Field(description="The full hash of HEAD.")
    dirty: bool | None = Field(
        default=None, description="Tracked files differ from HEAD; null: not known."
    )


class Environment(Model):
    """Where the numbers come from: interpreter, packages, machine, server."""

    python: str
    python_implementation: str
    platform: str
    machine: str
    cpu_model: str | None
    cpu_count: int | None
    cpu_freq_mhz: int | None
    memory_gib: float
    load_average_1m: float
    packages: dict[str, str | None] = Field(description="Installed version, null if missing.")
    postgres: PostgresInfo | None = Field(
        default=None, description="Null when the run stopped before the server started."
    )
    git: GitCheckout | None = Field(
        default=None, description="The working directory's checkout; null: not one."
    )


# --- scenario ------------------------------------------------------------------------------------


class FaultSpec(Model):
    kind: str
    at_s: float


class RequestRecord(Model):
    """One kind of request of a mix, as sent (header names only)."""

    name: str
    weight: int
    method: str
    path: str
    headers: list[str] = []
    body: str | None = Field(default=None, description="JSON text, placeholders unfilled.")
    writes: bool = Field(default=True, description="Its 2xx count against count_sql's rows.")


class AppRecord(Model):
    """An own app (``--app``, ``[[app]]``) or a target (``--target``), as a result records it:
    header and environment *names* only, since their values may be secrets."""

    kind: Literal["app", "target"]
    name: str
    app: str | None = Field(default=None, description="MODULE:ATTR (an own app).")
    dir: str | None = Field(default=None, description="On its import path; null: the cwd.")
    url: str | None = Field(default=None, description="scheme://host:port (a target).")
    path: str
    method: str
    body: Any = Field(default=None, description="The JSON body each request sends, if any.")
    headers: list[str] = []
    env: list[str] = []
    setup_sql: str | None = None
    count_sql: str | None = None
    ready_path: str | None = None
    python: str | None = Field(
        default=None, description="The interpreter it ran under (--app-python); null: connbench's."
    )
    requests: list[RequestRecord] | None = Field(
        default=None, description="The mix (request tables); null: the one request above."
    )
    git: GitCheckout | None = Field(
        default=None, description="Its dir's checkout (an own app whose dir is one)."
    )


class ScenarioRecord(Model):
    """The scenario as it ran (after flags), with its file's exact text."""

    name: str
    description: str = ""
    strategies: list[str]
    concurrency: list[int]
    duration_s: float
    warmup_s: float
    timeout_s: float
    pool_min: int | None
    pool_max: list[int] | None
    workers: list[int]
    rate: list[float] | None = None
    topology: list[str] = ["direct"]
    pgbouncer_pool_size: int | None = None
    repeat: int
    postgres: str = Field(description="embedded, local, docker[:IMAGE] or a redacted DSN.")
    engine: str
    locust_workers: int = 1
    expect_workers: int = 0
    locust_bind: str = "127.0.0.1"
    locust_port: int = 0
    locust_token_file: str | None = None  # where the token is, never the token
    server: dict[str, str] = {}
    fault: FaultSpec | None = None
    gate: dict[str, float] = Field(default={}, description="metric: fraction, and alpha.")
    fail_if: list[str] = []
    source: str | None = None
    source_text: str | None = None
    pool_min_effective: int
    pool_max_effective: list[int]
    app: list[AppRecord] = []
    target: list[AppRecord] = []
    base: str | None = Field(default=None, description="--base: the A/B gate's base variant.")
    head: str | None = Field(default=None, description="--head: the A/B gate's head variant.")
    sequential: bool = Field(
        default=False,
        description="--repeat auto: rounds added until the gate decided; repeat is the budget.",
    )
    slices: int = Field(
        default=1,
        description="--slices: turns a side in each round, every own app up at once (1: each "
        "measured after the other).",
    )


# --- one run of one variant ---------------------------------------------------------------------


class VariantRecord(Model):
    """One cell of the scenario's matrix; ``key`` is its identity (compare matches on it)."""

    strategy: str
    concurrency: int
    workers: int
    pool_min: int | None
    pool_max: int | None
    rate: float | None = None
    topology: str = "direct"
    kind: Literal["strategy", "app", "target"] = "strategy"
    app: AppRecord | None = Field(default=None, description="What an own app or target is.")
    key: str

    @property
    def sent(self) -> str:
        """What each request was, in a few words: ``GET /visit/``, ``POST /o/ (mix of 3)``."""
        app = self.app
        if app is None:
            return "GET /visit/"  # every built-in strategy's one request
        if not app.requests:
            return f"{app.method} {app.path}"
        first = max(app.requests, key=lambda r: r.weight)
        return f"{first.method} {first.path} (mix of {len(app.requests)})"


class Requests(Model):
    """Requests that ended inside the measured window."""

    total: int
    ok: int
    errors: int
    errors_by_kind: dict[str, int]
    timeout_s: float


class Latency(Model):
    mean: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float


class Predicted(Model):
    """The most server connections the variant can hold, and how that was worked out."""

    connections: int
    basis: str
    max_connections: int | None
    fits: bool | None


class PgBouncerStats(Model):
    """PgBouncer in front of the server: its setup, pools (peak, mean) and waits."""

    version: str | None
    mode: str
    pool_size: int
    auth: str
    samples: int
    cl_active_peak: int | None = None
    cl_active_mean: float | None = None
    cl_waiting_peak: int | None = None
    cl_waiting_mean: float | None = None
    sv_active_peak: int | None = None
    sv_active_mean: float | None = None
    sv_idle_peak: int | None = None
    sv_idle_mean: float | None = None
    sv_login_peak: int | None = None
    sv_login_mean: float | None = None
    maxwait_ms_peak: float | None = None
    transactions: int | None = None
    wait_ms_total: float | None = None
    wait_ms_per_transaction: float | None = None
    sampler_failures: int = 0


class Server(Model):
    """The app's server sessions over the window, sampled from ``pg_stat_activity``."""

    connections_peak: int | None
    connections_mean: float | None
    by_state_peak: dict[str, int] = {}
    by_state_mean: dict[str, float] = {}
    samples: int
    predicted: Predicted | None = None
    sessions_opened: int | None = None
    sessions_per_ok_response: float | None = None
    sampler_failures: int = 0
    pgbouncer: PgBouncerStats | None = None


class Integrity(Model):
    """Rows inserted against 2xx responses, over the whole run (warm-up and drain too)."""

    ok_responses: int
    rows_inserted: int | None
    requests_sent: int
    error_responses: dict[str, int]
    ok: bool | None = Field(description="Null: not checked (an own app without count_sql).")
    write_responses: int | None = Field(
        default=None,
        description="A mix: the 2xx of the kinds that write, which the rows must equal; "
        "null: every 2xx.",
    )
    lost_writes: int | None = None
    unacknowledged_writes: int | None = None


class LocustWorker(Model):
    """One Locust worker of a run (``--engine locust``) and what became of it."""

    id: str
    host: str | None = None
    pid: int | None = None
    local: bool  # started by connbench on this machine (its CPU is then known)
    requests: int  # requests it completed over the whole run
    cpu_percent: float | None = None  # % of one core over the measured window
    exit_code: int | None = None  # a local worker that died before the run ended
    lost_after_s: float | None = None  # died or went missing this long after the spawn


class RefusedWorker(Model):
    """A worker that reached the master without the run's token: nothing it sent was counted."""

    id: str  # its ZeroMQ identity, as it chose it (Locust's: host_uuid)
    why: str  # "no token", "wrong token", "forged id"
    messages: int  # messages refused
    samples: int  # samples in them, not counted


class LocustInfo(Model):
    version: str | None = None
    local_workers: int
    remote_workers: int
    bind_host: str
    workers_lost: int = 0
    workers: list[LocustWorker] = Field(default_factory=list)
    refused: list[RefusedWorker] = Field(default_factory=list)


class Generator(Model):
    engine: str
    cpu_percent: float
    # The generator's bottleneck: the default engine's event loop, Locust's busiest local
    # worker; null when unknown (Locust with remote workers only).
    loop_cpu_percent: float | None
    saturated: bool
    locust: LocustInfo | None = None


class CpuPercent(Model):
    """% of one core used by each process tree over the window; null when unknown."""

    app: float | None = None
    postgres: float | None = None
    pgbouncer: float | None = None


class Timeseries(Model):
    """Per-interval series over the measured window: value ``i`` covers ``t_s[i]`` to
    ``t_s[i] + interval_s`` seconds after the window started."""

    interval_s: float = 1.0
    t_s: list[float]
    ok: list[float]
    errors: list[float]
    p50_ms: list[float]
    p99_ms: list[float]
    connections: list[float]
    connections_by_state: dict[str, list[float]] = {}


class OpenModel(Model):
    """An open-model (``--rate``) run's own account of its schedule."""

    rate_rps: float
    offered: int
    sent_late: int
    not_sent: int
    in_flight_at_end: int
    schedule_lag_ms_p99: float | None
    latency_uncorrected_ms: Latency | None
    valid: bool
    invalid_reasons: list[str]


class FaultOutcome(Model):
    """What an injected fault did: errors after it and how long until throughput recovered."""

    kind: str
    at_s: float
    injected_at_s: float | None
    took_s: float | None
    terminated: int | None
    error: str | None
    baseline_rps: float | None
    baseline_cv: float | None
    recovered: bool | None
    recovered_after_s: float | None
    errors: int
    errors_by_kind: dict[str, int]


class Breakdown(Model):
    """Mean milliseconds per request over the window, from the app's own timing totals."""

    requests: int
    latency_mean_ms: float | None
    in_app_ms: float
    connect_ms: float
    pool_wait_ms: float
    query_ms: float
    rest_of_app_ms: float
    outside_app_ms: float | None = None
    after_response_ms: float
    connects_per_request: float
    queries_per_request: float
    pool: dict[str, float] | None = Field(
        default=None, description="psycopg_pool's get_stats() over the window."
    )


class RequestKind(Model):
    """One kind of request of a mix over the measured window."""

    name: str
    method: str
    path: str
    weight: int
    sent: int = Field(description="Over the whole run, warm-up and drain included.")
    ok: int
    errors: int
    errors_by_kind: dict[str, int]
    throughput_rps: float
    latency_ms: Latency | None


class StrategyResult(Model):
    """One run of one variant (one repeat). Parts it did not measure are null."""

    strategy: str
    status: Status
    failure: str | None = None
    variant: VariantRecord
    repeat: int = Field(default=0, description="0-based round of an interleaved --repeat run.")
    position: int | None = Field(
        default=None,
        description="0-based place in its round (the order alternates every round); null "
        "before version 8.",
    )
    requests: Requests | None = None
    throughput_rps: float = 0.0
    duration_s: float = 0.0
    latency_ms: Latency | None = None
    histogram: str | None = Field(
        default=None, description="HdrHistogram compressed encoding (base64), microseconds."
    )
    server: Server | None = None
    integrity: Integrity | None = None
    generator: Generator | None = None
    cpu_percent: CpuPercent | None = None
    timeseries: Timeseries | None = None
    open_model: OpenModel | None = None
    fault: FaultOutcome | None = None
    breakdown: Breakdown | None = None
    by_request: list[RequestKind] | None = Field(
        default=None, description="A mix of more than one kind: each kind's own figures."
    )
    warnings: list[str] = []

    @property
    def key(self) -> str:
        """The variant's identity (``pool c=32 w=1 pool=4..4``)."""
        return self.variant.key


# --- across repeats ------------------------------------------------------------------------------


class Spread(Model):
    """One metric over a variant's repeats: median, min, max, CV and the values in order."""

    median: float | None
    min: float | None
    max: float | None
    cv: float | None
    values: list[float]


class VariantSummary(Model):
    """One variant over its repeats (medians), as ``connbench show`` recomputes it."""

    key: str
    strategy: str
    variant: VariantRecord
    status: Status
    runs: int
    runs_measured: int
    throughput_rps: Spread
    latency_ms: dict[str, Spread]
    latency_uncorrected_ms: dict[str, Spread] = {}
    errors: int
    requests_ok: int
    requests_total: int = 0
    error_rate: float | None = None
    integrity_ok: bool | None = Field(description="Null: measured, never checked (no count_sql).")
    generator_saturated: bool
    valid: bool = True
    connections_peak: float | None = None
    connections_mean: float | None = None
    sessions_opened: float | None = None
    sessions_per_ok_response: float | None = None
    cpu_app_percent: float | None = None
    cpu_postgres_percent: float | None = None
    cpu_pgbouncer_percent: float | None = None
    cpu_generator_percent: float | None = None
    predicted: Predicted | None = None
    pgbouncer_cl_waiting_peak: float | None = None
    pgbouncer_maxwait_ms_peak: float | None = None
    pgbouncer_wait_ms_per_transaction: float | None = None
    pgbouncer_sv_active_peak: float | None = None
    pgbouncer_sv_idle_peak: float | None = None
    breakdown: dict[str, float | None] = {}
    failure: str | None = None
    warnings: list[str] = []


class CalibrationLevel(Model):
    """pgbench's references at one concurrency."""

    pgbench_tps: float | None
    pgbench_connect_tps: float | None


class Calibration(Model):
    """``run --calibrate``: the references measured in the same session (pgbench's top-level
    figures at the first concurrency; ``by_concurrency`` at each one the run used)."""

    concurrency: int
    duration_s: float
    generator_rps: float | None
    generator_cpu_percent: float | None
    wrk_rps: float | None
    pgbench_tps: float | None
    pgbench_connect_tps: float | None
    by_concurrency: dict[str, CalibrationLevel] | None = None
    pgbench_connect_threads: str | None = None  # "one per client": how -C was run


class LimitRecord(Model):
    """One ``--fail-if`` expression checked on one variant."""

    limit: str
    variant: str
    value: float | None
    failed: bool
    reason: str


class RunResult(Model):
    """A whole result file."""

    model_config = ConfigDict(title="connbench result")

    schema_version: int
    created_at: str = Field(description="ISO 8601, UTC, to the second.")
    connbench_version: str
    interrupted: bool
    environment: Environment
    scenario: ScenarioRecord
    results: list[StrategyResult]
    summary: list[VariantSummary] = []
    calibration: Calibration | None = None
    limits: list[LimitRecord] = []
