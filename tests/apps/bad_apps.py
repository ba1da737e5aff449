"""Apps that go wrong in the ways a user's app can, for the bad-input tests."""

import asyncio
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
