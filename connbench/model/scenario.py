"""Scenarios: what to run, from a TOML file and/or command-line flags, validated once.

Every value is checked by the same rules whichever way it came, and an error names where it
came from (``scenarios/x.toml: concurrency`` or ``--concurrency``), what was expected and what
was given.
"""

from __future__ import annotations

import importlib.util
import itertools
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from connbench.apps import STRATEGIES
from connbench.model import appspec, defaults, faults, parsers, template
from connbench.model.appspec import AppSpec
from connbench.model.backend import parse_backend
from connbench.model.checks import (
    Limit,
    parse_alpha,
    parse_fail_on,
    parse_gate,
    parse_limit,
)
from connbench.model.choices import DIMENSIONS as DIMENSIONS  # defined once, there
from connbench.model.choices import ENGINES as ENGINES
from connbench.model.choices import TOPOLOGIES as TOPOLOGIES
from connbench.model.choices import TOPOLOGY_LABELS
from connbench.model.dsn import display, redact_toml
from connbench.model.errors import ScenarioError, first_line
from connbench.model.faults import Fault
from connbench.model.parsers import BOUNDS as BOUNDS  # where tests and callers found them
from connbench.model.parsers import MAX_SWEEP as MAX_SWEEP

# Settings a scenario may give the throwaway server (a deliberately short list: each one
# changes the story in a way the README explains).
SERVER_SETTINGS = {"max_connections", "shared_buffers", "synchronous_commit", "fsync"}

MAX_RUNS = 10_000  # variants x repeats in one scenario
MAX_FILE_BYTES = 1 << 20  # a scenario file is a few hundred bytes; /dev/zero is not one


@dataclass(frozen=True)
class Variant:
    """One cell of a scenario's matrix: what one app run is measured with."""

    strategy: str
    concurrency: int
    workers: int
    pool_min: int | None  # None for strategies that hold no pool
    pool_max: int | None
    # rate and topology are named, never positional: a topology once landed in `rate` so.
    # open model: requests/s offered; None: closed loop
    rate: float | None = field(default=None, kw_only=True)
    # direct, or through PgBouncer (see connbench.infra.pgbouncer)
    topology: str = field(default="direct", kw_only=True)
    # strategy (built in), app (--app) or target (--target)
    kind: str = field(default="strategy", kw_only=True)

    @property
    def key(self) -> str:
        """A stable, readable identity: runs, reports and compare all match variants by it."""
        return self.key_without()

    def key_without(self, ignore: Iterable[str] = ()) -> str:
        """The key less the ``ignore``d :data:`DIMENSIONS` (``*`` when nothing is left):
        what ``compare --ignore`` matches on. Every other part stays, via= and rate= too."""
        dropped = set(ignore)
        pool = None if self.pool_max is None else f"pool={self.pool_min}..{self.pool_max}"
        parts = [
            text
            for dimension, text in (
                ("strategy", self.strategy),
                ("concurrency", f"c={self.concurrency}"),
                ("workers", f"w={self.workers}"),
                ("pool", pool),
                # direct keys stay as they were before topologies
                ("topology", None if self.topology == "direct" else f"via={self.topology}"),
                ("rate", None if self.rate is None else f"rate={self.rate:g}"),
            )
            if text is not None and dimension not in dropped
        ]
        return " ".join(parts) or "*"

    def label(self, shown: Iterable[str]) -> str:
        """How a report names the variant among a run's others: the key with the strategy
        and, of the other :data:`DIMENSIONS`, only the ``shown`` ones (those that vary),
        PgBouncer's modes shortened: ``pool c=128 pool=4..10 via=pgb-txn``."""
        kept = {"strategy", *shown}
        short = replace(self, topology=TOPOLOGY_LABELS.get(self.topology, self.topology))
        return short.key_without(dimension for dimension in DIMENSIONS if dimension not in kept)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Variant | None:
        """The variant a result recorded (:meth:`to_dict`); None when it was not recorded
        whole (a hand-written or very old result: only its key can identify it)."""
        try:
            return cls(
                strategy=str(data["strategy"]),
                concurrency=int(data["concurrency"]),
                workers=int(data["workers"]),
                pool_min=None if data.get("pool_min") is None else int(data["pool_min"]),
                pool_max=None if data.get("pool_max") is None else int(data["pool_max"]),
                rate=None if data.get("rate") is None else float(data["rate"]),
                topology=str(data.get("topology") or "direct"),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"key": self.key}


