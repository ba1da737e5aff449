"""Run a scenario: one throwaway Postgres, then every variant in interleaved rounds.

Ctrl-C is handled here.

Interrupts, in one place:

- outside the measurement (starting Postgres or an app): the first Ctrl-C (or SIGTERM) unwinds
  every ``with`` block in reverse order, stopping what was started; further ones are ignored
  while that cleanup runs.
- during the measurement: the first stops the load generator gracefully (no new requests,
  those in flight awaited), so the strategy's partial numbers are kept; a second abandons it.

Either way what was measured is saved with ``"interrupted": true`` and the run exits 130.

Children that die, in one place too: a watchdog (:mod:`connbench.measure.watchdog`) polls the
app, PostgreSQL's postmaster and PgBouncer while a variant is measured. The first death stops
the load; the variant is saved as failed with the cause (which child, its exit status, when)
and the numbers measured until then; so is one whose app exited unseen, in the drain. A server
connbench started is started again for the next variant (PgBouncer and the app are per variant
anyway); an external server cannot be, so the run stops there (:class:`ServerLost`), and what
was measured is saved either way.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import psycopg
from psycopg.conninfo import conninfo_to_dict

from connbench.analyse import capacity, limits, paired, stats
from connbench.apps import STRATEGIES
from connbench.infra import (
    appserver,
    forkserver,
    gitinfo,
    ledger,
    pgbouncer,
    postgres,
    procs,
    tempdirs,
    userapp,
)
from connbench.measure import calibrate, load, measuring, sampler, turns, watchdog
from connbench.measure.load import Progress
from connbench.model import files, results
from connbench.model.appspec import AppSpec
from connbench.model.dsn import redact
from connbench.model.errors import (
    BadInput,
    ConnbenchError,
    MissingDependency,
    PostgresError,
    ProcessError,
    first_line,
)
from connbench.model.result_types import (
    Calibration,
    GitCheckout,
    LimitRecord,
    Status,
    VariantRecord,
)
from connbench.model.results import RunResult, StrategyResult
from connbench.model.scenario import Scenario, Variant
from connbench.model.sessions import CONTROL_APP

CALIBRATE_MAX_S = 5.0


class ServerLost(PostgresError):
    """PostgreSQL went away and connbench cannot start it again (an external server)."""


class CheckFailed(ConnbenchError):
    """An own app or target failed its check: nothing was measured. Exit code 1."""


class Notes(Protocol):
    """Where the runner says what it does (and what went wrong) beside its results."""

    def note(self, message: str) -> None: ...
    def warn(self, message: str) -> None: ...


class Reporter(Notes, Protocol):
    def strategy_started(self, label: str, index: int, count: int, total_s: float) -> None: ...
    def progress(self, p: Progress) -> None: ...
    def strategy_finished(self, result: StrategyResult) -> None: ...


class Interrupts:
    """SIGINT/SIGTERM policy for a run (see the module docstring)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, note: Callable[[str], None]) -> None:
        self.count = 0
        self._note = note
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._sync_handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _sync_handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            raise KeyboardInterrupt
        self._note("interrupted: still cleaning up, please wait")

    def attach(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        task = asyncio.current_task()

        def on_signal() -> None:
            self.count += 1
            if self.count == 1:
                self._note(
                    "interrupted: finishing the requests in flight (Ctrl-C again to abandon)"
                )
                stop.set()
            elif self.count == 2 and task is not None:
                task.cancel()
            else:
                self._note("interrupted: still cleaning up, please wait")

        for sig in self.SIGNALS:
            loop.add_signal_handler(sig, on_signal)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in self.SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, self._sync_handler)


@dataclass(frozen=True)
class _Run:
    """What stays the same for every variant of a run."""

    pg: postgres.Postgres
    scenario: Scenario
    interrupts: Interrupts
    tmp: Path
    on_progress: Callable[[Progress], None]
    # Where the built-in strategies' apps are forked from (None: each starts cold).
    forks: forkserver.ForkServer | None = None
    # Targets whose setup_sql has run (their database outlives the variants: once is enough).
    set_up: set[str] = field(default_factory=set)
    # What the check before measuring could not drop, by app: said with its first variant.
    left_by_check: dict[str, list[str]] = field(default_factory=dict)


