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
def make_image_folder(
    root: Path, classes: int = 2, train_per_class: int = 12, val_per_class: int = 4, size: int = 16, seed: int = 0
) -> Path:
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


# The data section of a run on 8x8 grey images (make_image_folder's, read as one channel).
GREY_8X8 = {
    "root": "images",
    "image_size": 8,
    "resize": 8,
    "channels": 1,
    "mean": [0.5],
    "std": [0.5],
    "augment": False,
}


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
    return write_recipe(tmp_path / "recipe.json", **{k: v for k, v in base.items() if v is not None})  # None: drop


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
    assert "holding train/ and val/" in text  # the layout the data folder must have


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data": {"root": "nowhere", "image_size": 16}}, "does not exist"),
        ({"model": "resnet_nine_thousand"}, "unknown model"),
        ({"model": "torchvision:resnet18", "pretrained": True}, "pretrained"),
        ({"sparsity": 2}, r"\[0, 1\]"),
        ({"exclude": ["clasifier"]}, "match no module"),
        # Values torch would reject mid-run with a traceback, or accept and diverge on: refused up front.
        ({"optimizer": {"momentum": -1}}, "'momentum' must be a finite number >= 0"),
        ({"optimizer": {"weight_decay": float("nan")}}, "'weight_decay' must be a finite number"),
        ({"optimizer": {"name": "adam", "betas": [1.5, 0.9]}}, r"betas must be two numbers in \[0, 1\)"),
        ({"optimizer": {"nesterov": True, "momentum": 0}}, "nesterov needs momentum > 0"),
        ({"data": {"root": "images", "image_size": 16, "std": [0, 0, 0]}}, "std values must be > 0"),
        ({"lr": "0.1"}, "lr must be a finite number > 0, got '0.1'"),
        ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
        ({"epochs": 1.5}, "epochs must be an integer or a list of 3 integers"),
        (
            {"epochs": None, "lr": None, "phases": [{"kind": "weird", "epochs": 1, "lr": 0.1}]},
            "phase 0: kind must be one of",
        ),
        ({"seed": 2**70}, r"'seed' must be in \[0, 2\*\*63\)"),
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


def _tiny(tmp_path, **overrides):
    """digits_net on 8x8 grey images: a whole 3-phase run in about a second."""
    make_image_folder(tmp_path / "images", train_per_class=6, val_per_class=2)
    base = {
        "model": "digits_net",
        "epochs": [1, 1, 1],
        "sparsity": 0.3,
        "data": GREY_8X8,
    }
    return _recipe(tmp_path, **{**base, **overrides})


@pytest.mark.parametrize("where", ["output is a file", "output is below a file"])
def test_an_output_that_cannot_be_a_directory(tmp_path, capsys, where) -> None:
    (tmp_path / "afile").write_text("x")
    output = "afile" if where == "output is a file" else "afile/run"
    assert main(["--recipe", str(_tiny(tmp_path, output=output)), "--no-progress"]) == 2
    assert f"{tmp_path / 'afile'} is a file, not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_training_image_is_named(tmp_path, capsys, workers) -> None:
    recipe = _tiny(tmp_path, workers=workers)
    bad = tmp_path / "images" / "train" / "class_0" / "bad.png"
    bad.write_bytes(b"not a png at all")
    assert main(["--recipe", str(recipe), "--no-progress"]) == 2
    err = capsys.readouterr().err
    # One line naming the file, also when a DataLoader worker hit it (no worker traceback).
    assert err.startswith(f"error: data: cannot read the image {bad}") and "remove or replace it" in err
    assert "Traceback" not in err


def test_a_diverged_run_stops_with_a_message_and_stays_marked_unfinished(tmp_path, capsys) -> None:
    # Inputs divided by a std of 1e-37 overflow float32 in the convolutions: the weights turn NaN.
    recipe = _tiny(
        tmp_path,
        data={**GREY_8X8, "std": [1e-37]},
        batch_size=2,
    )
    assert main(["--recipe", str(recipe), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot prune a weight that holds NaN or infinite values: the training diverged")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["complete"] is False and [p["phase"]["name"] for p in results["phases"]] == ["dense"]
    assert main(["--recipe", str(recipe), "--no-progress"]) == 2
    assert "already holds an unfinished run (interrupted or failed)" in capsys.readouterr().err


def test_overwrite_removes_the_earlier_runs_files(tmp_path) -> None:
    two_rounds = _tiny(tmp_path, epochs=[1, 1, 1, 1, 1], rounds=2)
    assert main(["--recipe", str(two_rounds), "--no-progress"]) == 0
    out = tmp_path / "out"
    assert (out / "sparse2.safetensors").exists() and (out / "redense2.safetensors").exists()
    (out / "notes.txt").write_text("mine")  # not the run's: left alone
    one_round = _tiny(tmp_path)
    assert main(["--recipe", str(one_round), "--no-progress", "--overwrite"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True
    written = {entry[key]["file"] for entry in results["phases"] for key in ("checkpoint", "masks") if entry.get(key)}
    assert sorted(p.name for p in out.iterdir()) == sorted(written | {"results.json", "notes.txt"})


def test_no_progress_builds_no_bar(tmp_path, monkeypatch) -> None:
    # A signal landing inside tqdm's __init__ leaves a half-built bar whose __del__ prints a
    # traceback (tqdm/tqdm#1668, in the floor tqdm 4.62): with --no-progress there is no bar at all.
    import tqdm.auto

    def no_bar(*args, **kwargs):
        raise AssertionError("a progress bar was built with --no-progress")

    monkeypatch.setattr(tqdm.auto, "tqdm", no_bar)
    assert main(["--recipe", str(_tiny(tmp_path)), "--no-progress"]) == 0


@pytest.mark.parametrize("how, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_exits_130_and_leaves_the_run_marked_unfinished(tmp_path, how, status) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO_ROOT

    recipe = _tiny(tmp_path, epochs=[1, 100000, 1])  # the sparse phase would run for hours
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsd_zoo.train", "--recipe", str(recipe), "--no-progress"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    results = tmp_path / "out" / "results.json"
    deadline = time.monotonic() + 120
    while not results.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(getattr(signal, how))  # during the sparse phase: a user's Ctrl-C, or a scheduler's kill
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err[-2000:]
    assert ("interrupted" in err or how == "SIGTERM") and "Traceback" not in err
    assert json.loads(results.read_text())["complete"] is False
    assert not list((tmp_path / "out").glob("*.part"))


def test_pretrained_weights_without_a_digest_need_trust_unverified(tmp_path, capsys, monkeypatch, server) -> None:
    # digits_dsd served from a mirror with no published digest, as the DSD originals are.
    from dsd_zoo.manifest import bundled_manifest_path
    from dsd_zoo.records import shipped_file

    from .servers import isolate_download_env

    isolate_download_env(monkeypatch, tmp_path)
    document = json.loads(bundled_manifest_path().read_text())
    weights = document["models"]["digits_dsd"]["weights"]
    url = server.add("/digits_dsd.safetensors", shipped_file(weights.pop("local")).read_bytes())
    weights.update(sha256=None, size=None, urls=[url])
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    monkeypatch.setenv("DSD_ZOO_MANIFEST", str(tmp_path / "manifest.json"))
    recipe = _tiny(
        tmp_path,
        model="digits_dsd",
        pretrained=True,
    )
    assert main(["--recipe", str(recipe), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no published digest" in err and "In this command: add --trust-unverified." in err
    with pytest.warns(UserWarning, match="trusting the copy"):
        assert main(["--recipe", str(recipe), "--no-progress", "--trust-unverified"]) == 0