@dataclass(frozen=True)
class Scenario:
    name: str = "adhoc"
    description: str = ""
    strategies: tuple[str, ...] = (defaults.STRATEGY,)
    concurrency: tuple[int, ...] = (defaults.CONCURRENCY,)
    duration_s: float = defaults.DURATION_S
    warmup_s: float = defaults.WARMUP_S
    timeout_s: float = defaults.TIMEOUT_S
    pool_min: int | None = None  # None: psycopg_pool's default (defaults.POOL_MIN)
    pool_max: tuple[int, ...] | None = None  # None: psycopg_pool's default (= pool_min)
    workers: tuple[int, ...] = (defaults.WORKERS,)
    rate: tuple[float, ...] | None = None  # open model; concurrency is then the connections
    topology: tuple[str, ...] = (defaults.TOPOLOGY,)
    pgbouncer_pool_size: int = defaults.PGBOUNCER_POOL_SIZE
    repeat: int = defaults.REPEAT  # with ``sequential``: the most rounds (--max-rounds)
    # Turns a side in each round, every own app up at once (see connbench.measure.turns).
    slices: int = defaults.SLICES
    postgres: str = defaults.POSTGRES
    engine: str = defaults.ENGINE
    # The locust engine: local worker processes, remote ones to wait for, the master's address.
    locust_workers: int = defaults.LOCUST_WORKERS
    expect_workers: int = defaults.EXPECT_WORKERS
    locust_bind: str = defaults.LOCUST_BIND
    locust_port: int = defaults.LOCUST_PORT
    # The file holding the token remote workers need (created 0600 when missing).
    locust_token_file: str | None = None
    server: Mapping[str, str] = field(default_factory=dict)
    fault: Fault | None = None  # injected into every variant's measured window
    gate: Mapping[str, float] = field(default_factory=dict)  # metric: fraction, and alpha
    fail_if: tuple[Limit, ...] = ()
    source: str | None = None  # the scenario file, if any
    source_text: str | None = None  # its exact text, recorded in the result
    app: tuple[AppSpec, ...] = ()  # own apps (--app, [[app]] tables)
    target: tuple[AppSpec, ...] = ()  # apps already running (--target)
    # An A/B gate given to the run (--base/--head): judged at the end, or after every round
    # with --repeat auto (``sequential``), which stops once every gated check is decided.
    base: str | None = None
    head: str | None = None
    sequential: bool = False

    @property
    def own_apps(self) -> tuple[AppSpec, ...]:
        return self.app + self.target

    def own_app(self, name: str) -> AppSpec | None:
        return next((spec for spec in self.own_apps if spec.name == name), None)

    @property
    def effective_pool(self) -> tuple[int, tuple[int, ...]]:
        """(min, maxes) as psycopg_pool will use them: min defaults to its own min_size, max to
        min."""
        pool_min = defaults.POOL_MIN if self.pool_min is None else self.pool_min
        return pool_min, self.pool_max or (pool_min,)

    def variants(self) -> list[Variant]:
        """The matrix, strategy-major: strategies x topology x workers x concurrency x pool_max.

        Strategies without a pool get one cell per (topology, workers, concurrency): a pool
        size would change nothing for them.
        """
        pool_min, pool_maxes = self.effective_pool
        cells = []
        for name in self.strategies:
            uses_pool = STRATEGIES[name].uses_pool
            for topology, workers, concurrency, pool_max, rate in itertools.product(
                self.topology,
                self.workers,
                self.concurrency,
                pool_maxes if uses_pool else (None,),
                self.rate or (None,),
            ):
                cells.append(
                    Variant(
                        strategy=name,
                        concurrency=concurrency,
                        workers=workers,
                        pool_min=pool_min if uses_pool else None,
                        pool_max=pool_max,
                        topology=topology,
                        rate=rate,
                    )
                )
        for spec in self.own_apps:
            # A target is not ours to start: its workers are whatever it was started with.
            counts = self.workers if spec.kind == "app" else (1,)
            for topology, n, concurrency, rate in itertools.product(
                self.topology, counts, self.concurrency, self.rate or (None,)
            ):
                cells.append(
                    Variant(
                        strategy=spec.name,
                        concurrency=concurrency,
                        workers=n,
                        pool_min=None,
                        pool_max=None,
                        rate=rate,
                        topology=topology,
                        kind=spec.kind,
                    )
                )
        return cells

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # A DSN may hold a password, in any spelling: keep it out of the result, file text too.
        if parse_backend(self.postgres).kind == "external":
            data["postgres"] = display(self.postgres)
        # Header and environment values may be secrets: names only, and none in the file
        # text, however the file spells them.
        if self.source_text:
            values = [value for spec in self.own_apps for value in spec.secrets()]
            data["source_text"] = redact_toml(self.source_text, values)
        data["strategies"] = list(self.strategies)
        data["app"] = [spec.describe() for spec in self.app]
        data["target"] = [spec.describe() for spec in self.target]
        for key in ("concurrency", "workers", "pool_max", "topology", "rate"):
            data[key] = list(data[key]) if data[key] is not None else None
        data["server"] = dict(self.server)
        data["gate"] = dict(self.gate)
        data["fail_if"] = [str(limit) for limit in self.fail_if]
        pool_min, pool_maxes = self.effective_pool
        data["pool_min_effective"], data["pool_max_effective"] = pool_min, list(pool_maxes)
        return data


