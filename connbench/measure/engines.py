"""Which load generator drives a variant: connbench's own engines, or Locust's master and
workers; and the load each is given, from the scenario and the app's requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from connbench.measure import load, locust_engine
from connbench.measure.load import LoadConfig, Progress
from connbench.model.appspec import AppSpec
from connbench.model.errors import ProcessError
from connbench.model.scenario import Scenario, Variant


def load_config(variant: Variant, scenario: Scenario, spec: AppSpec | None) -> LoadConfig:
    """The load of one variant: its concurrency (or rate) over the scenario's window; an own
    app's or target's requests (``spec``), else the built-in strategies' visit."""
    config = LoadConfig(
        concurrency=variant.concurrency,
        duration_s=scenario.duration_s,
        warmup_s=scenario.warmup_s,
        timeout_s=scenario.timeout_s,
        engine=scenario.engine,
        rate_rps=variant.rate,
    )
    if spec is None:
        return config
    first = spec.mix[0]  # Locust's one request (a mix needs connbench's own engines)
    body = first.body.encode() if first.body is not None else None
    return replace(config, method=first.method, headers=first.headers, body=body, mix=spec.mix)


async def drive(
    url: str,
    config: LoadConfig,
    scenario: Scenario,
    on_progress: Callable[[Progress], None],
    on_edge: Callable[[str], None],
    stop: asyncio.Event,
) -> load.RawLoad:
    """The load itself: connbench's own engines, or Locust's master and workers. Raises
    :class:`ProcessError` when the scenario's Locust token file cannot be read."""
    if config.engine != "locust":
        return await load.run(url, config, on_progress=on_progress, on_edge=on_edge, stop=stop)
    token = None
    if scenario.locust_token_file:
        try:
            token = locust_engine.token_file(Path(scenario.locust_token_file))
        except ValueError as exc:
            raise ProcessError(str(exc)) from None
    options = locust_engine.LocustOptions(
        workers=scenario.locust_workers,
        expect_workers=scenario.expect_workers,
        bind_host=scenario.locust_bind,
        port=scenario.locust_port,
        token=token,
    )
    parts = urlsplit(url)
    request = locust_engine.Request(  # an own app's request, as for the default engine
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        method=config.method,
        body=config.body.decode() if config.body is not None else None,
        headers=config.all_headers,
    )
    return await locust_engine.run(
        url,
        config,
        options=options,
        request=request,
        on_progress=on_progress,
        on_edge=on_edge,
        stop=stop,
    )
