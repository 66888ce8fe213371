"""The public API: list_models, get_weights (.meta, .transforms), get_model, hub entry points."""

from __future__ import annotations

import inspect
import socket

import pytest
import torch

import dsd_zoo
from dsd_zoo.errors import UnknownModelError, WeightsError

from .conftest import REPO_ROOT


def test_list_models_filters():
    assert dsd_zoo.list_models("*_dsd") == [
        "alexnet_dsd",
        "vgg16_dsd",
        "googlenet_dsd",
        "squeezenet_dsd",
        "resnet18_dsd",
        "resnet50_dsd",
        "digits_dsd",
    ]
    assert dsd_zoo.list_models(kind="sparse") == ["squeezenet_sparse", "digits_sparse"]
    assert len(dsd_zoo.list_models()) == 16


def test_unknown_name_lists_the_closest():
    with pytest.raises(UnknownModelError, match="resnet50_dsd"):
        dsd_zoo.get_model("resnet50-dsd", pretrained=False)
    with pytest.raises(LookupError):
        dsd_zoo.get_weights("vgg19_dsd")


def test_meta_has_the_documented_keys():
    meta = dsd_zoo.get_weights("googlenet_dsd").meta
    for key in ("categories", "num_params", "min_size", "input_size", "paper", "source", "license", "citation"):
        assert key in meta
    assert len(meta["categories"]) == 1000 and meta["categories"][0] == "tench"
    assert meta["categories"][812] == "space shuttle"  # fixture README: class 812 is n04266014
    assert meta["wnids"][812] == "n04266014" and meta["wnids"] == sorted(meta["wnids"])
    assert meta["paper"]["top1_err"] == 30.02 and meta["input_size"] == (224, 224)
    assert "DSD: Dense-Sparse-Dense" in meta["citation"]


def test_pretrained_false_touches_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pretrained=False opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    model = dsd_zoo.get_model("resnet18_dsd", pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == 11_692_520


def test_weights_file_is_loaded_strictly(tmp_path):
    from safetensors.torch import save_file

    source = dsd_zoo.get_model("squeezenet_dsd", pretrained=False).eval()
    path = tmp_path / "sq.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = dsd_zoo.get_model("squeezenet_dsd", weights=path)
    assert not loaded.training
    x = torch.randn(1, 3, 227, 227)
    torch.testing.assert_close(loaded(x), source(x))
    assert all(p.device.type == "cpu" for p in loaded.parameters())

    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state.pop("classifier.1.bias")
    state["extra.weight"] = torch.zeros(1)
    state["features.0.weight"] = torch.zeros(96, 3, 3, 3)
    save_file(state, str(path))
    with pytest.raises(WeightsError) as info:
        dsd_zoo.get_model("squeezenet_dsd", weights=path)
    text = str(info.value)
    assert "missing (1): classifier.1.bias" in text and "extra.weight" in text and "features.0.weight" in text


def test_pretrained_num_classes_is_refused(tmp_path, isolated_cache):
    from safetensors.torch import save_file

    # A local file is checked against itself: one saved with 3 classes loads with num_classes=3.
    three = dsd_zoo.get_model("digits_dsd", pretrained=False, num_classes=3)
    save_file(three.state_dict(), str(tmp_path / "d3.safetensors"))
    loaded = dsd_zoo.get_model("digits_dsd", weights=tmp_path / "d3.safetensors", num_classes=3)
    assert loaded.classifier[2].out_features == 3
    with pytest.raises(WeightsError, match="pass the num_classes the file was saved with"):
        dsd_zoo.get_model("digits_dsd", weights=tmp_path / "d3.safetensors")
    # The released weights are checked against the manifest's classes.
    # The embedded digits models have 10 classes: asking for what they have is no change.
    assert dsd_zoo.get_model("digits_dsd", num_classes=10).classifier[2].out_features == 10
    with pytest.raises(WeightsError, match="have 10 classes"):
        dsd_zoo.get_model("digits_dsd", num_classes=1000)


def test_hub_entrypoints_generated_from_manifest():
    import hubconf  # the repository root is on sys.path under pytest

    names = [n for n in dir(hubconf) if not n.startswith("_") and callable(getattr(hubconf, n))]
    assert sorted(names) == sorted(dsd_zoo.list_models())
    fn = hubconf.resnet50_dsd
    assert list(inspect.signature(fn).parameters) == ["pretrained", "progress", "kwargs"]
    assert inspect.signature(fn).parameters["pretrained"].default is True
    for text in ("22.89", "6.47", "bicubic", "BN after the addition", "1drv.ms"):
        assert text in fn.__doc__
    # torch.hub.help tells what pretrained=True does today: no converted file is published for it yet,
    # while the embedded digits models are released with the package.
    assert "converted weights are not published yet" in fn.__doc__
    assert "pass trust_unverified=True" in fn.__doc__  # the DSD originals on OneDrive have no digest
    assert "load the released, checksummed weights" in hubconf.digits_dsd.__doc__
    assert set(hubconf.dependencies) >= {"torch", "torchvision", "safetensors", "huggingface_hub", "requests"}


def test_docstring_of_a_model_with_only_one_published_error():
    # A mirror's manifest may publish top-1 alone (top5_err null): help must not fail on it.
    import copy
    import json

    from dsd_zoo.hub import model_docstring
    from dsd_zoo.manifest import parse_manifest

    document = json.loads((REPO_ROOT / "weights_manifest.json").read_text())
    edited = copy.deepcopy(document)
    edited["models"]["vgg16_dsd"]["metrics"]["paper"]["top5_err"] = None
    manifest = parse_manifest(edited)
    assert "top-1 27.19%, top-5 not published" in model_docstring(manifest.models["vgg16_dsd"], manifest)


def test_torch_hub_load_local_builds_all(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in dsd_zoo.list_models():
        model = torch.hub.load(str(REPO_ROOT), name, source="local", pretrained=False, trust_repo=True)
        assert sum(p.numel() for p in model.parameters()) == dsd_zoo.get_weights(name).architecture.num_params


def test_embedded_model_loads_offline_through_the_same_path(monkeypatch, isolated_cache):
    # The embedded zoo's shipped file is checked against its sha256 and loaded with no network.
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: (_ for _ in ()).throw(AssertionError("network")))
    model = dsd_zoo.get_model("digits_dsd")
    weights = dsd_zoo.get_weights("digits_dsd")
    assert weights.meta["categories"] == [str(i) for i in range(10)] and weights.meta["wnids"] is None
    x = weights.transforms()(torch.arange(64, dtype=torch.uint8).view(8, 8) % 17)
    assert x.shape == (1, 8, 8) and float(x.max()) <= 1.0
    assert model(x.unsqueeze(0)).shape == (1, 10)


def test_weights_takes_a_path_or_the_models_own_weights(isolated_cache):
    same = dsd_zoo.get_model("digits_dsd", weights=dsd_zoo.get_weights("digits_dsd"))
    assert torch.equal(same.classifier[2].weight, dsd_zoo.get_model("digits_dsd").classifier[2].weight)
    with pytest.raises(WeightsError, match="weights of digits_sparse given for digits_dsd"):
        dsd_zoo.get_model("digits_dsd", weights=dsd_zoo.get_weights("digits_sparse"))
    with pytest.raises(TypeError, match="weights must be a path to a safetensors file or a Weights"):
        dsd_zoo.get_model("digits_dsd", weights=3)
    with pytest.raises(ValueError, match="kind must be one of 'dsd', 'baseline', 'sparse'"):
        dsd_zoo.list_models(kind="dense")
