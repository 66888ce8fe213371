"""`import dsd_zoo` stays light: no torchvision weights, plotting, converter or network code."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO_ROOT


def _modules_after(code: str) -> set:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_is_light():
    loaded = _modules_after("import dsd_zoo")
    for heavy in (
        "torch",
        "torchvision",
        "matplotlib",
        "google.protobuf",
        "requests",
        "huggingface_hub",
        "dsd_zoo.convert",
        "dsd_zoo.download",
        "onnx",
        "onnxruntime",
        "onnxscript",
        "dsd_zoo.export",
        "mnist1d",
        "sklearn",
        "scipy",
    ):
        assert heavy not in loaded, f"import dsd_zoo imported {heavy}"


def test_list_models_is_light():
    loaded = _modules_after("import dsd_zoo; dsd_zoo.list_models()")
    assert "torch" not in loaded and "requests" not in loaded


def test_building_does_not_import_torchvision_weights_or_converters():
    loaded = _modules_after("import dsd_zoo; dsd_zoo.get_model('resnet50_dsd', pretrained=False)")
    assert "google.protobuf" not in loaded and "matplotlib" not in loaded and "dsd_zoo.convert" not in loaded
