"""The second source of ResNet50_DSD: the PyTorch port published by rwightman/pytorch-planet-amazon.

Files are written here in the port's exact key layout (its ``models/resnet50_dsd.py`` at commit
c5a054c: one flat Sequential converted from the ``.t7``) from known tensors. The model they give
must equal, logit for logit, the one converted from a Torch7 file holding the same tensors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

import dsd_zoo
from dsd_zoo.api import get_entry
from dsd_zoo.convert.mapping import convert_file
from dsd_zoo.errors import ConversionError, IntegrityError
from dsd_zoo.models import ARCHITECTURES

from .conftest import REPO_ROOT
from .formats.t7_writer import nn_module, write_t7
from .servers import isolate_download_env
from .test_convert_mapping import fb_tree, perturb

pytestmark = pytest.mark.slow
CONV = ("weight", "bias")
BN = ("weight", "bias", "running_mean", "running_var")


def port_layout(model: torch.nn.Module) -> dict:
    """``model``'s tensors under the keys of resnet50_dsd-b5ae1a3f.pth (convert_torch_to_pytorch's numbering)."""
    own = model.state_dict()
    port = {}

    def put(index: str, module: str, fields) -> None:
        for field in fields:
            port[f"{index}.{field}"] = own[f"{module}.{field}"].clone()

    put("0", "conv1", CONV)  # Sequential[0] conv, [1] BN, [2] ReLU, [3] max-pool
    put("1", "bn1", BN)
    for stage in range(4):  # Sequential[4..7]: the stages
        for number, block in enumerate(getattr(model, f"layer{stage + 1}")):
            index, module = f"{4 + stage}.{number}", f"layer{stage + 1}.{number}"
            # [0] ConcatTable: [0] the branch (conv, BN, ReLU, conv, BN, ReLU, conv), [1] the shortcut
            for position, name in (("0", "conv1"), ("1", "bn1"), ("3", "conv2"), ("4", "bn2"), ("6", "conv3")):
                put(f"{index}.0.0.{position}", f"{module}.{name}", BN if name.startswith("bn") else CONV)
            if block.downsample is not None:
                put(f"{index}.0.1", f"{module}.downsample.0", CONV)
            put(f"{index}.2", f"{module}.bn_after_add", BN)  # [1] CAddTable, [2] BN, [3] ReLU
    put("10.1", "fc", CONV)  # [8] avg-pool, [9] View, [10] Sequential[View, Linear]
    return port


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return perturb(ARCHITECTURES["fb_resnet50"].build(), seed=11)


@pytest.fixture
def env(monkeypatch, tmp_path):
    isolate_download_env(monkeypatch, tmp_path)
    return tmp_path


def _save_port(path: Path, tensors: dict) -> Path:
    # The port dates from 2017: torch.save's legacy (pre-zip) format, as the published file has.
    torch.save(tensors, path, _use_new_zipfile_serialization=False)
    return path


def _manifest(env, monkeypatch, port: Path, **original) -> None:
    """The bundled manifest with the port's digest prefix set to that of ``port``."""
    document = json.loads((REPO_ROOT / "weights_manifest.json").read_text())
    entry = document["models"]["resnet50_dsd"]
    entry["alternates"][0]["digest"] = {"sha256_prefix": hashlib.sha256(port.read_bytes()).hexdigest()[:8]}
    entry["original"].update(original)
    (env / "manifest.json").write_text(json.dumps(document))
    monkeypatch.setenv("DSD_ZOO_MANIFEST", str(env / "manifest.json"))


def _logits(state: dict) -> torch.Tensor:
    net = ARCHITECTURES["fb_resnet50"].build()
    net.load_state_dict(state)
    with torch.inference_mode():
        return net.eval()(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))


def test_the_port_and_the_t7_holding_the_same_tensors_give_the_same_model(model, env, monkeypatch, tmp_path):
    port = _save_port(tmp_path / "resnet50_dsd-port.pth", port_layout(model))
    t7 = write_t7(tmp_path / "resnet50_dsd.t7", fb_tree(model, make=nn_module))
    _manifest(env, monkeypatch, port)
    entry = get_entry("resnet50_dsd")
    from_port = convert_file(port, "resnet50_dsd", original=entry.alternates[0]).state_dict
    from_t7 = convert_file(t7, "resnet50_dsd", original=entry.original).state_dict
    assert from_port.keys() == from_t7.keys()
    assert all(torch.equal(from_port[key], from_t7[key]) for key in from_t7)
    assert torch.equal(_logits(from_port), _logits(from_t7))
    assert torch.allclose(_logits(from_port), _logits(model.state_dict()))
    # The extension picks the original when none is named, as the convert CLI does.
    assert convert_file(port, "resnet50_dsd").report["source_format"] == "pytorch"


