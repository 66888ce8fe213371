"""``python -m dsd_zoo.train`` in one process on a tiny generated ImageFolder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dsd_zoo.dsd import load_checkpoint, load_masks, read_metadata
from dsd_zoo.train import main


# Shared with test_train_torchrun.py.
def make_image_folder(root: Path, classes: int = 2, train_per_class: int = 12, val_per_class: int = 4,
                      size: int = 16, seed: int = 0) -> Path:
    """``root/{train,val}/class_k/*.png``: noisy images whose bright stripe's position is the class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for k in range(classes):
            directory = root / split / f"class_{k}"
            directory.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
                band = slice(k * size // classes, (k + 1) * size // classes)
                pixels[:, band] = 200
                Image.fromarray(pixels).save(directory / f"{i}.png")
    return root


def write_recipe(path: Path, **recipe: Any) -> Path:
    """Write ``recipe`` as JSON to ``path``."""
    path.write_text(json.dumps(recipe))
    return path


def _recipe(tmp_path, **overrides):
    base = {
        "model": "torchvision:resnet18",
        "data": {"root": "images", "image_size": 16, "resize": 16, "augment": False},
        "epochs": [1, 1, 1],
        "lr": 0.05,
        "batch_size": 8,
        "workers": 0,
        # One thread: on two busy cores a second one makes tiny models 10x slower, not faster.
        "threads": 1,
        "seed": 0,
        "output": "out",
    }
    base.update(overrides)
    return write_recipe(tmp_path / "recipe.json", **base)


def test_three_stage_checkpoints_with_evaluation(tmp_path, capsys) -> None:
    import torchvision

    make_image_folder(tmp_path / "images")
    assert main(["--recipe", str(_recipe(tmp_path)), "--no-progress"]) == 0
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert [p["phase"]["name"] for p in results["phases"]] == ["dense", "sparse", "redense"]
    assert [p["phase"]["lr"] for p in results["phases"]] == [0.05, 0.005, 0.0005]
    for entry in results["phases"]:
        assert entry["eval"]["n"] == 8  # 2 classes x 4 validation images
        assert 0 <= entry["eval"]["top1_err"] <= 1

    plain = torchvision.models.resnet18(num_classes=2)
    meta = load_checkpoint(out / "sparse.safetensors", plain)  # loads into the plain architecture
    assert meta["phase"] == "sparse" and meta["model"] == "torchvision:resnet18"
    state = plain.state_dict()
    masks = load_masks(out / "sparse.masks.safetensors")
    assert "conv1.weight" not in masks  # the first conv stays dense
    assert int((state["conv1.weight"] == 0).sum()) == 0
    assert all(not name.endswith("bias") for name in masks)
    for name, mask in masks.items():
        # Requested per-layer sparsity 0.3: exactly round(0.3 * numel) pruned weights, and zero.
        assert int((~mask).sum()) == round(0.3 * mask.numel())
        assert torch.count_nonzero(state[name][~mask]) == 0
    sparse_phase = results["phases"][1]
    assert sparse_phase["sparsity"]["layers"]["fc.weight"]["zeros"] >= round(0.3 * 2 * 512)
    assert json.loads(read_metadata(out / "sparse.safetensors")["sparsity"])["fc.weight"]["pruned"] == 307

    redense = torchvision.models.resnet18(num_classes=2)
    load_checkpoint(out / "redense.safetensors", redense)
    for name, mask in masks.items():
        # Pruned weights train again in every layer. Not all of them: at 16x16 input layer4 sees
        # a 1x1 map, so only the centre tap of its 3x3 kernels ever gets a gradient.
        assert torch.count_nonzero(redense.state_dict()[name][~mask]) > 0, name
    assert "[sparse]" in capsys.readouterr().out


def test_builtin_digits_with_digits_net(tmp_path) -> None:
    pytest.importorskip("sklearn", reason="the built-in digits need scikit-learn (pip install 'dsd-zoo[demo]')")
    recipe = _recipe(tmp_path, model="digits_net", data={"builtin": "digits"}, epochs=[4, 1, 1], sparsity=0.5)
    assert main(["--recipe", str(recipe), "--no-progress"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["phases"][-1]["eval"]["n"] == 600  # the fixed test split of the demo
    # 4 + 1 + 1 epochs on 1,197 images: far below the 90 % error of chance (the demo's
    # 5-epoch dense model is at ~5 %).
    assert results["phases"][-1]["eval"]["top1_err"] < 0.5
    layers = results["phases"][1]["sparsity"]["layers"]
    assert layers["features.0.weight"]["zeros"] == 0
    assert layers["classifier.0.weight"]["zeros"] >= round(0.5 * 256 * 128)


def test_help_explains_the_recipe(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--recipe" in text and "torchrun" in text and "sparsity" in text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data": {"root": "nowhere", "image_size": 16}}, "does not exist"),
        ({"model": "resnet_nine_thousand"}, "unknown model"),
        ({"model": "torchvision:resnet18", "pretrained": True}, "pretrained"),
        ({"sparsity": 2}, r"\[0, 1\]"),
        ({"exclude": ["clasifier"]}, "match no module"),
    ],
)
def test_clear_errors(tmp_path, capsys, overrides, message) -> None:
    make_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    assert main(["--recipe", str(_recipe(tmp_path, **overrides)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err)


def test_refuses_to_overwrite_a_run(tmp_path, capsys) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").write_text("{}")
    make_image_folder(tmp_path / "images", train_per_class=2, val_per_class=1)
    assert main(["--recipe", str(_recipe(tmp_path)), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