# --- the scenario's own value parsers (the generic ones are connbench.model.parsers') ---


def _strategies(value: Any) -> tuple[str, ...]:
    items: list[str] = []
    raw = value if isinstance(value, list) else [value]
    for entry in raw:
        if not isinstance(entry, str):
            raise ValueError("expected strategy names")
        items.extend(part.strip() for part in entry.split(",") if part.strip())
    if not items:
        raise ValueError("expected at least one strategy")
    names: list[str] = []
    for item in items:
        if item == "all":
            names.extend(STRATEGIES)
        elif item in STRATEGIES:
            names.append(item)
        else:
            known = ", ".join(STRATEGIES)
            raise parsers.Complete(f"unknown strategy {item!r} (known: {known}, all)")
    return tuple(dict.fromkeys(names))  # keep order, drop repeats


def _backend(value: Any) -> str:
    text = parsers.text(value)
    parse_backend(text)  # raises BadInput with the accepted forms
    return text


def _engine(value: Any) -> str:
    if value not in ENGINES:
        raise ValueError(f"expected one of {', '.join(ENGINES)}")
    return str(value)


def _topology(value: Any) -> str:
    if value not in TOPOLOGIES:
        raise ValueError(f"expected one of {', '.join(TOPOLOGIES)}")
    return str(value)


def _server(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a table of server settings")
    out: dict[str, str] = {}
    for key, setting in value.items():
        if key not in SERVER_SETTINGS:
            known = ", ".join(sorted(SERVER_SETTINGS))
            raise parsers.Complete(f"unknown server setting {key!r} (known: {known})")
        if key == "max_connections":
            try:
                number = parsers.positive_int(setting)
                parsers.check_bound(number, key)
            except ValueError as exc:
                raise parsers.Complete(f"{key}: {exc}, got {parsers.shown(setting)}") from None
            out[key] = str(number)
        elif isinstance(setting, bool):
            out[key] = "on" if setting else "off"
        elif isinstance(setting, int | float | str) and parsers.printable(str(setting)):
            out[key] = str(setting)
        else:
            raise parsers.Complete(
                f"{key}: expected a value such as 128MB or off, got {parsers.shown(setting)}"
            )
    return out


def _fail_if(value: Any) -> tuple[Limit, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) for item in items):
        raise ValueError("expected expressions such as 'p99_ms>50'")
    try:
        return tuple(dict.fromkeys(parse_limit(item) for item in items))
    except ValueError as exc:
        raise parsers.Complete(str(exc)) from None


