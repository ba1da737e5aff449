"""The docs cannot drift from the CLI: every `connbench` command in a shell block of the README
or a page under docs/ parses (its command, flags and the values click checks), and every
relative link and anchor points at something that exists.

test_readme.py runs the README's Usage block itself; the other commands hold placeholders
(a DSN, a host) or take minutes, so here they are parsed as the CLI parses them, without
running: a renamed or removed flag, a wrong value kind, a dead link fails.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main

from connbench.cli import app

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def commands(page: Path) -> list[str]:
    """Each `connbench ...` command of the page's sh blocks, continuation lines joined."""
    out = []
    for lang, body in _FENCE.findall(page.read_text()):
        if lang not in ("sh", "bash", "shell"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        out += [
            line.strip() for line in joined.splitlines() if line.strip().startswith("connbench ")
        ]
    return out


ALL = [(page.relative_to(ROOT).as_posix(), line) for page in PAGES for line in commands(page)]


def test_the_docs_hold_commands_to_check() -> None:
    assert len(ALL) >= 30
    assert {page for page, _ in ALL} >= {"README.md"}


@pytest.mark.parametrize(("page", "line"), ALL, ids=[f"{p}:{i}" for i, (p, _) in enumerate(ALL)])
def test_every_documented_command_parses(page: str, line: str) -> None:
    argv = shlex.split(line, comments=True)
    if ">" in argv:
        argv = argv[: argv.index(">")]
    name, *args = argv[1:]
    command = getattr(typer.main.get_command(app), "commands", {}).get(name)
    assert command is not None, f"{page}: no command {name!r}: {line}"
    # typer carries its own click: its UsageError is reached through a class it exports
    usage_error: Any = typer.BadParameter.__mro__[1]
    try:
        command.make_context(name, list(args), resilient_parsing=False)
    except usage_error as exc:
        pytest.fail(f"{page}: {line}\n{exc.format_message()}")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text())
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s]*)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    text = _FENCE.sub("", page.read_text())
    for target in LINK.findall(text):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: {target}: no such heading"