def execute(
    scenario: Scenario,
    reporter: Reporter,
    output: Path | None,
    calibrate_first: bool = False,
    beside: Callable[[Path, RunResult], None] | None = None,
) -> tuple[RunResult, Path | None]:
    """Run every strategy of ``scenario``, save the result, return it and where it went.

    Where it went: ``output``, or by default ``results/NAME-TIME.json``, never replacing a
    file (``NAME-TIME-2.json`` when another run took that name); a fallback directory when
    that cannot be written at the end (:func:`connbench.model.files.is_fallback` says so, and
    the reporter was told why); None when nothing was measured and ``output`` already existed
    (it is left as it was). Raises :class:`BadInput` before anything starts when ``output``
    is no place for a result, and the domain errors of :mod:`connbench.infra.postgres` when the
    server cannot be had; an app that fails is recorded as failed and the run goes on.
    ``beside`` writes what goes beside the result (its HTML report), under the same lock on
    the directory, so that the two files are one run's even when runs share ``output``.
    """
    run = results.new_run(scenario.to_dict())
    app_commits = _record_commits(run)
    path = _destination(output or results.default_path(run), scenario.source)
    variants = scenario.variants()  # once: the plan, the warnings and the predictions
    # An own app's pattern is its own: nothing to predict.
    predictions = {v: _predict(v, scenario) for v in variants if v.kind == "strategy"}
    if scenario.sequential:
        paired.check_budget(scenario.repeat, float(scenario.gate.get("alpha", 0.05)))
    for own in scenario.app:
        prefix = userapp.check_interpreter(own)
        if prefix is not None:
            reporter.note(f"app {own.name}: {own.python} (sys.prefix {prefix})")
    procs.ensure_open_files(max(scenario.concurrency))
    for stale in tempdirs.remove_stale():
        reporter.note(f"removed {stale}, left by a connbench that was killed")
    try:
        with Interrupts(reporter.note) as interrupts, ExitStack() as stack:
            tmp = tempdirs.make("run")
            stack.callback(tempdirs.remove, tmp)
            forks = _fork_server(stack, variants, tmp, reporter)
            try:
                with _server(scenario, run, reporter) as pg:
                    _warn_before(scenario, predictions, pg, reporter)
                    context = _Run(pg, scenario, interrupts, tmp, reporter.progress, forks)
                    failures = check_apps(context, reporter)  # before any minute is spent
                    if failures:
                        raise CheckFailed(_check_failed(failures))
                    if calibrate_first:
                        run.calibration = _calibrate(pg, scenario, reporter)
                    steps = _Steps(run, variants, predictions, app_commits, reporter)
                    (_turn_rounds if scenario.slices > 1 else _one_by_one)(context, steps)
            except (KeyboardInterrupt, asyncio.CancelledError):
                run.interrupted = True
            except psycopg.Error as exc:  # the server refused or went away between the steps
                raise ServerLost(
                    f"PostgreSQL: {first_line(exc)}; the runs measured before are saved in {path}"
                ) from None
            except ServerLost as exc:
                raise ServerLost(f"{exc}; the runs measured before are saved in {path}") from None
    finally:
        run.summary = stats.aggregate(run.results)
        run.limits = [LimitRecord(**asdict(v)) for v in limits.check(scenario.fail_if, run.summary)]
        saved = _save(run, path, reporter, new_name=output is None, beside=beside)
    return run, saved


@dataclass(frozen=True)
class _Steps:
    """What the rounds of a run add to and tell: the result, and what each variant needs."""

    run: RunResult
    variants: list[Variant]
    predictions: dict[Variant, capacity.Prediction]  # the built-in strategies'
    app_commits: dict[str, GitCheckout]
    reporter: Reporter


def _one_by_one(context: _Run, steps: _Steps) -> None:
    """Every variant of every round in turn (:func:`round_plan`), each app started for its
    own window; with ``--repeat auto``, until the gate decides. Raises KeyboardInterrupt
    after the variant Ctrl-C cut short."""
    scenario, variants, reporter = context.scenario, steps.variants, steps.reporter
    plan = round_plan(variants, scenario.repeat)
    for index, (repeat, position, variant) in enumerate(plan, 1):
        _ensure_server(context.pg, reporter)
        total_s = scenario.warmup_s + scenario.duration_s
        reporter.strategy_started(_label(variant, repeat, scenario), index, len(plan), total_s)
        subject = _subject(context, variant, steps.predictions)
        result = _run_one(context, variant, repeat, subject)
        _record(steps, result, subject, position)
        if context.interrupts.count:
            raise KeyboardInterrupt
        if scenario.sequential and position == len(variants) - 1:
            if _gate_decided(steps.run, reporter):
                return


def _turn_rounds(context: _Run, steps: _Steps) -> None:
    """The rounds of a sliced run (``--slices``), each one :func:`_run_turns`, the order
    reversed every other round as :func:`round_plan` does; with ``--repeat auto``, until the
    gate decides. Raises KeyboardInterrupt after the round Ctrl-C cut short."""
    scenario, variants, reporter = context.scenario, steps.variants, steps.reporter
    for repeat in range(scenario.repeat):
        _ensure_server(context.pg, reporter)
        order = variants if repeat % 2 == 0 else variants[::-1]
        label = " / ".join(v.key for v in order) + " in turns"
        if scenario.repeat > 1:
            label += f" #{repeat + 1}"
        each_s = scenario.duration_s + scenario.slices * turns.REWARM_S
        total_s = scenario.warmup_s + len(order) * each_s
        reporter.strategy_started(label, repeat + 1, scenario.repeat, total_s)
        subjects: list[Subject] = [_UserApp(context, v, _own(scenario, v)) for v in order]
        outcomes = _run_turns(context, order, repeat, subjects)
        for position, (variant, subject, result) in enumerate(
            zip(order, subjects, outcomes, strict=True)
        ):
            # Told one by one once the round is over (no progress of its own: total 0).
            reporter.strategy_started(_label(variant, repeat, scenario), position, len(order), 0)
            _record(steps, result, subject, position)
        if context.interrupts.count:
            raise KeyboardInterrupt
        if scenario.sequential and _gate_decided(steps.run, reporter):
            return


def _label(variant: Variant, repeat: int, scenario: Scenario) -> str:
    """What every progress line of a variant's window names it by."""
    return variant.key + (f" #{repeat + 1}" if scenario.repeat > 1 else "")


def _record(steps: _Steps, result: StrategyResult, subject: Subject, position: int) -> None:
    if result.variant.app is not None:
        result.variant.app.git = steps.app_commits.get(subject.name)
    result.position = position
    steps.run.results.append(result)
    steps.reporter.strategy_finished(result)


