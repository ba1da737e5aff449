"""What a run sends: the request, or a mix of kinds by weight, as bytes on the wire."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from connbench.measure.window import KindTally, LoadConfig, Window
from connbench.model import template
from connbench.model.appspec import Compiled, Request


def weighted_order(weights: list[int]) -> list[int]:
    """Indexes in the order a mix sends them: each ``weights[i]`` times per cycle, spread out
    (smooth weighted round-robin, nginx's), so that any stretch of the run has the mix's
    proportions, not a random walk around them."""
    divisor = math.gcd(*weights)
    weights = [w // divisor for w in weights]
    total, current, order = sum(weights), [0] * len(weights), []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        order.append(best)
    return order


class Kind(Compiled):
    """One request of the mix, compiled once, and its bytes on the wire."""

    def __init__(self, request: Request, host: str) -> None:
        super().__init__(request)
        self.host = host
        self.payload = b""
        if self.static:
            path, headers, body = self.render()
            self.payload = wire_bytes(request.method, path, host, headers, body)
        # A templated one: the bytes around its values, laid out once (static headers first).
        self.head = f"{request.method} ".encode()
        fixed = [(n, t.render(0, 0)) for n, t in self.headers if t.static]
        if self.body is not None and not self.typed:
            fixed.insert(0, ("Content-Type", "application/json"))
        self.varying = [(f"{n}: ", t) for n, t in self.headers if not t.static]
        lines = [f"Host: {host}", "User-Agent: connbench", "Accept: */*"]
        lines += [f"{name}: {value}" for name, value in fixed]
        self.middle = (" HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines)).encode()

    def wire(self) -> bytes:
        """The next request as sent on the wire (the same bytes each time for a static one)."""
        if self.static:
            return self.payload
        seq, count = template.next_seq(), next(self.count)
        out = self.head + self.path.render(seq, count).encode() + self.middle
        for name, value in self.varying:
            out += f"{name}{value.render(seq, count)}\r\n".encode()
        if self.body is None:
            return out + b"\r\n"
        body = self.body.render(seq, count).encode()
        return out + b"Content-Length: %d\r\n\r\n" % len(body) + body


class Mix:
    """The kinds of request a run sends, in their weighted order (shared by every slot)."""

    def __init__(self, requests: tuple[Request, ...], host: str) -> None:
        self.kinds = [Kind(r, host) for r in requests]
        self.order = weighted_order([r.weight for r in requests])
        self.n = len(self.order)
        self.pos = 0
        self.sent = [0] * len(self.kinds)
        # One static request: its bytes, sent as they are every time (the hot path's shortcut).
        single = len(self.kinds) == 1 and self.kinds[0].static
        self.static: bytes | None = self.kinds[0].payload if single else None

    def next(self) -> int:
        """The index of the next kind to send."""
        index = self.order[self.pos]
        self.pos = self.pos + 1 if self.pos + 1 < self.n else 0
        self.sent[index] += 1
        return index


def mix_for(url: str, config: LoadConfig) -> Mix:
    """The run's mix: ``config.mix``, or the one request ``config`` describes to ``url``."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # userinfo never on the wire: it is a header
    requests = config.mix
    if not requests:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = config.body.decode() if config.body is not None else None
        # Not a template: its text is sent as it is.
        requests = (Request(config.method, target, config.headers, None),)
        mix = Mix(requests, host)
        kind = mix.kinds[0]
        kind.body = template.Template(body, (body,)) if body is not None else None
        kind.payload = request_bytes(config.method, target, host, config)
        mix.static = kind.payload if kind.static else None
        return mix
    return Mix(requests, host)


def request_bytes(method: str, target: str, host: str, config: LoadConfig) -> bytes:
    """One HTTP/1.1 request as sent on the wire, the same every time."""
    return wire_bytes(method, target, host, list(config.all_headers.items()), config.body)


def wire_bytes(
    method: str, target: str, host: str, headers: list[tuple[str, str]], body: bytes | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "User-Agent: connbench", "Accept: */*"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def tally(window: Window, mix: Mix) -> None:
    """Per-kind figures for a mix of more than one kind (one kind's are the run's)."""
    if len(mix.kinds) > 1:
        window.by_request = [KindTally(kind.request) for kind in mix.kinds]
    window.mix = mix
    window.ok_by_request = [0] * len(mix.kinds)
