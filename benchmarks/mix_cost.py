"""What a request mix costs the default engine: its CPU per request with and without one.

    python benchmarks/mix_cost.py [--duration 3] [--repeat 5] [--concurrency 16]

A bare ASGI app (no database, the same 200 for every path) is served by uvicorn; the httptools
engine drives it in rounds, each round one run with the one static request connbench sends a
built-in strategy, and one with a three-kind mix whose insert fills four placeholders
({{randint}}, {{uuid}}, {{seq}}, {{csv}}) and whose read fills one in its path, the order
flipped every round; and one with the same three kinds without placeholders (what the mix
costs apart from its values). Reported: the event loop's CPU per request (the generator's
bottleneck) and req/s, medians over the rounds, and their ratio.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx

from connbench.measure import load
from connbench.model import appspec

ROOT = Path(__file__).resolve().parent.parent


async def app(scope: dict[str, object], receive: object, send: object) -> None:
    """Every request: 200, a short JSON body (its request body read and dropped)."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()  # type: ignore[operator]
        more = bool(message.get("more_body"))
    await send(  # type: ignore[operator]
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"ok":true}'})  # type: ignore[operator]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.mix_cost:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/visit/"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            csv_file = Path(tmp) / "customers.csv"
            csv_file.write_text("id\n" + "".join(f"{i}\n" for i in range(1, 101)))
            mix = appspec.parse_requests(
                [
                    "6 POST /orders/ "
                    f'{{"customer_id": {{{{csv {csv_file} id}}}}, "ref": "{{{{uuid}}}}", '
                    '"qty": {{randint 1 5}}, "n": {{seq}}}',
                    "3 GET /customers/{{randint 1 100}}/orders",
                    "1 GET /health",
                ]
            )
            base = load.LoadConfig(args.concurrency, args.duration, 0.5, 10.0)
            static = appspec.parse_requests(
                [
                    '6 POST /orders/ {"customer_id": 7, "qty": 2}',
                    "3 GET /customers/7/orders",
                    "1 GET /health",
                ]
            )
            configs = {
                "one request": base,
                "static mix": replace(base, mix=static),
                "templated mix": replace(base, mix=mix),
            }
            seen: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
            for round_ in range(args.repeat):
                order = list(configs) if round_ % 2 == 0 else list(configs)[::-1]  # A B C, C B A
                for name in order:
                    raw = load.run_sync(url, configs[name])
                    assert raw.errors == 0, raw.errors_by_kind
                    per_request_us = 1e6 * raw.cpu_loop_s / max(1, raw.ok)
                    seen[name].append((per_request_us, raw.ok / raw.window_s))
                    time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    medians = {
        name: (statistics.median(u for u, _ in runs), statistics.median(r for _, r in runs))
        for name, runs in seen.items()
    }
    for name, (us, rps) in medians.items():
        print(f"{name:12} loop CPU {us:6.1f} us/request   {rps:8,.0f} req/s")
    for name in ("static mix", "templated mix"):
        ratio = medians[name][0] / medians["one request"][0]
        print(f"{name} / one request: {ratio:.2f}x the CPU per request ({args.repeat} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