def _own(scenario: Scenario, variant: Variant) -> AppSpec:
    spec = scenario.own_app(variant.strategy)
    assert spec is not None, "a sliced run's variants are own apps (scenario checks)"
    return spec


def _fork_server(
    stack: ExitStack, variants: list[Variant], tmp: Path, notes: Notes
) -> forkserver.ForkServer | None:
    """The fork server the built-in strategies' apps of one worker are forked from (see
    :mod:`connbench.infra.forkserver`), stopped by ``stack``: the one the command line started
    before it imported the runner, or one started now, before PostgreSQL, so that its imports
    overlap the server's start. None when no app would be forked: own apps and several
    workers start cold, as they really run."""
    apps = forkserver.apps_of(variants)
    if not apps:
        return None
    early = forkserver.take_early(apps, notes.warn, stack)  # the command line's, if it did
    if early is not None:
        return early
    return stack.enter_context(forkserver.started(tmp / "forkserver.log", notes.warn, apps))


def _gate_decided(run: RunResult, reporter: Reporter) -> bool:
    """After a round of ``--repeat auto``: judge the A/B gate on the rounds so far (with the
    confidence sequence, valid however early it stops) and say whether it has decided."""
    if run.results[-1].repeat < 1:  # one round: nothing to pair yet
        return False
    try:
        comparison = paired.judge_run(run)
    except BadInput as exc:  # not judgeable yet (e.g. one round): go on
        reporter.note(f"A/B gate after round {run.results[-1].repeat + 1}: {exc}")
        return False
    if comparison is None:
        return False
    reporter.note(paired.round_line(comparison))
    return paired.decided(comparison)


def check(scenario: Scenario, reporter: Reporter) -> None:
    """``run --check``: start PostgreSQL, then every own app and target, and send each one
    request of each kind of its mix; measure nothing, save nothing. Raises
    :class:`CheckFailed` naming every one that failed (and where its log is kept)."""
    with Interrupts(reporter.note) as interrupts, ExitStack() as stack:
        tmp = tempdirs.make("check")
        stack.callback(tempdirs.remove, tmp)
        with _server(scenario, results.new_run(scenario.to_dict()), reporter) as pg:
            context = _Run(pg, scenario, interrupts, tmp, reporter.progress)
            failures = check_apps(context, reporter)
            for left in context.left_by_check.values():  # no variant follows to carry it
                for line in _not_dropped(left, pg.shared):
                    reporter.warn(line)
    if failures:
        raise CheckFailed(_check_failed(failures))


def _check_failed(failures: list[str]) -> str:
    what = "1 app" if len(failures) == 1 else f"{len(failures)} apps"
    return f"{what} failed the check, nothing was measured:\n" + "\n".join(failures)


def check_apps(run: _Run, reporter: Reporter) -> list[str]:
    """Start each own app (one worker) and target, send it one request of each kind and run
    its ``setup_sql`` and ``count_sql``, before any variant is measured: a mistake then costs
    seconds, not the built-in strategies' minutes first. Each that passes is said in a line;
    the failures are returned (the first line names the app and the request, then the
    response's first lines and the app's log tail; where its log is kept)."""
    failures = []
    for spec in run.scenario.own_apps:
        reporter.note(f"checking {spec.kind} {spec.name}: {spec.sent} ...")
        try:
            answers = _check_one(run, spec)
        except ProcessError as exc:
            failures.append(redact(str(exc)))
        else:
            reporter.note(f"checked {spec.kind} {spec.name}: {', '.join(answers)}")
    return failures


def _check_one(run: _Run, spec: AppSpec) -> list[str]:
    target = spec.kind == "target"
    log_path = run.tmp / f"check-{spec.name}.log"
    with ExitStack() as stack:
        db, control = _app_database(stack, run, spec)
        try:
            if target:
                answers = userapp.probe(spec, spec.url or "")
            else:
                with userapp.start(spec, db, 1, log_path) as served:
                    answers = list(served.answers)
        except ProcessError as exc:  # the app has stopped: its log is whole
            details = userapp.failure_details(None if target else log_path)
            raise type(exc)(f"{exc}{details}") from None
        userapp.wait_until_idle(control, db.name)
        userapp.count(spec, control)
    if db.problems:  # filled as the stack closed: said with the app's first variant
        run.left_by_check[spec.name] = list(db.problems)
    return answers


def _app_bouncer(
    run: _Run, variant: Variant, db: userapp.AppDatabase
) -> AbstractContextManager[pgbouncer.PgBouncer]:
    """A PgBouncer for an own app's variant: its role (SCRAM secret in the auth file) on its
    database, in the variant's pool mode."""
    params = conninfo_to_dict(db.dsn)
    login = pgbouncer.Login(
        user=str(params.get("user") or db.name),
        password=str(params.get("password") or ""),
        secret=db.secret or "",
        dbname=db.name,
    )
    return pgbouncer.start(
        run.pg,
        pgbouncer.POOL_MODES[variant.topology],
        pool_size=run.scenario.pgbouncer_pool_size,
        max_client_conn=max(100, variant.concurrency * variant.workers + capacity.CLIENT_HEADROOM),
        login=login,
    )


def _app_database(
    stack: ExitStack, run: _Run, spec: AppSpec
) -> tuple[userapp.AppDatabase, psycopg.Connection[Any]]:
    """An own app's database (a target's: the one it uses) and connbench's connection to it,
    both closed by ``stack``; ``setup_sql`` run there (on a target's, once per run)."""
    target = spec.kind == "target"
    if target:
        db = userapp.target_database(run.pg)
    else:
        db = stack.enter_context(userapp.own_database(run.pg, spec))
    control = stack.enter_context(userapp.connect_as_app(db))
    if spec.setup_sql and not (target and spec.name in run.set_up):
        userapp.run_sql(spec, control, "setup_sql", spec.setup_sql)
        if target:
            run.set_up.add(spec.name)
    return db, control


