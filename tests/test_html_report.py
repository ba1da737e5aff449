"""The HTML report: built from a real run, checked as text, then opened in a real Chromium."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from connbench import runner
from connbench.analyse import charts, compare, stats
from connbench.model import results
from connbench.model.results import RunResult
from connbench.model.scenario import build
from connbench.present import html, html_names

from .browser import needs_chromium, open_in_chromium
from .conftest import WIDE, RecordingReporter, entry, run_cli, run_of
from .helpers import XSS

MAX_BYTES = 5_000_000


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    """A real sweep: two strategies at two concurrencies, repeated twice, on real Postgres."""
    scenario = build(
        None,
        {
            "strategies": ["pool", "connect"],
            "concurrency": "4,16",
            "repeat": "2",
            "duration_s": "1.5",
            "warmup_s": "0.5",
        },
    )
    out = tmp_path_factory.mktemp("html") / "sweep.json"
    runner.execute(scenario, RecordingReporter(), out)
    run = results.load(out)
    run.summary = stats.aggregate(run.results)
    return out, run


def a_comparison() -> tuple[RunResult, RunResult, compare.Comparison]:
    """BASE and a NEW whose throughput fell by half: the throughput check fails."""
    base = run_of(*(entry("pool", repeat=i, rps=1000 + 10 * i) for i in range(5)))
    new = run_of(*(entry("pool", repeat=i, rps=500 + 10 * i, p99=41) for i in range(5)))
    gate = compare.Gate(thresholds=(compare.Threshold("throughput", 0.10, "--fail-on"),))
    return base, new, compare.compare(base, new, gate=gate)


def hostile(run: RunResult) -> RunResult:
    """``run`` with markup where a result holds names and text."""
    evil = copy.deepcopy(run)
    evil.scenario.name = XSS
    evil.scenario.source_text = XSS
    evil.environment.cpu_model = XSS
    for result in evil.results:
        result.strategy = XSS + result.strategy
        result.variant.key = XSS + result.key
        result.warnings.append(XSS)
    evil.summary = stats.aggregate(evil.results)
    return evil


def data_rows(spec: object) -> list[object]:
    """Every inline data row of a chart spec, whatever layer holds it."""
    if isinstance(spec, dict):
        data = spec.get("data")
        own = data.get("values", []) if isinstance(data, dict) else []
        return [*own, *(row for value in spec.values() for row in data_rows(value))]
    if isinstance(spec, list):
        return [row for value in spec for row in data_rows(value)]
    return []


# --- as text -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_report_is_one_small_file_that_names_no_other_host(
    real_run: tuple[Path, RunResult],
) -> None:
    path, run = real_run
    page = html.report([(str(path), run)])
    assert len(page.encode()) < MAX_BYTES
    assert "default-src 'none'" in page  # the browser itself refuses any request
    ours = page.replace(html._bundle(), "")  # the page less Vega's own code
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", ours, re.IGNORECASE)
    specs = json.loads(re.search(r'id="connbench-charts">(.*?)</script>', page, re.S)[1])  # type: ignore[index]
    titles = [spec["title"]["text"] for spec in specs.values()]
    for spec in specs.values():  # each chart has a row of data per variant at least
        assert len(data_rows(spec)) >= 4, spec["title"]
    for title in (
        "Throughput per second",
        "p99 latency per second",
        "Server connections",
        "Server connections active",
        "Server connections idle",
        "Server connections idle in transaction",
        "Latency by percentile",
        "Throughput",
        "p99 latency",
        "Server sessions opened per 2xx response",
        "Rows inserted vs 2xx responses",
        "Where the time goes",
        "Throughput over concurrency",
        "p99 latency over concurrency",
    ):
        assert title in titles


@pytest.mark.integration
def test_a_variant_keeps_its_colour_across_charts(real_run: tuple[Path, RunResult]) -> None:
    _, run = real_run
    page = html.report([("r", run)])
    specs = json.loads(re.search(r'id="connbench-charts">(.*?)</script>', page, re.S)[1])  # type: ignore[index]
    seen: dict[str, set[str]] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            colour = node.get("color")
            if isinstance(colour, dict) and colour.get("field") == "variant":
                scale = colour["scale"]
                for label, value in zip(scale["domain"], scale["range"], strict=True):
                    seen.setdefault(label, set()).add(value)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(specs)
    assert set(seen) == {"pool c=4", "pool c=16", "connect c=4", "connect c=16"}
    assert all(len(colours) == 1 for colours in seen.values())
    assert len({next(iter(c)) for c in seen.values()}) == 4  # and no two share one


@pytest.mark.integration
def test_markup_from_a_result_is_shown_as_text(real_run: tuple[Path, RunResult]) -> None:
    _, run = real_run
    base, new, comparison = a_comparison()
    page = html.report([(XSS, hostile(run))], [comparison])
    assert "<img src=x" not in page
    assert "<script>alert(2)" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert page.count("<script") == 2  # the chart specs and the bundled charting code


@pytest.mark.integration
def test_percentile_curve_runs_from_p50_to_where_the_counts_end(
    real_run: tuple[Path, RunResult],
) -> None:
    _, run = real_run
    histogram = charts.merged([r.histogram for r in run.results])
    assert histogram is not None
    curve = charts.percentile_curve(histogram)
    xs = [x for x, _, _ in curve]
    assert xs[0] == 2.0 and curve[0][1] == 50.0
    assert xs[-1] <= histogram.get_total_count()
    assert [ms for _, _, ms in curve] == sorted(ms for _, _, ms in curve)
    assert charts.merged([None, "not a histogram"]) is None


def test_change_interval_spans_every_pairing_of_repeats() -> None:
    _, _, comparison = a_comparison()
    change = comparison.variants[0].metrics["throughput"]
    low, high = charts.change_interval(change) or (0.0, 0.0)
    assert low == pytest.approx(500 / 1040 - 1)
    assert high == pytest.approx(540 / 1000 - 1)
    assert low <= change.change <= high  # type: ignore[operator]


# --- the commands ------------------------------------------------------------------------------


@pytest.mark.integration
def test_report_command_writes_the_page_and_says_where(
    real_run: tuple[Path, RunResult], tmp_path: Path
) -> None:
    path, _ = real_run
    out = tmp_path / "deep" / "r.html"
    done = run_cli("report", str(path), str(path), "-o", str(out), cwd=tmp_path, env_extra=WIDE)
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    assert out.read_text().startswith("<!doctype html>")
    shown = run_cli("show", str(path), "--format", "html", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stdout.startswith("<!doctype html>")


@pytest.mark.integration
def test_run_html_writes_the_report_beside_the_result_and_says_where(tmp_path: Path) -> None:
    out = tmp_path / "results" / "quick.json"
    done = run_cli(
        "run", "--strategy", "pool", "--duration", "1", "--warmup", "0.2", "--no-charts",
        "-o", str(out), "--html", cwd=tmp_path, env_extra=WIDE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = out.with_suffix(".html")
    assert f"report: {page}" in " ".join(done.stdout.split())  # however rich wrapped it
    assert "Throughput per second" in page.read_text()


@pytest.mark.integration
def test_report_of_a_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    done = run_cli("report", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not valid JSON" in done.stderr
    assert not (tmp_path / "bad.html").exists()


@pytest.mark.integration
def test_compare_as_html_fails_like_the_table(tmp_path: Path) -> None:
    base, new, _ = a_comparison()
    results.save(base, tmp_path / "base.json")
    results.save(new, tmp_path / "new.json")
    done = run_cli(
        "compare", "base.json", "new.json", "--fail-on", "throughput:10%", "--format", "html",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1  # the gate caught the regression
    assert "Change of each metric" in done.stdout and "FAIL" in done.stdout


# --- in a real browser --------------------------------------------------------------------------


@needs_chromium
@pytest.mark.integration
def test_run_report_draws_every_chart_offline(
    real_run: tuple[Path, RunResult], tmp_path: Path
) -> None:
    path, run = real_run
    visit, shot = open_in_chromium(html.report([(str(path), run)]), tmp_path, "run")
    assert len(visit.state) == 14
    titles = {title for chart in visit.state for title in chart["titles"]}
    assert titles >= {"Latency by percentile", "Where the time goes", "Throughput over concurrency"}
    assert shot.stat().st_size > 50_000


@needs_chromium
@pytest.mark.integration
def test_compare_report_shows_the_failed_check_in_red(tmp_path: Path) -> None:
    base, new, comparison = a_comparison()
    page = html.report([("base.json", base), ("new.json", new)], [comparison])
    visit, _ = open_in_chromium(page, tmp_path, "compare")
    change = next(
        c for c in visit.state if "Change of each metric, NEW against BASE" in c["titles"]
    )
    assert change["red"]


@needs_chromium
@pytest.mark.integration
def test_hostile_result_runs_no_script_and_loads_nothing(
    real_run: tuple[Path, RunResult], tmp_path: Path
) -> None:
    _, run = real_run
    visit, _ = open_in_chromium(html.report([(XSS, hostile(run))]), tmp_path, "hostile")
    assert len(visit.state) == 14  # every chart still drawn, the names as text


def test_variants_are_named_by_what_varies_and_a_sweep_shades_one_hue() -> None:
    def summary(strategy: str, **variant: object) -> dict[str, object]:
        key = " ".join([strategy, *(f"{k}={v}" for k, v in variant.items())])
        recorded = {"strategy": strategy, "workers": 1, "pool_min": variant.get("pool_max")}
        return {"key": key, "strategy": strategy, "variant": recorded | variant}

    names = html_names.Names(
        [
            summary("pool", concurrency=4, pool_max=4, topology="direct"),
            summary("pool", concurrency=16, pool_max=4, topology="direct"),
            summary("pool", concurrency=4, pool_max=4, topology="pgbouncer-transaction"),
            summary("connect", concurrency=4, topology="direct"),  # no pool: not a sweep of it
        ]
    )
    assert list(names.label.values()) == [
        "pool c=4", "pool c=16", "pool c=4 via=pgb-txn", "connect c=4",
    ]  # fmt: skip
    assert [name for name, _ in names.swept] == ["concurrency"]
    colours = html_names.Colours()
    colours.assign(names)
    pool_c4, pool_c16 = (colours.variants[k] for k in names.keys[:2])
    assert pool_c4 != pool_c16
    assert colours.of_series("pool") == html_names.PALETTE[0]
    assert colours.variants[names.keys[3]] == colours.of_series("connect") != html_names.PALETTE[0]


def test_report_of_two_results_compares_them_before_showing_each(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from connbench.cli import app

    base, new, _ = a_comparison()
    results.save(base, tmp_path / "a.json")
    results.save(new, tmp_path / "b.json")
    out = tmp_path / "ab.html"
    done = CliRunner().invoke(app, ["report", *(str(tmp_path / n) for n in ("a.json", "b.json")),
                                    "-o", str(out)])  # fmt: skip
    assert done.exit_code == 0, done.output
    page = out.read_text()
    compared = page.index(f"Compare: {tmp_path / 'a.json'} → {tmp_path / 'b.json'}")
    assert compared < page.index(f'<p class="muted">{tmp_path / "a.json"} · ')  # it comes first
    assert "Change of each metric, NEW against BASE" in page
    assert "-49.0%" in page  # the change itself, in the comparison's table
