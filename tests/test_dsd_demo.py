"""The digits demonstration (a very short run) and the embedded zoo it produced."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import dsd_zoo

from dsd_zoo.dsd import load_checkpoint, read_metadata
from dsd_zoo.dsd.embedded import evaluate_digits, load_digits_split, save_digits_split
from dsd_zoo.errors import FormatError
from dsd_zoo.models.digits import digits_net

pytestmark = pytest.mark.usefixtures("one_thread")


EMBEDDED = Path(__file__).resolve().parents[1] / "dsd_zoo" / "data" / "embedded"
RESULTS = EMBEDDED / "results.json"


def _recorded() -> dict:
    if not RESULTS.exists():
        pytest.fail(f"{RESULTS} is missing: regenerate with the command in docs/dsd-demo.md")
    return json.loads(RESULTS.read_text())


def test_short_demo_runs_and_exports(tmp_path) -> None:
    pytest.importorskip("sklearn", reason="the demonstration needs scikit-learn (pip install 'dsd-zoo[demo]')")
    from dsd_zoo.dsd.demo import DemoConfig, run_demo

    lines: list[str] = []
    config = DemoConfig(seeds=2, epochs=(2, 1, 1))
    summary = run_demo(config, tmp_path / "out", export=tmp_path / "emb", command="test", log=lines.append)
    assert set(summary["top1_err"]) == {"dense", "sparse", "dsd", "baseline"}
    assert len(summary["top1_err"]["dsd"]["values"]) == 2
    # Same seed and batch order: the first phase of both runs is bitwise the same model.
    assert summary["dense_stage_identical"] is True
    # Sparse stage of digits_net at 0.3: round(0.3 * n) of features.2/5 and classifier.0/2, conv1 dense.
    assert summary["sparse_stage_sparsity"]["zeros"] >= 2765 + 5530 + 9830 + 384
    table = (tmp_path / "out" / "table.md").read_text()
    assert "**DSD**" in table and "paired by seed" in table
    assert any(line.startswith("seed 1:") for line in lines)

    exported = json.loads((tmp_path / "emb" / "results.json").read_text())
    assert exported["generated_by"] == "test"
    for record in exported["models"].values():
        model = digits_net()
        load_checkpoint(tmp_path / "emb" / record["file"], model)
        top1, top5, n = evaluate_digits(model, tmp_path / "emb" / "digits_test.safetensors")
        assert (top1, top5, n) == (record["top1_err"], record["top5_err"], record["n"])
        # Four epochs is short but far from chance (90 % error).
        assert top1 < 0.5


def test_embedded_files_match_their_recorded_digests() -> None:
    recorded = _recorded()
    files = [recorded["test_split"], *recorded["models"].values()]
    for record in files:
        data = (EMBEDDED / record["file"]).read_bytes()
        assert len(data) == record["size"] < 1_000_000, record["file"]
        assert hashlib.sha256(data).hexdigest() == record["sha256"], record["file"]


@pytest.mark.parametrize("name", ["digits_baseline", "digits_sparse", "digits_dsd"])
def test_embedded_models_reproduce_their_recorded_errors(name: str) -> None:
    # The numbers come from results.json, written by the demo from these very files; a changed
    # artifact or a changed evaluation path makes this fail.
    record = _recorded()["models"][name]
    model = digits_net()
    meta = load_checkpoint(EMBEDDED / record["file"], model)
    assert meta["arch"] == "digits_net" and meta["stage"] == record["stage"]
    top1, top5, n = evaluate_digits(model, EMBEDDED / _recorded()["test_split"]["file"])
    assert n == record["n"] == 600
    assert round(top1 * n) == record["top1_errors"]
    assert (top1, top5) == (record["top1_err"], record["top5_err"])


def test_embedded_sparse_stage_is_sparse_where_declared() -> None:
    record = _recorded()["models"]["digits_sparse"]
    path = EMBEDDED / record["file"]
    declared = json.loads(read_metadata(path)["sparsity"])
    model = digits_net()
    load_checkpoint(path, model)  # also checks the declared zeros are there
    state = model.state_dict()
    sparsity = _recorded()["config"]["sparsity"]
    assert sorted(declared) == ["classifier.0.weight", "classifier.2.weight", "features.2.weight", "features.5.weight"]
    for name, entry in declared.items():
        assert entry["pruned"] == round(sparsity * state[name].numel())
    assert int((state["features.0.weight"] == 0).sum()) == 0  # first conv dense
    assert all(torch.count_nonzero(state[k]) == state[k].numel() for k in state if k.endswith("bias"))


def test_embedded_test_split_is_the_stratified_digits_split() -> None:
    images, labels, meta = load_digits_split(EMBEDDED / _recorded()["test_split"]["file"])
    assert images.shape == (600, 8, 8) and images.dtype == torch.uint8 and int(images.max()) == 16
    # Stratified: each class keeps its share of load_digits (class sizes as scikit-learn ships
    # them, np.bincount(load_digits().target)) in the 600 test images, to within one image.
    full = torch.tensor([178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    counts = torch.bincount(labels, minlength=10)
    assert ((counts - full * 600 / 1797).abs() < 1).all(), counts.tolist()
    assert "load_digits" in meta["source"] and "random_state=0" in meta["split"]


def test_digits_split_file_is_validated(tmp_path) -> None:
    with pytest.raises(FormatError, match="images must be uint8"):
        save_digits_split(tmp_path / "x.safetensors", torch.zeros(3, 8, 8), torch.zeros(3, dtype=torch.int64), {})
    from safetensors.torch import save_file

    save_file(
        {"images": torch.full((2, 8, 8), 17, dtype=torch.uint8), "labels": torch.zeros(2, dtype=torch.int64)},
        tmp_path / "bad.safetensors",
        metadata={"format": "dsd_zoo.digits.split"},
    )
    with pytest.raises(FormatError, match="0..16"):
        load_digits_split(tmp_path / "bad.safetensors")
    with pytest.raises(FormatError, match="not a digits split"):
        load_digits_split(EMBEDDED / "digits_dsd.safetensors")


def test_shipped_embedded_files_are_in_the_canonical_layout(tmp_path):
    # An export must reproduce the shipped bytes: each file equals what dsd-zoo's writer makes of
    # its own tensors and metadata (the first test split predated the writer and did not).
    from safetensors.torch import load_file

    from dsd_zoo.atomic import write_safetensors
    from dsd_zoo.loading import read_header

    shipped = sorted((Path(dsd_zoo.__file__).parent / "data" / "embedded").glob("*.safetensors"))
    assert len(shipped) == 4
    for path in shipped:
        again = write_safetensors(tmp_path / path.name, load_file(str(path)), read_header(path)[1])
        assert again.read_bytes() == path.read_bytes(), path.name
