"""The coroutine engines, ``aiohttp`` and ``httpx``: a worker task per slot around a shared
client. About 3x (aiohttp) and many times (httpx) the CPU per request of the default engine;
kept to show why it is the default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import httpx
import yarl

from connbench.measure.mix import mix_for, tally
from connbench.measure.window import BODY_KEPT_BYTES, LoadConfig, Window, classify

Requester = Callable[[str, str, list[tuple[str, str]], bytes | None], Awaitable[tuple[int, bytes]]]


class _Aborted(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


async def _kept(chunks: AsyncIterator[bytes]) -> bytes:
    """A reply's body read to its end, only its first ``BODY_KEPT_BYTES`` kept: a huge or
    endless body costs connbench a buffer, never its size."""
    kept = bytearray()
    async for chunk in chunks:
        if len(kept) < BODY_KEPT_BYTES:
            kept += chunk[: BODY_KEPT_BYTES - len(kept)]
    return bytes(kept)


def _aiohttp_requester(session: aiohttp.ClientSession) -> Requester:
    async def request(
        method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, bytes]:
        target = yarl.URL(url, encoded=True)  # sent as written: yarl would decode %41 to A
        try:
            async with session.request(method, target, data=body, headers=headers) as resp:
                return resp.status, await _kept(resp.content.iter_any())
        except TimeoutError:
            raise _Aborted("timeout") from None
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            raise _Aborted("connect_refused" if refused else "connect_error") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            raise _Aborted("disconnected") from None
        except aiohttp.ClientError:
            raise _Aborted("client_error") from None

    return request


def _httpx_requester(client: httpx.AsyncClient) -> Requester:
    async def request(
        method: str, url: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, bytes]:
        try:
            async with client.stream(method, url, content=body, headers=headers) as resp:
                return resp.status_code, await _kept(resp.aiter_raw())
        except httpx.TimeoutException:
            raise _Aborted("timeout") from None
        except httpx.ConnectError:
            raise _Aborted("connect_refused") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            raise _Aborted("disconnected") from None
        except httpx.HTTPError:
            raise _Aborted("client_error") from None

    return request


async def run_workers(request: Requester, url: str, config: LoadConfig, window: Window) -> None:
    mix = mix_for(url, config)
    tally(window, mix)
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"

    async def worker() -> None:
        clock = window.clock
        while window.accepting():
            window.sent += 1
            index = mix.next()
            path, headers, content = mix.kinds[index].render()
            start = clock()
            kind: str | None = None
            try:
                status, body = await request(
                    mix.kinds[index].request.method, base + path, headers, content
                )
                if not 200 <= status < 300:
                    kind = classify(status, body)
            except _Aborted as aborted:
                kind = aborted.kind
            window.done(start, clock(), kind, 0, index)

    await asyncio.gather(*(worker() for _ in range(config.concurrency)))


async def run(url: str, config: LoadConfig, window: Window) -> None:
    """``config.engine`` (aiohttp, else httpx) around its shared client."""
    if config.engine == "aiohttp":
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            await run_workers(_aiohttp_requester(session), url, config, window)
    else:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(timeout=config.timeout_s, limits=limits) as client:
            await run_workers(_httpx_requester(client), url, config, window)
