"""Invariant: nothing in the package unpickles (torch.load, pickle, numpy allow_pickle) or executes input."""

from __future__ import annotations

import re

from .conftest import REPO_ROOT

FORBIDDEN = re.compile(r"\btorch\.load\s*\(|\bimport\s+pickle\b|\bpickle\.loads?\s*\(|allow_pickle\s*=\s*True"
                       r"|\bmarshal\.loads?\s*\(|(?<![.\w])(eval|exec)\s*\(")


def test_no_unpickling_or_exec_in_the_package():
    offenders = []
    for path in sorted((REPO_ROOT / "dsd_zoo").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if FORBIDDEN.search(code) and not code.strip().startswith(("``", '"', "'")):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []
