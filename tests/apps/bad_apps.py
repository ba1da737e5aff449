"""Apps that go wrong in the ways a user's app can, for the bad-input tests."""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException

not_an_app = 42

ok_app = FastAPI()


@ok_app.get("/ok/")
async def ok() -> dict[str, str]:
    return {"message": "ok"}


@ok_app.get("/boom/")
async def boom() -> dict[str, str]:
    raise HTTPException(status_code=500, detail="boom")


async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that takes requests and never answers them."""
    if scope["type"] == "lifespan":
        message = await receive()
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        del message
        await send({"type": "lifespan.shutdown.complete"})
        return
    await asyncio.sleep(3600)


@ok_app.post("/crash/")
async def crash() -> dict[str, str]:
    """An unhandled exception: a 500 whose cause is only in the app's log."""
    raise RuntimeError("the orders table is missing")


def _daemon(pid_file: str) -> None:
    """Start ``sleep`` as a daemon does (fork, setsid, fork) and write its pid to ``pid_file``."""
    middle = os.fork()
    if middle == 0:
        os.setsid()
        sleeper = os.fork()
        if sleeper == 0:
            os.execvp("sleep", ["sleep", "300"])
        with open(pid_file, "w") as f:
            f.write(str(sleeper))
        os._exit(0)
    os.waitpid(middle, 0)


@asynccontextmanager
async def _daemonizing(app: FastAPI) -> AsyncIterator[None]:
    _daemon(os.environ["STRAY_PID_FILE"])
    yield


daemonizing_app = FastAPI(lifespan=_daemonizing)
daemonizing_app.get("/ok/")(ok)
