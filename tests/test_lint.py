"""ruff, with the settings in pyproject.toml: `ruff check` finds nothing and `ruff format` would
change nothing, in the package, its tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import REPO_ROOT

CHECKED = ["dsd_zoo", "tests", "benchmarks", "hubconf.py"]


def _ruff(*arguments: str) -> subprocess.CompletedProcess:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed: pip install ruff (it is in the test extra)")
    return subprocess.run([ruff, *arguments, "--no-cache", *CHECKED], cwd=REPO_ROOT, capture_output=True, text=True)


def test_ruff_check_finds_nothing():
    done = _ruff("check")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_format_would_change_nothing():
    # ruff's formatter follows a yearly style guide; every release from 0.9.0 (the 2025 style, the
    # floor in setup.cfg) to 0.17.6 formats this tree identically (checked when it was formatted).
    done = _ruff("format", "--check")
    assert done.returncode == 0, "run `ruff format` on these files:\n" + done.stdout[-4000:] + done.stderr[-2000:]
