"""A benchmark's figures saved as results/<name>-<UTC stamp>.json (or --output), with when,
the arguments and the environment they were taken in."""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from connbench.model import results

ROOT = Path(__file__).resolve().parent.parent


def save(
    name: str,
    args: argparse.Namespace,
    figures: dict[str, Any],
    console: Console,
    environment: dict[str, Any] | None = None,
) -> Path:
    """Write ``figures`` beside the run's metadata to ``args.output`` or results/NAME-*.json."""
    output: Path | None = args.output
    report = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args) | {"output": str(output) if output else None},
        "environment": results.environment().model_dump() | (environment or {}),
    } | figures
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = output or ROOT / "results" / f"{name}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"[dim]saved {out}[/dim]")
    return out