def _destination(path: Path, scenario_file: str | None) -> Path:
    """``path`` checked (and resolved) before anything starts: a run whose result has nowhere
    to go is refused, not run; so is one that would overwrite its own scenario file."""
    try:
        checked = files.check_destination(path)
    except files.OutputRefused as exc:
        raise BadInput(f"--output: {exc}") from None
    if scenario_file and checked.resolve() == Path(scenario_file).resolve():
        raise BadInput(f"--output: {path} is the scenario file; the result would replace it")
    return checked


def measured(run: RunResult) -> bool:
    """Whether any variant served a request: a result without one replaces no file."""
    return any(r.requests is not None and r.requests.total for r in run.results)


def _save(
    run: RunResult,
    path: Path,
    reporter: Reporter,
    *,
    new_name: bool = False,
    beside: Callable[[Path, RunResult], None] | None = None,
) -> Path | None:
    """Save ``run`` at ``path`` (with ``new_name``, at a name no other file has), or
    somewhere: what was measured is never lost. ``beside``: see :func:`execute`."""
    data = results.dump(run)
    with files.locked(path.parent):
        saved = files.save_or_fallback(
            path, data, replace_existing=measured(run), new_name=new_name
        )
        if saved.problem is None and saved.path is not None and beside is not None:
            beside(saved.path, run)
    if saved.problem is None:
        return saved.path
    if saved.path is not None:
        reporter.warn(f"{saved.problem}; the result is in {saved.path}")
    elif measured(run):  # no directory anywhere took it: the terminal is the last place left
        reporter.warn(f"{saved.problem}, nor could any fallback directory; the result:")
        reporter.note(data.decode())
    else:
        reporter.note(saved.problem)
    return saved.path


def round_plan(variants: list[Variant], rounds: int) -> list[tuple[int, int, Variant]]:
    """(round, position in the round, variant) in the order they run.

    Interleaved, so that drift over the run hits every variant alike, and the order reversed
    every other round (A B, B A, A B, ...), so that neither side of an A/B pair always runs
    first: a paired comparison's rounds then cancel what the position costs (a warmer cache,
    a neighbour that starts or stops between the two).
    """
    plan: list[tuple[int, int, Variant]] = []
    for repeat in range(rounds):
        order = variants if repeat % 2 == 0 else variants[::-1]
        plan.extend((repeat, position, v) for position, v in enumerate(order))
    return plan


@contextmanager
def _server(
    scenario: Scenario, run: RunResult | None, reporter: Notes
) -> Iterator[postgres.Postgres]:
    """The scenario's PostgreSQL, recorded in ``run``'s environment (if there is a run): the
    one the command line started before it imported the runner, if it did, else one started
    now."""
    backend = postgres.parse_backend(scenario.postgres)
    reporter.note(f"starting PostgreSQL ({backend.label}) ...")
    problems: list[str] = []  # filled as the server is left (what could not be dropped)
    early = postgres.take_early(backend, scenario.server)
    try:
        with early or postgres.start(backend, settings=scenario.server) as pg:
            problems = pg.cleanup_problems
            if run is not None:
                run.environment.postgres = results.postgres_info(
                    pg.backend, pg.version, pg.settings, pg.display_dsn
                )
            reporter.note(f"PostgreSQL {pg.version} at {pg.display_dsn}")
            if pg.shared:
                _warn_leftovers(pg, reporter)
            yield pg
    finally:
        for problem in problems:
            reporter.warn(f"connbench could not drop its {problem}")


def _warn_leftovers(pg: postgres.Postgres, reporter: Notes) -> None:
    """One warning naming what runs that were killed left on this server, and the cure."""
    try:
        with pg.connect(application_name=CONTROL_APP) as conn:
            found = ledger.find(conn)
    except psycopg.Error as exc:
        reporter.warn(f"could not look for what killed connbench runs left: {first_line(exc)}")
        return
    if found:
        names = ", ".join(f"{o.kind} {o.name}" for o in found)
        reporter.warn(
            f"connbench runs that were killed left {len(found)} objects on this server ({names}); "
            "`connbench cleanup --postgres DSN` lists them, with --yes drops them"
        )


def _calibrate(
    pg: postgres.Postgres, scenario: Scenario, reporter: Notes, max_s: float = CALIBRATE_MAX_S
) -> Calibration:
    reporter.note("calibrating: generator ceiling, pgbench with and without -C")
    return calibrate.measure(
        pg,
        concurrency=scenario.concurrency,  # pgbench at each, where it can be compared
        duration_s=min(scenario.duration_s, max_s),
        engine=scenario.engine,
    )


def references(scenario: Scenario, notes: Notes) -> Calibration:
    """``calibrate``: the references alone (see :mod:`connbench.measure.calibrate`) on the
    scenario's PostgreSQL, ``duration_s`` each, as ``run --calibrate`` takes them. Ctrl-C or
    SIGTERM stops and removes what was started, then raises :class:`KeyboardInterrupt`."""
    with Interrupts(notes.note), _server(scenario, None, notes) as pg:
        return _calibrate(pg, scenario, notes, max_s=scenario.duration_s)


SERVE_POLL_S = 0.5  # how often serve looks whether its app still runs