def _app_pythons(value: Any) -> tuple[tuple[str, str], ...]:
    items = value if isinstance(value, list) else [value]
    try:
        return tuple(appspec.parse_app_python(item) for item in items)
    except ValueError as exc:
        raise parsers.Complete(str(exc)) from None


def _repeat(value: Any) -> int | str:
    """A number of rounds, or ``auto``: rounds until the A/B gate decides (--max-rounds)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return int(parsers.bounded(parsers.positive_int, "repeat")(value))
    except parsers.Complete:
        raise
    except ValueError as exc:
        if "at most" in str(exc):
            raise
        raise ValueError(f"{exc}, or auto (rounds until the A/B gate decides)") from None


def _fail_on(value: Any) -> tuple[tuple[str, float], ...]:
    items = value if isinstance(value, list) else [value]
    try:
        return tuple(parse_fail_on(str(item)) for item in items)
    except ValueError as exc:
        raise parsers.Complete(f"{exc}, got {parsers.shown(value)}") from None


def select_variant(keys: Sequence[str], name: str, flag: str) -> str:
    """The key ``name`` means: a whole key, or words of it that only one key has (``head``,
    ``connect``, ``pool=1..1``). Raises ValueError saying which keys there are otherwise."""
    if name in keys:
        return name
    wanted = set(name.split())
    found = [k for k in keys if wanted and wanted <= set(k.split())]
    if len(found) == 1:
        return found[0]
    if found:
        choices = "; ".join(repr(k) for k in found)
        raise ValueError(
            f"{flag} {name!r} matches several variants ({choices}): give more of a key"
        )
    known = "; ".join(repr(k) for k in keys) or "none"
    raise ValueError(f"{flag} {name!r}: no such variant in the result (variants: {known})")


def _own_apps(parse_flag: Callable[[Any], AppSpec]) -> Callable[[Any], tuple[AppSpec, ...]]:
    """``[[app]]`` tables (a file) or ``NAME=...`` strings (repeatable flags)."""

    def parse(value: Any) -> tuple[AppSpec, ...]:
        items = value if isinstance(value, list) else [value]
        try:
            specs = tuple(
                appspec.parse_table(item) if isinstance(item, Mapping) else parse_flag(item)
                for item in items
            )
        except ValueError as exc:
            raise parsers.Complete(str(exc)) from None
        names = [spec.name for spec in specs]
        for name in names:
            if names.count(name) > 1:
                raise parsers.Complete(f"app name {name!r} given twice")
        return specs

    return parse


PARSERS: dict[str, Callable[[Any], Any]] = {
    "name": parsers.text,
    "description": parsers.text,
    "strategies": _strategies,
    "concurrency": parsers.list_of(parsers.bounded(parsers.positive_int, "concurrency")),
    "duration_s": parsers.bounded(parsers.seconds(allow_zero=False), "duration_s"),
    "warmup_s": parsers.bounded(parsers.seconds(allow_zero=True), "warmup_s"),
    "timeout_s": parsers.bounded(parsers.seconds(allow_zero=False), "timeout_s"),
    "pool_min": parsers.bounded(parsers.non_negative_int, "pool_min"),
    "pool_max": parsers.list_of(parsers.bounded(parsers.positive_int, "pool_max")),
    "workers": parsers.list_of(parsers.bounded(parsers.positive_int, "workers")),
    "topology": parsers.list_of(_topology),
    "pgbouncer_pool_size": parsers.bounded(parsers.positive_int, "pgbouncer_pool_size"),
    "repeat": _repeat,
    "max_rounds": parsers.bounded(parsers.positive_int, "repeat"),
    "slices": parsers.bounded(parsers.positive_int, "slices"),
    "base": parsers.text,
    "head": parsers.text,
    "fail_on": _fail_on,
    "alpha": parse_alpha,
    "rate": parsers.list_of(parsers.bounded(parsers.rate, "rate")),
    "postgres": _backend,
    "engine": _engine,
    "locust_workers": parsers.bounded(parsers.non_negative_int, "locust_workers"),
    "expect_workers": parsers.bounded(parsers.non_negative_int, "expect_workers"),
    "locust_bind": parsers.text,
    "locust_port": parsers.port,
    "locust_token_file": parsers.text,
    "server": _server,
    "fault": faults.parse,
    "gate": parse_gate,
    "fail_if": _fail_if,
    "app": _own_apps(appspec.parse_app),
    "target": _own_apps(appspec.parse_target),
    "app_python": _app_pythons,
}


def _parse_all(values: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        parser = PARSERS.get(key)
        if parser is None:
            known = ", ".join(PARSERS)
            shown = len(key) <= parsers.MAX_SHOWN and key.isprintable()
            name = key if shown else parsers.shown(key)
            raise ScenarioError(f"{where(name)}: unknown key (known: {known})")
        try:
            out[key] = parser(value)
        except parsers.Complete as exc:
            raise ScenarioError(f"{where(key)}: {exc}") from None
        except (ValueError, TypeError) as exc:  # TypeError: a shape no parser expects
            raise ScenarioError(f"{where(key)}: {exc}, got {parsers.shown(value)}") from None
    return out


_FLAGS = {
    "server": "--max-connections",  # the one server setting with a flag
    "strategies": "--strategy",
    "duration_s": "--duration",
    "warmup_s": "--warmup",
    "timeout_s": "--timeout",
    "headers": "--header",
}


def flag_name(key: str) -> str:
    """The command-line flag for a scenario key (``duration_s`` -> ``--duration``)."""
    return _FLAGS.get(key, "--" + key.replace("_", "-"))


def load_file(path: Path) -> dict[str, Any]:
    """Read and validate a scenario file; raises :class:`ScenarioError` naming file and key."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes: not a scenario file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
            "not a scenario file"
        ) from None
    try:
        data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or int()'s digit limit inside tomllib
        raise ScenarioError(f"{path}: not valid TOML ({first_line(exc)[:200]})") from None
    except RecursionError:
        raise ScenarioError(f"{path}: not valid TOML (nested too deeply)") from None
    values = _parse_all(data, lambda key: f"{path}: {key}")
    values.setdefault("name", path.stem)
    values["source"] = str(path)
    values["source_text"] = text
    return values


