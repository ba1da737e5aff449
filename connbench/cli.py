"""The ``connbench`` command: parse, call the core, turn domain errors into one line + exit code.

Exit codes: 0 success; 1 failure (a strategy's app failed; for ``compare``, a regression the
gate caught); 2 bad input; 3 a ``run --fail-if`` limit was crossed; 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from connbench import __version__, runner
from connbench.analyse import compare, paired, stats
from connbench.apps import STRATEGIES
from connbench.infra import appserver, pgbouncer, postgres, tempdirs
from connbench.measure import calibrate
from connbench.model import checks, files, metrics, results, scenario
from connbench.model.dsn import redact
from connbench.model.errors import BadInput, ConnbenchError, MissingDependency
from connbench.present import common as present_common
from connbench.present import compare as compare_view
from connbench.present import paired as paired_view
from connbench.present import progress
from connbench.present import run as run_view

EXIT_FAILED = 1
EXIT_LIMITS = 3
EXIT_INTERRUPTED = 130

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="How should a FastAPI app hold its PostgreSQL connections, and what does each cost?",
)
# Outside a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
console = Console() if Console().is_terminal else Console(width=160)
# Progress and notes when stdout carries Markdown, CSV or JSON.
err_console = (
    Console(stderr=True) if Console(stderr=True).is_terminal else Console(stderr=True, width=160)
)


@contextmanager
def _domain_errors() -> Iterator[None]:
    try:
        yield
    except ConnbenchError as exc:
        # Plain text, never wrapped: the first line must stand alone in a log.
        typer.echo(f"connbench: error: {redact(str(exc))}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        # The machine, not connbench: a full disk, a read-only or forbidden directory.
        where = f" ({exc.filename})" if exc.filename else ""
        typer.echo(f"connbench: error: {exc.strerror or exc}{where}", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def _version(value: bool) -> None:
    if value:
        console.print(f"connbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """How should a FastAPI app hold its PostgreSQL connections, and what does each cost?"""


@app.command()
def strategies() -> None:
    """List the connection strategies, one line each."""
    width = max(len(name) for name in STRATEGIES)
    for strategy in STRATEGIES.values():
        typer.echo(f"{strategy.name:<{width}}  {strategy.summary}")


StrategyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--strategy", "-s", help="Strategy name(s), repeatable or comma-separated; 'all'."
    ),
]
TopologyOpt = Annotated[
    str | None,
    typer.Option(
        help="direct (default), pgbouncer-transaction or pgbouncer-session; a list sweeps.",
        show_default=False,
    ),
]
PgBouncerPoolOpt = Annotated[
    str | None,
    typer.Option(
        help="PgBouncer's server pool (default_pool_size) (default: 20).", show_default=False
    ),
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="table, markdown (a GitHub step summary or PR comment), csv (a row per variant), "
        "json or html (a self-contained page with charts). Progress and notes go to stderr "
        "for all but table.",
    ),
]


def _format(value: str) -> str:
    if value not in present_common.FORMATS:
        raise BadInput(
            f"--format: expected one of {', '.join(present_common.FORMATS)}, got {value!r}"
        )
    return value


PostgresOpt = Annotated[
    str | None,
    typer.Option(
        "--postgres",  # named: the parameter is postgres_, which typer would call --postgres-
        help="embedded (default), local, docker[:IMAGE], or a postgresql:// DSN.",
        show_default=False,
    ),
]


# The options of `run`, one alias each so that the command reads as a list of them.
ScenarioFileOpt = Annotated[
    Path | None, typer.Argument(help="A scenario TOML file; flags override its values.")
]
ConcurrencyOpt = Annotated[
    str | None,
    typer.Option(help="Concurrent requests; a list sweeps (8,32,128) (default: 32)."),
]
DurationOpt = Annotated[
    str | None, typer.Option(help="Measured seconds per strategy (default: 10).")
]
WarmupOpt = Annotated[str | None, typer.Option(help="Unmeasured warm-up seconds (default: 2).")]
TimeoutOpt = Annotated[
    str | None, typer.Option(help="Per-request timeout in seconds (default: 10).")
]
PoolMinOpt = Annotated[str | None, typer.Option(help="Pool min_size (default: psycopg_pool's, 4).")]
PoolMaxOpt = Annotated[
    str | None,
    typer.Option(help="Pool max_size; a list sweeps (default: psycopg_pool's, = min)."),
]
WorkersOpt = Annotated[
    str | None, typer.Option(help="uvicorn worker processes; a list sweeps (default: 1).")
]
RateOpt = Annotated[
    str | None,
    typer.Option(
        help="Open model: requests/s offered on a fixed schedule (wrk2-style; latency "
        "from the intended send time); --concurrency is then the connections. A list sweeps."
    ),
]
RepeatOpt = Annotated[
    str | None,
    typer.Option(
        help="Run every variant in N rounds, interleaved, the order reversed every other "
        "round (A B, B A, ...): an A/B run for compare --base/--head (default: 1)."
    ),
]
MaxConnectionsOpt = Annotated[
    str | None, typer.Option(help="The throwaway server's max_connections (default: 100).")
]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        help="Load generator: httptools (default), aiohttp, httpx, or locust (Locust's "
        "master and workers; pip install 'connbench[locust]')."
    ),
]
LocustWorkersOpt = Annotated[
    int | None,
    typer.Option(help="--engine locust: local worker processes (default 1).", min=0),
]
ExpectWorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="--engine locust: remote workers to wait for (connbench worker --master "
        "HOST:PORT on each host; default 0).",
        min=0,
    ),
]
LocustBindOpt = Annotated[
    str | None,
    typer.Option(
        help="--engine locust: the address the master listens on for workers (default "
        "127.0.0.1; give a reachable one for remote workers)."
    ),
]
LocustPortOpt = Annotated[
    int | None,
    typer.Option(help="--engine locust: the master's port (default: a free one).", min=0),
]
FaultOpt = Annotated[
    str | None,
    typer.Option(
        help="Inject a fault SECOND s into the measured window: terminate@SECOND (kill the "
        "app's server sessions) or restart@SECOND (restart PostgreSQL).",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    str | None,  # a str until checked: Path() would drop a trailing slash
    typer.Option("--output", "-o", help="Result file (default: results/NAME-TIME.json)."),
]
ChartsOpt = Annotated[bool, typer.Option(help="Draw the per-second charts.")]
CalibrateFirstOpt = Annotated[
    bool,
    typer.Option(
        "--calibrate",
        help="First measure the ceilings (generator, pgbench with/without -C) and show "
        "each strategy as a fraction of them.",
    ),
]
FailIfOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-if",
        help="Exit 3 when this holds for a variant's medians, e.g. 'p99_ms>50', "
        "'error_rate>0.001', 'throughput_rps<500'. Repeatable.",
    ),
]
HtmlOpt = Annotated[
    bool,
    typer.Option("--html", help="Also write an HTML report beside the result file (NAME.html)."),
]


@app.command()
def run(
    scenario_file: ScenarioFileOpt = None,
    strategy: StrategyOpt = None,
    concurrency: ConcurrencyOpt = None,
    duration: DurationOpt = None,
    warmup: WarmupOpt = None,
    timeout: TimeoutOpt = None,
    pool_min: PoolMinOpt = None,
    pool_max: PoolMaxOpt = None,
    workers: WorkersOpt = None,
    rate: RateOpt = None,
    topology: TopologyOpt = None,
    pgbouncer_pool_size: PgBouncerPoolOpt = None,
    repeat: RepeatOpt = None,
    postgres_: PostgresOpt = None,
    max_connections: MaxConnectionsOpt = None,
    engine: EngineOpt = None,
    locust_workers: LocustWorkersOpt = None,
    expect_workers: ExpectWorkersOpt = None,
    locust_bind: LocustBindOpt = None,
    locust_port: LocustPortOpt = None,
    fault: FaultOpt = None,
    output: OutputOpt = None,
    charts: ChartsOpt = True,
    calibrate_first: CalibrateFirstOpt = False,
    fail_if: FailIfOpt = None,
    html_report: HtmlOpt = False,
    format_: FormatOpt = "table",
    app_: Annotated[
        list[str] | None,
        typer.Option(
            "--app",
            help="Your own app as a variant: NAME=MODULE:ATTR, or NAME=MODULE:ATTR@DIR with DIR "
            "on its import path (default: here). It gets DATABASE_URL and PG* for a database of "
            "its own. Repeatable.",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            help="An app already running: NAME=URL. Nothing is started; needs --postgres DSN "
            "(the database it uses). Repeatable.",
            show_default=False,
        ),
    ] = None,
    request_path: Annotated[
        str | None,
        typer.Option("--path", help="--app/--target: the path each request goes to (/visit/)."),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="--app/--target: the request's method (default: GET).")
    ] = None,
    body: Annotated[
        str | None, typer.Option(help="--app/--target: a JSON body sent with each request.")
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(help="--app/--target: a request header, 'Name: value'. Repeatable."),
    ] = None,
    ready_path: Annotated[
        str | None,
        typer.Option(help="--app/--target: probed until 2xx before the load (default: --path)."),
    ] = None,
    count_sql: Annotated[
        str | None,
        typer.Option(
            help="--app/--target: SQL counting the rows the app writes (e.g. 'SELECT count(*) "
            "FROM items'): rows are checked against 2xx responses."
        ),
    ] = None,
    setup_sql: Annotated[
        str | None, typer.Option(help="--app/--target: SQL run on its database before it starts.")
    ] = None,
) -> None:
    """Benchmark strategies (and your own apps) against a PostgreSQL and save a JSON result."""
    with _domain_errors():
        fmt = _format(format_)
        overrides: dict[str, object] = {
            "strategies": strategy,
            "concurrency": concurrency,
            "duration_s": duration,
            "warmup_s": warmup,
            "timeout_s": timeout,
            "pool_min": pool_min,
            "pool_max": pool_max,
            "workers": workers,
            "topology": topology,
            "pgbouncer_pool_size": pgbouncer_pool_size,
            "repeat": repeat,
            "rate": rate,
            "postgres": postgres_,
            "engine": engine,
            "locust_workers": locust_workers,
            "expect_workers": expect_workers,
            "locust_bind": locust_bind,
            "locust_port": locust_port,
            "fault": fault,
            "fail_if": fail_if or None,
            "app": app_ or None,
            "target": target or None,
            "path": request_path,
            "method": method,
            "body": body,
            "headers": header or None,
            "ready_path": ready_path,
            "count_sql": count_sql,
            "setup_sql": setup_sql,
        }
        if max_connections is not None:
            overrides["server"] = {"max_connections": max_connections}
        chosen = scenario.build(scenario_file, overrides)
        notes = console if fmt == "table" else err_console
        if output is not None and output.endswith("/"):
            raise BadInput(f"--output: {output} names a directory; give a file name")
        result, path = runner.execute(
            chosen,
            progress.ConsoleReporter(notes),
            Path(output) if output is not None else None,
            calibrate_first=calibrate_first,
        )
        _show_run(result, fmt, charts, label=str(path))
        if path is None or files.is_fallback(path):
            # Said above, with the reason; the last line says it again for scripts and logs.
            where = f"saved to {path} instead" if path else "not saved"
            typer.echo(f"connbench: error: the result was {where}", err=True)
            raise typer.Exit(EXIT_INTERRUPTED if result.interrupted else EXIT_FAILED)
        notes.print(f"[dim]saved {path}[/dim]", highlight=False)
        if html_report:
            page = _write_html(path.with_suffix(".html"), [(str(path), result)])
            notes.print(f"report: {page} (open it in a browser)", highlight=False)
        _exit_for(result)


def _exit_for(result: results.RunResult) -> None:
    """Exit non-zero when the run was interrupted, an app failed or a limit was crossed."""
    if result.interrupted:
        typer.echo("connbench: interrupted; partial result saved", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    # An unavailable variant (PgBouncer not installed) was said and is no failure.
    if any(r.status == "failed" for r in result.results):
        raise typer.Exit(EXIT_FAILED)
    crossed = run_view.limits_failed(result)
    if crossed:
        names = ", ".join(dict.fromkeys(v.limit for v in crossed))
        typer.echo(f"connbench: limits crossed: {names}", err=True)
        raise typer.Exit(EXIT_LIMITS)


def _show_run(result: results.RunResult, fmt: str, charts: bool = True, label: str = "") -> None:
    if fmt == "table":
        run_view.render_run(console, result, charts=charts)
    elif fmt == "html":
        from connbench.present import html as html_view  # its charts' JS: only when asked

        sys.stdout.write(html_view.report([(label, result)]))
    else:
        sys.stdout.write(run_view.format_run(result, fmt))


def _write_html(
    path: Path,
    runs: list[tuple[str, results.RunResult]],
    comparisons: list[compare.Comparison] | None = None,
) -> Path:
    """Write the HTML report of ``runs`` (and ``comparisons``) to ``path``, atomically."""
    from connbench.present import html as html_view

    page = html_view.report(runs, comparisons or [])
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Private like the result it shows (mkstemp: 0600), and whole or not there at all.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(page)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise BadInput(f"{path}: cannot write the report ({exc.strerror})") from None
    return path


@app.command(name="calibrate")
def calibrate_cmd(
    postgres_: PostgresOpt = None,
    concurrency: Annotated[
        str | None, typer.Option(help="Concurrent clients (default: 32).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option(help="Seconds per measurement (default: 5).")
    ] = None,
) -> None:
    """Measure the ceilings: the load generator's on a no-database endpoint (and wrk's),
    and pgbench's TPS on the same insert with and without a new connection per transaction."""
    with _domain_errors():
        chosen = scenario.build(
            None,
            {"postgres": postgres_, "concurrency": concurrency, "duration_s": duration or "5"},
        )
        backend = postgres.parse_backend(chosen.postgres)
        with postgres.start(backend, settings=chosen.server) as pg:
            console.print(f"PostgreSQL {pg.version} at {pg.display_dsn}", highlight=False)
            ceilings = calibrate.measure(
                pg, concurrency=chosen.concurrency[0], duration_s=chosen.duration_s
            )
        run_view.render_calibration(console, ceilings)


