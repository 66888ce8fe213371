"""The Caffe, fb.resnet.torch and Deep Compression mappings, on parsed structures (no files).

Each Caffe-family case starts from a randomly initialised dsd-zoo model, turns it into the
blobs a Caffe file of that model would hold (conv1 in BGR order, legacy V1 shapes for some),
maps them back and requires bit-identical weights and the same outputs. The expected Caffe layer names are this
file's own tables, written from ../shared/reference/architectures.md sections 4.1-4.4 (and
checked against the release prototxts below), not the converter's. The ResNet cases build
module trees in the released fb.resnet.torch layouts (architectures.md section 5) and then
break them one way at a time.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Dict, Mapping

import numpy as np
import pytest
import torch

from dsd_zoo.convert.caffe_mapping import caffe_layer_shapes, map_caffe_blobs, map_deep_compression, net_layers
from dsd_zoo.convert.torch7 import TorchObject
from dsd_zoo.convert.torch7_mapping import map_fb_resnet
from dsd_zoo.errors import ConversionError
from dsd_zoo.models import ARCHITECTURES

from .conftest import FIXTURES, RELEASE, require

# --- Caffe layer name -> dsd-zoo module (architectures.md 4.1-4.4), input convolution first ---

ALEXNET = {
    "conv1": "features.0",
    "conv2": "features.4",
    "conv3": "features.8",
    "conv4": "features.10",
    "conv5": "features.12",
    "fc6": "classifier.0",
    "fc7": "classifier.3",
    "fc8": "classifier.6",
}
VGG16 = {
    "conv1_1": "features.0",
    "conv1_2": "features.2",
    "conv2_1": "features.5",
    "conv2_2": "features.7",
    "conv3_1": "features.10",
    "conv3_2": "features.12",
    "conv3_3": "features.14",
    "conv4_1": "features.17",
    "conv4_2": "features.19",
    "conv4_3": "features.21",
    "conv5_1": "features.24",
    "conv5_2": "features.26",
    "conv5_3": "features.28",
    "fc6": "classifier.0",
    "fc7": "classifier.3",
    "fc8": "classifier.6",
}
_INCEPTION = {
    "1x1": "branch1.conv",
    "3x3_reduce": "branch2.0.conv",
    "3x3": "branch2.1.conv",
    "5x5_reduce": "branch3.0.conv",
    "5x5": "branch3.1.conv",
    "pool_proj": "branch4.1.conv",
}
GOOGLENET = {
    "conv1/7x7_s2": "conv1.conv",
    "conv2/3x3_reduce": "conv2.conv",
    "conv2/3x3": "conv3.conv",
    **{
        f"inception_{b}/{c}": f"inception{b}.{m}"
        for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
        for c, m in _INCEPTION.items()
    },
    "loss3/classifier": "fc",
}
GOOGLENET_AUX = {
    f"loss{i}/{c}": f"aux{i}.{m}"
    for i in (1, 2)
    for c, m in (("conv", "conv.conv"), ("fc", "fc1"), ("classifier", "fc2"))
}
_FIRES = {2: 3, 3: 4, 4: 5, 5: 7, 6: 8, 7: 9, 8: 10, 9: 12}  # fireN -> torchvision features.N


def _squeezenet(squeeze: str, expand1: str, expand3: str, final: str) -> Dict[str, str]:
    fires = {
        f"fire{n}/{c}": f"features.{i}.{m}"
        for n, i in _FIRES.items()
        for c, m in ((squeeze, "squeeze"), (expand1, "expand1x1"), (expand3, "expand3x3"))
    }
    return {"conv1": "features.0", **fires, final: "classifier.1"}


SQUEEZENET_DEEPSCALE = _squeezenet("squeeze1x1", "expand1x1", "expand3x3", "conv10")
SQUEEZENET_DSD = _squeezenet("conv1x1_1", "conv1x1_2", "conv3x3_2", "conv_final")

# (arch, table, input size) for every Caffe naming the converter must accept.
CAFFE_CASES = {
    "alexnet": ("alexnet", ALEXNET, 199),
    "googlenet": ("googlenet", GOOGLENET, 64),
    "squeezenet-deepscale": ("squeezenet1_0", SQUEEZENET_DEEPSCALE, 64),
    "squeezenet-dsd": ("squeezenet1_0", SQUEEZENET_DSD, 64),
}


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every bias and BatchNorm statistic distinct random values (inits leave many at 0/1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("bias") or name.endswith("running_mean"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.2 - 0.1)
            elif name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("weight") and tensor.ndim == 1:  # BN scale
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model.eval()


def caffe_blobs(
    model: torch.nn.Module, table: Mapping[str, str], *, legacy_fc: bool = False, dtype: Any = np.float32
) -> Dict[str, list]:
    """The blobs a Caffe file of ``model`` holds: BGR input conv, optional V1 FC shapes."""
    state = model.state_dict()
    first = next(iter(table))
    blobs: Dict[str, list] = {"data": [], "relu1": []}  # blob-less layers, as the reader returns them
    for caffe, module in table.items():
        weight = state[f"{module}.weight"].numpy().astype(dtype)
        bias = state[f"{module}.bias"].numpy().astype(dtype)
        if caffe == first:
            weight = weight[:, [2, 1, 0]]  # Caffe nets read BGR
        if legacy_fc and weight.ndim == 2:
            weight, bias = weight.reshape(1, 1, *weight.shape), bias.reshape(1, 1, 1, -1)
        blobs[caffe] = [weight, bias]
    return blobs


def outputs(model: torch.nn.Module, size: int, scale: float = 50.0) -> torch.Tensor:
    """Logits on a fixed random input; ``scale`` 50 for Caffe's 0-255 range, 1 for normalised fb inputs."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * scale
    with torch.no_grad():
        return model.eval()(x)


