"""The MNIST-1D study, reduced to a few seeds and epochs: the same code path, checking mechanics, not the result.

The full, pre-registered study and its result are in docs/dsd-mnist1d.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys

import pytest
import torch

from dsd_zoo.dsd.stats import paired_difference, sign_test_p, student_t_quantile

from .conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def test_student_t_quantiles_match_published_tables():
    # Two-sided 95 % critical values of Student's t (any statistics textbook's table):
    # 12.706 (1 df), 2.262 (9 df), 2.093 (19 df), 2.069 (23 df); the normal's 1.960 in the limit.
    for df, expected in ((1, 12.706), (9, 2.262), (19, 2.093), (23, 2.069), (10_000, 1.960)):
        assert round(student_t_quantile(0.975, df), 3) == expected, df


def test_student_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 19, 29, 200):
        for p in (0.6, 0.975, 0.995, 0.025):
            assert math.isclose(student_t_quantile(p, df), stats.t.ppf(p, df), rel_tol=1e-9, abs_tol=1e-12)


def test_sign_test_and_interval():
    # 6 of 7 non-zero differences negative (one tie dropped): 2 * (1 + 7) / 2^7 = 0.125.
    assert sign_test_p([-1, -1, -1, -1, -1, -1, 1, 0]) == 0.125
    assert sign_test_p([0.0, 0.0]) == 1.0
    result = paired_difference([-0.02, -0.01, -0.03, -0.02])
    assert result["ci_high"] < 0 < -result["ci_low"]
    assert math.isclose((result["ci_low"] + result["ci_high"]) / 2, result["mean"])
    assert paired_difference([0.01])["ci_low"] is None


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reduced_study_runs_deterministically_and_writes_its_outputs(tmp_path):
    pytest.importorskip("mnist1d", reason="the MNIST-1D study needs mnist1d (pip install 'dsd-zoo[demo]')")
    pytest.importorskip("matplotlib", reason="the figures need matplotlib (pip install 'dsd-zoo[plot]')")
    from dsd_zoo.dsd.mnist1d_study import PROTOCOL, run_study

    lines: list[str] = []
    kwargs = {"seeds": 2, "overrides": {"epochs": (2, 1, 1)}, "plot": True, "command": "test", "log": lines.append}
    summary = run_study(tmp_path / "a", **kwargs)
    assert summary["protocol"].startswith("exploratory") and "seeds=2" in summary["protocol"]
    assert summary["data"]["split"].endswith("4000 train / 1000 test")
    assert set(summary["models"]) == set(PROTOCOL) == {"mlp", "cnn"}
    for name, result in summary["models"].items():
        s = result["summary"]
        assert s["seeds"] == [0, 1] and len(result["per_seed"]) == 2
        assert s["dense_stage_identical"] is True  # the two runs of a seed share init and batches
        # Every pruned layer holds round(sparsity * n) zeros; the first layer stays dense.
        sparsity = s["sparse_stage_sparsity"]
        assert 0 < sparsity["zeros"] and result["config"]["sparsity"] == PROTOCOL[name].config.sparsity
        row = result["per_seed"][0]
        assert [e["phase"] for e in row["curves"]["dsd"]] == ["dense", "dense", "sparse", "redense"]
        assert row["curves"]["dsd"][-1]["test_top1_err"] == row["top1_err"]["dsd"]
        assert row["dsd_minus_baseline"] == row["top1_err"]["dsd"] - row["top1_err"]["baseline"]
        assert result["verdict"]
        # Four epochs are short but well below chance (90 % error) on 1,000 test sequences.
        assert row["top1_err"]["baseline"] < 0.8
    assert any(line.startswith("cnn seed 1:") for line in lines)
    table = (tmp_path / "a" / "table.md").read_text()
    assert "| 1 | " in table.split("final test error per seed")[1]  # one row per seed
    for figure in ("paired_errors.png", "curves_seed0.png"):
        assert (tmp_path / "a" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The same command twice: the same bytes (timings live in timing.json, outside the digests).
    run_study(tmp_path / "b", **kwargs)
    for name in ("summary.json", "table.md", "paired_errors.png", "curves_seed0.png"):
        assert _digest(tmp_path / "a" / name) == _digest(tmp_path / "b" / name), name
    assert json.loads((tmp_path / "a" / "timing.json").read_text())["wall_seconds"] > 0


def test_the_cnn_prunes_its_1d_convolutions_through_the_library():
    from torch import nn

    from dsd_zoo.dsd import DSD
    from dsd_zoo.dsd.mnist1d_study import PROTOCOL

    cnn = PROTOCOL["cnn"]
    model = cnn.build()
    dsd = DSD(model, sparsity=cnn.config.sparsity, **cnn.dsd_options)
    dsd.prune()
    report = {layer.name: layer for layer in dsd.report().layers}
    assert report["features.0.weight"].zeros == 0  # the first convolution stays dense
    for name in ("features.2.weight", "features.4.weight", "classifier.weight"):
        assert report[name].zeros == round(0.3 * report[name].numel)
    assert isinstance(model.features[2], nn.Conv1d)
    assert sum(p.numel() for p in model.parameters()) == 5_210  # 150 + 1,900 + 1,900 + 1,260, counted by hand
    assert sum(p.numel() for p in PROTOCOL["mlp"].build().parameters()) == 288_778  # 20,992 + 262,656 + 5,130


def test_cli_rejects_options_of_the_other_dataset_with_a_command_to_run():
    out = subprocess.run(
        [sys.executable, "-m", "dsd_zoo.dsd.demo", "--export-embedded", "x", "--dataset", "mnist1d"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "python -m dsd_zoo.dsd.demo --dataset digits --export-embedded" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "dsd_zoo.dsd.demo", "--plot"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2 and "--dataset mnist1d" in out.stderr


def test_generating_the_data_leaves_global_random_state_alone():
    pytest.importorskip("mnist1d", reason="the MNIST-1D study needs mnist1d (pip install 'dsd-zoo[demo]')")
    import random

    import numpy as np

    from dsd_zoo.dsd.mnist1d_data import make_mnist1d_split

    random.seed(7)
    np.random.seed(7)
    expected = random.random(), np.random.rand()
    random.seed(7)
    np.random.seed(7)
    split = make_mnist1d_split()
    assert (random.random(), np.random.rand()) == expected
    assert split.train_x.shape == (4000, 40) and split.test_x.shape == (1000, 40)
    assert split.train_x.dtype == torch.float32 and "url" not in split.args
    # Ten classes, each with its share of the 5,000 samples the generator draws (500 each).
    assert torch.bincount(torch.cat([split.train_y, split.test_y]), minlength=10).tolist() == [500] * 10


def test_generated_data_is_the_published_generator_output():
    pytest.importorskip("mnist1d", reason="the MNIST-1D study needs mnist1d (pip install 'dsd-zoo[demo]')")
    from dsd_zoo.dsd.mnist1d_data import make_mnist1d_split

    # Measured with mnist1d 0.0.1.post1 / numpy 1.24.0 / scipy 1.15.3 (the floors) and with
    # mnist1d 0.0.2.post1 / numpy 2.4.6 / scipy 1.17.1: the same bytes (docs/dsd-mnist1d.md).
    # Another value means other data, and the study's numbers no longer apply to it.
    assert make_mnist1d_split().sha256() == "b09ad3e22c854bc5a1948b85c373aab653ceb38c9170f5ed05b7d054e4160db9"