def serve(
    scenario: Scenario,
    notes: Notes,
    ready: Callable[[postgres.Postgres, pgbouncer.Route, appserver.App], None],
    *,
    port: int | None = None,
) -> None:
    """``serve``: the scenario's one variant (its app, behind PgBouncer when its topology says
    so) on the scenario's PostgreSQL, as ``run`` starts it (:func:`serving`); ``ready`` is
    told where once it answers. Returns after Ctrl-C or SIGTERM, once everything started is
    stopped and removed, in reverse order.

    Raises :class:`BadInput` unless the scenario has exactly one variant,
    :class:`MissingDependency` when its topology cannot run here, :class:`ProcessError` when
    PgBouncer or the app does not come up, and :class:`ConnbenchError` (with the app's log
    tail) when the app exits on its own.
    """
    variants = scenario.variants()
    if len(variants) != 1:
        raise BadInput("serve takes exactly one strategy and one value per setting")
    variant = variants[0]
    unavailable = pgbouncer.unavailable(variant.topology)
    if unavailable:
        raise MissingDependency(f"--topology {variant.topology}: {unavailable}")
    try:
        # SIGINT and SIGTERM both stop it and clean up, whatever it inherited: a shell starts
        # background jobs with SIGINT ignored, which would leave Ctrl-C (or `kill -INT`) no
        # way to stop a serve started by a script.
        with Interrupts(notes.note), ExitStack() as stack:
            tmp = tempdirs.make("serve")
            stack.callback(tempdirs.remove, tmp)
            forks = _fork_server(stack, variants, tmp, notes)
            pg = stack.enter_context(_server(scenario, None, notes))
            route, app = stack.enter_context(
                serving(pg, variant, scenario, tmp / "app.log", port=port, forks=forks)
            )
            ready(pg, route, app)
            while app.exit_code() is None:
                time.sleep(SERVE_POLL_S)
            raise ConnbenchError(
                f"the app exited (code {app.exit_code()})\n{redact(app.log_tail())}"
            )
    except KeyboardInterrupt:
        return


def _predict(variant: Variant, scenario: Scenario) -> capacity.Prediction:
    return capacity.predict(STRATEGIES[variant.strategy], variant, scenario.pgbouncer_pool_size)


def _ensure_server(pg: postgres.Postgres, reporter: Reporter) -> None:
    """Before a variant: start a server connbench runs again if it died; raise
    :class:`ServerLost` when it cannot be (an external server that does not answer)."""
    code = pg.died()
    if code is not None:
        if pg.restarter is None:  # pragma: no cover - only servers we start have an exit code
            raise ServerLost(f"PostgreSQL {procs.describe_exit(code)}")
        reporter.warn(
            f"PostgreSQL's postmaster {procs.describe_exit(code)}: starting it again "
            "for the next variant"
        )
        with load.new_runner() as loop:
            loop.run(pg.restart())
        return
    if pg.exit_code is None:  # a server we cannot watch: does it still answer?
        try:
            pg.connect(application_name=CONTROL_APP).close()
        except psycopg.Error as exc:
            raise ServerLost(
                f"PostgreSQL at {pg.display_dsn} no longer answers ({first_line(exc)}): "
                "connbench cannot start a server it did not start, so the run stops here"
            ) from None


def _max_connections(pg: postgres.Postgres) -> int | None:
    value = pg.settings.get("max_connections", "")
    return int(value) if value.isdigit() else None


def _warn_before(
    scenario: Scenario,
    predictions: dict[Variant, capacity.Prediction],
    pg: postgres.Postgres,
    reporter: Reporter,
) -> None:
    """Say up front what will not fit or not run, rather than after minutes of runs."""
    max_connections = _max_connections(pg)
    if max_connections is not None:
        for variant, prediction in predictions.items():
            message = capacity.warning(variant.key, prediction, max_connections)
            if message:
                reporter.warn(message)
    for topology in scenario.topology:
        reason = pgbouncer.unavailable(topology)
        if reason:
            reporter.warn(f"{reason}: the {topology} variants will be reported as unavailable")


@contextmanager
def serving(
    pg: postgres.Postgres,
    variant: Variant,
    scenario: Scenario,
    log_path: Path,
    *,
    conn: psycopg.Connection[Any] | None = None,
    instrument: bool = False,
    port: int | None = None,
    forks: forkserver.ForkServer | None = None,
) -> Iterator[tuple[pgbouncer.Route, appserver.App]]:
    """One variant's app serving on ``pg``: through PgBouncer when its topology says so. Both
    stop on the way out, in reverse order, even when the other did not come up.

    ``conn``, an open connection to ``pg``, lets PgBouncer read what it authenticates with.
    Raises :class:`ProcessError` (with the log's tail) when PgBouncer or the app does not
    come up. ``run`` measures each variant in it; ``serve`` serves one until Ctrl-C.
    """
    strategy = STRATEGIES[variant.strategy]
    pool_min, pool_maxes = scenario.effective_pool
    with pgbouncer.route(
        pg,
        variant.topology,
        pool_size=scenario.pgbouncer_pool_size,
        max_client_conn=capacity.max_client_conn(strategy, variant),
        conn=conn,
    ) as route:
        config = appserver.AppConfig(
            pool_min=variant.pool_min if variant.pool_min is not None else pool_min,
            pool_max=variant.pool_max or pool_maxes[0],
            workers=variant.workers,
            prepare_threshold=route.prepare_threshold,
            instrument=instrument,
            port=port,  # serve --port; run always takes a free one
        )
        with appserver.start(strategy, route.dsn, pg.table, config, log_path, forks) as app:
            yield route, app


