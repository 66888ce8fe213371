"""Every architecture builds, has the reference parameter count, the spec's feature-map shapes
and maps (N, 3, crop, crop) to (N, 1000)."""

from __future__ import annotations

import pytest
import torch

import dsd_zoo
from dsd_zoo.models import ARCHITECTURES

# Parameter counts: ../shared/reference/architectures.md, sections 4.1-4.4 and 5.1 (and issue 2).
REFERENCE_PARAMS = {
    "alexnet": 60_965_224,
    "vgg16": 138_357_544,
    "googlenet": 6_998_552,
    "squeezenet1_0": 1_248_424,
    "fb_resnet18": 11_692_520,
    "fb_resnet50": 25_575_912,
    "digits_net": 62_250,  # the embedded demo's CNN: 3 convs + 2 FC layers (docs/dsd-demo.md), counted by hand
}
# Feature-map shapes at the evaluation crop: architectures.md section 7.
FEATURES = {
    "alexnet": ("features", "output", (256, 6, 6)),
    "vgg16": ("features", "output", (512, 7, 7)),
    "googlenet": ("avgpool", "input", (1024, 7, 7)),
    "squeezenet1_0": ("classifier.3", "input", (1000, 15, 15)),
    "fb_resnet18": ("avgpool", "input", (512, 7, 7)),
    "fb_resnet50": ("avgpool", "input", (2048, 7, 7)),
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", sorted(REFERENCE_PARAMS))
def test_parameter_count(arch):
    assert count(ARCHITECTURES[arch].build()) == REFERENCE_PARAMS[arch]
    assert ARCHITECTURES[arch].num_params == REFERENCE_PARAMS[arch]


def test_googlenet_aux_heads_parameter_count():
    # 13,378,280 with both auxiliary heads: architectures.md 4.3.
    assert count(ARCHITECTURES["googlenet"].build(aux_logits=True)) == 13_378_280


@pytest.mark.parametrize("name", dsd_zoo.list_models())
def test_every_model_builds_with_reference_count(name):
    entry_arch = dsd_zoo.get_weights(name).architecture
    model = dsd_zoo.get_model(name, pretrained=False)
    assert count(model) == REFERENCE_PARAMS[entry_arch.name]


@pytest.mark.parametrize("arch", sorted(FEATURES))
def test_feature_shapes_and_logits(arch):
    spec = ARCHITECTURES[arch]
    model = spec.build().eval()
    module_name, side, shape = FEATURES[arch]
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = tuple((inputs[0] if side == "input" else output).shape[1:])

    model.get_submodule(module_name).register_forward_hook(hook)
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, spec.input_size, spec.input_size))
    assert seen["shape"] == shape
    assert logits.shape == (2, 1000)
    assert torch.isfinite(logits).all()


def test_squeezenet_final_conv_is_padded():
    # Caffe conv10 / conv_final has pad 1 (architectures.md 4.4); torchvision's has 0.
    model = ARCHITECTURES["squeezenet1_0"].build()
    assert model.classifier[1].padding == (1, 1)


def test_fb_resnet_layout():
    # architectures.md 5.1: biased convs, bare projection shortcuts, BN after the add (ResNet-50).
    r18 = ARCHITECTURES["fb_resnet18"].build()
    assert r18.conv1.bias is not None and r18.layer1[0].conv1.bias is not None
    assert r18.layer1[0].downsample is None
    assert [type(m).__name__ for m in r18.layer2[0].downsample] == ["Conv2d"]
    r50 = ARCHITECTURES["fb_resnet50"].build()
    block = r50.layer1[0]
    assert [type(m).__name__ for m in block.downsample] == ["Conv2d"]  # 64 -> 256 at stride 1
    assert not hasattr(block, "bn3") and block.bn_after_add.num_features == 256


def test_fb_resnet50_normalises_after_the_addition():
    # Setting the post-add BN to a known affine map must change the block output exactly as
    # relu(a * (branch + shortcut) + b) — proof that BN acts on the sum, not on the branch.
    block = ARCHITECTURES["fb_resnet50"].build().layer1[1].eval()
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        bn = block.bn_after_add
        bn.running_mean.zero_(), bn.running_var.fill_(1 - bn.eps), bn.weight.fill_(2.0), bn.bias.fill_(0.5)
        branch = block.conv3(block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))))
        expected = torch.relu(2.0 * (branch + x) + 0.5)
        torch.testing.assert_close(block(x), expected)


def test_googlenet_training_returns_aux_outputs():
    model = ARCHITECTURES["googlenet"].build(aux_logits=True).train()
    out = model(torch.randn(2, 3, 224, 224))
    assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (2, 1000)
    main, aux1, aux2 = model.eval().aux_outputs(torch.randn(1, 3, 224, 224))
    assert main.shape == aux1.shape == aux2.shape == (1, 1000)


@pytest.mark.parametrize("aux_logits", [False, True])
def test_googlenet_scripts_like_torchvisions(aux_logits):
    # torchvision's googlenet is TorchScript-able; so is this one, with and without aux heads.
    import warnings

    model = ARCHITECTURES["googlenet"].build(num_classes=10, aux_logits=aux_logits).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated in favour of export
        scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 224, 224)
    assert torch.allclose(scripted(x), model(x), atol=1e-5)
    if aux_logits:
        out = scripted.train()(x)
        assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (1, 10)


def test_alexnet_uses_lrn_after_relu_before_pool():
    names = [type(m).__name__ for m in ARCHITECTURES["alexnet"].build().features][:4]
    assert names == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]


@pytest.mark.parametrize("arch", ["fb_resnet18", "googlenet", "alexnet"])
def test_whole_models_pickle(arch):
    # torch.save(model), multiprocessing's spawn and DataLoader/DDP helpers pickle whole modules:
    # every class must be importable by its qualified name (no class defined inside a function).
    import pickle

    model = ARCHITECTURES[arch].build(num_classes=10)
    clone = pickle.loads(pickle.dumps(model))
    assert type(clone) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), clone.state_dict().values()))
