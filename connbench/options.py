"""The command-line options, declared apart from the commands that read them (as locust's
``argument_parser.py`` sits beside its ``main.py``).

``run`` is one table, :data:`RUN`: each row is an option, its Typer declaration and the scenario
key it sets, so adding an option is one edit and the overrides handed to
:func:`connbench.model.scenario.build` are derived from the table (:func:`overrides`), never
listed again. Help text states the defaults of :mod:`connbench.model.defaults`, never a figure
of its own. Imported by ``connbench --help``: nothing heavy here (typer and the model's
constants only).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from connbench.model import defaults, metrics
from connbench.model.choices import DIMENSIONS, ENGINES, TOPOLOGIES, listed
from connbench.model.defaults import COUNT_SQL_TIMEOUT_S, SETUP_SQL_TIMEOUT_S, seconds

HELP_OPTIONS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# `--help` in groups, by the option's long name: what runs, the load, pool and server, your
# own app, Locust, the output, the gate. An option not named here is listed under "Options".
HELP_GROUPS: dict[str, tuple[str, ...]] = {
    "Load": (
        "--strategy", "--concurrency", "--duration", "--warmup", "--timeout", "--rate",
        "--repeat", "--slices", "--engine", "--fault",
    ),
    "Pool and server": (
        "--pool-min", "--pool-max", "--workers", "--topology", "--pgbouncer-pool-size",
        "--postgres", "--max-connections", "--calibrate", "--port",
    ),
    "Your app or a running one": (
        "--app", "--target", "--path", "--method", "--body", "--header", "--ready-path",
        "--count-sql", "--setup-sql", "--request", "--check", "--app-python",
    ),
    "Locust (--engine locust)": (
        "--locust-workers", "--expect-workers", "--locust-bind", "--locust-port",
        "--locust-token-file", "--token-file", "--master", "--processes",
    ),
    "Output": (
        "--output", "--format", "--charts", "--explain", "--html", "--progress", "--summary",
        "--trend",
    ),
    "Gate": ("--fail-if", "--fail-on", "--alpha", "--ignore", "--base", "--head",
             "--allow-missing", "--max-rounds"),
}  # fmt: skip
_GROUP_OF = {flag: group for group, flags in HELP_GROUPS.items() for flag in flags}


class GroupedHelp(TyperCommand):
    """Plain click help (fast: no rich to import) with the options in :data:`HELP_GROUPS`."""

    # Typed loosely: typer carries its own copy of click, whose types are private to it.
    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        groups: dict[str, list[tuple[str, str]]] = {name: [] for name in HELP_GROUPS}
        groups["Options"] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:
                long = max(param.opts, key=len)
                groups[_GROUP_OF.get(long, "Options")].append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for name, records in groups.items():
            if records:
                with formatter.section(name):
                    formatter.write_dl(records)


# Metavars that say what a flag takes (typer would show <str> for every number, because a
# sweep is given as text).
INTS = "INTEGER[,...]"
INT = "INTEGER"
DURATION = "DURATION"
INTS_HELP = "INTEGER or a comma list (a sweep)"

StrategyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--strategy",
        "-s",
        metavar="NAME[,...]",
        help="Strategy name(s), repeatable or comma-separated; 'all' "
        f"(default: {defaults.STRATEGY}).",
        show_default=False,
    ),
]
PgBouncerPoolOpt = Annotated[
    str | None,
    typer.Option(
        metavar=INT,
        help="PgBouncer's server pool (default_pool_size) "
        f"(default: {defaults.PGBOUNCER_POOL_SIZE}).",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="table, markdown (a GitHub step summary or PR comment), csv (a row per variant), "
        "json, html (a self-contained page with charts), or for tracking tools: "
        "github-action-benchmark (its customSmallerIsBetter array; "
        "github-action-benchmark:bigger for customBiggerIsBetter: throughput) or bmf "
        "(Bencher). Progress and notes go to stderr for all but table.",
    ),
]
SummaryOpt = Annotated[
    Path | None,
    typer.Option(
        "--summary",
        metavar="FILE",
        help='Also append the Markdown report to FILE, e.g. --summary "$GITHUB_STEP_SUMMARY" '
        "(written whatever the exit code).",
        show_default=False,
    ),
]
ChartsOpt = Annotated[
    bool, typer.Option("--charts/--no-charts", help="Draw the per-second charts.")
]
ExplainOpt = Annotated[
    bool,
    typer.Option(
        "--explain", help="Say under each table what its columns mean (said once, not every run)."
    ),
]


PostgresOpt = Annotated[
    str | None,
    typer.Option(
        "--postgres",
        metavar="BACKEND",
        help=f"{defaults.POSTGRES} (default), local, docker[:IMAGE], or a postgresql:// DSN.",
        show_default=False,
    ),
]


# `connbench compare` and `connbench report`
COMPARE_DIMENSIONS = ", ".join(DIMENSIONS)

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

ResultFilesOpt = Annotated[
    list[Path] | None,
    typer.Argument(help="BASE.json NEW.json [MORE.json ...]", metavar="FILES"),
]
CompareFailOnOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-on",
        metavar="METRIC:PERCENT",
        help="Fail when this much worse and significant (with --base/--head: its paired "
        "interval excludes no change), e.g. throughput:10%, p99:25%. "
        f"Metrics: {metrics.known()}. Replaces, metric by metric, the gate recorded in "
        "the NEW result's scenario (its gate table). Repeatable.",
        show_default=False,
    ),
]
CompareAlphaOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LEVEL",
        help="Significance level of the Mann-Whitney U test "
        f"(default: {defaults.ALPHA:g}, or the gate's).",
        show_default=False,
    ),
]
IgnoreOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ignore",
        metavar="DIMENSION",
        help=f"Match variants without this part of their key: {COMPARE_DIMENSIONS} "
        "(e.g. --ignore pool to compare pool sizes). Repeatable.",
        show_default=False,
    ),
]
ReportFilesOpt = Annotated[
    list[Path] | None,
    typer.Argument(help="RESULT.json [MORE.json ...]", metavar="FILES", show_default=False),
]
ReportOutputOpt = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="The HTML file (default: the first result's, .html; with --trend, "
        "trend.html beside it).",
        show_default=False,
    ),
]
TrendOpt = Annotated[
    bool,
    typer.Option(
        "--trend",
        help="One chart per metric over the results, in date order, labelled by the "
        "commit each recorded: the repeats' min..max as bars, red where a gate failed "
        "(a --fail-if limit, or the scenario's gate against the result before).",
    ),
]


@dataclass(frozen=True)
class Opt:
    """One option (or argument) of a command: its parameter name, its type and Typer
    declaration (``typer.Option(...)``; None when ``type`` is an ``Annotated`` alias such as
    :data:`PostgresOpt`), its default, and the scenario key it sets (None: the command's own,
    such as --output; ``server.max_connections``: a server setting)."""

    name: str
    type: Any
    info: Any = None
    default: Any = None
    key: str | None = None

    @property
    def declared(self) -> Any:
        """The parameter's annotation, as it would be written in the signature."""
        return self.type if self.info is None else Annotated[self.type, self.info]


