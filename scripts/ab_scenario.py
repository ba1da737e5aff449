"""The A/B scenario of one app: its scenario file with the app twice, as ``base`` and ``head``.

Used by ``scripts/ab-gate.sh`` (the GitHub Action's steps). The app's scenario file (committed
beside it) describes one ``[[app]]``: its request, headers, setup and count SQL, and the
``[gate]``. This writes the same scenario with that app at two checkouts, so that one
``connbench run`` measures both in interleaved rounds::

    python scripts/ab_scenario.py SCENARIO BASE_ROOT HEAD_ROOT OUT.toml [--app NAME]
        [--import MODULE:ATTR] [--base-python PATH --head-python PATH] [--slices K]

``--slices K``: each round starts both sides at once and the load takes K turns a side
(``connbench run --slices``), which cancels most of a busy runner's noise between the two
sides of a round; written unless the scenario sets ``slices`` itself, fewer when its duration
is too short for K turns of 0.1 s, and left out (each side measured after the other, as the
scenario asks) when the scenario is one turns cannot run: through PgBouncer, an open model
(``rate``), or another load engine than connbench's own.

A relative ``dir`` of the app is taken inside each root. Errors are one line on stderr and
exit 2. Only the standard library: it runs before connbench is installed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

# TOML basic strings must escape these besides \ and ": the C0 controls but tab, and DEL.
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """``value`` (what tomllib reads: str, int, float, bool, dates and times, list, dict) as
    inline TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_string(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    raise ValueError(f"cannot write {type(value).__name__} values")


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{_string(key)} = {toml_value(value)}\n" for key, value in data.items())


MIN_TURN_S = 0.1  # connbench's shortest measured turn (connbench.model.defaults.MIN_TURN_S)
DURATION_S = 10.0  # connbench's default duration_s


def _seconds(value: Any) -> float | None:
    """A duration as connbench reads the common spellings (2, 2.5, "2s", "500ms"); None for
    one it reads otherwise (connbench itself then says what it makes of it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("", 1.0)):
        if text.endswith(suffix):
            try:
                return float(text[: len(text) - len(suffix)]) * scale
            except ValueError:
                return None
    return None  # pragma: no cover - the "" suffix always matches


def turns(scenario: dict[str, Any], wanted: int) -> tuple[int, str | None]:
    """How many turns a side the A/B rounds take (1: one side after the other), and why not
    ``wanted`` when it is not."""
    if "slices" in scenario or wanted <= 1:
        return 1, None
    topology = scenario.get("topology", "direct")
    if topology not in ("direct", ["direct"]):
        return 1, f"the scenario's topology is {topology!r}: turns need direct connections"
    if scenario.get("rate") is not None:
        return 1, "the scenario sets a rate (an open model): turns need the closed loop"
    if scenario.get("engine", "httptools") != "httptools":
        return 1, f"the scenario's engine is {scenario['engine']!r}: turns need httptools"
    duration = _seconds(scenario.get("duration_s", DURATION_S))
    if duration is not None:
        fit = int(duration / MIN_TURN_S + 1e-9)
        if fit < wanted:
            why = f"duration_s {duration:g} s fits {fit} turns of {MIN_TURN_S:g} s, not {wanted}"
            return max(1, fit), why
    return wanted, None


def ab_scenario(
    scenario: dict[str, Any],
    base_root: str,
    head_root: str,
    app: str | None = None,
    import_string: str | None = None,
    pythons: tuple[str, str] | None = None,
    slices: int = 1,
) -> dict[str, Any]:
    """``scenario`` with its one ``[[app]]`` (or the one named ``app``) as base and head, in
    ``slices`` turns a side where :func:`turns` says they can run."""
    apps = scenario.get("app")
    if not isinstance(apps, list) or not apps or not all(isinstance(a, dict) for a in apps):
        raise ValueError("the scenario has no [[app]] table: name the app it measures there")
    if app is None and len(apps) > 1:
        names = ", ".join(str(a.get("name")) for a in apps)
        raise ValueError(f"the scenario has {len(apps)} [[app]] tables ({names}): say which")
    chosen = next((a for a in apps if app is None or a.get("name") == app), None)
    if chosen is None:
        raise ValueError(f"the scenario has no [[app]] named {app!r}")
    if "url" in chosen:
        raise ValueError(f"[[app]] {chosen.get('name')!r} is a target (url): A/B needs an app")
    # The two checkouts alone: no built-in strategy (without `strategies`, apps run alone).
    out = {k: v for k, v in scenario.items() if k not in ("app", "target", "strategies")}
    sides = []
    for side, root in (("base", base_root), ("head", head_root)):
        table = dict(chosen, name=side)
        if import_string:
            table["app"] = import_string
        table["dir"] = os.path.normpath(os.path.join(root, str(chosen.get("dir", "."))))
        if pythons is not None:
            table["python"] = pythons[side == "head"]
        sides.append(table)
    out["app"] = sides
    taken, _ = turns(scenario, slices)
    if taken > 1:
        out["slices"] = taken
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("base_root")
    parser.add_argument("head_root")
    parser.add_argument("out", type=Path)
    parser.add_argument("--app", default=None)
    parser.add_argument("--import", dest="import_string", default=None)
    parser.add_argument("--base-python", default=None)
    parser.add_argument("--head-python", default=None)
    parser.add_argument("--slices", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        scenario = tomllib.loads(args.scenario.read_text(encoding="utf-8"))
        pythons = None
        if args.base_python and args.head_python:
            pythons = (args.base_python, args.head_python)
        data = ab_scenario(
            scenario,
            args.base_root,
            args.head_root,
            args.app,
            args.import_string,
            pythons,
            args.slices,
        )
        args.out.write_text(toml_document(data), encoding="utf-8")
        taken, why = turns(scenario, args.slices)
        if why is not None:
            shape = f"{taken} turns a side" if taken > 1 else "each side after the other"
            print(f"ab-gate: rounds in {shape}: {why}", file=sys.stderr)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as exc:
        print(f"ab-gate: error: {args.scenario}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
