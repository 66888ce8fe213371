"""ruff check, with the rule set in pyproject.toml, finds nothing in the package, its tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import REPO_ROOT


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed: pip install ruff (it is in the test extra)")
    done = subprocess.run([ruff, "check", "--no-cache", "dsd_zoo", "tests", "benchmarks", "hubconf.py"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
