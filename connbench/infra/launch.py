"""Serve a user's app with uvicorn, after checking it can: ``python -m connbench.infra.launch
MODULE:ATTR DIR [uvicorn options]``.

uvicorn alone would answer a module that does not import with a traceback, and an attribute
that is not an ASGI app with a 500 on every request. Here each is one line on stderr starting
with :data:`FAILED` (which :mod:`connbench.infra.userapp` reads back) and exit code 3.
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

    sys.argv = ["uvicorn", target, "--app-dir", app_dir, *options]
    uvicorn.main()


if __name__ == "__main__":
    main()