def load(arch: str, state: Mapping[str, torch.Tensor], **build_kwargs: Any) -> torch.nn.Module:
    """The architecture holding ``state`` (strict), built without paying for a random init."""
    with torch.device("meta"):
        model = ARCHITECTURES[arch].build(**build_kwargs)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def input_scale(arch: str) -> float:
    """Caffe models see 0-255 pixels minus a mean, fb.resnet.torch models normalised ones."""
    return 1.0 if arch.startswith("fb_") else 50.0


def assert_same_model(model: torch.nn.Module, reference: torch.nn.Module, size: int, scale: float) -> None:
    """Bit-identical tensors, and the same logits.

    The logits are compared to float32 rounding only (1e-5 of their largest magnitude): oneDNN's
    summation order depends on the tensors' memory alignment, so equal weights at other
    addresses can move the last bits.
    """
    expected = reference.state_dict()
    assert model.state_dict().keys() == expected.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    expected_logits = outputs(reference, size, scale)
    torch.testing.assert_close(
        outputs(model, size, scale), expected_logits, rtol=0, atol=1e-5 * float(expected_logits.abs().max())
    )


def assert_same_outputs(arch: str, state: Mapping[str, torch.Tensor], reference: torch.nn.Module, size: int) -> None:
    assert_same_model(load(arch, state), reference, size, input_scale(arch))


@pytest.mark.parametrize("case", sorted(CAFFE_CASES))
@pytest.mark.parametrize("legacy_fc", [False, True], ids=["new-shapes", "v1-shapes"])
def test_caffe_mapping_reproduces_outputs(case, legacy_fc):
    arch, table, size = CAFFE_CASES[case]
    reference = perturb(ARCHITECTURES[arch].build())
    state, report = map_caffe_blobs(caffe_blobs(reference, table, legacy_fc=legacy_fc), arch)
    json.dumps(report)  # the report goes into metadata and logs as JSON
    assert report["options"]["bgr_to_rgb"] is True and report["warnings"] == []
    assert report["build_kwargs"] == {} and report["cast_from_float64"] == []
    assert bool(report["reshaped"]) == (legacy_fc and arch != "squeezenet1_0")  # SqueezeNet has no FC layer
    assert_same_outputs(arch, state, reference, size)


def test_googlenet_aux_heads_reproduce_outputs():
    # The heads need the 224 crop (4x4 after their 5/3 pool); main, loss1 and loss2 logits all match.
    reference = perturb(ARCHITECTURES["googlenet"].build(aux_logits=True))
    state, report = map_caffe_blobs(caffe_blobs(reference, {**GOOGLENET, **GOOGLENET_AUX}, legacy_fc=True), "googlenet")
    assert report["build_kwargs"] == {"aux_logits": True} and "loss2/fc:weight" in report["reshaped"]
    x = torch.randn(1, 3, 224, 224) * 50
    with torch.no_grad():
        for got, want in zip(load("googlenet", state, aux_logits=True).aux_outputs(x), reference.aux_outputs(x)):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_float64_blobs_are_cast():
    reference = perturb(ARCHITECTURES["squeezenet1_0"].build())
    state, report = map_caffe_blobs(caffe_blobs(reference, SQUEEZENET_DSD, dtype=np.float64), "squeezenet1_0")
    assert report["cast_from_float64"] == sorted(SQUEEZENET_DSD)
    assert all(t.dtype == torch.float32 for t in state.values())
    assert_same_outputs("squeezenet1_0", state, reference, 64)


def test_conv1_is_flipped_to_rgb():
    reference = ARCHITECTURES["squeezenet1_0"].build()
    blobs = caffe_blobs(reference, SQUEEZENET_DSD)
    state, _ = map_caffe_blobs(blobs, "squeezenet1_0")
    bgr = torch.from_numpy(blobs["conv1"][0])
    assert torch.equal(state["features.0.weight"][:, 0], bgr[:, 2])  # R comes from Caffe's third channel
    assert torch.equal(state["features.0.weight"][:, 2], bgr[:, 0])
    assert torch.equal(state["features.0.weight"], reference.state_dict()["features.0.weight"])


def test_extra_blobs_are_ignored_and_reported():
    reference = perturb(ARCHITECTURES["squeezenet1_0"].build())
    blobs = caffe_blobs(reference, SQUEEZENET_DEEPSCALE)
    blobs["fire5/expand3x3"].append(np.zeros((7,), np.float32))
    state, report = map_caffe_blobs(blobs, "squeezenet1_0")
    (warning,) = report["warnings"]
    assert "fire5/expand3x3" in warning and "(7,)" in warning
    assert_same_outputs("squeezenet1_0", state, reference, 64)


def test_googlenet_without_aux_heads_in_file():
    model = ARCHITECTURES["googlenet"].build()
    state, report = map_caffe_blobs(caffe_blobs(model, GOOGLENET), "googlenet")
    assert not any(key.startswith("aux") for key in state) and report["build_kwargs"] == {}


def _squeezenet_blobs() -> Dict[str, list]:
    return caffe_blobs(ARCHITECTURES["squeezenet1_0"].build(), SQUEEZENET_DSD)


def _edit(blobs: Dict[str, list], edit: Callable[[Dict[str, list]], None]) -> Dict[str, list]:
    edit(blobs)
    return blobs


CAFFE_VIOLATIONS = {
    "missing layer": (lambda b: b.pop("fire4/conv3x3_2"), r"missing layers \['fire4/conv3x3_2'\]"),
    "extra weighted layer": (
        lambda b: b.update(fc9=[np.ones((2, 2), np.float32), np.ones(2, np.float32)]),
        r"unexpected weighted layers \['fc9'\]",
    ),
    "wrong shape": (
        lambda b: b["fire2/conv1x1_2"].__setitem__(0, np.ones((64, 17, 1, 1), np.float32)),
        r"'fire2/conv1x1_2' blob 0 \(weight\) has shape \(64, 17, 1, 1\), "
        r"but features\.3\.expand1x1\.weight needs \(64, 16, 1, 1\)",
    ),
    "same count, other shape": (
        lambda b: b["conv_final"].__setitem__(0, b["conv_final"][0].reshape(512, 1000, 1, 1)),
        r"'conv_final' blob 0 \(weight\) has shape \(512, 1000, 1, 1\), "
        r"but classifier\.1\.weight needs \(1000, 512, 1, 1\)",
    ),
    "no bias": (lambda b: b["conv1"].pop(), r"layer 'conv1' has 1 blob\(s\)"),
    "mixed schemes": (lambda b: b.update({"fire2/squeeze1x1": b.pop("fire2/conv1x1_1")}), r"mix the deepscale and dsd"),
    "not finite": (lambda b: b["fire3/conv1x1_1"][0].__setitem__((0, 0, 0, 0), np.nan), r"NaN or infinite"),
    "not an array": (lambda b: b.update(conv1=["weight", "bias"]), r"'conv1' blob 0 \(weight\) is a str"),
}


