"""Each Caffe-family architecture matches the release prototxts layer by layer.

The prototxts are the DSD release's own (`../shared/reference/dsd-release/`) and the Deep
Compression SqueezeNet's deploy file (`../shared/fixtures/`). Convolutions and inner products
are compared in network order (num_output, kernel, stride, pad, group, bias); pooling layers
(kernel, stride, pad, type) and LRN (size, alpha, beta, k) too. Ceil versus floor rounding of
pools is covered by the feature-map shapes of test_models.py.
"""

from __future__ import annotations

import pytest
from torch import nn

from dsd_zoo.models import ARCHITECTURES

from .conftest import FIXTURES, RELEASE, require

CASES = {
    "alexnet": RELEASE / "AlexNet" / "train_val.prototxt",
    "vgg16": RELEASE / "VGG16" / "train_val.prototxt",
    "googlenet": RELEASE / "GoogleNet" / "train_val.prototxt",
    "squeezenet1_0": RELEASE / "SqueezeNet" / "trainval.prototxt",
    "squeezenet1_0 (Deep Compression)": FIXTURES / "squeezenet-deep-compression" / "SqueezeNet_deploy.prototxt",
}
AUX_LAYERS = ("loss1/", "loss2/")
AUX_MODULES = ("aux1.", "aux2.")


def caffe_layers(path, types, aux: bool):
    from .formats.prototxt import layer_specs, read_prototxt

    specs = [s for s in layer_specs(read_prototxt(path), phase="TEST") if s.type in types]
    return [s for s in specs if s.name.startswith(AUX_LAYERS) == aux]


def torch_modules(model, kinds, aux: bool):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds) and n.startswith(AUX_MODULES) == aux]


def check_weighted(spec, name, module):
    where = f"Caffe {spec.name} vs torch {name}"
    if spec.type == "Convolution":
        assert isinstance(module, nn.Conv2d), where
        assert module.out_channels == spec.num_output, where
        assert module.kernel_size == spec.kernel_size, where
        assert module.stride == spec.stride, where
        assert module.padding == spec.pad, where
        assert module.groups == spec.group, where
        assert module.dilation == spec.dilation, where
    else:
        assert isinstance(module, nn.Linear) and spec.transpose is False, where
        assert module.out_features == spec.num_output, where
    assert (module.bias is not None) == spec.bias_term, where


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("aux", [False, True], ids=["main", "aux"])
def test_weighted_layers_match_prototxt(case, aux):
    path = require(CASES[case])
    arch = case.split()[0]
    model = ARCHITECTURES[arch].build(**({"aux_logits": True} if arch == "googlenet" else {}))
    specs = caffe_layers(path, ("Convolution", "InnerProduct"), aux)
    modules = torch_modules(model, (nn.Conv2d, nn.Linear), aux)
    if aux and arch != "googlenet":
        assert specs == [] and modules == []
        return
    assert [s.name for s in specs] and len(specs) == len(modules), [s.name for s in specs]
    for spec, (name, module) in zip(specs, modules):
        check_weighted(spec, name, module)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pooling_and_lrn_match_prototxt(case):
    path = require(CASES[case])
    arch = case.split()[0]
    model = ARCHITECTURES[arch].build()
    local = caffe_layers(path, ("Pooling",), aux=False)
    torch_pools = torch_modules(model, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d), aux=False)
    torch_local = [p for p in torch_pools if not isinstance(p[1], nn.AdaptiveAvgPool2d)]
    if local[-1].pool == "AVE":
        # GoogLeNet's 7x7 and SqueezeNet's global average pool: an adaptive 1x1 pool, the
        # same operation at the evaluation crop (feature shapes in test_models.py).
        last = local.pop()
        assert last.global_pooling or last.kernel_size == (7, 7)
        assert isinstance(torch_pools[-1][1], nn.AdaptiveAvgPool2d) and torch_pools[-1][1].output_size in (1, (1, 1))
    assert len(local) == len(torch_local), [s.name for s in local]
    for spec, (name, module) in zip(local, torch_local):
        where = f"Caffe {spec.name} vs torch {name}"
        expected_type = nn.MaxPool2d if spec.pool == "MAX" else nn.AvgPool2d
        assert isinstance(module, expected_type), where
        pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
        assert (pair(module.kernel_size), pair(module.stride), pair(module.padding)) == (
            spec.kernel_size,
            spec.stride,
            spec.pad,
        ), where
    lrns = caffe_layers(path, ("LRN",), aux=False)
    torch_lrns = torch_modules(model, (nn.LocalResponseNorm,), aux=False)
    assert len(lrns) == len(torch_lrns)
    for spec, (name, module) in zip(lrns, torch_lrns):
        assert spec.norm_region == "ACROSS_CHANNELS"
        assert (module.size, module.alpha, module.beta, module.k) == (spec.local_size, spec.alpha, spec.beta, spec.k), (
            name
        )
