"""The stages import downward only: contracts <- data_prep <- pipeline <- ensemble <- submit, each package only the
ones before it, plus the edges stated in ALLOWED_UPWARD. Read from the source, so a new import cannot slip in."""
from __future__ import annotations

import ast

from tests.helpers import REPO

LAYERS = ("contracts", "data_prep", "pipeline", "ensemble", "submit")
# (importing module or package, imported package): why the edge is allowed
ALLOWED_UPWARD = {("pipeline.infer", "ensemble"): "TTA merges a model's variants with the ensemble's fusion functions"}


def imports_of(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_stages_import_only_earlier_stages():
    wrong = []
    for rank, package in enumerate(LAYERS):
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for name in imports_of(path):
                top = name.split(".")[0]
                if top not in LAYERS or LAYERS.index(top) <= rank:
                    continue
                if not any((module == src or module.startswith(src + ".")) and top == dst
                           for src, dst in ALLOWED_UPWARD):
                    wrong.append(f"{module} imports {name}")
    assert not wrong, "imports that run back up the stages:\n" + "\n".join(wrong)


def test_every_allowed_upward_edge_is_used():
    for (source, target), why in ALLOWED_UPWARD.items():
        folder = REPO / source.replace(".", "/")
        files = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
        assert any(name.split(".")[0] == target for f in files for name in imports_of(f)), (source, target, why)
