"""Logit fingerprints: a fixed probe, the manifest schema, and what a check catches."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from dsd_zoo.errors import IntegrityError
from dsd_zoo.fingerprint import ATOL_RELATIVE, check_fingerprint, compute_fingerprint, probe_for, probe_id, probe_input
from dsd_zoo.manifest import bundled_manifest_path, parse_manifest
from dsd_zoo.models import ARCHITECTURES

# The first four values of each v1 probe, recorded when the probe was defined. Fingerprints in
# published manifests depend on them: they must never change (a new probe needs a new id).
UNIFORM_227_HEAD = [-71.33158111572266, -95.5465087890625, 124.58277130126953, -57.98170471191406]
NORMAL_224_HEAD = [0.683715283870697, -0.4873579144477844, -1.2980231046676636, 0.09359098225831985]


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return ARCHITECTURES["alexnet"].build().eval()


@pytest.fixture(scope="module")
def alexnet_fingerprint(alexnet):
    return compute_fingerprint(alexnet, "alexnet")


def test_probe_is_fixed():
    uniform = probe_input("dsd-zoo-probe-v1/uniform128/227")
    normal = probe_input("dsd-zoo-probe-v1/normal/224")
    assert uniform.shape == (2, 3, 227, 227) and uniform.dtype == torch.float32
    assert uniform.flatten()[:4].tolist() == UNIFORM_227_HEAD
    assert normal.flatten()[:4].tolist() == NORMAL_224_HEAD
    # The head follows from the PCG64 raw stream (seed 20170424), whose first word is
    # 4083390102588004290: 53 high bits / 2**53, scaled to [-128, 128).
    assert (4083390102588004290 >> 11) * 2.0**-53 * 256 - 128 == pytest.approx(UNIFORM_227_HEAD[0], abs=1e-5)
    assert torch.equal(probe_input("dsd-zoo-probe-v1/uniform128/227"), uniform)


def test_probe_ranges():
    uniform = probe_input("dsd-zoo-probe-v1/uniform128/64").double()
    normal = probe_input("dsd-zoo-probe-v1/normal/64").double()
    # Uniform on [-128, 128): mean 0, std 256 / sqrt(12) = 73.9; standard normal: mean 0, std 1.
    assert -128 <= float(uniform.min()) and float(uniform.max()) < 128
    assert abs(float(uniform.mean())) < 2 and float(uniform.std()) == pytest.approx(73.9, rel=0.02)
    assert abs(float(normal.mean())) < 0.03 and float(normal.std()) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("alexnet", "dsd-zoo-probe-v1/uniform128/227"),
        ("vgg16", "dsd-zoo-probe-v1/uniform128/224"),
        ("squeezenet_sparse", "dsd-zoo-probe-v1/uniform128/227"),
        ("fb_resnet50", "dsd-zoo-probe-v1/normal/224"),
        ("resnet18_dsd", "dsd-zoo-probe-v1/normal/224"),
    ],
)
def test_probe_follows_preprocessing_and_crop(name, expected):
    # Caffe pipelines feed 0-255 pixels minus a mean, fb_resnet normalised ones; sizes are the crops.
    assert probe_for(name) == expected


def test_fingerprint_fits_the_manifest_schema(alexnet, alexnet_fingerprint):
    fingerprint = alexnet_fingerprint
    assert fingerprint["input"] == probe_id("uniform128", 227)
    assert fingerprint["indices"] == [0, 281, 500, 812, 999, 1000, 1281, 1500, 1812, 1999]
    assert len(fingerprint["values"]) == 10 and isinstance(fingerprint["argmax"], int)
    document = json.loads(bundled_manifest_path().read_text())
    document["models"]["alexnet_dsd"]["fingerprint"] = json.loads(json.dumps(fingerprint))
    parsed = parse_manifest(document).models["alexnet_dsd"].fingerprint
    assert parsed is not None and parsed.values == tuple(fingerprint["values"])
    check_fingerprint(alexnet, parsed)  # the manifest's dataclass form is accepted too


def test_fingerprint_is_deterministic_and_mode_safe(alexnet, alexnet_fingerprint):
    alexnet.train()  # dropout is on in training mode; the fingerprint must not see it
    try:
        assert compute_fingerprint(alexnet, "alexnet_dsd") == alexnet_fingerprint
        assert alexnet.training
    finally:
        alexnet.eval()
    with torch.no_grad():
        logits = alexnet(probe_input(alexnet_fingerprint["input"]))
    assert alexnet_fingerprint["argmax"] == int(logits[0].argmax())
    assert alexnet_fingerprint["atol"] == pytest.approx(ATOL_RELATIVE * float(logits.abs().max()), rel=0.01)


def test_swapped_colour_order_is_caught(alexnet, alexnet_fingerprint):
    swapped = copy.deepcopy(alexnet)
    with torch.no_grad():
        swapped.features[0].weight.copy_(swapped.features[0].weight[:, [2, 1, 0]])
    with pytest.raises(IntegrityError, match=r"largest deviation .* > atol .* at index \d+ \(image \d, class \d+\)"):
        check_fingerprint(swapped, alexnet_fingerprint)


def test_tolerance_is_respected(alexnet, alexnet_fingerprint):
    atol = alexnet_fingerprint["atol"]
    within = dict(alexnet_fingerprint, values=[v + 0.5 * atol for v in alexnet_fingerprint["values"]])
    check_fingerprint(alexnet, within)
    beyond = dict(alexnet_fingerprint, values=list(alexnet_fingerprint["values"]))
    beyond["values"][3] += 2 * atol
    with pytest.raises(IntegrityError, match=r"at index 812 \(image 0, class 812\)"):
        check_fingerprint(alexnet, beyond)
    nan = dict(alexnet_fingerprint, values=[float("nan")] * 10)
    with pytest.raises(IntegrityError):
        check_fingerprint(alexnet, nan)


def test_wrong_argmax_is_caught(alexnet, alexnet_fingerprint):
    with torch.no_grad():
        logits = alexnet(probe_input(alexnet_fingerprint["input"]))[0]
    runner_up = int(logits.argsort(descending=True)[1])
    near_tie = dict(alexnet_fingerprint, argmax=runner_up)
    if float(logits.max() - logits[runner_up]) <= alexnet_fingerprint["atol"]:
        check_fingerprint(alexnet, near_tie)  # a near tie may flip on other hardware: accepted
    else:
        with pytest.raises(IntegrityError, match="top class"):
            check_fingerprint(alexnet, near_tie)
    far = int(logits.argmin())  # never within atol of the top logit
    with pytest.raises(IntegrityError, match=f"recorded {far}"):
        check_fingerprint(alexnet, dict(alexnet_fingerprint, argmax=far))


def test_foreign_fingerprints_are_refused(alexnet, alexnet_fingerprint):
    with pytest.raises(IntegrityError, match="another architecture"):
        check_fingerprint(alexnet, dict(alexnet_fingerprint, indices=[0, 5000], values=[0.0, 0.0]))
    with pytest.raises(IntegrityError, match="unknown fingerprint probe"):
        check_fingerprint(alexnet, dict(alexnet_fingerprint, input="dsd-zoo-probe-v9/normal/227"))
    with pytest.raises(IntegrityError, match="lacks the field 'atol'"):
        check_fingerprint(alexnet, {k: v for k, v in alexnet_fingerprint.items() if k != "atol"})
    with pytest.raises(IntegrityError, match="10 indices but 1 values"):  # zip() checked just one of them
        check_fingerprint(alexnet, dict(alexnet_fingerprint, values=alexnet_fingerprint["values"][:1]))
    with pytest.raises(IntegrityError, match="neither a model nor an architecture"):
        compute_fingerprint(alexnet, "alexnet_v2")


def test_googlenet_with_aux_heads_fingerprints_main_logits():
    torch.manual_seed(0)
    model = ARCHITECTURES["googlenet"].build(aux_logits=True).train()
    fingerprint = compute_fingerprint(model, "googlenet")
    plain = ARCHITECTURES["googlenet"].build()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("aux")})
    check_fingerprint(plain, fingerprint)  # the aux heads do not take part


def test_probe_values_are_numpy_independent_of_torch_seed():
    torch.manual_seed(123)
    np.random.seed(123)
    assert probe_input("dsd-zoo-probe-v1/normal/224").flatten()[:4].tolist() == NORMAL_224_HEAD
