"""Invariant: nothing in the package unpickles (torch.load, pickle, numpy allow_pickle) or executes input."""

from __future__ import annotations

import re

from .conftest import REPO_ROOT

FORBIDDEN = re.compile(
    r"\btorch\.load\s*\(|\bimport\s+pickle\b|\bpickle\.loads?\s*\(|allow_pickle\s*=\s*True"
    r"|\bmarshal\.loads?\s*\(|(?<![.\w])(eval|exec)\s*\("
)


# The one exception (docs/architecture.md): the ResNet50_DSD port exists only as a pickle, read
# with weights_only=True once its published digest matched (tests/test_convert_port.py).
ALLOWED = {
    ("dsd_zoo/convert/pth_mapping.py", 'loaded = torch.load(os.fspath(path), map_location="cpu", weights_only=True)')
}


def test_no_unpickling_or_exec_in_the_package():
    offenders = []
    for path in sorted((REPO_ROOT / "dsd_zoo").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if FORBIDDEN.search(code) and not code.strip().startswith(("``", '"', "'")):
                if (path.relative_to(REPO_ROOT).as_posix(), line.strip()) not in ALLOWED:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []
