"""An app that exits on its own in the middle of a load: its first request starts a clock, and
the first request that arrives ``EXIT_AFTER_S`` later makes the process exit (code 3) just
after answering it (no database: the exit is what is under test)."""

import asyncio
import os
import time

from fastapi import FastAPI

EXIT_AFTER_S = float(os.environ.get("EXIT_AFTER_S", "1.2"))

app = FastAPI()
_first: list[float] = []


@app.get("/visit/")
async def visit() -> dict[str, str]:
    now = time.monotonic()
    if not _first:
        _first.append(now)
    elif now - _first[0] >= EXIT_AFTER_S:
        asyncio.get_running_loop().call_later(0.05, os._exit, 3)
    return {"message": "Visit logged"}
