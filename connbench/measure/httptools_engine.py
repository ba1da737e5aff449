"""The default engine, ``httptools``: wrk's design in Python.

Each of ``concurrency`` slots owns one keep-alive connection and is driven by protocol
callbacks: the reply is parsed by httptools (the parser uvicorn uses) and the next request is
written from the callback that completes the last one, with no coroutine, future or timer per
request (the open model: one timer per request, for its due time).
"""

from __future__ import annotations

import asyncio
import math
from typing import cast
from urllib.parse import urlsplit

import httptools

from connbench.measure.mix import Mix, mix_for, tally
from connbench.measure.window import BODY_KEPT_BYTES, LoadConfig, Window, classify

SWEEP_INTERVAL_S = 0.05
HEAD_MAX_BYTES = 64 * 1024  # of a reply kept to read its head (see _Connection.connection_lost)


class _Connection(asyncio.Protocol):
    """Transport events for one connection, forwarded to its slot."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.parser = httptools.HttpResponseParser(self)
        self.body = bytearray()
        # The reply's first bytes, kept until it completes: should the server end the body by
        # closing (HTTP/1.0, no Content-Length), its head says whether that was the whole reply.
        self.head: list[bytes] = []
        self.head_bytes = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.head_bytes < HEAD_MAX_BYTES:
            self.head.append(data)
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.slot.failed(self, "protocol_error")

    def connection_lost(self, exc: Exception | None) -> None:
        # httptools has no "end of input": a body delimited by the close is completed here.
        if exc is None and self.head and ends_at_close(b"".join(self.head)):
            self.on_message_complete()
        self.slot.failed(self, "disconnected")

    def on_body(self, body: bytes) -> None:
        if len(self.body) < BODY_KEPT_BYTES:  # enough to classify an error; never the stream
            self.body += body

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        body = b"" if 200 <= status < 300 else bytes(self.body)  # only an error's is read
        self.body.clear()
        self.head.clear()
        self.head_bytes = 0
        self.slot.replied(self, status, body, self.parser.should_keep_alive())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def ends_at_close(received: bytes) -> bool:
    """Whether a reply whose connection closed after ``received`` was complete: its head is
    whole and gives neither Content-Length nor Transfer-Encoding, so its body is "until the
    close" (RFC 9112 6.3), as for HTTP/1.0 servers. A body cut short of its stated length, or
    a head cut short, is not."""
    head, whole, _ = received.partition(b"\r\n\r\n")
    if not whole:
        return False
    status_line, *fields = head.split(b"\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) < 200:
        return False
    names = {field.partition(b":")[0].strip().lower() for field in fields}
    return not names & {b"content-length", b"transfer-encoding"}


class Slot:
    """One closed-loop user: send, wait for the reply, send again, until the window closes."""

    def __init__(
        self,
        window: Window,
        target: tuple[str, int],
        mix: Mix,
        timeout_s: float,
        period_ns: float = 0.0,
        first_ns: int = 0,
    ) -> None:
        self.window = window
        self.target = target
        self.mix = mix
        self.payload = b""  # the request in flight
        self.request = 0  # its kind in the mix
        self.timeout_s = timeout_s
        self.timeout_ns = int(timeout_s * 1e9)
        self.loop = asyncio.get_running_loop()
        self.conn: _Connection | None = None
        self.due = 0  # intended send time of the request in flight (open model)
        self.started = 0  # perf_counter_ns of the request in flight; 0 when none is
        self.finished: asyncio.Future[None] = self.loop.create_future()
        # Open model (wrk2's design): this slot's share of the rate, on a fixed schedule.
        # Request k is due at first_ns + k * period_ns (perf_counter_ns): a float period, so
        # that no rate rounds to a zero or drifting one. 0.0: closed loop.
        self.period_ns = period_ns
        self.first_ns = first_ns
        self.k = 0  # the next request of the schedule

    def begin(self) -> None:
        self.next()

    def next(self) -> None:
        if not self.period_ns:
            self._send()
            return
        window = self.window
        due = self.first_ns + int(self.k * self.period_ns)
        now = window.clock()
        if due >= window.end_ns or window.stop.is_set():
            self.finish()
            return
        self.k += 1
        if due > now:
            self.loop.call_later((due - now) / 1e9, self._send_on_time, due)
        else:
            if now - due > 1_000_000:  # more than 1 ms behind: the slot was still busy
                window.sent_late += 1
            self._send(due)

    def _send_on_time(self, due: int) -> None:
        self.window.schedule_lag_us.append(max(0, self.window.clock() - due) // 1000)
        self._send(due)

    def _send(self, due: int = 0) -> None:
        # The hot path (with the reply's): one clock read, no call it can do without.
        window = self.window
        now = window.clock()
        if now >= window.edge_ns or window.stop.is_set():  # window.accepting(), inlined
            resume = window.resume(now)  # a sliced round's next turn (see window.TurnWindow)
            if resume is None:
                if self.period_ns:
                    self.k -= 1  # taken from the schedule, never sent
                self.finish()
                return
            if resume > now:  # another side's turn: this slot waits for its own
                self.loop.call_later((resume - now) / 1e9, self._send)
                return
        self.due = due
        window.sent += 1
        self.started = now
        mix = self.mix
        if mix.static is not None:  # one request, the same bytes every time
            mix.sent[0] += 1
            self.payload = mix.static
        else:
            self.request = index = mix.next()
            self.payload = mix.kinds[index].wire()
        conn = self.conn
        transport = conn.transport if conn is not None else None
        if transport is None or transport.is_closing():
            self.loop.create_task(self._connect_and_send())
        else:
            transport.write(self.payload)

    async def _connect_and_send(self) -> None:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), *self.target),
                self.timeout_s,
            )
        except TimeoutError:
            self._end("timeout")
        except ConnectionRefusedError:
            self._end("connect_refused")
        except OSError:
            self._end("connect_error")
        else:
            self.conn = conn
            assert conn.transport is not None
            conn.transport.write(self.payload)

    def replied(self, conn: _Connection, status: int, body: bytes, keep_alive: bool) -> None:
        if conn is not self.conn or not self.started:
            return
        if not keep_alive:
            self.drop()
        self._end(None if 200 <= status < 300 else classify(status, body))

    def failed(self, conn: _Connection, kind: str) -> None:
        if conn is not self.conn:
            return
        self.drop()
        if self.started:
            self._end(kind)

    def expire(self, now_ns: int) -> None:
        if self.started and now_ns - self.started >= self.timeout_ns:
            self.drop()
            self._end("timeout")

    def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def _end(self, kind: str | None) -> None:
        started, self.started = self.started, 0
        self.window.done(started, self.window.clock(), kind, self.due, self.request)
        if self.period_ns:
            self.next()
        else:
            self._send()

    def finish(self) -> None:
        if self.period_ns and not self.finished.done():
            self.window.not_sent += self._owed()
        self.drop()
        if not self.finished.done():
            self.finished.set_result(None)

    def _owed(self) -> int:
        """Requests of this slot's schedule due inside the window and never sent (it fell
        behind): never more than the window's share of the schedule."""
        window = self.window
        end = window.end_ns
        if window.stop.is_set():
            end = min(end, window.clock())
        first = max(self.k, math.ceil((window.start_ns - self.first_ns) / self.period_ns))
        last = math.ceil((end - self.first_ns) / self.period_ns)
        return max(0, last - first)


async def run(url: str, config: LoadConfig, window: Window) -> None:
    parts = urlsplit(url)
    mix = mix_for(url, config)
    tally(window, mix)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    n = config.concurrency
    if config.rate_rps:
        # Each of the n connections carries rate/n, the schedules staggered by 1/rate.
        period_ns = n * 1e9 / config.rate_rps
        first = window.clock()
        slots = [
            Slot(
                window,
                address,
                mix,
                config.timeout_s,
                period_ns,
                first + int(i * period_ns / n),
            )
            for i in range(n)
        ]
    else:
        slots = [Slot(window, address, mix, config.timeout_s) for _ in range(n)]
    window.slots = slots

    async def sweep() -> None:
        # One timer for every slot instead of one per request: a request times out within
        # timeout_s + the sweep interval.
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL_S, config.timeout_s / 10))
            now = window.clock()
            for slot in slots:
                slot.expire(now)

    sweeper = asyncio.create_task(sweep())
    try:
        for slot in slots:
            slot.begin()
        await asyncio.gather(*(slot.finished for slot in slots))
    finally:
        sweeper.cancel()
        for slot in slots:
            slot.drop()