def _subject(
    run: _Run, variant: Variant, predictions: dict[Variant, capacity.Prediction]
) -> Subject:
    spec = run.scenario.own_app(variant.strategy)
    if variant.kind != "strategy" and spec is not None:
        return _UserApp(run, variant, spec)
    return _Strategy(run, variant, predictions[variant])


class Subject(Protocol):
    """What differs between a built-in strategy, an own app and a target: how the app is
    started and what is counted around it. :func:`_run_one` is the one path that measures a
    variant of each; a subject is made for one repeat of one variant and holds its state."""

    @property
    def name(self) -> str:
        """The result's ``strategy``; names the app's log."""
        ...

    @property
    def record(self) -> VariantRecord: ...

    @property
    def predicted(self) -> dict[str, Any] | None:
        """The capacity prediction (built-in strategies only)."""
        ...

    @property
    def spec(self) -> AppSpec | None:
        """An own app's or target's requests (None: the strategy's visit)."""
        ...

    @property
    def database(self) -> str | None:
        """Where its sessions are counted (None: by their tag, on the run's database)."""
        ...

    def unavailable(self) -> str | None:
        """Why this variant cannot run here (None: it can)."""
        ...

    def open(self, stack: ExitStack) -> None:
        """The database side, before the app starts (closed by ``stack``)."""
        ...

    def start(
        self, stack: ExitStack, log_path: Path
    ) -> tuple[RunningApp, pgbouncer.PgBouncer | None]:
        """The app serving (and the PgBouncer in front of it), stopped by ``stack``; what is
        counted before the window, counted. Raises :class:`ProcessError` when it fails."""
        ...

    def count(self, measured: stats.Measurement) -> stats.Measurement:
        """``measured`` with the sessions the app opened and the rows it wrote, once it has
        stopped. Raises :class:`psycopg.Error` when the server cut connbench's session."""
        ...

    def failure_details(self, log_path: Path) -> str:
        """What goes under a failure to start or to check (its log tail: redacted)."""
        ...

    def warnings(self, log_path: Path, failed: bool) -> list[str]:
        """What to say beside a measured result, once the app has stopped."""
        ...

    def leftovers(self) -> list[str]:
        """What connbench could not drop of what it made for the app (said, never fatal)."""
        ...


RunningApp = appserver.App | userapp.Served


def _run_one(run: _Run, variant: Variant, repeat: int, subject: Subject) -> StrategyResult:
    """Measure one repeat of ``variant`` (the app ``subject`` says); a failure is recorded with
    its cause and what was measured until then, not raised.

    An app that exits before the load has ended, whether the watchdog saw it during the
    window or only once the load had drained, fails its variant: its window is not one to
    trust."""

    def not_measured(status: Status, why: str) -> StrategyResult:
        return StrategyResult(
            strategy=subject.name, variant=subject.record, repeat=repeat, status=status, failure=why
        )

    unavailable = subject.unavailable()
    if unavailable:
        return not_measured("unavailable", unavailable)
    log_path = run.tmp / f"{subject.name}-{len(list(run.tmp.iterdir()))}.log"
    try:
        with ExitStack() as stack:
            subject.open(stack)
            with ExitStack() as app_stack:
                app, bouncer = subject.start(app_stack, log_path)
                measured, death = _measure(run, variant, subject, app, bouncer)
                died, app_log = app.exit_code(), app.log_tail()
            measured, lost = _counted(subject, measured, death)
    except ProcessError as exc:
        return _not_started(subject, repeat, exc, log_path)
    outcome = _Outcome(measured, death, died, app_log, lost)
    return _result(subject, repeat, outcome, log_path, bouncer)


def _counted(
    subject: Subject, measured: stats.Measurement, death: watchdog.Death | None
) -> tuple[stats.Measurement, str | None]:
    """``measured`` with the sessions and rows its app made, counted once the app has
    stopped; and why they could not be, if they could not (None: counted)."""
    if death is not None and death.child == "postgres":  # nothing left to count on
        return measured, None
    try:
        return subject.count(measured), None
    except psycopg.Error as exc:
        return measured, (
            "PostgreSQL cut connbench's own session during the run (it crashed, restarted or "
            f"stopped): {first_line(exc)}"
        )


def _not_started(
    subject: Subject, repeat: int, exc: ProcessError, log_path: Path
) -> StrategyResult:
    """The variant whose app (or PgBouncer) did not come up: failed, with the cause."""
    failed = StrategyResult(
        strategy=subject.name,
        variant=subject.record,
        repeat=repeat,
        status="failed",
        failure=redact(str(exc)) + subject.failure_details(log_path),
    )
    failed.warnings += subject.leftovers()
    return failed


@dataclass(frozen=True)
class _Outcome:
    """What one variant's window measured, and what went wrong around it."""

    measured: stats.Measurement
    death: watchdog.Death | None  # the child that died during the window
    died: int | None  # the app's exit code once it was stopped (None: it ran until then)
    app_log: str
    lost: str | None  # connbench's own session was cut before it could count


