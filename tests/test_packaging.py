"""The wheel carries the one manifest (a real file, equal to the repository root's), the mean image and the embedded zoo."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from .conftest import REPO_ROOT


@pytest.mark.slow
def test_wheel_contains_the_manifest_and_embedded_files(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here without network (build isolation off): {build.stderr[-300:]}")
    (wheel,) = tmp_path.glob("dsd_zoo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        # In git the package's manifest is a symlink to the root file; the wheel holds its bytes.
        assert archive.read("dsd_zoo/weights_manifest.json") == (REPO_ROOT / "weights_manifest.json").read_bytes()
        for shipped in (
            "dsd_zoo/data/imagenet_classes.tsv",
            "dsd_zoo/data/ilsvrc_2012_mean.safetensors",
            "dsd_zoo/data/embedded/digits_dsd.safetensors",
            "dsd_zoo/data/embedded/digits_test.safetensors",
        ):
            assert shipped in names
        assert not any(name.startswith(("tests/", "benchmarks/")) or name == "hubconf.py" for name in names)
        # The license travels with the wheel, and type checkers read the inline hints (PEP 561).
        assert "dsd_zoo/py.typed" in names
        assert any(
            name.endswith(".dist-info/licenses/LICENSE") or name.endswith(".dist-info/LICENSE") for name in names
        ), sorted(n for n in names if "dist-info" in n)


@pytest.mark.slow
def test_sdist_carries_the_license_hub_entry_and_a_runnable_test_suite(tmp_path):
    import tarfile

    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    build = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (sdist,) = tmp_path.glob("dsd_zoo-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "hubconf.py",
        "weights_manifest.json",
        "dsd_zoo/py.typed",
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/servers.py",
        "tests/formats/caffe_writer.py",
    ):
        assert needed in names, needed
    assert not any("__pycache__" in name for name in names)


def _release(version: str) -> tuple[int, ...]:
    """``"7"`` and ``"7.0.0"`` are one release: numeric parts, trailing zeros dropped (a ``.postN`` kept)."""
    release, post, number = version.partition(".post")
    parts = [int(part) for part in release.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return (*parts, -1, int(number)) if post else tuple(parts)


def test_declared_floors_are_the_ones_ci_tests():
    # .ci/run installs the test extra with .ci/floors.txt as constraints and runs the suite: a
    # floor in setup.cfg that differs from the pinned one would be an untested claim.
    import configparser
    import re

    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in config["options.extras_require"].values():
        lines += extra.splitlines()
    declared: dict[str, tuple[int, ...]] = {}
    for line in filter(None, (line.strip() for line in lines)):
        name, floor = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+(?:\.post[0-9]+)?)", line).groups()
        declared[name.lower().replace("_", "-")] = _release(floor)
    pinned: dict[str, tuple[int, ...]] = {}
    for line in (REPO_ROOT / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.lower().replace("_", "-")] = _release(version)
    untested = {"torch", "torchvision"}  # only the machine's local wheels can be installed in CI
    assert {name: declared[name] for name in declared.keys() - untested} == pinned
