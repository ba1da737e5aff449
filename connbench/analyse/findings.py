"""Findings: what a run's figures say, in plain sentences, each with the numbers behind it.

Pure functions over a :class:`RunResult` (its summary: medians over the repeats), no printing:
the terminal, the Markdown and the HTML report show the sentences at their top. Each rule has
a threshold well clear of noise (a 10 % difference in throughput, a session per request only
at 0.9 or more per response, a state held on average by half a session or more, at least
``MIN_RESPONSES`` answered), so that none fires on a run that shows nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from connbench.model.result_types import VariantSummary
from connbench.model.results import RunResult, StrategyResult

MIN_RESPONSES = 100  # fewer: too few to say anything of a variant
CLEAR_LEAD = 1.10  # the most served must serve 10 % more than the next to be said to lead
PER_REQUEST = 0.9  # sessions opened per 2xx: one per request
CHURN_PER_PEAK = 2.0  # sessions opened over the most open at once: they are being replaced
CHURN_MIN_SESSIONS = 10
IDLE_IN_TRANSACTION_MEAN = 0.5  # sessions, on average over the window
IDLE_IN_TRANSACTION_SHARE = 0.5  # of the app's open sessions, on average
MAX_CONNECTIONS_NEAR = 0.95  # of max_connections, at peak
APP_SATURATED_PERCENT = 90.0  # of one core per worker


@dataclass(frozen=True)
class Finding:
    rule: str  # the rule's name (tests and the HTML's anchors)
    text: str  # one sentence or two, the figures in it
    severity: str = "info"  # info | warn | bad


def findings(run: RunResult) -> list[Finding]:
    """Every rule's findings on ``run``, in the order of :data:`RULES`."""
    return [finding for rule in RULES for finding in rule(run)]


def _measured(run: RunResult) -> list[VariantSummary]:
    return [
        s
        for s in run.summary
        if s.status in ("ok", "interrupted")
        and s.throughput_rps.median is not None
        and s.requests_ok >= MIN_RESPONSES
    ]


def _label(run: RunResult, summary: VariantSummary) -> str:
    return summary.key if len(run.summary) > 1 and _ambiguous(run, summary) else summary.strategy


def _ambiguous(run: RunResult, summary: VariantSummary) -> bool:
    return sum(1 for s in run.summary if s.strategy == summary.strategy) > 1


def _runs(run: RunResult, summary: VariantSummary) -> list[StrategyResult]:
    return [r for r in run.results if r.key == summary.key and r.server is not None]


def _p99(summary: VariantSummary) -> str:
    p99 = summary.latency_ms.get("p99")
    return f"p99 {p99.median:,.1f} ms" if p99 and p99.median is not None else "p99 unknown"


def _sessions(summary: VariantSummary) -> str:
    peak = summary.connections_peak
    return "server sessions unknown" if peak is None else f"{peak:g} server sessions at peak"


def most_served(run: RunResult) -> list[Finding]:
    """Which variant serves most (with those within ``CLEAR_LEAD`` of it: alike), and at what
    cost in server sessions, against the next one."""
    measured = sorted(_measured(run), key=lambda s: s.throughput_rps.median or 0, reverse=True)
    if len(measured) < 2:
        return []
    top = measured[0].throughput_rps.median or 0
    leaders = [s for s in measured if (s.throughput_rps.median or 0) * CLEAR_LEAD > top]
    rest = measured[len(leaders) :]
    rps = [f"{s.throughput_rps.median or 0:,.0f}" for s in leaders]
    names = _names([_label(run, s) for s in leaders])
    if not rest:
        return [
            Finding(
                "most_served",
                f"{names} serve alike: {_names(rps)} req/s "
                f"(within {100 * (CLEAR_LEAD - 1):.0f} %).",
            )
        ]
    best, second = leaders[0], rest[0]
    second_rps = second.throughput_rps.median or 0
    what = (
        f"{names} serves most: {rps[0]} req/s, {_p99(best)}, with {_sessions(best)}"
        if len(leaders) == 1
        else f"{names} serve most, alike ({_names(rps)} req/s, within "
        f"{100 * (CLEAR_LEAD - 1):.0f} %); {_label(run, best)}: {_p99(best)}, {_sessions(best)}"
    )
    ratio = f"{top / second_rps:.1f}× the next" if second_rps > 0 else "the next"
    return [
        Finding(
            "most_served",
            f"{what}; {ratio}, {_label(run, second)} ({second_rps:,.0f} req/s, "
            f"{_p99(second)}, {_sessions(second)}).",
        )
    ]


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def session_per_request(run: RunResult) -> list[Finding]:
    """Variants that open a server session for (nearly) every request: they do not pool.
    One sentence for all of them (a run of every strategy has six)."""
    found = [
        s
        for s in _measured(run)
        if s.sessions_per_ok_response is not None
        and s.sessions_per_ok_response >= PER_REQUEST
        and _beyond_in_flight(s) <= 0  # else said by pool_unused, with what it holds
    ]
    if not found:
        return []
    who = _names([_label(run, s) for s in found])
    pers = [s.sessions_per_ok_response or 0 for s in found]
    opened = [s.sessions_opened or 0 for s in found]
    figures = (
        f"{opened[0]:,.0f} sessions, {pers[0]:.2f} per 2xx response"
        if len(found) == 1
        else f"{min(pers):.2f} sessions per 2xx response each"
        if f"{min(pers):.2f}" == f"{max(pers):.2f}"
        else f"{min(pers):.2f} to {max(pers):.2f} sessions per 2xx response"
    )
    verb = "opens" if len(found) == 1 else "open"
    return [
        Finding(
            "session_per_request",
            f"{who} {verb} a server session per request ({figures}): no pooling, and each "
            "request pays PostgreSQL's connection start-up.",
            "warn",
        )
    ]


