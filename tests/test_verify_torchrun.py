"""``torchrun --nproc_per_node 2 -m dsd_zoo.verify``: sharded over two gloo ranks on CPU, same totals as one process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from dsd_zoo.verify.__main__ import main

from .conftest import REPO_ROOT
from .test_verify_datasets import N_TOP1, N_TOP5, SAMPLES, make_imagefolder
from .test_verify_engine import colour_squeezenet_file

pytestmark = pytest.mark.usefixtures("one_thread")

# python -m dsd_zoo.verify, then the names of the threads still running in the rank.
_THREADS_AFTER_VERIFY = """
import os, sys
from dsd_zoo.verify.__main__ import main

rc = main(sys.argv[1:])
if os.path.isdir("/proc/self/task"):
    print("threads left:", sorted(open(f"/proc/self/task/{t}/comm").read().strip()
                                  for t in os.listdir("/proc/self/task")), flush=True)
else:
    print("threads left: (not listed on this system)", flush=True)
sys.exit(rc)
"""

MODEL = "squeezenet_sparse"


@pytest.mark.slow
def test_two_ranks_give_the_totals_of_one_process(tmp_path, monkeypatch):
    import importlib.util

    # The default engine on a CPU: onnxruntime when installed, one session per rank; each run
    # exports into an empty cache of its own (the two ranks at once: the cache's lock makes it one export).
    engine = "onnxruntime" if importlib.util.find_spec("onnxruntime") else "torch"
    monkeypatch.setenv("DSD_ZOO_CACHE", str(tmp_path / "cache-single"))
    weights = colour_squeezenet_file(tmp_path / "colour.safetensors")
    # 13 files (3 unreadable): rank 0 gets indices 0, 2, ..., 12 (7), rank 1 the other 6; no padding.
    root = make_imagefolder(tmp_path / "val")
    args = [
        MODEL,
        "--weights",
        f"{MODEL}={weights}",
        "--imagenet",
        str(root),
        "--workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
        "--batch-size",
        "4",
    ]
    single = tmp_path / "single.json"
    assert main(args + ["--json", str(single)]) == 3

    sharded = tmp_path / "sharded.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "OMP_NUM_THREADS": "1",
        "DSD_ZOO_CACHE": str(tmp_path / "cache-ranks"),
    }
    driver = tmp_path / "driver.py"
    driver.write_text(_THREADS_AFTER_VERIFY)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(driver),
            *args,
            "--json",
            str(sharded),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    # Both ranks exit 3 (unreadable images were counted), which torchrun reports as a failed run;
    # rank 0 wrote its report first (the ranks wait for each other before exiting).
    assert done.returncode != 0 and "exitcode  : 3" in done.stderr, done.stderr[-3000:]
    # The group really ended: a gloo thread alive at shutdown can abort a rank (see dsd_zoo._process_group).
    # (The two ranks share stdout, so their lines may interleave: look for thread names, not lines.)
    assert done.stdout.count("threads left:") == 2, done.stdout[-2000:]
    assert not re.search(r"'[^']*gloo[^']*'", done.stdout), done.stdout[-2000:]
    one, two = json.loads(single.read_text()), json.loads(sharded.read_text())
    assert one["run"]["world_size"] == 1 and two["run"]["world_size"] == 2
    assert one["run"]["engines"] == two["run"]["engines"] == {MODEL: engine}
    if engine == "onnxruntime":
        assert len(list((tmp_path / "cache-ranks").rglob("*.onnx"))) == 1
    assert two["models"] == one["models"]
    assert (two["models"][0]["images"], two["models"][0]["top1_correct"], two["models"][0]["top5_correct"]) == (
        len(SAMPLES),
        N_TOP1,
        N_TOP5,
    )
    assert two["unreadable"] == one["unreadable"] and len(two["unreadable"]) == 3
    assert two["exit_code"] == 3