@pytest.mark.parametrize("case", sorted(CAFFE_VIOLATIONS))
def test_caffe_violations_raise(case):
    edit, message = CAFFE_VIOLATIONS[case]
    with pytest.raises(ConversionError, match=message):
        map_caffe_blobs(_edit(_squeezenet_blobs(), edit), "squeezenet1_0", source="test.caffemodel")


def test_partial_googlenet_aux_heads_raise():
    blobs = caffe_blobs(ARCHITECTURES["googlenet"].build(aux_logits=True), {**GOOGLENET, **GOOGLENET_AUX})
    del blobs["loss2/fc"]
    with pytest.raises(ConversionError, match=r"aux_heads are incomplete.*loss2/fc"):
        map_caffe_blobs(blobs, "googlenet")


def test_caffe_mapping_refuses_non_caffe_arch():
    with pytest.raises(ConversionError, match="not a Caffe architecture"):
        map_caffe_blobs({}, "fb_resnet18")
    with pytest.raises(ConversionError, match="not a Caffe architecture"):
        caffe_layer_shapes("fb_resnet18")  # was a bare IndexError


def _prototxt_table(path, arch) -> Dict[str, str]:
    """Caffe weighted layers (TEST phase, network order) zipped with the model's Conv2d/Linear modules."""
    from .formats.prototxt import layer_specs, read_prototxt

    aux = ("loss1/", "loss2/")
    specs = [
        s.name for s in layer_specs(read_prototxt(path), phase="TEST") if s.type in ("Convolution", "InnerProduct")
    ]
    model = ARCHITECTURES[arch].build(**({"aux_logits": True} if arch == "googlenet" else {}))
    modules = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    main = [n for n in modules if not n.startswith(("aux1.", "aux2."))]
    heads = [n for n in modules if n.startswith(("aux1.", "aux2."))]
    return {
        **dict(zip([s for s in specs if not s.startswith(aux)], main)),
        **dict(zip([s for s in specs if s.startswith(aux)], heads)),
    }


@pytest.mark.parametrize(
    "arch,prototxt,table",
    [
        ("alexnet", RELEASE / "AlexNet" / "train_val.prototxt", ALEXNET),
        ("vgg16", RELEASE / "VGG16" / "train_val.prototxt", VGG16),
        ("googlenet", RELEASE / "GoogleNet" / "train_val.prototxt", {**GOOGLENET, **GOOGLENET_AUX}),
        ("squeezenet1_0", RELEASE / "SqueezeNet" / "trainval.prototxt", SQUEEZENET_DSD),
        ("squeezenet1_0", FIXTURES / "squeezenet-deep-compression" / "SqueezeNet_deploy.prototxt", SQUEEZENET_DSD),
    ],
    ids=["alexnet", "vgg16", "googlenet", "squeezenet-dsd", "squeezenet-deploy"],
)
def test_tables_match_release_prototxts(arch, prototxt, table):
    # The release's own layer names, in network order, paired with the modules in build order.
    assert _prototxt_table(require(prototxt), arch) == table


def test_net_layer_list_matches_deploy_prototxt():
    from .formats.dc_prototxt import deep_compression_layers
    from .formats.prototxt import read_prototxt

    prototxt = require(FIXTURES / "squeezenet-deep-compression" / "SqueezeNet_deploy.prototxt")
    assert net_layers("squeezenet1_0") == deep_compression_layers(read_prototxt(prototxt))


def test_deep_compression_mapping_reports_density():
    reference = perturb(ARCHITECTURES["squeezenet1_0"].build())
    blobs = caffe_blobs(reference, SQUEEZENET_DSD)
    decoded = {name: (w, b) for name, (w, b) in ((n, v) for n, v in blobs.items() if v)}
    decoded["conv_final"][0][:, :256] = 0  # half of conv_final's 512 000 weights
    total = sum(w.size for w, _ in decoded.values())
    expected = sum(np.count_nonzero(w) for w, _ in decoded.values()) / total
    state, report = map_deep_compression(decoded, "squeezenet1_0")
    assert report["weight_density"] == pytest.approx(expected) and report["layer_density"]["conv_final"] == 0.5
    assert torch.equal(state["features.0.weight"], reference.state_dict()["features.0.weight"])
    deepscale = caffe_blobs(reference, SQUEEZENET_DEEPSCALE)
    with pytest.raises(ConversionError, match="named in the dsd scheme"):
        map_deep_compression({n: tuple(v) for n, v in deepscale.items() if v}, "squeezenet1_0")