def _beyond_in_flight(summary: VariantSummary) -> float:
    """Sessions at peak beyond one per request in flight (concurrency x workers' share)."""
    peak, in_flight = summary.connections_peak, summary.variant.concurrency
    return 0.0 if peak is None else peak - in_flight


def pool_unused(run: RunResult) -> list[Finding]:
    """A new session per request, and more sessions open at peak than requests in flight: the
    extra ones are held (a pool opened at start-up) and not used. (Idle sessions alone do
    not tell: a session opened per request idles too, between its statements, on a busy
    machine.)"""
    out = []
    for summary in _measured(run):
        per = summary.sessions_per_ok_response
        extra = _beyond_in_flight(summary)
        if per is None or per < PER_REQUEST or extra <= 0:
            continue
        out.append(
            Finding(
                "pool_unused",
                f"{_label(run, summary)} held {summary.connections_peak:g} server sessions at "
                f"peak for {summary.variant.concurrency} requests in flight, yet opens a new one "
                f"per request ({per:.2f} per 2xx): {extra:g} sessions held and not used, a "
                "pool opened but unused.",
                "bad",
            )
        )
    return out


def overflow_churn(run: RunResult) -> list[Finding]:
    """Sessions opened and closed during the run, many more than were ever open at once."""
    out = []
    for summary in _measured(run):
        per, opened = summary.sessions_per_ok_response, summary.sessions_opened
        peak = summary.connections_peak
        if per is None or opened is None or not peak or per >= PER_REQUEST:
            continue
        if opened < CHURN_MIN_SESSIONS or opened < CHURN_PER_PEAK * peak:
            continue
        out.append(
            Finding(
                "overflow_churn",
                f"{_label(run, summary)} opened {opened:,.0f} server sessions during the run "
                f"for at most {peak:g} open at once ({per:.2f} per 2xx): sessions are closed "
                "and opened again, as a pool's overflow (SQLAlchemy's max_overflow) does.",
                "warn",
            )
        )
    return out


def idle_in_transaction(run: RunResult) -> list[Finding]:
    """Sessions idle in a transaction: the transaction stays open while the app does other
    work, e.g. a commit in a dependency's teardown, after the response."""
    out = []
    for summary in _measured(run):
        mean = _state_mean(run, summary, "idle in transaction")
        total = summary.connections_mean
        if mean is None or mean < IDLE_IN_TRANSACTION_MEAN or not total:
            continue
        if mean < IDLE_IN_TRANSACTION_SHARE * total:
            continue  # between a transaction's statements on a busy machine: not a pattern
        peak = _state_peak(run, summary, "idle in transaction")
        after = summary.breakdown.get("after_response_ms")
        when = f"; {after:.2f} ms per request is spent after the response" if after else ""
        out.append(
            Finding(
                "idle_in_transaction",
                f"{_label(run, summary)} keeps sessions idle in transaction ({mean:.1f} of its "
                f"{total:.1f} on average, {peak:g} at peak): a transaction stays open while "
                f"the app does something else, such as committing after the response{when}.",
                "warn",
            )
        )
    return out


def max_connections_reached(run: RunResult) -> list[Finding]:
    """The server's max_connections reached: at peak, or refusals seen as errors."""
    pg = run.environment.postgres
    limit = pg.settings.max_connections if pg is not None else None
    out = []
    for summary in run.summary:
        runs = [r for r in run.results if r.key == summary.key]
        refused = sum(
            count
            for r in runs
            if r.requests is not None
            for kind, count in r.requests.errors_by_kind.items()
            if _too_many(kind)
        )
        peak = summary.connections_peak
        near = limit is not None and peak is not None and peak >= MAX_CONNECTIONS_NEAR * limit
        if not refused and not near:
            continue
        seen = (
            f"{peak:g} sessions at peak of max_connections {limit}"
            if limit and peak is not None  # no peak when the window served nothing
            else ""
        )
        refusals = f"{refused:,} requests refused for too many clients" if refused else ""
        out.append(
            Finding(
                "max_connections",
                f"{_label(run, summary)} reached the server's max_connections "
                f"({'; '.join(part for part in (seen, refusals) if part)}).",
                "bad",
            )
        )
    return out


