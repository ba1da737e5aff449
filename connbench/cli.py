"""The ``connbench`` command: parse, call the core, turn domain errors into one line + exit code.

The options are declared in :mod:`connbench.options` (``run``'s as one table), the defaults and
choices the help states come from the model, and the exit codes are decided in
:mod:`connbench.analyse.verdicts`. Start-up matters (``connbench --help`` should answer at once):
only typer, those light modules, the error types and the strategy names are imported here.
Everything that pulls in psycopg, aiohttp, httpx, uvicorn or hdrh is imported inside the command
that needs it.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from connbench import __version__, options
from connbench.analyse import verdicts

# The exit codes are decided in analyse.verdicts; cli.EXIT_* stay importable for scripts.
from connbench.analyse.verdicts import EXIT_CODES as EXIT_CODES
from connbench.analyse.verdicts import EXIT_FAILED as EXIT_FAILED
from connbench.analyse.verdicts import EXIT_INCONCLUSIVE as EXIT_INCONCLUSIVE
from connbench.analyse.verdicts import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from connbench.analyse.verdicts import EXIT_INVALID as EXIT_INVALID
from connbench.analyse.verdicts import EXIT_LIMITS as EXIT_LIMITS
from connbench.analyse.verdicts import EXIT_PRECEDENCE as EXIT_PRECEDENCE
from connbench.apps import STRATEGIES
from connbench.model import defaults
from connbench.model.choices import TOPOLOGIES, listed
from connbench.model.defaults import seconds
from connbench.model.errors import BadInput, ConnbenchError
from connbench.options import (
    DURATION,
    HELP_OPTIONS,
    INT,
    INTS,
    INTS_HELP,
    AllowMissingOpt,
    BaseOpt,
    ChartsOpt,
    CompareAlphaOpt,
    CompareFailOnOpt,
    ExplainOpt,
    FormatOpt,
    GroupedHelp,
    HeadOpt,
    IgnoreOpt,
    PgBouncerPoolOpt,
    PostgresOpt,
    ReportFilesOpt,
    ReportOutputOpt,
    ResultFilesOpt,
    SummaryOpt,
    TrendOpt,
)

if TYPE_CHECKING:
    from rich.console import Console

    from connbench.analyse.compare import Comparison
    from connbench.analyse.paired import PairedComparison
    from connbench.model.results import RunResult
    from connbench.model.scenario import Scenario

# "\b" keeps click from rewrapping the table's lines; each meaning is wrapped here instead, so
# that the table fits 80 columns.
EPILOG = (
    "Exit codes:\n\n\b\n"
    + "\n".join(
        f"{code:>5}  " + "\n       ".join(textwrap.wrap(meaning, 70))
        for code, meaning in EXIT_CODES
    )
    + "\n\n"
    + EXIT_PRECEDENCE
)


def _examples(*lines: str) -> str:
    """An epilog of examples (kept as written), then the exit codes."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines) + "\n\n" + EPILOG


RUN_EXAMPLES = _examples(
    "# two strategies, 30 s each; then every one in a sweep, 3 interleaved rounds",
    "connbench run -s pool,connect -d 30s",
    "connbench run -s all -c 8,32,128 -r 3",
    "# a scenario file, with an HTML report beside the result",
    "connbench run scenarios/quick.toml --html",
    "# your own app beside the pool strategy",
    "connbench run -s pool --app mine=myapp.main:app --path /items/",
)
COMPARE_EXAMPLES = _examples(
    "# two result files, failing on a real loss of throughput",
    "connbench compare base.json new.json --fail-on throughput:10%",
    "# two variants of one run, paired round by round",
    "connbench compare r.json --base pool --head mine --fail-on p99:20%",
)
DEFAULT_WIDTH = 100  # for output that goes to no terminal, unless COLUMNS says otherwise

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
    epilog=EPILOG,
    # Plain help, as click prints it: no <bool> beside a flag, and no rich to import for it.
    rich_markup_mode=None,
    help="How should a FastAPI app hold its PostgreSQL connections, and what does each cost?",
)