def build(path: Path | None, overrides: Mapping[str, Any]) -> Scenario:
    """The scenario from ``path`` (if any) with command-line ``overrides`` (None = not given)."""
    values = load_file(path) if path is not None else {}
    given = {key: value for key, value in overrides.items() if value is not None}
    request = {key: given.pop(key) for key in appspec.REQUEST_FIELDS if key in given}
    parsed = _parse_all(given, flag_name)
    if "server" in parsed:  # flags add to the file's server settings, key by key
        parsed["server"] = {**values.get("server", {}), **parsed["server"]}
    values.update(parsed)
    _own_apps_given(values, request, explicit_strategies="strategies" in values)
    _ab_given(values)
    scenario = Scenario(**values)
    pool_min, pool_maxes = scenario.effective_pool
    if min(pool_maxes) < pool_min:
        raise ScenarioError(f"pool_max ({min(pool_maxes)}) must be >= pool_min ({pool_min})")
    if min(pool_maxes) == 0:
        # psycopg_pool: "if min_size is 0 max_size must be greater than 0".
        raise ScenarioError("pool_min 0 needs a pool_max of at least 1 (e.g. --pool-max 4)")
    runs = len(scenario.variants()) * scenario.repeat
    if runs > MAX_RUNS:
        raise ScenarioError(
            f"{runs:,} runs (variants x repeat): at most {MAX_RUNS:,} (connbench's bound)"
        )
    if scenario.rate and scenario.engine not in ("httptools", "locust"):
        raise ScenarioError("--rate (the open model) needs --engine httptools or locust")
    _check_locust(scenario)
    if scenario.timeout_s < 0.001:
        raise ScenarioError("timeout_s must be at least 1 ms")
    if scenario.fault is not None:
        from_flag = given.get("fault") is not None
        _check_fault(scenario, flag_name("fault") if from_flag else f"{path}: fault")
    _check_ab(scenario)
    _check_slices(scenario)
    return scenario


