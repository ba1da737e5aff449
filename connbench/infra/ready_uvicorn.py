"""uvicorn that tells its parent when it is ready: ``python -m connbench.infra.ready_uvicorn
APP [uvicorn options]``, with ``CONNBENCH_READY_FD`` naming an inherited pipe (see
:func:`connbench.infra.launch.say_when_ready`). Its command line still reads ``uvicorn APP``:
what a user (or ``ps``) looks for to find the app. Its shutdown begins as soon as its stop
signal arrives (:func:`connbench.infra.launch.stop_promptly`), not at uvicorn's next 0.1 s tick.
"""

from __future__ import annotations

import sys

from connbench.infra import launch


def main() -> None:
    import uvicorn

    launch.say_when_ready(uvicorn.Server)
    launch.stop_promptly(uvicorn.Server)  # a built-in app's: an own app runs as uvicorn does
    sys.argv = ["uvicorn", *sys.argv[1:]]
    uvicorn.main()


if __name__ == "__main__":
    main()