F = TypeVar("F", bound=Callable[..., Any])


def declare(table: Sequence[Opt]) -> Callable[[F], F]:
    """Give a ``def command(**given)`` the parameters of ``table``, in its order, as if each
    were written in its signature: Typer reads them from there (help, parsing, defaults)."""

    def with_table(command: F) -> F:
        kind = inspect.Parameter.KEYWORD_ONLY
        parameters = [
            inspect.Parameter(opt.name, kind, default=opt.default, annotation=opt.declared)
            for opt in table
        ]
        signature = inspect.Signature(parameters, return_annotation=None)
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {opt.name: opt.declared for opt in table} | {"return": None}
        return command

    return with_table


def overrides(table: Sequence[Opt], given: Mapping[str, Any]) -> dict[str, Any]:
    """The scenario values the options in ``table`` were given, by scenario key (None, or an
    empty repeatable option: not given, so the file's value or the default stands)."""
    out: dict[str, Any] = {}
    for opt in table:
        value = given[opt.name]
        if opt.key is None or value is None or (isinstance(value, list | tuple) and not value):
            continue
        section, _, key = opt.key.rpartition(".")
        (out.setdefault(section, {}) if section else out)[key] = value
    return out


# `connbench run`, in the order --help lists the options of each group.
RUN: tuple[Opt, ...] = (
    Opt(
        "scenario_file",
        Path | None,
        typer.Argument(help="A scenario TOML file; flags override its values.", metavar="FILE"),
    ),
    Opt(
        "strategy",
        StrategyOpt,
        key="strategies",
    ),
    Opt(
        "concurrency",
        str | None,
        typer.Option(
            "--concurrency",
            "-c",
            metavar=INTS,
            help=f"Concurrent requests; {INTS_HELP}, e.g. 8,32,128 "
            f"(default: {defaults.CONCURRENCY}).",
            show_default=False,
        ),
        key="concurrency",
    ),
    Opt(
        "duration",
        str | None,
        typer.Option(
            "--duration",
            "-d",
            metavar=DURATION,
            help="Measured time per variant: 500ms, 30s, 2m; a bare number is seconds "
            f"(default: {seconds(defaults.DURATION_S)}).",
            show_default=False,
        ),
        key="duration_s",
    ),
    Opt(
        "warmup",
        str | None,
        typer.Option(
            "--warmup",
            "-w",
            metavar=DURATION,
            help=f"Unmeasured warm-up before each window (default: {seconds(defaults.WARMUP_S)}).",
            show_default=False,
        ),
        key="warmup_s",
    ),
    Opt(
        "timeout",
        str | None,
        typer.Option(
            metavar=DURATION,
            help=f"Per-request timeout (default: {seconds(defaults.TIMEOUT_S)}).",
            show_default=False,
        ),
        key="timeout_s",
    ),
    Opt(
        "pool_min",
        str | None,
        typer.Option(
            metavar=INT,
            help=f"Pool min_size (default: psycopg_pool's, {defaults.POOL_MIN}).",
            show_default=False,
        ),
        key="pool_min",
    ),
    Opt(
        "pool_max",
        str | None,
        typer.Option(
            metavar=INTS,
            help=f"Pool max_size; {INTS_HELP} (default: psycopg_pool's, = min).",
            show_default=False,
        ),
        key="pool_max",
    ),
    Opt(
        "workers",
        str | None,
        typer.Option(
            metavar=INTS,
            help=f"uvicorn worker processes; {INTS_HELP} (default: {defaults.WORKERS}).",
            show_default=False,
        ),
        key="workers",
    ),
    Opt(
        "rate",
        str | None,
        typer.Option(
            "--rate",
            "-R",
            metavar="RPS[,...]",
            help="Open model: requests/s offered on a fixed schedule (wrk2's -R; latency "
            "from the intended send time); --concurrency is then the connections. A number "
            "or a comma list (a sweep).",
            show_default=False,
        ),
        key="rate",
    ),
    Opt(
        "topology",
        str | None,
        typer.Option(
            metavar="TOPOLOGY[,...]",
            help=f"{listed(TOPOLOGIES, defaults.TOPOLOGY)}; a comma list sweeps.",
            show_default=False,
        ),
        key="topology",
    ),
    Opt(
        "pgbouncer_pool_size",
        PgBouncerPoolOpt,
        key="pgbouncer_pool_size",
    ),
    Opt(
        "repeat",
        str | None,
        typer.Option(
            "--repeat",
            "-r",
            metavar="N|auto",
            help="Run every variant in N rounds, interleaved, the order reversed every other "
            f"round (A B, B A, ...): an A/B run for compare --base/--head (default: "
            f"{defaults.REPEAT}). "
            "'auto': rounds until the --base/--head gate decides, at most --max-rounds.",
            show_default=False,
        ),
        key="repeat",
    ),
    Opt(
        "slices",
        str | None,
        typer.Option(
            metavar="N",
            help="With --repeat: each round starts every --app at once and takes the load in "
            "turns between them, N turns a side of --duration/N measured seconds each "
            "(A B A B ...): a neighbour's burst lands on both sides, not one. Own apps only "
            f"(default: {defaults.SLICES}, one side after the other).",
            show_default=False,
        ),
        key="slices",
    ),
    Opt(
        "max_rounds",
        str | None,
        typer.Option(
            metavar=INT,
            help="--repeat auto: the most rounds to run before the gate is called "
            f"inconclusive (default: {defaults.MAX_ROUNDS}).",
            show_default=False,
        ),
        key="max_rounds",
    ),
    Opt(
        "base_name",
        str | None,
        typer.Option(
            "--base",
            metavar="NAME",
            help="A/B gate on this run: the base variant (its key, or words only it has). "
            "With --head and --fail-on: exit 1 on a regression, 5 when inconclusive.",
            show_default=False,
        ),
        key="base",
    ),
    Opt(
        "head_name",
        str | None,
        typer.Option(
            "--head",
            metavar="NAME",
            help="A/B gate on this run: the head variant.",
            show_default=False,
        ),
        key="head",
    ),
    Opt(
        "fail_on",
        list[str] | None,
        typer.Option(
            "--fail-on",
            metavar="METRIC:PERCENT",
            help="A/B gate on this run (--base/--head): the change that matters, e.g. "
            "throughput:10%. Repeatable.",
            show_default=False,
        ),
        key="fail_on",
    ),
    Opt(
        "alpha",
        str | None,
        typer.Option(
            metavar="LEVEL",
            help=f"A/B gate on this run: its error rate (default: {defaults.ALPHA:g}).",
            show_default=False,
        ),
        key="alpha",
    ),
    Opt(
        "postgres_",
        PostgresOpt,
        key="postgres",
    ),
    Opt(
        "max_connections",
        str | None,
        typer.Option(
            metavar=INT,
            help=f"The throwaway server's max_connections (default: {defaults.MAX_CONNECTIONS}).",
            show_default=False,
        ),
        key="server.max_connections",
    ),
    Opt(
        "engine",
        str | None,
        typer.Option(
            metavar="ENGINE",
            # locust comes last in ENGINES: the words in brackets are about it
            help=f"Load generator: {listed(ENGINES, defaults.ENGINE, ', or ')} "
            "(Locust's master and workers; pip install 'connbench[locust]').",
            show_default=False,
        ),
        key="engine",
    ),
    Opt(
        "locust_workers",
        int | None,
        typer.Option(
            metavar=INT,
            help=f"--engine locust: local worker processes (default {defaults.LOCUST_WORKERS}).",
            min=0,
        ),
        key="locust_workers",
    ),
    Opt(
        "expect_workers",
        int | None,
        typer.Option(
            metavar=INT,
            help="--engine locust: remote workers to wait for (connbench worker --master "
            f"HOST:PORT on each host; default {defaults.EXPECT_WORKERS}).",
            min=0,
        ),
        key="expect_workers",
    ),
    Opt(
        "locust_bind",
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="--engine locust: the address the master listens on for workers (default "
            f"{defaults.LOCUST_BIND}; give a reachable one for remote workers).",
        ),
        key="locust_bind",
    ),
    Opt(
        "locust_port",
        int | None,
        typer.Option(
            metavar="PORT", help="--engine locust: the master's port (default: a free one).", min=0
        ),
        key="locust_port",
    ),
    Opt(
        "locust_token_file",
        str | None,
        typer.Option(
            metavar="FILE",
            help="--engine locust: the token remote workers must hold to be counted (needed "
            "with --expect-workers; created, readable by you alone, when FILE does not exist; "
            "give it to `connbench worker --token-file`). Local workers get a fresh token each "
            "run, privately.",
        ),
        key="locust_token_file",
    ),
    Opt(
        "fault",
        str | None,
        typer.Option(
            metavar="KIND@DURATION",
            help="Inject a fault that far into the measured window: terminate@3s (kill the "
            "app's server sessions) or restart@3s (restart PostgreSQL).",
            show_default=False,
        ),
        key="fault",
    ),
    Opt(
        "output",
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Result file (default: results/NAME-TIME.json).",
            show_default=False,
        ),
    ),
    Opt(
        "charts",
        ChartsOpt,
        default=True,
    ),
    Opt(
        "explain",
        ExplainOpt,
        default=False,
    ),
    Opt(
        "calibrate_first",
        bool,
        typer.Option(
            "--calibrate",
            help="First measure the references (the generator's own rate, pgbench with and "
            "without -C at each concurrency) and show each strategy as a fraction of them.",
        ),
        default=False,
    ),
    Opt(
        "fail_if",
        list[str] | None,
        typer.Option(
            "--fail-if",
            metavar="LIMIT",
            help="Exit 3 when this holds for a variant's medians, e.g. 'p99_ms>50', "
            "'error_rate>0.001', 'throughput_rps<500'. Repeatable.",
            show_default=False,
        ),
        key="fail_if",
    ),
    Opt(
        "progress_every",
        str | None,
        typer.Option(
            "--progress",
            "-P",
            metavar=DURATION,
            help="Print a progress line this often (req/s, p99 so far, errors, server "
            "connections), like pgbench -P; 0 for none. Default: a live bar on a terminal, "
            f"a line every {seconds(defaults.PROGRESS_EVERY_S)} elsewhere (a pipe, a CI log).",
            show_default=False,
        ),
    ),
    Opt(
        "summary",
        SummaryOpt,
    ),
    Opt(
        "html_report",
        bool,
        typer.Option(
            "--html", help="Also write an HTML report beside the result file (NAME.html)."
        ),
        default=False,
    ),
    Opt(
        "format_",
        FormatOpt,
        default="table",
    ),
    Opt(
        "app_",
        list[str] | None,
        typer.Option(
            "--app",
            metavar="NAME=MODULE:ATTR",
            help="Your own app as a variant: NAME=MODULE:ATTR, or NAME=MODULE:ATTR@DIR with DIR "
            "on its import path (default: here). It gets DATABASE_URL and PG* for a database of "
            "its own. Repeatable.",
            show_default=False,
        ),
        key="app",
    ),
    Opt(
        "app_python",
        list[str] | None,
        typer.Option(
            "--app-python",
            metavar="NAME=PATH",
            help="Run the --app NAME under the interpreter PATH (e.g. its own virtualenv's "
            "bin/python, with uvicorn[standard] installed there). Repeatable.",
            show_default=False,
        ),
        key="app_python",
    ),
    Opt(
        "target",
        list[str] | None,
        typer.Option(
            metavar="NAME=URL",
            help="An app already running: NAME=URL. Nothing is started; needs --postgres DSN "
            "(the database it uses). Repeatable.",
            show_default=False,
        ),
        key="target",
    ),
    Opt(
        "request_path",
        str | None,
        typer.Option(
            "--path",
            metavar="PATH",
            help="--app/--target: the path each request goes to (/visit/), a query string "
            "included, sent as written (percent-encode spaces and control characters).",
        ),
        key="path",
    ),
    Opt(
        "method",
        str | None,
        typer.Option(
            metavar="METHOD",
            help=f"--app/--target: the request's method (default: {defaults.METHOD}).",
        ),
        key="method",
    ),
    Opt(
        "request_",
        list[str] | None,
        typer.Option(
            "--request",
            metavar="'[WEIGHT] METHOD PATH [JSON]'",
            help="--app/--target: one kind of request of a mix, sent WEIGHT times (default 1) "
            'per sum of the weights, e.g. \'3 POST /orders/ {"customer_id": {{randint 1 '
            "100}}}'; placeholders {{randint A B}}, {{uuid}}, {{seq}}, {{csv FILE COLUMN}}. "
            "Repeatable; instead of --path/--method/--body.",
            show_default=False,
        ),
        key="request",
    ),
    Opt(
        "check_only",
        bool,
        typer.Option(
            "--check",
            help="Only check: start each --app/--target, send it one request of each kind, "
            "run its setup_sql and count_sql; measure nothing (exit 1 if one fails).",
        ),
        default=False,
    ),
    Opt(
        "body",
        str | None,
        typer.Option(metavar="JSON", help="--app/--target: a JSON body sent with each request."),
        key="body",
    ),
    Opt(
        "header",
        list[str] | None,
        typer.Option(
            metavar="'NAME: VALUE'",
            help="--app/--target: a request header, 'Name: value' (printable ASCII). Repeatable.",
        ),
        key="headers",
    ),
    Opt(
        "ready_path",
        str | None,
        typer.Option(
            metavar="PATH",
            help="--app/--target: probed until 2xx before the load (default: --path).",
        ),
        key="ready_path",
    ),
    Opt(
        "count_sql",
        str | None,
        typer.Option(
            metavar="SQL",
            help="--app/--target: SQL counting the rows the app writes (e.g. 'SELECT count(*) "
            "FROM items'), or @FILE: rows are checked against 2xx responses. Runs under a "
            f"{COUNT_SQL_TIMEOUT_S:g} s statement timeout.",
        ),
        key="count_sql",
    ),
    Opt(
        "setup_sql",
        str | None,
        typer.Option(
            metavar="SQL",
            help="--app/--target: SQL (or @FILE) run on its database before it starts, under "
            f"a {SETUP_SQL_TIMEOUT_S:g} s statement timeout.",
        ),
        key="setup_sql",
    ),
)