@app.command()
def show(
    result_file: Annotated[Path, typer.Argument(help="A result JSON file.")],
    charts: Annotated[bool, typer.Option(help="Draw the per-second charts.")] = True,
    format_: FormatOpt = "table",
) -> None:
    """Show a saved result: its tables, per-second charts and limit verdicts as recorded."""
    with _domain_errors():
        fmt = _format(format_)
        run_result = results.load(result_file)
        run_result.summary = stats.aggregate(run_result.results)  # derived: always recomputed
        _show_run(run_result, fmt, charts, label=str(result_file))


@app.command()
def schema() -> None:
    """Print the JSON Schema of a result file (the version this connbench writes)."""
    sys.stdout.write(results.json_schema_text())


# The options of `compare`.
FilesOpt = Annotated[
    list[Path] | None,
    typer.Argument(help="BASE.json NEW.json [MORE.json ...]", metavar="FILES"),
]
FailOnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-on",
        help="METRIC:PERCENT: fail when this much worse and significant (with --base/--head: "
        "its interval excludes no change), e.g. throughput:10%, p99:25%. Metrics: "
        + metrics.known()
        + ". "
        "Replaces the [gate] the NEW result's scenario recorded, metric by metric.",
    ),
]
AlphaOpt = Annotated[
    str | None,
    typer.Option(help="Significance level of the Mann-Whitney U test [0.05, or the gate's]."),
]
IgnoreOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore",
        help="Match variants without this part of their key: "
        + ", ".join(compare.DIMENSIONS)
        + " (e.g. --ignore pool to compare pool sizes). Repeatable.",
    ),
]

BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base",
        help="A/B inside one RESULT: the base variant (its key, or words only it has: "
        "a --app name, 'connect', 'pool=1..1'). Judged round by round with --head.",
        show_default=False,
    ),
]
HeadOpt = Annotated[
    str | None,
    typer.Option("--head", help="A/B inside one RESULT: the head variant.", show_default=False),
]
AllowMissingOpt = Annotated[
    bool,
    typer.Option(
        "--allow-missing",
        help="A variant missing from NEW, or failed, unavailable or serving nothing (in a "
        "round, for --base/--head) does not fail the gate; its rounds are left out.",
    ),
]


@app.command("compare")
def compare_results(
    files: FilesOpt = None,
    fail_on: FailOnOpt = None,
    alpha: AlphaOpt = None,
    ignore: IgnoreOpt = None,
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
    with _domain_errors():
        fmt = _format(format_)
        paths = files or []
        thresholds = [_parsed("--fail-on", checks.parse_fail_on, text) for text in fail_on or []]
        level = _parsed("--alpha", checks.parse_alpha, alpha) if alpha is not None else None
        if base_name is not None or head_name is not None:
            if ignore:
                raise BadInput("--ignore matches variants across files; --base/--head name them")
            _compare_paired(paths, base_name, head_name, thresholds, level, allow_missing, fmt)
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
            compare_view.render_compare(console, comparisons)
        elif fmt == "html":
            from connbench.present import html as html_view

            for _, run_result in loaded:
                run_result.summary = stats.aggregate(run_result.results)
            sys.stdout.write(html_view.report(loaded, comparisons))
        else:
            sys.stdout.write(compare_view.format_compare(comparisons, fmt))
        if any(c.failed for c in comparisons):
            raise typer.Exit(EXIT_FAILED)


def _compare_paired(
    paths: list[Path],
    base_name: str | None,
    head_name: str | None,
    thresholds: list[tuple[str, float]],
    level: float | None,
    allow_missing: bool,
    fmt: str,
) -> None:
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
        paired_view.render_paired(console, comparison)
    else:
        sys.stdout.write(paired_view.format_paired(comparison, fmt))
    if comparison.failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def report(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="RESULT.json [MORE.json ...]", metavar="FILES", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The HTML file (default: the first result's, .html).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML page (charts, tables; opens offline) for the results."""
    with _domain_errors():
        paths = files or []
        if not paths:
            raise BadInput("report needs at least one result file")
        loaded = []
        for path in paths:
            run_result = results.load(path)
            run_result.summary = stats.aggregate(run_result.results)
            loaded.append((str(path), run_result))
        page = _write_html(output or paths[0].with_suffix(".html"), loaded)
        size = page.stat().st_size
        console.print(
            f"report: {page} ({size / 1e6:.1f} MB; open it in a browser)", highlight=False
        )


T = TypeVar("T")


def _parsed(flag: str, parse: Callable[[str], T], text: str) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        raise BadInput(f"{flag}: {exc}, got {text!r}") from None


@app.command()
def serve(
    strategy: Annotated[str, typer.Argument(help="The strategy to serve.")],
    postgres_: PostgresOpt = None,
    pool_min: Annotated[str | None, typer.Option(help="Pool min_size (default: 4).")] = None,
    pool_max: Annotated[str | None, typer.Option(help="Pool max_size (default: = min).")] = None,
    workers: Annotated[
        str | None, typer.Option(help="uvicorn worker processes (default: 1).")
    ] = None,
    topology: TopologyOpt = None,
    pgbouncer_pool_size: PgBouncerPoolOpt = None,
) -> None:
    """Serve one strategy's app on a throwaway PostgreSQL until Ctrl-C (point wrk or k6 at it)."""
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
        variants = chosen.variants()
        if len(variants) != 1:
            raise BadInput("serve takes exactly one strategy and one value per setting")
        variant = variants[0]
        unavailable = pgbouncer.unavailable(variant.topology)
        if unavailable:
            raise MissingDependency(f"--topology {variant.topology}: {unavailable}")
        try:
            with ExitStack() as stack:
                logdir = tempdirs.make("serve")
                stack.callback(tempdirs.remove, logdir)
                backend = postgres.parse_backend(chosen.postgres)
                pg = stack.enter_context(postgres.start(backend, settings=chosen.server))
                serving = runner.serving(pg, variant, chosen, logdir / "app.log")
                route, served = stack.enter_context(serving)
                _say_serving(pg, route, served)
                while served.exit_code() is None:
                    time.sleep(0.5)
                raise ConnbenchError(
                    f"the app exited (code {served.exit_code()})\n{served.log_tail()}"
                )
        except KeyboardInterrupt:
            console.print("stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None


def _say_serving(pg: postgres.Postgres, route: pgbouncer.Route, served: appserver.App) -> None:
    console.print(f"PostgreSQL {pg.version} at {pg.display_dsn}", highlight=False)
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


@app.command()
def locustfile(
    strategy: Annotated[
        str, typer.Argument(help="The strategy (or variant) whose request the file sends.")
    ] = "pool",
    concurrency: Annotated[int, typer.Option(help="Users, to split --rate over.", min=1)] = 32,
    rate: Annotated[
        float | None,
        typer.Option(help="Open model: requests per second over all users (default: closed loop)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Per-request timeout, seconds.")] = 10.0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the locustfile that --engine locust runs, for plain `locust --worker -f FILE`."""
    from connbench.measure import locust_engine

    with _domain_errors():
        if strategy not in STRATEGIES:
            raise BadInput(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
        if rate is not None and rate <= 0:
            raise BadInput(f"--rate: expected a positive number, got {rate}")
        text = locust_engine.locustfile(
            locust_engine.Request(),
            concurrency=concurrency,
            timeout_s=timeout,
            rate_rps=rate,
            title=f"GET /visit/ on the {strategy} app",
        )
        if output is None:
            sys.stdout.write(text)
        else:
            output.write_text(text)


@app.command()
def worker(
    master: Annotated[
        str,
        typer.Option(
            help="The master's HOST:PORT, as `connbench run --engine locust --expect-workers N "
            "--locust-bind ADDRESS --locust-port PORT` listens on it."
        ),
    ],
    processes: Annotated[
        int, typer.Option(help="Worker processes to run here (one per core is usual).", min=1)
    ] = 1,
) -> None:
    """Run Locust workers for a connbench run on another host; they fetch the locustfile from
    the master and exit when its run ends."""
    from connbench.measure import locust_engine

    with _domain_errors():
        locust_engine.require()
        try:
            argv = locust_engine.worker_argv(master)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        try:
            codes = locust_engine.run_workers(argv, processes)
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if any(codes):
            raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """Entry point: the Typer app, with unexpected errors reduced to one line."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - last resort: never a traceback for users
        if os.environ.get("CONNBENCH_DEBUG"):
            raise
        typer.echo(
            f"connbench: internal error: {type(exc).__name__}: {redact(str(exc))} "
            "(set CONNBENCH_DEBUG=1 for the traceback)",
            err=True,
        )
        sys.exit(1)