def _check_slices(scenario: Scenario) -> None:
    """--slices K > 1 takes turns between own apps that are up at once: each must have a
    database of its own (its sessions and rows are counted there), one closed-loop load of
    connbench's engine, straight to PostgreSQL, and turns long enough to measure."""
    if scenario.slices == 1:
        return
    flag = "--slices"
    if scenario.strategies or scenario.target or len(scenario.app) < 2:
        raise ScenarioError(
            f"{flag}: takes turns between two or more --app and nothing else (a built-in "
            "strategy's or a --target's sessions could not be told apart from the other "
            "side's on a shared database)"
        )
    if scenario.rate or scenario.engine != "httptools":
        raise ScenarioError(f"{flag}: needs the closed loop of --engine httptools (no --rate)")
    if any(topology != "direct" for topology in scenario.topology):
        raise ScenarioError(f"{flag}: needs --topology direct")
    turn_s = scenario.duration_s / scenario.slices
    if turn_s < defaults.MIN_TURN_S * (1 - 1e-9):  # 0.6 s in 6 turns is 0.1 s each
        raise ScenarioError(
            f"{flag} {scenario.slices}: turns of {turn_s * 1000:.0f} ms; at least "
            f"{defaults.MIN_TURN_S * 1000:.0f} ms each (a longer --duration, or fewer slices)"
        )


def _ab_given(values: dict[str, Any]) -> None:
    """Fold --fail-on and --alpha into the gate; --repeat auto into ``sequential`` with
    ``repeat`` its budget of rounds."""
    gate = dict(values.get("gate", {}))
    gate.update(values.pop("fail_on", ()))
    if "alpha" in values:
        gate["alpha"] = values.pop("alpha")
    values["gate"] = gate
    max_rounds = values.pop("max_rounds", None)
    if values.get("repeat") == "auto":
        values["sequential"] = True
        values["repeat"] = defaults.MAX_ROUNDS if max_rounds is None else max_rounds
    elif max_rounds is not None:
        raise ScenarioError("--max-rounds: goes with --repeat auto (rounds until decided)")


def _check_ab(scenario: Scenario) -> None:
    """--base/--head name two variants (and come together); --repeat auto needs them and a
    threshold (its budget is checked by the runner, which knows the statistics)."""
    if (scenario.base is None) != (scenario.head is None):
        raise ScenarioError("--base and --head go together: name both variants of the A/B run")
    thresholds = [k for k in scenario.gate if k != "alpha"]
    if scenario.sequential and (scenario.base is None or not thresholds):
        raise ScenarioError(
            "--repeat auto: needs the gate it runs until: --base NAME --head NAME and at least "
            "one --fail-on METRIC:PERCENT"
        )
    if scenario.base is None or scenario.head is None:
        return
    keys = [v.key for v in scenario.variants()]
    try:
        base = select_variant(keys, scenario.base, "--base")
        head = select_variant(keys, scenario.head, "--head")
    except ValueError as exc:
        raise ScenarioError(str(exc).replace("in the result", "in this run")) from None
    if base == head:
        raise ScenarioError(f"--base and --head are the same variant ({base!r})")


