"""A weights file that records which model it holds loads only as that model (unless the user insists)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import dsd_zoo
from dsd_zoo.errors import WeightsError
from dsd_zoo.models import ARCHITECTURES
from dsd_zoo.verify.__main__ import main as verify
from dsd_zoo.verify.selfcheck import run_selfcheck


def _squeezenet_file(path: Path, **metadata: str) -> Path:
    """SqueezeNet v1.0 weights (random), with the metadata a converted file carries."""
    state = {k: v.contiguous() for k, v in ARCHITECTURES["squeezenet1_0"].build().state_dict().items()}
    save_file(state, str(path), metadata=metadata or None)
    return path


@pytest.fixture
def sparse_file(tmp_path, isolated_cache) -> Path:
    # What python -m dsd_zoo.convert writes for the Deep Compression sparse stage.
    return _squeezenet_file(tmp_path / "squeezenet_sparse.safetensors", model="squeezenet_sparse", arch="squeezenet1_0")


def test_the_sparse_stage_is_refused_as_the_dsd_model(sparse_file, tmp_path):
    with pytest.raises(
        WeightsError,
        match=r"holds squeezenet_sparse \(its metadata says so\), not squeezenet_dsd; "
        r"load it as get_model\('squeezenet_sparse', weights=\.\.\.\)",
    ):
        dsd_zoo.get_model("squeezenet_dsd", weights=sparse_file)
    renamed = shutil.copy(sparse_file, tmp_path / "squeezenet_dsd.safetensors")  # the name proves nothing
    with pytest.raises(WeightsError, match="holds squeezenet_sparse"):
        dsd_zoo.get_model("squeezenet_dsd", weights=renamed)
    assert dsd_zoo.get_model("squeezenet_sparse", weights=sparse_file)  # as what it is, it loads


def test_the_override_loads_it_anyway(sparse_file):
    model = dsd_zoo.get_model("squeezenet_dsd", weights=sparse_file, load_despite_recorded_identity=True)
    assert isinstance(model, torch.nn.Module)


def test_another_architecture_is_named(tmp_path, isolated_cache):
    odd = _squeezenet_file(tmp_path / "odd.safetensors", arch="squeezenet1_1")
    with pytest.raises(WeightsError, match="holds a squeezenet1_1 network .*not squeezenet_dsd's squeezenet1_0"):
        dsd_zoo.get_model("squeezenet_dsd", weights=odd)


def test_a_file_without_a_record_loads_and_the_selfcheck_says_so(tmp_path, isolated_cache):
    own = _squeezenet_file(tmp_path / "my_finetune.safetensors")
    assert dsd_zoo.get_model("squeezenet_dsd", weights=own)
    notes = run_selfcheck(weights={"squeezenet_dsd": own}).notes
    assert any("records no identity" in note and "squeezenet_dsd" in note for note in notes), notes


def test_verify_refuses_with_a_cli_hint_and_marks_an_override(sparse_file, capsys):
    assert verify(["--weights", f"squeezenet_dsd={sparse_file}"]) == 2
    err = capsys.readouterr().err
    assert f"give it as --weights squeezenet_sparse={sparse_file}" in err and "--load-despite-recorded-identity" in err
    verify(["--weights", f"squeezenet_dsd={sparse_file}", "--load-despite-recorded-identity"])
    assert "squeezenet_dsd: checked despite its recorded identity" in capsys.readouterr().out


def test_trust_unverified_is_a_verify_option_for_evaluations_only(capsys):
    assert verify(["--trust-unverified"]) == 2
    assert "--trust-unverified only apply to an evaluation: add --imagenet DIR" in capsys.readouterr().err


def test_a_users_own_conversion_is_unverifiable_not_a_failure(tmp_path, isolated_cache, capsys):
    # What the README's convert command writes for a DSD model whose weights are not published yet.
    converted = _squeezenet_file(tmp_path / "squeezenet_dsd.safetensors", model="squeezenet_dsd", arch="squeezenet1_0")
    assert verify(["squeezenet_dsd", "--weights", f"squeezenet_dsd={converted}"]) == 0
    assert "UNVERIFIABLE" in capsys.readouterr().out


def test_a_recorded_fingerprint_still_judges_an_unverifiable_file(tmp_path, isolated_cache, monkeypatch, capsys):
    import json

    from dsd_zoo.manifest import bundled_manifest_path
    from dsd_zoo.records import shipped_file

    # digits_dsd without a published sha256 (so any file is unverifiable), its fingerprint kept.
    document = json.loads(bundled_manifest_path().read_text())
    weights = document["models"]["digits_dsd"]["weights"]
    local = weights.pop("local")
    weights.update(sha256=None, size=None)
    (tmp_path / "manifest.json").write_text(json.dumps(document))
    monkeypatch.setenv("DSD_ZOO_MANIFEST", str(tmp_path / "manifest.json"))
    right = shipped_file(local)
    wrong = shipped_file(document["models"]["digits_baseline"]["weights"]["local"])
    assert verify(["--weights", f"digits_dsd={right}"]) == 0
    capsys.readouterr()
    assert verify(["--weights", f"digits_dsd={wrong}"]) == 1  # the logits are not digits_dsd's
    assert "fingerprint mismatch" in capsys.readouterr().out


def test_a_file_that_claims_the_model_must_reproduce_its_published_logits(tmp_path, isolated_cache):
    from safetensors import safe_open

    from dsd_zoo.manifest import load_manifest
    from dsd_zoo.records import shipped_file

    # The bundled manifest records digits_dsd's fingerprint (computed by the demo's export from
    # the shipped file). The baseline's tensors, relabelled as digits_dsd, compute other logits.
    manifest = load_manifest()
    assert manifest.models["digits_dsd"].fingerprint is not None
    baseline = shipped_file(manifest.models["digits_baseline"].weights.local)
    with safe_open(str(baseline), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    relabelled = tmp_path / "digits_dsd.safetensors"
    save_file(tensors, str(relabelled), metadata={"model": "digits_dsd", "arch": "digits_net"})
    with pytest.raises(
        WeightsError,
        match=r"says it holds digits_dsd, but its outputs are not the ones published "
        r"for digits_dsd: logit fingerprint mismatch.*load_despite_recorded_identity",
    ):
        dsd_zoo.get_model("digits_dsd", weights=relabelled)
    assert dsd_zoo.get_model("digits_dsd", weights=relabelled, load_despite_recorded_identity=True)
    # The published file itself, and the same tensors with no record (a user's own), load.
    assert dsd_zoo.get_model("digits_dsd", weights=shipped_file(manifest.models["digits_dsd"].weights.local))
    unrecorded = tmp_path / "mine.safetensors"
    save_file(tensors, str(unrecorded))
    assert dsd_zoo.get_model("digits_dsd", weights=unrecorded)