# --- fb.resnet.torch module trees (architectures.md 5.1) ---


def t7_object(typename: str, **fields: Any) -> TorchObject:
    """What dsd_zoo.convert.torch7.read_t7 returns for a Torch object."""
    return TorchObject(typename, 1, fields)


def fb_tree(
    model: torch.nn.Module,
    make: Callable[..., Any] = t7_object,
    *,
    prefix: str = "nn",
    running_std: bool = False,
    eps: float = 1e-5,
    mm: bool = False,
) -> Any:
    """The Torch7 module tree of a released fb.resnet.torch checkpoint holding ``model``'s weights.

    ``prefix`` "cudnn" uses the cudnn classes; ``running_std`` stores 1/sqrt(var + eps) as old nn
    did; ``eps`` stores another BN epsilon (running_var adjusted so the normaliser is unchanged);
    ``mm`` stores conv weights 2-D as SpatialConvolutionMM.
    """

    def array(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()  # shares the model's memory: edit trees by replacing arrays

    def conv(m: torch.nn.Conv2d) -> Any:
        weight = array(m.weight)
        typename = "nn.SpatialConvolutionMM" if mm else f"{prefix}.SpatialConvolution"
        return make(
            typename,
            weight=weight.reshape(weight.shape[0], -1) if mm else weight,
            bias=array(m.bias),
            nInputPlane=m.in_channels,
            nOutputPlane=m.out_channels,
            kW=m.kernel_size[1],
            kH=m.kernel_size[0],
            dW=m.stride[1],
            dH=m.stride[0],
            padW=m.padding[1],
            padH=m.padding[0],
        )

    def bn(m: torch.nn.BatchNorm2d) -> Any:
        var = m.running_var.double() + 1e-5 - eps  # same normaliser var + eps as the model's
        stats = {"running_std": array((var + eps).rsqrt())} if running_std else {"running_var": array(var)}
        return make(
            f"{prefix}.SpatialBatchNormalization",
            weight=array(m.weight),
            bias=array(m.bias),
            running_mean=array(m.running_mean),
            eps=eps,
            momentum=0.1,
            affine=True,
            **stats,
        )

    def relu() -> Any:
        return make(f"{prefix}.ReLU", inplace=True)

    def seq(*modules: Any, typename: str = "nn.Sequential") -> Any:
        return make(typename, modules=list(modules))

    def block(b: torch.nn.Module) -> Any:
        if hasattr(b, "conv3"):
            branch = seq(conv(b.conv1), bn(b.bn1), relu(), conv(b.conv2), bn(b.bn2), relu(), conv(b.conv3))
        else:
            branch = seq(conv(b.conv1), bn(b.bn1), relu(), conv(b.conv2), bn(b.bn2))
        shortcut = make("nn.Identity") if b.downsample is None else conv(b.downsample[0])
        tail = [bn(b.bn_after_add), relu()] if hasattr(b, "bn_after_add") else [relu()]
        return seq(seq(branch, shortcut, typename="nn.ConcatTable"), make("nn.CAddTable"), *tail)

    stages = [seq(*[block(b) for b in getattr(model, f"layer{i}")]) for i in range(1, 5)]
    return seq(
        conv(model.conv1),
        bn(model.bn1),
        relu(),
        make(f"{prefix}.SpatialMaxPooling", kW=3, kH=3, dW=2, dH=2, padW=1, padH=1, ceil_mode=False),
        *stages,
        make(f"{prefix}.SpatialAveragePooling", kW=7, kH=7, dW=1, dH=1, padW=0, padH=0),
        make("nn.View", size=[model.fc.in_features]),
        make("nn.Linear", weight=array(model.fc.weight), bias=array(model.fc.bias)),
    )


@pytest.fixture(scope="module")
def resnets() -> Dict[str, torch.nn.Module]:
    return {arch: perturb(ARCHITECTURES[arch].build(), seed=3) for arch in ("fb_resnet18", "fb_resnet50")}


@pytest.mark.parametrize(
    "arch,variant", [("fb_resnet18", "nn"), ("fb_resnet18", "cudnn"), ("fb_resnet50", "nn"), ("fb_resnet50", "mm")]
)
def test_fb_resnet_mapping_reproduces_outputs(resnets, arch, variant):
    model = resnets[arch]
    tree = fb_tree(model, prefix="cudnn" if variant == "cudnn" else "nn", mm=variant == "mm")
    state, report = map_fb_resnet(tree, arch)
    json.dumps(report)
    assert state["bn1.num_batches_tracked"].item() == 0 and state["bn1.num_batches_tracked"].dtype == torch.long
    assert report["bn_eps_folded"] == {} and report["running_std_converted"] == []
    assert bool(report["reshaped_mm_weights"]) == (variant == "mm")
    assert f"{'cudnn' if variant == 'cudnn' else 'nn'}.SpatialBatchNormalization" in report["typenames"]
    assert_same_outputs(arch, state, model, 64)


@pytest.mark.parametrize("legacy", ["running_std", "running_std eps=1e-3", "eps=1e-3"])
def test_fb_resnet_legacy_batch_norm(resnets, legacy):
    model = resnets["fb_resnet18"]
    tree = fb_tree(model, running_std=legacy.startswith("running_std"), eps=1e-3 if legacy.endswith("1e-3") else 1e-5)
    state, report = map_fb_resnet(tree, "fb_resnet18")
    # Not bit-exact: var goes through 1/sqrt and back, or + eps - 1e-5, in float64 then float32.
    torch.testing.assert_close(
        state["layer3.1.bn2.running_var"], model.state_dict()["layer3.1.bn2.running_var"], rtol=1e-6, atol=1e-7
    )
    if legacy.startswith("running_std"):
        assert len(report["running_std_converted"]) == 1 + 2 * 8  # stem BN + two per basic block
        # running_std = 1/sqrt(var + eps) already holds eps: nothing is folded, whatever eps is.
        assert report["bn_eps_folded"] == {} and report["warnings"] == []
    else:
        assert len(report["bn_eps_folded"]) == 17 and "1e-3" in report["warnings"][0].replace("0.001", "1e-3")
    converted = outputs(load("fb_resnet18", state), 64, 1.0)
    torch.testing.assert_close(converted, outputs(model, 64, 1.0), rtol=1e-5, atol=1e-5)


def _at(tree: Any, *path: int) -> Any:
    for index in path:
        tree = tree.modules[index]
    return tree


def _public_bottleneck(tree: Any) -> None:
    # models/resnet.lua: BN at the end of the branch, nothing after the addition but ReLU.
    block = _at(tree, 4, 0)
    branch = _at(block, 0, 0)
    branch.modules.append(block.modules.pop(2))


def _shortcut_with_bn(tree: Any) -> None:
    concat = _at(tree, 5, 0, 0)
    concat.modules[1] = t7_object("nn.Sequential", modules=[concat.modules[1], _at(tree, 1)])


RESNET_VIOLATIONS = {
    "conv without bias": (
        "fb_resnet18",
        lambda t: _at(t, 4, 0, 0, 0, 0).fields.pop("bias"),
        r"model\[4\]\[0\]\[0\]\[0\]\[0\] \(-> layer1\.0\.conv1\.bias\): has no bias tensor",
    ),
    "public bottleneck": (
        "fb_resnet50",
        _public_bottleneck,
        r"model\[4\]\[0\] \(-> layer1\.0\).*public models/resnet\.lua",
    ),
    "shortcut with BN": (
        "fb_resnet18",
        _shortcut_with_bn,
        r"model\[5\]\[0\]\[0\] \(-> layer2\.0\): expected ConcatTable\[Sequential, conv\], found "
        r"ConcatTable\[Sequential\[.*\], Sequential\[conv, BN\]\].*bare 1x1",
    ),
    "projection where identity": (
        "fb_resnet18",
        lambda t: _at(t, 4, 1, 0).modules.__setitem__(1, _at(t, 5, 0, 0, 1)),
        r"model\[4\]\[1\]\[0\] \(-> layer1\.1\): "
        r"expected ConcatTable\[Sequential, Identity\]",
    ),
    "wrong stride": (
        "fb_resnet18",
        lambda t: _at(t, 6, 0, 0, 0, 0).fields.update(dW=1),
        r"model\[6\]\[0\]\[0\]\[0\]\[0\] \(-> layer3\.0\.conv1\): dW = 1, but layer3\.0\.conv1 needs 2",
    ),
    "unknown module": (
        "fb_resnet18",
        lambda t: setattr(_at(t, 4, 0, 0, 0, 3), "typename", "nn.SpatialDilatedConvolution"),
        r"model\[4\]\[0\]\[0\]\[0\] \(-> layer1\.0\): expected Sequential\[conv, BN, ReLU, conv, BN\], "
        r"found Sequential\[conv, BN, ReLU, nn\.SpatialDilatedConvolution, BN\]",
    ),
    "grouped conv": ("fb_resnet18", lambda t: _at(t, 0).fields.update(groups=2), r"model\[0\] \(-> conv1\): grouped"),
    "no BN statistics": (
        "fb_resnet18",
        lambda t: _at(t, 1).fields.pop("running_var"),
        r"model\[1\] \(-> bn1\): has neither running_var nor running_std",
    ),
    "extra top module": (
        "fb_resnet18",
        lambda t: t.modules.append(t7_object("nn.SoftMax")),
        r"t7 module model: expected Sequential\[.*Linear\], found .*nn\.SoftMax\]",
    ),
    "ceil-mode max pool": ("fb_resnet18", lambda t: _at(t, 3).fields.update(ceil_mode=True), r"model\[3\]: ceil-mode"),
    # Fields of the wrong type: these two were bare ValueErrors (an array has no truth value).
    "tensor ceil_mode": (
        "fb_resnet18",
        lambda t: _at(t, 3).fields.update(ceil_mode=np.ones(2)),
        r"model\[3\]: ceil-mode pooling \(ceil_mode = array",
    ),
    "tensor groups": (
        "fb_resnet18",
        lambda t: _at(t, 0).fields.update(groups=np.ones(2)),
        r"model\[0\] \(-> conv1\): field 'groups' must be a number",
    ),
    "avg pool 3x3": (
        "fb_resnet18",
        lambda t: _at(t, 8).fields.update(kW=3),
        r"model\[8\]: kW = 3, but the architecture needs 7",
    ),
    "wrong weight shape": (
        "fb_resnet18",
        lambda t: _at(t, 10).fields.update(weight=np.zeros((1000, 2048), np.float32)),
        r"model\[10\] \(-> fc\.weight\): weight has shape \(1000, 2048\), "
        r"but fc\.weight needs \(1000, 512\)",
    ),
    "NaN weight": (
        "fb_resnet18",
        lambda t: _at(t, 10).fields.update(weight=np.full((1000, 512), np.nan, np.float32)),
        r"model\[10\] weight: holds NaN",
    ),
    "modules not a list": (
        "fb_resnet18",
        lambda t: _at(t, 7).fields.update(modules={"a": 1}),
        r"model\[7\] \(-> layer4\): Sequential has no list of modules",
    ),
    "basic tree as ResNet-50": (
        "fb_resnet50",
        None,
        r"model\[4\] \(-> layer1\): expected Sequential\[Sequential, Sequential, Sequential\], "
        r"found Sequential\[Sequential, Sequential\]",
    ),
    "not a module": ("fb_resnet18", lambda t: t.modules.__setitem__(2, 3.0), r"model: expected .* found .*<float>"),
}


@pytest.mark.parametrize("case", sorted(RESNET_VIOLATIONS))
def test_fb_resnet_layout_violations_raise(resnets, case):
    arch, edit, message = RESNET_VIOLATIONS[case]
    tree = fb_tree(resnets["fb_resnet18" if edit is None else arch])
    if edit is not None:
        edit(tree)
    with pytest.raises(ConversionError, match=message) as info:
        map_fb_resnet(tree, arch, source="test.t7")
    assert str(info.value).startswith("test.t7: ")


def test_fb_resnet_mapping_refuses_other_archs():
    with pytest.raises(ConversionError, match=re.escape("Torch7 mappings exist for ('fb_resnet18', 'fb_resnet50')")):
        map_fb_resnet(t7_object("nn.Sequential", modules=[]), "alexnet")
