"""``torchrun --nproc_per_node 2 -m dsd_zoo.train``: DDP with gloo on CPU, same masks on every rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from dsd_zoo.dsd import load_checkpoint, load_masks
from dsd_zoo.dsd.distributed import tensors_digest
from dsd_zoo.models.digits import digits_net

from .conftest import REPO_ROOT
from .test_train_cli import GREY_8X8, make_image_folder, write_recipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
        reason="this torch build has no gloo backend for CPU distributed training",
    ),
]


def _tiny_recipe(tmp_path):
    """digits_net on a 2-class 8x8 folder: 3 phases (2+1+1 epochs), seconds on a CPU."""
    make_image_folder(tmp_path / "images", train_per_class=12, val_per_class=5)
    return write_recipe(
        tmp_path / "recipe.json",
        model="digits_net",
        data=GREY_8X8,
        epochs=[2, 1, 1],
        lr=0.05,
        sparsity=0.3,
        batch_size=4,
        workers=0,
        threads=1,
        device="cpu",
        output="out",
    )


def _torchrun(tmp_path, *target: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *target],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_gloo_processes_share_masks_and_write_checkpoints(tmp_path) -> None:
    recipe = _tiny_recipe(tmp_path)
    proc = _torchrun(tmp_path, "-m", "dsd_zoo.train", "--recipe", str(recipe), "--no-progress")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2
    phases = {p["phase"]["name"]: p for p in results["phases"]}
    assert list(phases) == ["dense", "sparse", "redense"]

    # Masks: one digest per rank, all equal, and equal to the masks file rank 0 wrote.
    masks = load_masks(out / "sparse.masks.safetensors")
    digests = phases["sparse"]["mask_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1] == tensors_digest(masks)
    # The models stay identical across ranks after every phase (DDP + synced BN-free buffers).
    for entry in phases.values():
        assert len(set(entry["state_sha256_per_rank"])) == 1, entry["phase"]["name"]
        # Disjoint validation shards summed: every one of the 2 x 5 images exactly once.
        assert entry["eval"]["n"] == 10

    model = digits_net(num_classes=2)
    load_checkpoint(out / "sparse.safetensors", model)
    state = model.state_dict()
    assert "features.0.weight" not in masks
    for name, mask in masks.items():
        # The requested sparsity, exactly: round(0.3 * numel) pruned and zero in the checkpoint.
        assert int((~mask).sum()) == round(0.3 * mask.numel())
        assert torch.count_nonzero(state[name][~mask]) == 0
    for phase in ("dense", "redense"):
        load_checkpoint(out / f"{phase}.safetensors", digits_net(num_classes=2))


_THREADS_AFTER_TRAIN = """
import os, sys
from dsd_zoo.train import main

rc = main(["--recipe", sys.argv[1], "--no-progress", "--output", "out-" + os.environ["RANK"] + "-" + sys.argv[2]])
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print("threads left:", sorted(names), flush=True)
sys.exit(rc or (3 if any("gloo" in n for n in names) else 0))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc to list the process's threads")
def test_training_leaves_no_gloo_thread_running(tmp_path) -> None:
    # A gloo worker thread still alive at interpreter shutdown can free a finished collective's
    # tensors without the GIL and abort the rank ("terminate called without an active exception",
    # seen in CI about once in 10-20 runs under load). train() must really end the group: with
    # DDP, torch.distributed.nn.functional's `group=group.WORLD` defaults used to keep it alive.
    recipe = _tiny_recipe(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(_THREADS_AFTER_TRAIN)
    proc = _torchrun(tmp_path, str(driver), str(recipe), "x")
    out = proc.stdout + proc.stderr
    assert out.count("threads left:") == 2, out[-3000:]
    assert proc.returncode == 0, out[-3000:]


_CALLER_OWNS_THE_GROUP = """
import os, sys
import torch
import torch.distributed as dist
from dsd_zoo.train import main

import torch.distributed.nn.functional  # before the group exists, as train()'s docstring asks
dist.init_process_group("gloo")
rc = main(["--recipe", sys.argv[1], "--no-progress", "--output", "out-" + os.environ["RANK"]])
assert dist.is_initialized(), "train() destroyed a process group it did not start"
total = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(total)
# One write of the whole line: under PYTHONUNBUFFERED, print()'s separate writes of its arguments
# interleave with the other rank's on the shared pipe; one write under PIPE_BUF bytes cannot.
sys.stdout.write(f"sum over ranks after train: {total.item()}\\n")
sys.stdout.flush()
dist.destroy_process_group()
sys.exit(rc)
"""


def test_training_leaves_a_group_the_caller_started_running(tmp_path) -> None:
    recipe = _tiny_recipe(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(_CALLER_OWNS_THE_GROUP)
    proc = _torchrun(tmp_path, str(driver), str(recipe))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("sum over ranks after train: 3.0") == 2, out[-3000:]  # ranks 0 and 1 add 1 + 2
