"""The package's layers: imports go down only, and the model imports nothing above it.

Read from the source with ``scripts/structure.py`` (the script that prints the import graph
for notes), so the rule and the figures come from one reading of the code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import its own layer and the layers below it.
LAYERS = ("model", "infra", "measure", "analyse", "present", "runner", "options", "cli", "__main__")
# The strategy catalogue in connbench/apps/__init__.py is data the model validates names
# against; the apps import nothing of connbench, so it sits at the bottom with the model.
BOTTOM = {"apps"}


def _structure() -> ModuleType:
    spec = importlib.util.spec_from_file_location("structure", ROOT / "scripts" / "structure.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _layer(module: str) -> int:
    top = module.removeprefix("connbench.").split(".")[0]
    return -1 if top in BOTTOM else LAYERS.index(top)


@pytest.mark.integration
def test_imports_go_down_only() -> None:
    structure = _structure()
    edges = structure.graph(structure._sources_from_tree(ROOT))
    upward = [
        f"{module} -> {target}"
        for module, targets in edges.items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert not upward
    assert {"connbench.model.scenario", "connbench.analyse.stats"} <= edges.keys()


def test_the_model_imports_nothing_else_of_connbench() -> None:
    structure = _structure()
    edges = structure.graph(structure._sources_from_tree(ROOT))
    outside = {
        f"{module} -> {target}"
        for module, targets in edges.items()
        if module.startswith("connbench.model.")
        for target in targets
        if not target.startswith("connbench.model.") and target != "connbench.apps"
    }
    assert not outside
    assert edges["connbench.model.metrics"] == set()