def _result(
    subject: Subject,
    repeat: int,
    outcome: _Outcome,
    log_path: Path,
    bouncer: pgbouncer.PgBouncer | None = None,
) -> StrategyResult:
    """The variant's result from what it measured; failed (what was measured until then kept)
    when a child died or the count was lost."""
    death, died = outcome.death, outcome.died
    result = stats.summarize(
        subject.name,
        subject.record,
        outcome.measured,
        repeat=repeat,
        predicted=subject.predicted,
        pgbouncer=bouncer.describe() if bouncer is not None else None,
    )
    failure = str(death) if death is not None else outcome.lost
    if failure is None and died is not None:  # after the watchdog's last look: in the drain
        failure = f"{watchdog.CHILDREN['app']} {procs.describe_exit(died)} during the run"
    if failure is not None:
        # Failed, with what was measured until then kept in the result.
        result.status, result.failure = "failed", failure
    if (death is not None and death.child == "app") or died is not None:
        result.warnings.append(f"the app's log:\n{redact(outcome.app_log)}")
    result.warnings += subject.warnings(log_path, failed=failure is not None)
    return result


def _run_turns(
    run: _Run, order: list[Variant], repeat: int, subjects: list[Subject]
) -> list[StrategyResult]:
    """One sliced round (``--slices``): every variant's app started, the load in turns
    between them (see :func:`measuring.measure_turns`), every app stopped, then each one's
    sessions and rows counted; a result per variant, in ``order``. An app that does not
    come up fails its variant; the others take their turns without it."""
    results: dict[int, StrategyResult] = {}
    logs = {}
    for index, subject in enumerate(subjects):
        unavailable = subject.unavailable()
        if unavailable:
            results[index] = StrategyResult(
                strategy=subject.name,
                variant=subject.record,
                repeat=repeat,
                status="unavailable",
                failure=unavailable,
            )
        logs[index] = run.tmp / f"{subject.name}-{len(list(run.tmp.iterdir())) + index}.log"
    with ExitStack() as stack:
        apps: dict[int, RunningApp] = {}
        with ExitStack() as app_stack:
            for index, subject in enumerate(subjects):
                if index in results:
                    continue
                try:
                    subject.open(stack)
                    with ExitStack() as one:
                        app, _ = subject.start(one, logs[index])
                        app_stack.enter_context(one.pop_all())
                    apps[index] = app
                except ProcessError as exc:
                    results[index] = _not_started(subject, repeat, exc, logs[index])
            sides = [
                measuring.Side(apps[i], order[i], subjects[i].spec, subjects[i].database)
                for i in apps
            ]
            measured = []
            if sides:
                measured = measuring.measure_turns(
                    sides, run.pg, run.scenario, run.interrupts, run.on_progress
                )
            outcomes = {
                i: (measurement, death, apps[i].exit_code(), apps[i].log_tail())
                for i, (measurement, death) in zip(apps, measured, strict=True)
            }
        # Every app stopped: each one's sessions are closed, and counted now.
        for i, (measurement, death, died, app_log) in outcomes.items():
            measurement, lost = _counted(subjects[i], measurement, death)
            outcome = _Outcome(measurement, death, died, app_log, lost)
            results[i] = _result(subjects[i], repeat, outcome, logs[i])
    return [results[i] for i in range(len(subjects))]


@dataclass
class _Strategy:
    """A built-in strategy: its app on the run's table, its sessions told apart by their tag."""

    run: _Run
    variant: Variant
    prediction: capacity.Prediction
    spec: AppSpec | None = None
    database: str | None = None
    control: psycopg.Connection[Any] | None = None
    sessions_before: int | None = None
    stack: ExitStack | None = None

    @property
    def name(self) -> str:
        return self.variant.strategy

    @property
    def record(self) -> VariantRecord:
        return VariantRecord.model_validate(self.variant.to_dict())

    @property
    def predicted(self) -> dict[str, Any]:
        return self.prediction.to_dict(_max_connections(self.run.pg))

    def unavailable(self) -> str | None:
        return pgbouncer.unavailable(self.variant.topology)

    def open(self, stack: ExitStack) -> None:
        pg = self.run.pg
        self.stack = stack
        self.control = stack.enter_context(pg.connect(application_name=CONTROL_APP))
        pg.reset_table(self.control)
        self.sessions_before = sampler.sessions_counter(self.control)

    def start(
        self, stack: ExitStack, log_path: Path
    ) -> tuple[RunningApp, pgbouncer.PgBouncer | None]:
        # Each uvicorn worker would keep its own timing totals; connbench reads one.
        route, app = stack.enter_context(
            serving(
                self.run.pg,
                self.variant,
                self.run.scenario,
                log_path,
                conn=self.control,
                instrument=self.variant.workers == 1,
                forks=self.run.forks,
            )
        )
        return app, route.bouncer

    def count(self, measured: stats.Measurement) -> stats.Measurement:
        assert self.control is not None and self.stack is not None
        pg = self.run.pg
        ours = measured.samples.connects
        if measured.injected is not None:
            ours += measured.injected.connects
            if measured.injected.restarted:
                # The restart cut our session: one more of ours for the count to discount.
                self.control = self.stack.enter_context(pg.connect(application_name=CONTROL_APP))
                ours += 1
        sampler.wait_for_app_sessions_to_end(self.control, app_name=pg.app_name)
        sessions_after = sampler.sessions_counter(self.control)
        opened = None
        if self.sessions_before is not None and sessions_after is not None:
            opened = sessions_after - self.sessions_before - ours
        rows = pg.count_rows(self.control)
        return replace(measured, sessions_opened=opened, rows_inserted=rows)

    def failure_details(self, log_path: Path) -> str:
        return ""  # the error names the app's log tail already

    def warnings(self, log_path: Path, failed: bool) -> list[str]:
        return []

    def leftovers(self) -> list[str]:
        return []