def _console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr) as it is now: a terminal's own width; in a pipe or a
    CI log, ``COLUMNS`` when set (rich reads it), otherwise ``DEFAULT_WIDTH``. It redacts
    and escapes what it prints (see :mod:`connbench.present.sink`)."""
    from connbench.present import sink

    return sink.console(stderr, DEFAULT_WIDTH)


def _echo(message: str, err: bool = True) -> None:
    """One plain line on stderr (or stdout), redacted and escaped like every output (the
    sink is imported here: it brings rich and psycopg, which a plain --help does not need)."""
    from connbench.present import sink

    sink.echo(message, err=err)


def _write(text: str, fmt: str = "text") -> None:
    """A whole report (or document) on stdout, through the sink like every output."""
    from connbench.present import sink

    sink.write(text, fmt)


@contextmanager
def _domain_errors() -> Iterator[None]:
    try:
        yield
    except ConnbenchError as exc:
        # Plain text, never wrapped: the first line must stand alone in a log.
        _echo(f"connbench: error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        # The machine, not connbench: a full disk, a read-only or forbidden directory.
        where = f" ({exc.filename})" if exc.filename else ""
        _echo(f"connbench: error: {exc.strerror or exc}{where}")
        raise typer.Exit(EXIT_FAILED) from None


@contextmanager
def _interrupted() -> Iterator[None]:
    """Ctrl-C or SIGTERM outside the runner's own handling (which saves what was measured):
    while the command line starts what it starts early, say. What was started is stopped as
    the stack unwinds (SIGTERM too, which would otherwise end the process there and then);
    then one line and exit 130, as for any interrupted run."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()  # else: no handler to set
    # SIGINT too, whatever was inherited: a shell starts a background job with SIGINT
    # ignored, and a Ctrl-C (kill -INT) before the runner's own handlers would then be lost,
    # the run going on to its end (as the runner's handlers, once set, never lose it).
    signals = (signal.SIGINT, signal.SIGTERM) if main else ()
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in signals}
    try:
        yield
    except KeyboardInterrupt:
        _echo("connbench: interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _version(value: bool) -> None:
    if value:
        _echo(f"connbench {__version__}", err=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """How should a FastAPI app hold its PostgreSQL connections, and what does each cost?"""


@app.command(cls=GroupedHelp)
def strategies() -> None:
    """List the connection strategies, one line each."""
    width = max(len(name) for name in STRATEGIES)
    for strategy in STRATEGIES.values():
        _echo(f"{strategy.name:<{width}}  {strategy.summary}", err=False)


def _format(value: str) -> str:
    from connbench.present import common

    if value not in common.FORMATS:
        raise BadInput(f"--format: expected one of {', '.join(common.FORMATS)}, got {value!r}")
    return value


def _append_summary(path: Path | None, markdown: str) -> None:
    """Append ``markdown`` to ``path`` (a CI step summary): a blank line keeps reports apart."""
    from connbench.present import sink

    if path is None:
        return
    try:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(sink.text(markdown) + "\n")
    except OSError as exc:
        raise BadInput(f"--summary: cannot write {path} ({exc.strerror})") from None


@app.command(cls=GroupedHelp, epilog=RUN_EXAMPLES)
@options.declare(options.RUN)
def run(**given: Any) -> None:
    """Benchmark strategies (and your own apps) against a PostgreSQL and save a JSON result."""
    from connbench.infra import forkserver

    with _interrupted(), _domain_errors(), forkserver.early_closed(), ExitStack() as closed:
        if not given["check_only"]:  # its imports beside ours, from the start (see there)
            forkserver.spawn_early()
        from connbench.infra import postgres
        from connbench.model import files, scenario

        closed.enter_context(postgres.early_closed())
        fmt = _format(given["format_"])
        every_s = _progress_interval(given["progress_every"])
        output: str | None = given["output"]  # a str until checked: Path() drops a trailing /
        chosen = scenario.build(given["scenario_file"], options.overrides(options.RUN, given))
        if output is not None and output.endswith("/"):  # said before anything starts
            raise BadInput(f"--output: {output} names a directory; give a file name")
        if not given["check_only"]:  # their start beside the runner's import (see each)
            forkserver.start_early(chosen.variants())
            postgres.start_early(chosen.postgres, chosen.server)
        from connbench import runner
        from connbench.present import progress
        from connbench.present import run as run_view

        console = _console()
        notes = console if fmt == "table" else _console(stderr=True)
        if given["check_only"]:
            if not chosen.own_apps:
                raise BadInput("--check: checks --app and --target (and [[app]] tables) only")
            runner.check(chosen, progress.ConsoleReporter(notes, every_s))
            notes.print("every app answered every kind of request: checks passed")
            raise typer.Exit(0)
        if chosen.engine == "locust":
            _locust_notes(notes, chosen)
        html_written: list[Path | BadInput] = []  # the report, written beside the result

        def write_html(saved: Path, run: RunResult) -> None:
            try:
                html_written.append(_write_html(saved.with_suffix(".html"), [(str(saved), run)]))
            except BadInput as exc:
                html_written.append(exc)

        result, path = runner.execute(
            chosen,
            progress.ConsoleReporter(notes, every_s),
            Path(output) if output is not None else None,
            calibrate_first=given["calibrate_first"],
            beside=write_html if given["html_report"] else None,
        )
        _show_run(console, result, fmt, given["charts"], label=str(path), explain=given["explain"])
        gate = _run_gate(console, result, fmt, label=str(path))
        if path is None or files.is_fallback(path):
            # Said above, with the reason; the last line says it again for scripts and logs.
            where = f"saved to {path} instead" if path else "not saved"
            _echo(f"connbench: error: the result was {where}")
            raise typer.Exit(verdicts.unsaved_exit(result))
        notes.print(f"[dim]saved {path}[/dim]", highlight=False)
        for page in html_written:
            if isinstance(page, BadInput):
                raise page
            notes.print(f"report: {page} (open it in a browser)", highlight=False)
        markdown = run_view.format_run(result, "markdown")
        if gate is not None:
            from connbench.present import paired as paired_view

            markdown += "\n" + paired_view.format_paired(gate, "markdown")
        _append_summary(given["summary"], markdown)
        raise typer.Exit(_run_exit_code(result, gate))


def _run_gate(console: Console, result: RunResult, fmt: str, label: str) -> PairedComparison | None:
    """The A/B gate the run was given (--base/--head), shown after the run; None without one.
    A result it cannot judge (nothing paired) is said in one line and not gated."""
    from connbench.analyse import paired
    from connbench.present import paired as paired_view

    if result.scenario.base is None:
        return None
    try:
        comparison = paired.judge_run(result, label)
    except BadInput as exc:
        _echo(f"connbench: the A/B gate could not judge this run: {exc}")
        return None
    if comparison is None:
        return None
    if fmt == "table":
        paired_view.render_paired(console, comparison)
    elif fmt in ("markdown",):
        _write("\n" + paired_view.format_paired(comparison, fmt), fmt)
    return comparison


def _locust_notes(notes: Console, chosen: Scenario) -> None:
    """The token file made or checked, and what a master beyond loopback exposes, said before
    the run starts (a bad token file is exit 2)."""
    from connbench.measure import locust_engine

    if not locust_engine.is_loopback(chosen.locust_bind):
        notes.print(
            f"warning: the Locust master listens on {locust_engine.printable(chosen.locust_bind)}"
            ", beyond loopback: "
            "anyone who can reach that address can download the locustfile (it holds no "
            "request, header or body) and try to join as a worker; only workers holding the "
            "run's token are counted, the others are refused and named in the result. "
            "Locust's traffic is not encrypted: use it on a network you trust.",
            highlight=False,
            markup=False,
        )
    if chosen.locust_token_file:
        try:
            locust_engine.token_file(Path(chosen.locust_token_file))
        except ValueError as exc:
            raise BadInput(f"--locust-token-file: {exc}") from None
        notes.print(
            "Locust: remote workers need the token in "
            f"{locust_engine.printable(chosen.locust_token_file, 200)}: copy it to "
            "each worker host (readable by the worker's user alone) for `connbench worker "
            "--token-file FILE`",
            highlight=False,
            markup=False,
        )


def _progress_interval(text: str | None) -> float | None:
    """--progress: None for the default (bar or 10 s lines), 0 for none, else seconds."""
    from connbench.model.units import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text, allow_zero=True)
    except ValueError as exc:
        raise BadInput(f"--progress: {exc}, got {text!r}") from None


def _run_exit_code(result: RunResult, gate: PairedComparison | None = None) -> int:
    """The exit code of a finished run (see EXIT_CODES), each reason said on stderr."""
    from connbench.present import verdicts as verdicts_view

    verdict = verdicts.run_verdict(result, gate)
    for line in verdicts_view.run_lines(verdict):
        _echo(f"connbench: {line}")
    return verdict.code


def _show_run(
    console: Console,
    result: RunResult,
    fmt: str,
    charts: bool = True,
    label: str = "",
    explain: bool = False,
) -> None:
    from connbench.present import run as run_view

    if fmt in ("csv", "json"):  # the data on stdout, what to know about it on stderr
        for line in run_view.warning_lines(result, every_figure=True):
            _echo(f"connbench: warning: {line}")
    if fmt == "table":
        run_view.render_run(console, result, charts=charts, explain=explain)
    elif fmt == "html":
        from connbench.present import html as html_view  # its charts' JS: only when asked

        _write(html_view.report([(label, result)]), fmt)
    else:
        _write(run_view.format_run(result, fmt), fmt)


def _write_html(
    path: Path,
    runs: list[tuple[str, RunResult]],
    comparisons: list[Comparison] | None = None,
    trend: bool = False,
) -> Path:
    """Write the HTML report of ``runs`` (and ``comparisons``; or their trend) to ``path``,
    atomically."""
    from connbench.model import files
    from connbench.present import html as html_view

    page = html_view.trend_report(runs) if trend else html_view.report(runs, comparisons or [])
    # Through the result's own checks and writer: only a regular file or a new name (never a
    # device, a FIFO or a directory), whole or not there at all, fsynced, and with the
    # result's mode: it shows what the result holds, no more (secrets masked at the sink).
    try:
        return files.write_atomic(files.check_destination(path), page.encode())
    except files.OutputRefused as exc:
        raise BadInput(f"{path}: cannot write the report: {exc}") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot write the report ({exc.strerror})") from None


@app.command(name="calibrate", cls=GroupedHelp)
def calibrate_cmd(
    postgres_: PostgresOpt = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            "--concurrency",
            "-c",
            metavar=INTS,
            help=f"Concurrent clients; {INTS_HELP} (default: {defaults.CONCURRENCY}).",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration",
            "-d",
            metavar=DURATION,
            help="Time per measurement: 500ms, 5s, 1m "
            f"(default: {seconds(defaults.CALIBRATE_DURATION_S)}).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Measure the references: the load generator's own rate on a no-database endpoint (and
    wrk's), and pgbench's TPS on the same insert with and without a new connection per
    transaction, over the apps' own connection path."""
    from connbench import runner
    from connbench.model import scenario
    from connbench.present import progress
    from connbench.present import run as run_view

    with _domain_errors():
        chosen = scenario.build(
            None,
            {
                "postgres": postgres_,
                "concurrency": concurrency,
                "duration_s": duration or seconds(defaults.CALIBRATE_DURATION_S),
            },
        )
        console = _console()
        references = runner.references(chosen, progress.ConsoleReporter(console))
        run_view.render_calibration(console, references)


@app.command(cls=GroupedHelp)
def cleanup(
    postgres_: PostgresOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Drop what is listed (without it: list only).")
    ] = False,
) -> None:
    """List what connbench runs that were killed left on a server you gave as --postgres DSN:
    roles, databases and tables that bear connbench's name and marker, whose run is gone and
    that the DSN's user owns. With --yes, drop them; nothing else is touched."""
    from connbench.infra import postgres

    with _domain_errors():
        if postgres_ is None:
            raise BadInput("--postgres: give the DSN of the server to clean up")
        where, found, problems = postgres.leftovers(postgres.parse_backend(postgres_), drop=yes)
        if not found:
            _echo(f"nothing left by connbench on {where}", err=False)
            return
        for obj in found:
            _echo(str(obj), err=False)
        if not yes:
            _echo(f"{len(found)} left on {where}; --yes drops them", err=False)
            return
        for problem in problems:
            _echo(f"connbench: error: {problem}")
        _echo(f"dropped {len(found) - len(problems)} of {len(found)} on {where}", err=False)
        if problems:
            raise typer.Exit(EXIT_FAILED)


@app.command(cls=GroupedHelp)
def show(
    result_file: Annotated[Path, typer.Argument(help="A result JSON file.", metavar="FILE")],
    charts: ChartsOpt = True,
    format_: FormatOpt = "table",
    explain: ExplainOpt = False,
) -> None:
    """Show a saved result: its tables, per-second charts and limit verdicts as recorded."""
    from connbench.analyse import stats
    from connbench.model import results

    with _domain_errors():
        fmt = _format(format_)
        run_result = results.load(result_file)
        run_result.summary = stats.aggregate(run_result.results)  # derived: always recomputed
        _show_run(_console(), run_result, fmt, charts, label=str(result_file), explain=explain)


@app.command(cls=GroupedHelp)
def schema() -> None:
    """Print the JSON Schema of a result file (the version this connbench writes)."""
    from connbench.model import results

    _write(results.json_schema_text())


@app.command("compare", cls=GroupedHelp, epilog=COMPARE_EXAMPLES)
def compare_results(
    files: ResultFilesOpt = None,
    fail_on: CompareFailOnOpt = None,
    alpha: CompareAlphaOpt = None,
    ignore: IgnoreOpt = None,
    summary: SummaryOpt = None,
    base_name: BaseOpt = None,
    head_name: HeadOpt = None,
    allow_missing: AllowMissingOpt = False,
    format_: FormatOpt = "table",
) -> None:
    """Compare results variant by variant; exit 1 when the gate finds a regression.

    Each NEW (and MORE) file is compared with BASE. A gated metric fails only when it is worse
    than its threshold and the difference is significant across repeats; a variant missing
    from NEW, or failed in it, fails too. With --base and --head, two variants of ONE result
    (an interleaved A/B run) are judged round by round instead.
    """
    from connbench.analyse import compare, stats
    from connbench.model import checks, results
    from connbench.present import compare as compare_view
    from connbench.present import tracking

    with _domain_errors():
        fmt = _format(format_)
        paths = files or []
        thresholds = [_parsed("--fail-on", checks.parse_fail_on, text) for text in fail_on or []]
        level = _parsed("--alpha", checks.parse_alpha, alpha) if alpha is not None else None
        if base_name is not None or head_name is not None:
            if ignore:
                raise BadInput("--ignore matches variants across files; --base/--head name them")
            _compare_paired(
                paths, base_name, head_name, thresholds, level, allow_missing, fmt, summary
            )
            return
        if len(paths) < 2:
            raise BadInput(
                "compare needs a BASE and at least one NEW result file (or one RESULT with "
                "--base and --head)"
            )
        for name in ignore or []:
            if name not in compare.DIMENSIONS:
                known = ", ".join(compare.DIMENSIONS)
                raise BadInput(f"--ignore: expected one of {known}, got {name!r}")
        base = results.load(paths[0])
        comparisons, loaded = [], [(str(paths[0]), base)]
        for path in paths[1:]:
            new = results.load(path)
            loaded.append((str(path), new))
            gate = compare.resolve_gate(new, str(path), thresholds, level)
            comparisons.append(
                compare.compare(
                    base,
                    new,
                    gate=gate,
                    ignore=ignore or (),
                    base_label=str(paths[0]),
                    new_label=str(path),
                    allow_missing=allow_missing,
                )
            )
        if fmt == "table":
            compare_view.render_compare(_console(), comparisons)
        elif fmt in tracking.FORMATS:
            # What a tracking tool charts over time is NEW's figures (the gate still decides
            # the exit code): one NEW, or the names would collide.
            if len(loaded) != 2:
                raise BadInput(f"--format {fmt}: give one NEW result (got {len(loaded) - 1})")
            _write(tracking.format_run(loaded[1][1], fmt), fmt)
        elif fmt == "html":
            from connbench.present import html as html_view

            for _, run_result in loaded:
                run_result.summary = stats.aggregate(run_result.results)
            _write(html_view.report(loaded, comparisons), fmt)
        else:
            _write(compare_view.format_compare(comparisons, fmt), fmt)
        _append_summary(summary, compare_view.format_compare(comparisons, "markdown"))
        raise typer.Exit(verdicts.compare_exit(comparisons))


def _compare_paired(
    paths: list[Path],
    base_name: str | None,
    head_name: str | None,
    thresholds: list[tuple[str, float]],
    level: float | None,
    allow_missing: bool,
    fmt: str,
    summary: Path | None,
) -> None:
    from connbench.analyse import compare, paired
    from connbench.model import results
    from connbench.present import paired as paired_view

    if base_name is None or head_name is None:
        raise BadInput("--base and --head go together: name both variants of the A/B run")
    if len(paths) != 1:
        raise BadInput(f"--base/--head judge one RESULT file, got {len(paths)}")
    run_result = results.load(paths[0])
    comparison = paired.compare_paired(
        run_result,
        base=base_name,
        head=head_name,
        gate=compare.resolve_gate(run_result, str(paths[0]), thresholds, level),
        label=str(paths[0]),
        allow_missing=allow_missing,
    )
    if fmt == "table":
        paired_view.render_paired(_console(), comparison)
    elif fmt == "html":
        from connbench.analyse import stats
        from connbench.present import html as html_view  # its charts' JS: only when asked

        run_result.summary = stats.aggregate(run_result.results)
        _write(html_view.report([(str(paths[0]), run_result)], paired=[comparison]), "html")
    else:
        _write(paired_view.format_paired(comparison, fmt), fmt)
    _append_summary(summary, paired_view.format_paired(comparison, "markdown"))
    raise typer.Exit(verdicts.paired_exit(comparison))


@app.command(cls=GroupedHelp)
def report(
    files: ReportFilesOpt = None,
    output: ReportOutputOpt = None,
    trend: TrendOpt = False,
) -> None:
    """Write one self-contained HTML page (charts, tables; opens offline) for the results.

    With several, each later result is first compared with the first, variant by variant
    (the change and its interval, as `compare` judges it with the gate each recorded)."""
    from connbench.analyse import compare, stats
    from connbench.model import results

    with _domain_errors():
        paths = files or []
        if not paths:
            raise BadInput("report needs at least one result file")
        loaded = []
        for path in paths:
            run_result = results.load(path)
            run_result.summary = stats.aggregate(run_result.results)
            loaded.append((str(path), run_result))
        if trend:
            page = _write_html(output or paths[0].with_name("trend.html"), loaded, trend=True)
        else:
            (base_label, base), *later = loaded
            comparisons = [
                compare.compare(
                    base,
                    new,
                    gate=compare.resolve_gate(new, label),
                    base_label=base_label,
                    new_label=label,
                    allow_missing=True,
                )
                for label, new in later
            ]
            page = _write_html(output or paths[0].with_suffix(".html"), loaded, comparisons)
        size = page.stat().st_size
        _console().print(
            f"report: {page} ({size / 1e6:.1f} MB; open it in a browser)", highlight=False
        )


T = TypeVar("T")


def _parsed(flag: str, parse: Callable[[str], T], text: str) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        raise BadInput(f"{flag}: {exc}, got {text!r}") from None


def _free(port: int) -> None:
    """Refuse a --port that is out of range or taken, in one line, before starting anything."""
    import socket

    if not 1 <= port <= 65535:
        raise BadInput(f"--port: expected 1 to 65535, got {port}")
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BadInput(f"--port: 127.0.0.1:{port} is not free ({exc.strerror})") from None


@app.command(cls=GroupedHelp)
def serve(
    strategy: Annotated[str, typer.Argument(help="The strategy to serve.", metavar="STRATEGY")],
    postgres_: PostgresOpt = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            metavar="PORT",
            help="Serve on 127.0.0.1:PORT, a fixed URL for wrk or k6 scripts (default: a free "
            "port, printed).",
            show_default=False,
        ),
    ] = None,
    pool_min: Annotated[
        str | None,
        typer.Option(
            metavar=INT, help=f"Pool min_size (default: {defaults.POOL_MIN}).", show_default=False
        ),
    ] = None,
    pool_max: Annotated[
        str | None,
        typer.Option(metavar=INT, help="Pool max_size (default: = min).", show_default=False),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            metavar=INT,
            help=f"uvicorn worker processes (default: {defaults.WORKERS}).",
            show_default=False,
        ),
    ] = None,
    topology: Annotated[
        str | None,
        typer.Option(
            metavar="TOPOLOGY",
            help=f"{listed(TOPOLOGIES, defaults.TOPOLOGY)}.",
            show_default=False,
        ),
    ] = None,
    pgbouncer_pool_size: PgBouncerPoolOpt = None,
) -> None:
    """Serve one strategy's app on a throwaway PostgreSQL until Ctrl-C (point wrk or k6 at it)."""
    from connbench import runner
    from connbench.infra import appserver, pgbouncer, postgres
    from connbench.model import scenario
    from connbench.present import progress

    with _domain_errors():
        chosen = scenario.build(
            None,
            {
                "strategies": [strategy],
                "postgres": postgres_,
                "pool_min": pool_min,
                "pool_max": pool_max,
                "workers": workers,
                "topology": topology,
                "pgbouncer_pool_size": pgbouncer_pool_size,
            },
        )
        if port is not None:
            _free(port)
        console = _console()

        def ready(pg: postgres.Postgres, route: pgbouncer.Route, served: appserver.App) -> None:
            if route.bouncer is not None:
                console.print(
                    f"through PgBouncer {route.bouncer.version} ({route.bouncer.mode} mode) "
                    f"on 127.0.0.1:{route.bouncer.port}",
                    highlight=False,
                )
            console.print(f"serving {served.strategy.name} at {served.visit_url}")
            # For a --target run's count_sql: SELECT count(*) FROM <table>.
            console.print(f"rows go to table {pg.table}", highlight=False, soft_wrap=True)
            console.print("[dim]Ctrl-C to stop[/dim]")

        runner.serve(chosen, progress.ConsoleReporter(console), ready, port=port)
        console.print("stopped")
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command(cls=GroupedHelp)
def locustfile(
    strategy: Annotated[
        str, typer.Argument(help="The strategy (or variant) whose request the file sends.")
    ] = defaults.STRATEGY,
    concurrency: Annotated[
        int, typer.Option(help="Users, to split --rate over.", min=1)
    ] = defaults.CONCURRENCY,
    rate: Annotated[
        float | None,
        typer.Option(help="Open model: requests per second over all users (default: closed loop)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Per-request timeout, seconds.")
    ] = defaults.TIMEOUT_S,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the locustfile that --engine locust runs, for plain `locust --worker -f FILE`
    (with the run's token in $CONNBENCH_LOCUST_TOKEN_FILE). It holds no request: connbench's
    master sends that to each worker holding the token."""
    from connbench.measure import locust_engine

    with _domain_errors():
        if strategy not in STRATEGIES:
            raise BadInput(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
        if rate is not None and rate <= 0:
            raise BadInput(f"--rate: expected a positive number, got {rate}")
        text = locust_engine.locustfile(
            concurrency=concurrency,
            timeout_s=timeout,
            rate_rps=rate,
            title=f"GET /visit/ on the {strategy} app",
        )
        if output is None:
            sys.stdout.write(text)  # code, not a report: it holds no result string
        else:
            output.write_text(text)


@app.command(cls=GroupedHelp)
def worker(
    master: Annotated[
        str,
        typer.Option(
            metavar="HOST:PORT",
            help="The master's HOST:PORT, as `connbench run --engine locust --expect-workers N "
            "--locust-bind ADDRESS --locust-port PORT` listens on it.",
        ),
    ],
    token_file: Annotated[
        Path,
        typer.Option(
            metavar="FILE",
            help="The run's token (the master's --locust-token-file, copied here; readable by "
            "you alone). Workers without it are refused.",
        ),
    ],
    processes: Annotated[
        int,
        typer.Option(
            metavar="INTEGER", help="Worker processes to run here (one per core is usual).", min=1
        ),
    ] = 1,
) -> None:
    """Run Locust workers for a connbench run on another host; they exit when its run ends.

    The workers run the Python code the master sends them (its locustfile), as you, on this
    host: point them only at a master you trust. That code gets a short environment (PATH,
    HOME, LANG, LC_ALL, TMPDIR, TZ, VIRTUAL_ENV, PYTHONPATH and the token), not yours: no
    PGPASSWORD, AWS_* or other secrets of your shell reach it."""
    from connbench.infra import procs
    from connbench.measure import locust_engine

    with _domain_errors():
        locust_engine.require()
        try:
            argv = locust_engine.worker_argv(master)
            token = locust_engine.read_token(token_file)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        env = procs.child_env({locust_engine.TOKEN_ENV: token})
        try:
            codes = locust_engine.run_workers(argv, processes, env)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
        failed = [code for code in codes if code]
        if failed:
            _echo(
                f"connbench: {len(failed)} of {len(codes)} workers failed (exit codes "
                f"{', '.join(map(str, failed))})"
            )
            raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Entry point: the Typer app, with unexpected errors reduced to one line; then a quick
    way out (see :func:`_exit_now`)."""
    try:
        app()
    except SystemExit as exc:
        _exit_now(exc.code)
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: never a traceback for users
        if os.environ.get("CONNBENCH_DEBUG"):
            raise
        _echo(
            f"connbench: internal error: {type(exc).__name__}: {exc} "
            "(set CONNBENCH_DEBUG=1 for the traceback)"
        )
        sys.exit(1)


def _exit_now(code: object) -> None:
    """End the process with ``code`` (an int) as the interpreter would, without tearing down
    its modules and objects one by one: after a run that is 0.1-0.2 s of a 2-core machine's
    time for nothing. Done as the interpreter does its part: atexit handlers, then the
    streams flushed. Only when nothing else runs (another thread would be cut short) and the
    code is a number (a message is the interpreter's to print); otherwise returns."""
    import atexit
    import threading

    if not isinstance(code, int | None) or threading.active_count() > 1:
        return
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except (OSError, ValueError):
        return  # a closed or broken stream: the interpreter's way out says so
    os._exit((code or 0) & 0xFF)