def test_a_file_whose_digest_differs_is_never_unpickled(model, env, monkeypatch, tmp_path):
    published = _save_port(tmp_path / "published.pth", {"0.weight": torch.zeros(1)})
    _manifest(env, monkeypatch, published)
    # Not even a pickle: were it read, the error would be a FormatError, not the digest's.
    other = tmp_path / "other.pth"
    other.write_bytes(b"not a pickle at all")
    with pytest.raises(IntegrityError, match="is not the published file.*not unpickled"):
        convert_file(other, "resnet50_dsd")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.update({"4.0.0.0.2.weight": torch.zeros(1)}), r"'4\.0\.0\.0\.2\.weight' has no place"),
        (lambda t: t.pop("7.2.2.running_var"), "missing"),
        (lambda t: t.update({"10.1.weight": torch.zeros(10, 2048)}), "10, 2048|shape"),
    ],
)
def test_the_mapping_uses_every_key_and_checks_every_shape(model, env, monkeypatch, tmp_path, edit, message):
    tensors = port_layout(model)
    edit(tensors)
    port = _save_port(tmp_path / "edited.pth", tensors)
    _manifest(env, monkeypatch, port)
    with pytest.raises(ConversionError, match=message):
        convert_file(port, "resnet50_dsd")


def test_get_model_falls_back_to_the_port_when_the_authors_file_cannot_be_had(
    model, env, monkeypatch, server, tmp_path
):
    port = _save_port(tmp_path / "resnet50_dsd-port.pth", port_layout(model))
    url = server.add("/s/g8wl9ea9pekmdca/resnet50_dsd-port.pth", port.read_bytes())
    _manifest(env, monkeypatch, port, url="http://127.0.0.1:9/ResNet50_DSD.t7")  # nothing listens there
    document = json.loads((env / "manifest.json").read_text())
    document["models"]["resnet50_dsd"]["alternates"][0]["url"] = url + "?dl=1"
    (env / "manifest.json").write_text(json.dumps(document))
    # No trust_unverified: the authors' .t7 has no digest, the port has a published (prefix) one.
    net = dsd_zoo.get_model("resnet50_dsd", progress=False)
    assert torch.equal(net.fc.weight, model.fc.weight)
    stamp = json.loads((env / "cache" / "resnet50_dsd.safetensors.stamp.json").read_text())
    assert stamp["source"] == f"converted locally from {url}?dl=1"


def test_verify_says_the_port_is_checked_by_a_prefix_only():
    from dsd_zoo.verify.selfcheck import run_selfcheck

    notes = [note for note in run_selfcheck().notes if note.startswith("resnet50_dsd:")]
    assert (
        len(notes) == 1 and "first 8 hex digits of its sha256" in notes[0] and "weaker than a full digest" in notes[0]
    )


@pytest.mark.parametrize("same", [True, False])
def test_the_release_tool_compares_the_two_originals_when_both_are_here(
    model, env, monkeypatch, server, tmp_path, same
):
    from dsd_zoo import release
    from dsd_zoo.download import import_file

    t7 = write_t7(tmp_path / "resnet50_dsd.t7", fb_tree(model, make=nn_module))
    other = model if same else perturb(ARCHITECTURES["fb_resnet50"].build(), seed=12)
    port = _save_port(tmp_path / "resnet50_dsd-port.pth", port_layout(other))
    _manifest(env, monkeypatch, port, url=server.add("/ResNet50_DSD.t7", t7.read_bytes()))
    import_file(get_entry("resnet50_dsd").alternates[0].record, port)  # the port is on this machine
    said = []
    if same:
        release.release_model("resnet50_dsd", tmp_path / "out", trust_unverified=True, progress=False, say=said.append)
        count = len(ARCHITECTURES["fb_resnet50"].build().state_dict())
        assert any(f"gives the very same {count} tensors" in line for line in said), said
    else:
        with pytest.raises(IntegrityError, match="its originals disagree"):
            release.release_model(
                "resnet50_dsd", tmp_path / "out", trust_unverified=True, progress=False, say=said.append
            )
        assert not (tmp_path / "out" / "resnet50_dsd").exists()  # no partial release
