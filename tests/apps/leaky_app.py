"""An app that tells its secrets and dies mid-run: no output of connbench may repeat them.

It writes its ``DATABASE_URL`` to ``LEAK_FILE`` (so the test knows the password connbench
made for its role), then, a second into the load, prints that URL, its ``API_KEY`` (in
several spellings) and terminal escape sequences to stdout and stderr, and exits.
"""

import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI

Path(os.environ["LEAK_FILE"]).write_text(os.environ["DATABASE_URL"])

app = FastAPI()
_first: list[float] = []


@app.get("/visit/")
async def visit() -> dict[str, str]:
    _first.append(time.monotonic()) if not _first else None
    if time.monotonic() - _first[0] > 1.0:
        url, key = os.environ["DATABASE_URL"], os.environ["API_KEY"]
        print(f"connecting to {url} ({quote(url)}) with key {key}", flush=True)
        print(
            f"fatal: API_KEY={key!r} rejected; \x1b]0;pwned\x07\x1b[2J {key}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(3)
    return {"message": "ok"}
