"""Round trips through real files, for every one of the 13 manifest models.

A randomly initialised dsd-zoo model is written in its original format by the test writers in
``tests/formats`` (``.caffemodel`` in the new and the legacy V1 layout, Torch7 ``.t7`` in the
fb.resnet.torch layouts, Deep Compression ``.net``), converted by the CLI entry point
(``python -m dsd_zoo.convert``, run in-process), loaded with the package's strict loader and
run: the outputs must be bit-identical to the model the file was written from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch

from dsd_zoo.convert.__main__ import main
from dsd_zoo.loading import build_with_weights, load_tensors
from dsd_zoo.manifest import load_manifest
from dsd_zoo.models import ARCHITECTURES

from .formats.caffe_writer import write_caffemodel
from .formats.net_writer import random_layer, write_net
from .formats.t7_writer import T7Object, nn_module, shared_parameters, write_t7
from .test_convert_mapping import (
    ALEXNET,
    GOOGLENET,
    GOOGLENET_AUX,
    SQUEEZENET_DEEPSCALE,
    SQUEEZENET_DSD,
    VGG16,
    assert_same_model,
    caffe_blobs,
    fb_tree,
    input_scale,
    perturb,
)

# model -> (Caffe table, file layout); V1 where the 2014-era originals likely are (architectures.md 2).
CAFFE_MODELS = {
    "alexnet_dsd": (ALEXNET, "new"),
    "alexnet_caffe": (ALEXNET, "v1"),
    "googlenet_dsd": ({**GOOGLENET, **GOOGLENET_AUX}, "new"),
    "googlenet_caffe": ({**GOOGLENET, **GOOGLENET_AUX}, "v1"),
    "squeezenet_dsd": (SQUEEZENET_DSD, "new"),
    "squeezenet_caffe": (SQUEEZENET_DEEPSCALE, "new"),
}
# model -> the Torch classes its tree uses (the released files were saved from cudnn or nn models).
TORCH7_MODELS = {"resnet18_dsd": "nn", "resnet18_fb": "cudnn", "resnet50_dsd": "nn", "resnet50_fb": "cudnn"}
# Small inputs keep the runs cheap (AlexNet needs 199, architectures' min_size); GoogLeNet's aux heads are
# compared weight by weight, they do not run in eval mode.
INPUT_SIZE = {"alexnet": 199, "googlenet": 64, "squeezenet1_0": 64, "vgg16": 32, "fb_resnet18": 64, "fb_resnet50": 64}


def convert(src: Path, name: str, out: Path) -> Path:
    assert main([str(src), "--model", name, "-o", str(out)]) == 0
    return out


def arch_of(name: str) -> str:
    return load_manifest().models[name].arch


def assert_round_trip(name: str, converted: Path, reference: torch.nn.Module) -> None:
    arch = ARCHITECTURES[arch_of(name)]
    loaded = build_with_weights(arch, converted, {"aux_logits": True} if arch.name == "googlenet" else {})
    assert_same_model(loaded, reference, INPUT_SIZE[arch.name], input_scale(arch.name))


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("alexnet") else n for n in sorted(CAFFE_MODELS)]
)
def test_caffemodel_round_trip(tmp_path, name):
    table, layout = CAFFE_MODELS[name]
    arch = arch_of(name)
    reference = perturb(ARCHITECTURES[arch].build(**({"aux_logits": True} if arch == "googlenet" else {})), seed=5)
    src = write_caffemodel(
        tmp_path / f"{name}.caffemodel", caffe_blobs(reference, table), layout=layout, legacy_shape=layout == "v1"
    )
    out = convert(src, name, tmp_path / f"{name}.safetensors")
    assert_round_trip(name, out, reference)
    _, metadata = load_tensors(out)
    assert metadata["model"] == name and metadata["source_format"] == "caffemodel"
    if arch == "googlenet":  # the auxiliary heads travel in the file; a default build ignores them
        arch_spec = ARCHITECTURES["googlenet"]
        plain = build_with_weights(arch_spec, out)
        assert not any(key.startswith("aux") for key in plain.state_dict())


@pytest.mark.slow
def test_vgg16_round_trip_v1(tmp_path):
    # 138M parameters, a 553 MB file: written once (legacy V1, FC blobs (1, 1, out, in)), converted as both names.
    reference = perturb(ARCHITECTURES["vgg16"].build(), seed=5)
    src = write_caffemodel(tmp_path / "vgg16.caffemodel", caffe_blobs(reference, VGG16), layout="v1", legacy_shape=True)
    caffe = convert(src, "vgg16_caffe", tmp_path / "vgg16_caffe.safetensors")
    assert_round_trip("vgg16_caffe", caffe, reference)
    del reference
    dsd = convert(src, "vgg16_dsd", tmp_path / "vgg16_dsd.safetensors")
    caffe_tensors, _ = load_tensors(caffe)
    dsd_tensors, metadata = load_tensors(dsd)
    assert metadata["model"] == "vgg16_dsd"
    assert caffe_tensors.keys() == dsd_tensors.keys()
    assert all(torch.equal(caffe_tensors[k], dsd_tensors[k]) for k in caffe_tensors)


def _share_storage(tree: Any) -> None:
    """Turn every parameter into a view of one flat storage, as getParameters() leaves checkpoints."""
    modules: List[T7Object] = []

    def collect(node: Any) -> None:
        modules.append(node)
        for child in node.fields.get("modules", ()):
            collect(child)

    collect(tree)
    slots = [(m, key) for m in modules for key in ("weight", "bias") if isinstance(m.fields.get(key), np.ndarray)]
    views = shared_parameters([m.fields[key] for m, key in slots], cuda=True)
    for (module, key), view in zip(slots, views):
        module.fields[key] = view


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if "50" in n else n for n in sorted(TORCH7_MODELS)]
)
def test_t7_round_trip(tmp_path, name):
    arch = arch_of(name)
    reference = perturb(ARCHITECTURES[arch].build(), seed=7)
    tree = fb_tree(reference, nn_module, prefix=TORCH7_MODELS[name])
    if name.endswith("_fb"):
        _share_storage(tree)
    src = write_t7(tmp_path / f"{name}.t7", tree)
    out = convert(src, name, tmp_path / f"{name}.safetensors")
    assert_round_trip(name, out, reference)
    assert load_tensors(out)[1]["source_format"] == "torch7"


def test_deep_compression_round_trip(tmp_path):
    rng = np.random.default_rng(11)
    shapes = ARCHITECTURES["squeezenet1_0"].build().state_dict()
    # Written from this test's own table (DSD names in deploy-prototxt order), not the converter's.
    layers = [
        random_layer(caffe, tuple(shapes[f"{module}.weight"].shape), rng, density=0.33)
        for caffe, module in SQUEEZENET_DSD.items()
    ]
    src = write_net(tmp_path / "sparse.net", layers)
    reference = ARCHITECTURES["squeezenet1_0"].build()
    state: Dict[str, torch.Tensor] = {}
    for layer, module in zip(layers, SQUEEZENET_DSD.values()):
        weight = layer.weight()
        state[f"{module}.weight"] = torch.from_numpy(weight[:, [2, 1, 0]] if module == "features.0" else weight)
        state[f"{module}.bias"] = torch.from_numpy(layer.bias)
    reference.load_state_dict(state)
    out = convert(src, "squeezenet_sparse", tmp_path / "sparse.safetensors")
    assert_round_trip("squeezenet_sparse", out, reference)
    tensors, metadata = load_tensors(out)
    assert metadata["source_format"] == "deep-compression"
    weights = [t for k, t in tensors.items() if k.endswith("weight")]
    density = sum(int(t.count_nonzero()) for t in weights) / sum(t.numel() for t in weights)
    assert density == pytest.approx(0.33, abs=0.01)  # random_layer keeps each weight with probability 0.33