def _own_apps_given(
    values: dict[str, Any], request: Mapping[str, Any], explicit_strategies: bool
) -> None:
    """Apply the request flags to every own app; check names; no default strategy beside them."""
    for key in ("app", "target"):
        try:
            values[key] = tuple(appspec.with_request(s, request) for s in values.get(key, ()))
        except ValueError as exc:
            key, _, reason = str(exc).partition(": ")
            raise ScenarioError(f"{flag_name(key)}: {reason}") from None
    pythons = values.pop("app_python", ())
    apps = {spec.name: spec for spec in values.get("app", ())}
    for name, python in pythons:
        if name not in apps:
            known = ", ".join(apps) or "none"
            raise ScenarioError(f"--app-python {name}: no --app of that name (apps: {known})")
        apps[name] = replace(apps[name], python=python)
    if pythons:
        values["app"] = tuple(apps.values())
    specs = (*values.get("app", ()), *values.get("target", ()))
    for spec in specs:
        spec.remember_secrets()  # masked in every output from here on
        if spec.dir is not None and not Path(spec.dir).is_dir():
            raise ScenarioError(
                f"app {spec.name}: directory {spec.dir!r} does not exist (the DIR its module is "
                "imported from, relative to the working directory)"
            )
    if request and not specs:
        raise ScenarioError(f"{flag_name(next(iter(request)))}: applies to --app and --target only")
    names = [spec.name for spec in specs]
    for name in names:
        if name in STRATEGIES or name == "all" or names.count(name) > 1:
            what = "a strategy's name" if name in STRATEGIES or name == "all" else "given twice"
            raise ScenarioError(f"--app/--target: app name {name!r} is {what}")
    if specs and not explicit_strategies:
        values["strategies"] = ()  # --app alone runs the app alone
    if specs and values.get("fault") is not None:
        # Faults find the app's sessions by connbench's application_name, which own apps lack.
        raise ScenarioError("--fault: not supported with --app or --target")
    https = [s.name for s in specs if (s.url or "").startswith("https:")]
    if https and values.get("engine", defaults.ENGINE) == "httptools":
        raise ScenarioError(
            f"--target {https[0]}: an https:// URL needs --engine aiohttp or httpx "
            "(httptools speaks plain HTTP)"
        )
    backend = parse_backend(values.get("postgres", defaults.POSTGRES))
    if values.get("target") and backend.kind != "external":
        raise ScenarioError(
            "--target: needs --postgres DSN (the database that app uses) for the server-side "
            "figures"
        )


def _check_fault(scenario: Scenario, where: str) -> None:
    """A fault must land inside the measured window, after a baseline, on a server it fits."""
    fault = scenario.fault
    assert fault is not None
    if not faults.MIN_BASELINE_S <= fault.at_s < scenario.duration_s:
        raise ScenarioError(
            f"{where}: {fault} is not inside the measured window: expected a second from "
            f"{faults.MIN_BASELINE_S:g} (a baseline to recover to) to below the duration "
            f"({scenario.duration_s:g} s)"
        )
    backend = parse_backend(scenario.postgres)
    if fault.kind == "restart" and backend.kind not in ("embedded", "local"):
        raise ScenarioError(
            f"{where}: restart is only supported on the servers connbench starts (embedded, "
            f"local), not on {backend.label}"
        )


LOCUST_INSTALL_HINT = "--engine locust needs Locust: pip install 'connbench[locust]'"


def _check_locust(scenario: Scenario) -> None:
    if scenario.engine != "locust":
        return
    for spec in scenario.own_apps:
        templated = any(
            template.has_placeholder(text)
            for r in spec.mix
            for text in (r.path, r.body or "", *(v for _, v in r.headers))
        )
        if spec.requests or templated:
            raise ScenarioError(
                f"--engine locust: app {spec.name} sends a request mix or templated values; "
                "use --engine httptools, aiohttp or httpx"
            )
    if importlib.util.find_spec("locust") is None:
        raise ScenarioError(LOCUST_INSTALL_HINT)
    if scenario.locust_workers + scenario.expect_workers == 0:
        raise ScenarioError("--engine locust needs --locust-workers or --expect-workers above 0")
    if scenario.expect_workers and not scenario.locust_token_file:
        raise ScenarioError(
            "--expect-workers needs --locust-token-file FILE: the token remote workers must "
            "hold to be counted (created, readable by you alone, when FILE does not exist)"
        )
