"""Layers point one way: the import contracts in pyproject.toml hold (import-linter's ``lint-imports``).

The contracts: the applications (verify, release, train) over the model API over conversion over
delivery over the file records, with the utilities at the bottom; inside the converter, its CLI
over the one conversion path over the dispatcher over the mappings over the readers. Every
import counts, function-level ones too, so a lazy import cannot hide a dependency that points up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT


def test_the_import_contracts_hold():
    # The script next to this interpreter first: the one installed with the test extra.
    script = Path(sys.executable).with_name("lint-imports")
    command = str(script) if script.exists() else shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter is not installed: pip install import-linter (it is in the test extra)")
    # --no-cache: a cache written by another version of the package's files must not answer.
    done = subprocess.run(
        [command, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
