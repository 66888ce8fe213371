"""The wheel carries the one manifest (a real file, equal to the repository root's) and the embedded zoo."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from .conftest import REPO_ROOT


@pytest.mark.slow
def test_wheel_contains_the_manifest_and_embedded_files(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path), str(REPO_ROOT)], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here without network (build isolation off): {build.stderr[-300:]}")
    (wheel,) = tmp_path.glob("dsd_zoo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        # In git the package's manifest is a symlink to the root file; the wheel holds its bytes.
        assert archive.read("dsd_zoo/weights_manifest.json") == (REPO_ROOT / "weights_manifest.json").read_bytes()
        for shipped in ("dsd_zoo/data/imagenet_classes.tsv", "dsd_zoo/data/embedded/digits_dsd.safetensors",
                        "dsd_zoo/data/embedded/digits_test.safetensors"):
            assert shipped in names
        assert not any(name.startswith(("tests/", "benchmarks/")) or name == "hubconf.py" for name in names)
