"""Layers point one way: the DSD training library and its CLI never import the verification CLI's package.

Shared pieces live below both (``dsd_zoo.ranking``: top-k with fixed ties; ``dsd_zoo._decode``:
PIL's decode failures); the self-check calls into the embedded zoo, not the other way round.
Every import is read from the source (function-level ones too), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast

import pytest

from .conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "dsd_zoo"


def _imports(path) -> set:
    """Absolute names of every module ``path`` imports, anywhere in it."""
    module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
    return names


@pytest.mark.parametrize("path", sorted([*(PACKAGE / "dsd").rglob("*.py"), PACKAGE / "train.py"]),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_dsd_and_train_never_import_verify(path):
    assert sorted(name for name in _imports(path) if name.startswith("dsd_zoo.verify")) == []
