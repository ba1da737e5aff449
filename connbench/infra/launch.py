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


if __name__ == "__main__":
    main()
