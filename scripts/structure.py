"""The package's structure in figures: who imports whom, how deep, and the longest functions.

    python scripts/structure.py              # the working tree
    python scripts/structure.py --rev main   # any commit, read through git (no checkout)

Prints the import graph (module -> connbench modules it imports, with each module's depth: 0
for a module importing nothing of connbench, else one more than the deepest module it imports)
and the ten longest functions (lines from `def` to the last line of the body, decorators
excluded). Only the standard library, so it runs before the venv exists. `connbench.apps` (one
FastAPI app per strategy, run as subprocesses) counts as one module; package `__init__` files
that only hold a docstring are left out.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from functools import cache
from pathlib import Path

PACKAGE = "connbench"
APPS = "connbench.apps"


def _sources_from_tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted((root / PACKAGE).rglob("*.py"))
    }


def _sources_from_git(rev: str, root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
        ).stdout

    paths = git("ls-tree", "-r", "--name-only", rev, "--", PACKAGE).split()
    return {path: git("show", f"{rev}:{path}") for path in paths if path.endswith(".py")}


def _module_name(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    name = ".".join(parts)
    return APPS if name.startswith(APPS + ".") else name


def _imports(module: str, tree: ast.Module, known: set[str], is_package: bool) -> set[str]:
    """The connbench modules `module` imports (relative imports resolved)."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from connbench.analyse import stats` imports the module connbench.analyse.stats;
            # `from connbench.model.errors import X` imports connbench.model.errors.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and name in known:
                found.add(name)
    return found


def _is_empty_package(path: str, tree: ast.Module) -> bool:
    return path.endswith("__init__.py") and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in tree.body
    )


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
    parsed = {path: ast.parse(text) for path, text in sources.items()}
    known = {
        _module_name(path) for path, tree in parsed.items() if not _is_empty_package(path, tree)
    } - {PACKAGE}
    edges: dict[str, set[str]] = {}
    for path, tree in parsed.items():
        module = _module_name(path)
        if module in known:
            package = path.endswith("__init__.py") or module == APPS
            edges.setdefault(module, set()).update(_imports(module, tree, known, package))
    return edges


def depths(edges: dict[str, set[str]]) -> dict[str, int]:
    @cache
    def depth(module: str, seen: frozenset[str] = frozenset()) -> int:
        below = [m for m in edges.get(module, set()) if m not in seen and m in edges]
        return 1 + max((depth(m, seen | {module}) for m in below), default=-1)

    return {module: depth(module) for module in edges}


def _functions(node: ast.AST, prefix: str) -> list[tuple[int, str]]:
    """(lines, dotted name) of every function under ``node``, nested ones included."""
    found: list[tuple[int, str]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            found.append(((child.end_lineno or child.lineno) - child.lineno + 1, name))
            found += _functions(child, f"{name}.")
        elif isinstance(child, ast.ClassDef):
            found += _functions(child, f"{prefix}{child.name}.")
    return found


def longest_functions(sources: dict[str, str], count: int = 10) -> list[tuple[int, str]]:
    found = [
        (lines, name)
        for path, text in sources.items()
        for lines, name in _functions(
            ast.parse(text), path.removesuffix(".py").replace("/", ".") + "."
        )
    ]
    return sorted(found, key=lambda item: (-item[0], item[1]))[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="a git revision to read instead of the working tree")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    sources = _sources_from_git(args.rev, args.root) if args.rev else _sources_from_tree(args.root)
    edges = graph(sources)
    level = depths(edges)
    short = len(PACKAGE) + 1
    print(f"Import graph ({len(edges)} modules, {max(level.values()) + 1} levels deep)")
    for module in sorted(edges, key=lambda m: (-level[m], m)):
        targets = ", ".join(sorted(m[short:] for m in edges[module])) or "-"
        print(f"  [{level[module]:2}] {module[short:]} -> {targets}")
    print("\nTen longest functions (lines)")
    for lines, name in longest_functions(sources):
        print(f"  {lines:4}  {name[short:]}")


if __name__ == "__main__":
    main()