@dataclass
class _UserApp:
    """An own app (its role and database, made for the variant) or a target (a running app,
    on the database ``--postgres`` names): see :mod:`connbench.infra.userapp`."""

    run: _Run
    variant: Variant
    spec: AppSpec
    predicted: None = None  # an own app's pattern is its own: nothing to predict
    db: userapp.AppDatabase | None = None
    control: psycopg.Connection[Any] | None = None
    served: userapp.Served | None = None
    rows_before: int | None = None
    sessions_before: int | None = None
    # What its check left undropped (said with its first variant), and what this one left.
    earlier: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.earlier = self.run.left_by_check.pop(self.spec.name, [])

    @property
    def target(self) -> bool:
        return self.spec.kind == "target"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def record(self) -> VariantRecord:
        return VariantRecord.model_validate(self.variant.to_dict() | {"app": self.spec.describe()})

    @property
    def database(self) -> str | None:
        return self.db.name if self.db is not None else None

    def unavailable(self) -> str | None:
        if self.target and self.variant.topology != "direct":
            return (
                f"target {self.spec.name}: a running app connects where it was started to "
                f"(not via {self.variant.topology})"
            )
        return pgbouncer.unavailable(self.variant.topology)

    def open(self, stack: ExitStack) -> None:
        self.db, self.control = _app_database(stack, self.run, self.spec)
        self.left = self.db.problems  # filled as the stack closes

    def start(
        self, stack: ExitStack, log_path: Path
    ) -> tuple[RunningApp, pgbouncer.PgBouncer | None]:
        assert self.db is not None and self.control is not None
        bouncer = None
        if self.target:
            served = userapp.Served(self.spec, self.spec.url or "")
            userapp.probe(self.spec, served.base_url)
        else:
            app_db = self.db
            if self.variant.topology != "direct":  # stops after the app, before the count
                bouncer = stack.enter_context(_app_bouncer(self.run, self.variant, self.db))
                app_db = replace(self.db, dsn=bouncer.dsn)
            served = stack.enter_context(
                userapp.start(self.spec, app_db, self.variant.workers, log_path)
            )
        self.served = served
        # The probe's request may commit after its response: count once it has.
        userapp.wait_until_idle(self.control, self.db.name)
        self.rows_before = userapp.count(self.spec, self.control)
        self.sessions_before = sampler.sessions_counter(self.control, self.db.name)
        return served, bouncer

    def count(self, measured: stats.Measurement) -> stats.Measurement:
        assert self.db is not None and self.control is not None
        if self.target:
            userapp.wait_until_idle(self.control, self.db.name)
        else:  # stopped: every session it had is closed and counted
            sampler.wait_for_app_sessions_to_end(self.control, database=self.db.name)
        sessions_after = sampler.sessions_counter(self.control, self.db.name)
        rows_after = userapp.count(self.spec, self.control)
        opened = None
        if self.sessions_before is not None and sessions_after is not None:
            # The sampler's own sessions land on the target's database, not on an own app's.
            ours = measured.samples.connects if self.target else 0
            opened = sessions_after - self.sessions_before - ours
        rows = None
        if self.rows_before is not None and rows_after is not None:
            rows = rows_after - self.rows_before
        # A target is not ours to measure: its CPU is unknown, not 0.
        cpu = measured.cpu_percent | ({"app": None} if self.target else {})
        return replace(measured, sessions_opened=opened, rows_inserted=rows, cpu_percent=cpu)

    def failure_details(self, log_path: Path) -> str:
        return userapp.failure_details(None if self.target else log_path)

    def warnings(self, log_path: Path, failed: bool) -> list[str]:
        log = None if self.target else log_path  # a target's log is not ours
        out = userapp.known_failures(log, self.variant.topology) if log is not None else []
        if failed:
            kept = userapp.keep_log(log)
            if kept is not None:
                out.append(f"the app's whole log is kept in {kept}")
        if self.served is not None:
            out += self.served.strays
        return out + self.leftovers()

    def leftovers(self) -> list[str]:
        return _not_dropped(self.earlier + self.left, self.run.pg.shared)


def _measure(
    run: _Run,
    variant: Variant,
    subject: Subject,
    app: RunningApp,
    bouncer: pgbouncer.PgBouncer | None,
) -> tuple[stats.Measurement, watchdog.Death | None]:
    """The variant's window (see :mod:`connbench.measure.measuring`), as :func:`stats.summarize`
    reads it; and the child that died meanwhile, if one did."""
    return measuring.measure(
        app,
        bouncer,
        run.pg,
        variant,
        run.scenario,
        run.interrupts,
        run.on_progress,
        subject.spec,
        subject.database,
    )


def _record_commits(run: RunResult) -> dict[str, GitCheckout]:
    """Record the commit of the working directory and of each own app's ``dir`` in ``run``
    (where they are git checkouts); return the apps' by name."""
    run.environment.git = gitinfo.checkout(Path.cwd())
    found: dict[str, GitCheckout] = {}
    for record in run.scenario.app:
        checked = gitinfo.checkout(Path(record.dir)) if record.dir else run.environment.git
        if checked is not None:
            record.git = found[record.name] = checked
    return found


def _not_dropped(problems: list[str], shared: bool) -> list[str]:
    """The warning for what connbench created and could not drop (none: no warning)."""
    if not problems:
        return []
    then = (
        ". Remove what it names, then `connbench cleanup --postgres DSN --yes` drops the rest"
        if shared
        else " (the server is removed at the end of the run, and they with it)"
    )
    return ["connbench could not drop what it created for this app: " + "; ".join(problems) + then]
