"""Serve a user's app with uvicorn, after checking it can: ``python -m connbench.infra.launch
MODULE:ATTR DIR [uvicorn options]``.

uvicorn alone would answer a module that does not import with a traceback, and an attribute
that is not an ASGI app with a 500 on every request. Here each is one line on stderr starting
with :data:`FAILED` (which :mod:`connbench.infra.userapp` reads back) and exit code 3.

With ``CONNBENCH_READY_FD`` set (one uvicorn process: ``--workers 1``), the launcher writes a
line to that inherited file descriptor once uvicorn has run the app's lifespan startup and
listens, and closes it: the parent learns the moment the app is ready instead of polling for
it (see :mod:`connbench.infra.appserver`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from typing import Any, NoReturn

FAILED = "connbench-launch: "
EXIT_BAD_APP = 3
READY_FD_ENV = "CONNBENCH_READY_FD"
READY = b"ready\n"
TICK_S = 0.1  # uvicorn's main loop: how often it looks at should_exit (see stop_promptly)


def _fail(message: str) -> NoReturn:
    print(FAILED + message, file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_APP)


def is_asgi(obj: Any) -> bool:
    """An ASGI 3 application: a coroutine function, or an object whose ``__call__`` is one."""
    call = type(obj).__dict__.get("__call__") or getattr(type(obj), "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(obj) or (callable(obj) and inspect.iscoroutinefunction(call))


def load(target: str) -> Any:
    """Import ``MODULE:ATTR`` (ATTR may be dotted); exit with one line when it cannot be."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raises, say it
        cause = " ".join(str(exc).split()) or "no message"
        _fail(f"module {module_name!r} does not import: {type(exc).__name__}: {cause}")
    try:
        obj = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        _fail(f"module {module_name!r} has no attribute {attr!r}")
    if not is_asgi(obj):
        _fail(f"{target} is not an ASGI app (it is a {type(obj).__name__})")
    return obj


def main() -> None:
    target, app_dir, *options = sys.argv[1:]
    if not os.path.isdir(app_dir):  # else the import fails as "No module named ..."
        _fail(f"directory {app_dir!r} does not exist (DIR of MODULE:ATTR@DIR)")
    sys.path.insert(0, app_dir)
    load(target)
    import uvicorn

    say_when_ready(uvicorn.Server)
    sys.argv = ["uvicorn", target, "--app-dir", app_dir, *options]
    uvicorn.main()


def say_when_ready(server: Any) -> None:
    """With ``CONNBENCH_READY_FD`` set (then removed from the environment, which the app
    sees), write :data:`READY` to that file descriptor once uvicorn's ``Server.startup`` has
    finished: the lifespan startup has run and the socket listens (``started``; a failed
    startup sets ``should_exit`` instead, and the parent sees the process exit)."""
    value = os.environ.pop(READY_FD_ENV, "")
    if not value.isdigit():
        return
    fd = int(value)
    os.set_inheritable(fd, False)  # not to the app's own children
    startup = server.startup

    async def startup_then_say(self: Any, *args: Any, **kwargs: Any) -> None:
        await startup(self, *args, **kwargs)
        if getattr(self, "started", False) and not getattr(self, "should_exit", False):
            try:
                os.write(fd, READY)
                os.close(fd)
            except OSError:  # the parent stopped listening: it polls instead
                pass

    server.startup = startup_then_say


def stop_promptly(server: Any) -> None:
    """Have uvicorn's ``Server`` begin its shutdown as soon as its stop signal arrives. Its
    main loop sleeps 0.1 s between looks at ``should_exit`` (each look, a tick, also refreshes
    the Date header once a second), so a stop waited 0.05 s on average, 0.1 s at worst, for
    nothing. Here the loop ticks as often, and the signal handler, once it has done what
    uvicorn's does, also ends the tick's wait (from a signal handler, as asyncio's own
    ``add_signal_handler`` does: ``call_soon_threadsafe`` wakes the loop). What follows is
    uvicorn's shutdown, unchanged: stop listening, finish the requests in flight (up to
    ``--timeout-graceful-shutdown``), the lifespan's shutdown (the app closes its pool)."""
    import asyncio

    handle_exit = server.handle_exit

    def end(tick: asyncio.Future[None]) -> None:
        if not tick.done():
            tick.set_result(None)

    async def main_loop(self: Any) -> None:
        loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000  # as uvicorn's loop counts its ticks
            tick = loop.create_future()
            self.connbench_tick = (loop, tick)
            timer = loop.call_later(TICK_S, end, tick)
            try:
                await tick
            finally:
                timer.cancel()
            should_exit = await self.on_tick(counter)

    def handle_exit_now(self: Any, sig: int, frame: Any) -> None:
        handle_exit(self, sig, frame)
        waiting = getattr(self, "connbench_tick", None)
        if waiting is not None:
            loop, tick = waiting
            loop.call_soon_threadsafe(end, tick)

    server.main_loop = main_loop
    server.handle_exit = handle_exit_now


if __name__ == "__main__":
    main()
