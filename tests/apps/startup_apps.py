"""Apps whose start-up goes slowly or wrong, for the readiness signal's tests."""

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI


@asynccontextmanager
async def slow(app: FastAPI) -> AsyncIterator[None]:
    await asyncio.sleep(1.0)  # a pool opening: not ready until this is done
    app.state.ready = True
    yield


slow_app = FastAPI(lifespan=slow)


@slow_app.get("/health")
async def health() -> dict[str, bool]:
    return {"ready": bool(getattr(slow_app.state, "ready", False))}


@asynccontextmanager
async def stuck(app: FastAPI) -> AsyncIterator[None]:
    print("stuck in the lifespan", file=sys.stderr, flush=True)
    await asyncio.Event().wait()
    yield


stuck_app = FastAPI(lifespan=stuck)


@asynccontextmanager
async def failing(app: FastAPI) -> AsyncIterator[None]:
    raise RuntimeError("the database is not there")
    yield


failing_app = FastAPI(lifespan=failing)