def _too_many(kind: str) -> bool:
    lowered = kind.lower()
    return "53300" in lowered or "too_many_connections" in lowered or "toomany" in lowered


def lost_writes(run: RunResult) -> list[Finding]:
    """2xx responses without their row: a write acknowledged before it was committed."""
    out = []
    for summary in run.summary:
        lost = sum(
            r.integrity.lost_writes or 0
            for r in run.results
            if r.key == summary.key and r.integrity is not None
        )
        if lost <= 0:
            continue
        out.append(
            Finding(
                "lost_writes",
                f"{_label(run, summary)} answered 2xx for {lost:,} writes that are not in the "
                "table: the response went out before the commit, which then failed or never ran.",
                "bad",
            )
        )
    return out


def saturated(run: RunResult) -> list[Finding]:
    """The load generator or the app using all the CPU it has: the figures then measure that."""
    out = []
    for summary in _measured(run):
        label = _label(run, summary)
        if summary.generator_saturated:
            out.append(
                Finding(
                    "generator_saturated",
                    f"{label}: the load generator was saturated "
                    f"({summary.cpu_generator_percent or 0:.0f}% CPU): the figures measure "
                    "connbench, not the app.",
                    "bad",
                )
            )
        cpu, workers = summary.cpu_app_percent, summary.variant.workers
        if cpu is not None and cpu >= APP_SATURATED_PERCENT * workers:
            out.append(
                Finding(
                    "app_saturated",
                    f"{label}: the app used {cpu:.0f}% of a core with {workers} worker"
                    f"{'s' if workers > 1 else ''}: it is CPU-bound at this load.",
                    "warn",
                )
            )
    return out


def own_app_against_builtins(run: RunResult) -> list[Finding]:
    """Each own app or target next to the built-in strategy that served most."""
    measured = _measured(run)
    builtins = [s for s in measured if s.variant.kind == "strategy"]
    if not builtins:
        return []
    best = max(builtins, key=lambda s: s.throughput_rps.median or 0)
    best_rps = best.throughput_rps.median or 0
    out = []
    for summary in measured:
        if summary.variant.kind == "strategy" or best_rps <= 0:
            continue
        rps = summary.throughput_rps.median or 0
        ratio = rps / best_rps
        how = (
            "as much as"
            if abs(ratio - 1) < CLEAR_LEAD - 1
            else ("more than" if ratio > 1 else "less than")
        )
        p99, best_p99 = summary.latency_ms.get("p99"), best.latency_ms.get("p99")
        latency = (
            f", p99 {p99.median:,.1f} against {best_p99.median:,.1f} ms"
            if p99 and best_p99 and p99.median is not None and best_p99.median is not None
            else ""
        )
        peak, best_peak = summary.connections_peak, best.connections_peak
        sessions = (
            f", {peak:g} server sessions at peak against {best_peak:g}"
            if peak is not None and best_peak is not None
            else ""
        )
        differ = summary.variant.sent != best.variant.sent
        out.append(
            Finding(
                "own_app",
                f"Your {summary.variant.kind} {summary.strategy} ({summary.variant.sent}) serves "
                f"{how} the best built-in strategy, {best.strategy} ({best.variant.sent}): "
                f"{rps:,.0f} against {best_rps:,.0f} req/s ({ratio:.2f}×){latency}{sessions}"
                + (" (not the same requests: their work differs)." if differ else "."),
            )
        )
    return out


def _state_values(run: RunResult, summary: VariantSummary, state: str, peak: bool) -> list[float]:
    values = []
    for result in _runs(run, summary):
        server = result.server
        assert server is not None
        by_state = server.by_state_peak if peak else server.by_state_mean
        if by_state:
            values.append(float(by_state.get(state, 0)))
    return values


def _state_mean(run: RunResult, summary: VariantSummary, state: str) -> float | None:
    values = _state_values(run, summary, state, peak=False)
    return statistics.median(values) if values else None


def _state_peak(run: RunResult, summary: VariantSummary, state: str) -> float:
    return max(_state_values(run, summary, state, peak=True), default=0.0)


RULES: tuple[Callable[[RunResult], list[Finding]], ...] = (
    most_served,
    own_app_against_builtins,
    session_per_request,
    pool_unused,
    overflow_churn,
    idle_in_transaction,
    max_connections_reached,
    lost_writes,
    saturated,
)
