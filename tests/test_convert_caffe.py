"""The .caffemodel reader: the real Caffe LeNet, round trips in every layout, hostile input."""

from __future__ import annotations

import gzip
import struct
from collections import OrderedDict

import numpy as np
import pytest

pytest.importorskip("google.protobuf", reason="the Caffe reader needs protobuf (dsd-zoo[convert])")

from dsd_zoo.convert.caffe import read_caffemodel, read_caffemodel_layers  # noqa: E402
from .formats.prototxt import layer_type, net_layers, param_shapes, read_prototxt  # noqa: E402
from dsd_zoo.errors import FormatError  # noqa: E402

from .conftest import FIXTURES, require  # noqa: E402
from .formats.caffe_writer import (  # noqa: E402
    CaffeLayerSpec,
    encode_blob,
    encode_caffemodel,
    field_bytes,
    field_varint,
    packed_floats,
    varint,
)

LENET = FIXTURES / "caffe-lenet"
MNIST = FIXTURES / "mnist"


def _random_layers(rng: np.random.Generator, dtype=np.float32) -> list[CaffeLayerSpec]:
    return [
        CaffeLayerSpec("data", [], "Data", top=["data", "label"]),
        CaffeLayerSpec(
            "conv1",
            [rng.standard_normal((4, 3, 3, 3)).astype(dtype), rng.standard_normal(4).astype(dtype)],
            "Convolution",
            ["data"],
            ["conv1"],
        ),
        CaffeLayerSpec("relu1", [], "ReLU", ["conv1"], ["conv1"]),
        CaffeLayerSpec(
            "fire2/squeeze1x1",
            [rng.standard_normal((2, 4, 1, 1)).astype(dtype), rng.standard_normal(2).astype(dtype)],
            "Convolution",
            ["conv1"],
            ["fire2/squeeze1x1"],
        ),
        CaffeLayerSpec(
            "fc",
            [rng.standard_normal((5, 8)).astype(dtype), rng.standard_normal(5).astype(dtype)],
            "InnerProduct",
            ["fire2/squeeze1x1"],
            ["fc"],
        ),
    ]


# --------------------------------------------------------------------------- real files


def _idx(path, magic: int, ndim: int) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    head = struct.unpack(f">{1 + ndim}I", raw[: 4 * (1 + ndim)])
    assert head[0] == magic
    return np.frombuffer(raw, np.uint8, offset=4 * (1 + ndim)).reshape(head[1:])


def _torch_net_from_prototxt(net):
    """A torch Sequential built from the prototxt alone (LeNet's layers are sequential)."""
    import torch.nn as nn

    from .formats.prototxt import layer_specs

    specs = {s.name: s for s in layer_specs(net, phase="TEST")}
    shapes = param_shapes(net)
    modules: list[tuple[str, nn.Module]] = []
    for layer in net_layers(net, phase="TEST"):
        name, type_ = layer.get("name"), layer_type(layer)
        spec = specs.get(name)
        if type_ == "Convolution":
            out_ch, in_ch = shapes[name][0][:2]
            modules.append(
                (
                    name,
                    nn.Conv2d(
                        in_ch * spec.group,
                        out_ch,
                        spec.kernel_size,
                        spec.stride,
                        spec.pad,
                        spec.dilation,
                        spec.group,
                        bias=spec.bias_term,
                    ),
                )
            )
        elif type_ == "Pooling":
            assert spec.pool == "MAX" and not spec.global_pooling
            modules.append((name, nn.MaxPool2d(spec.kernel_size, spec.stride, spec.pad, ceil_mode=True)))
        elif type_ == "InnerProduct":
            out_f, in_f = shapes[name][0]
            modules.append((name + "_flatten", nn.Flatten()))
            modules.append((name, nn.Linear(in_f, out_f, bias=spec.bias_term)))
        elif type_ == "ReLU":
            modules.append((name, nn.ReLU()))
        else:
            assert type_ in ("Input", "Softmax"), type_  # softmax does not change the argmax
    return nn.Sequential(OrderedDict(modules))


@pytest.mark.fixtures
def test_lenet_matches_its_prototxt_and_classifies_mnist():
    import torch

    net = read_prototxt(require(LENET / "lenet.prototxt"))
    blobs = read_caffemodel(require(LENET / "lenet_iter_10000.caffemodel"))
    shapes = param_shapes(net)
    # The architecture the issue states: conv1 20 5x5, conv2 50 5x5, ip1 500, ip2 10.
    assert shapes == {
        "conv1": [(20, 1, 5, 5), (20,)],
        "conv2": [(50, 20, 5, 5), (50,)],
        "ip1": [(500, 800), (500,)],
        "ip2": [(10, 500), (10,)],
    }
    assert {k: [b.shape for b in v] for k, v in blobs.items() if v} == shapes
    assert all(b.dtype == np.float32 for v in blobs.values() for b in v)

    model = _torch_net_from_prototxt(net).eval()
    state = {
        f"{name}.{part}": torch.from_numpy(blob)
        for name, layer_blobs in blobs.items()
        for part, blob in zip(("weight", "bias"), layer_blobs)
    }
    model.load_state_dict(state, strict=True)

    images = _idx(require(MNIST / "t10k-images-idx3-ubyte.gz"), 2051, 3)
    labels = _idx(require(MNIST / "t10k-labels-idx1-ubyte.gz"), 2049, 1)
    x = torch.from_numpy(images.astype(np.float32) * np.float32(0.00390625)).unsqueeze(1)
    with torch.no_grad():
        predicted = torch.cat([model(chunk).argmax(1) for chunk in x.split(2500)])
    accuracy = (predicted.numpy() == labels).mean()
    # 99.14% (± 0.05 pt): fixtures README, from an independent numpy forward of this model on
    # the same 10,000 images scaled by 1/256.
    assert abs(accuracy - 0.9914) <= 0.0005, accuracy


@pytest.mark.fixtures
def test_lenet_layer_records():
    layers = read_caffemodel_layers(require(LENET / "lenet_iter_10000.caffemodel"))
    # Layer names/types/tops of Caffe's MNIST tutorial train net (lenet_train_test.prototxt).
    assert [(l.name, l.type) for l in layers] == [
        ("mnist", "Data"),
        ("conv1", "Convolution"),
        ("pool1", "Pooling"),
        ("conv2", "Convolution"),
        ("pool2", "Pooling"),
        ("ip1", "InnerProduct"),
        ("relu1", "ReLU"),
        ("ip2", "InnerProduct"),
        ("loss", "SoftmaxWithLoss"),
    ]
    assert layers[1].bottom == ("data",) and layers[1].top == ("conv1",)
    assert layers[-1].bottom == ("ip2", "label")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("layout", ["new", "v1", "v0"])
@pytest.mark.parametrize("double", [False, True])
def test_round_trip(layout, double):
    rng = np.random.default_rng(hash((layout, double)) % 2**32)
    specs = _random_layers(rng, np.float64 if double else np.float32)
    layers = read_caffemodel_layers(encode_caffemodel(specs, layout=layout, double=double))
    assert [(l.name, l.type, l.bottom, l.top) for l in layers] == [
        (s.name, s.type, tuple(s.bottom), tuple(s.top)) for s in specs
    ]
    for layer, spec in zip(layers, specs):
        assert len(layer.blobs) == len(spec.blobs)
        for got, want in zip(layer.blobs, spec.blobs):
            assert got.dtype == (np.float64 if double else np.float32)
            assert got.flags.writeable and got.flags.c_contiguous
            np.testing.assert_array_equal(got, want)


def test_legacy_dims_are_reported_as_stored():
    rng = np.random.default_rng(3)
    w, b = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    blobs = read_caffemodel(encode_caffemodel({"fc": [w, b]}, layout="v1", legacy_shape=True))
    # Old Caffe kept 4 axes: FC weights (1, 1, out, in), biases (1, 1, 1, out).
    assert blobs["fc"][0].shape == (1, 1, 5, 8) and blobs["fc"][1].shape == (1, 1, 1, 5)
    np.testing.assert_array_equal(blobs["fc"][0].reshape(5, 8), w)


def test_legacy_dims_win_over_shape_and_double_data_wins_over_data():
    # Caffe's Blob::FromProto: num/channels/height/width take precedence over `shape`, and
    # double_data over data.
    blob = (
        field_varint(1, 1)
        + field_varint(2, 1)
        + field_varint(3, 1)
        + field_varint(4, 2)
        + field_bytes(7, field_bytes(1, varint(99)))
        + packed_floats(5, np.array([7.0, 8.0]))
        + packed_floats(8, np.array([1.5, 2.5]), double=True)
    )
    layer = field_bytes(1, b"x") + field_bytes(7, blob)
    blobs = read_caffemodel(field_bytes(100, layer))
    assert blobs["x"][0].dtype == np.float64
    np.testing.assert_array_equal(blobs["x"][0], [[[[1.5, 2.5]]]])


def test_scalar_blob_without_any_shape():
    # No shape and no legacy dims is a 0-axis blob of one value in Caffe.
    blobs = read_caffemodel(field_bytes(100, field_bytes(1, b"s") + field_bytes(7, packed_floats(5, np.array([3.0])))))
    assert blobs["s"][0].shape == () and blobs["s"][0] == 3.0


def test_packed_data_split_over_several_chunks():
    # protobuf lets a packed field come in several pieces; they concatenate.
    values = np.arange(6, dtype=np.float32)
    blob = (
        field_bytes(7, field_bytes(1, varint(2) + varint(3)))
        + packed_floats(5, values[:2])
        + packed_floats(5, values[2:])
    )
    blobs = read_caffemodel(field_bytes(100, field_bytes(1, b"c") + field_bytes(7, blob)))
    np.testing.assert_array_equal(blobs["c"][0], values.reshape(2, 3))


def test_path_and_bytes_give_the_same(tmp_path):
    data = encode_caffemodel(_random_layers(np.random.default_rng(0)))
    path = tmp_path / "m.caffemodel"
    path.write_bytes(data)
    a, b = read_caffemodel(path), read_caffemodel(str(path))
    c = read_caffemodel(data)
    assert list(a) == list(b) == list(c)
    for name in a:
        for x, y in zip(a[name], c[name]):
            np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- hostile input


def _layer_with_blob(blob: bytes, name: bytes = b"bad") -> bytes:
    return field_bytes(100, field_bytes(1, name) + field_bytes(7, blob))


@pytest.mark.parametrize(
    "blob, message",
    [
        (field_bytes(7, field_bytes(1, varint(-3))), "negative"),
        (field_bytes(7, field_bytes(1, varint(2**40) + varint(2**40))), "more than"),
        (field_bytes(7, field_bytes(1, b"".join(varint(1) for _ in range(33)))), "axes"),
        (field_bytes(7, field_bytes(1, varint(2) + varint(3))) + packed_floats(5, np.zeros(5)), "needs 6 values"),
        (field_bytes(7, field_bytes(1, varint(2))) + field_bytes(5, b"\0" * 7), "needs 2 values"),
        (field_varint(1, 10**6) + field_varint(2, 10**6) + field_varint(3, 1) + field_varint(4, 1), "more than"),
        # A zero axis makes the count 0 whatever the others: each axis is bounded too (numpy's
        # reshape used to raise its own ValueError here).
        (field_bytes(7, field_bytes(1, varint(0) + varint(2**62) + varint(2**62))), "an axis of 4611686018427387904"),
        (field_varint(1, 0) + field_varint(2, 2**40) + field_varint(3, 1) + field_varint(4, 1), "an axis of"),
    ],
)
def test_bad_blobs_name_file_and_layer(blob, message):
    with pytest.raises(FormatError, match=message) as info:
        read_caffemodel(_layer_with_blob(blob))
    assert "'bad'" in str(info.value) and "<caffemodel bytes>" in str(info.value)


def test_bad_files(tmp_path):
    one = encode_blob(np.zeros(2, np.float32))
    cases = {
        "empty": b"",
        "not protobuf": b"\xff" * 40,
        "no layers": field_bytes(1, b"name only"),
        "mixed layouts": field_bytes(100, field_bytes(1, b"a")) + field_bytes(2, field_bytes(4, b"b")),
        "duplicate weighted names": _layer_with_blob(one, b"x") + _layer_with_blob(one, b"x"),
        "bad utf-8 name": _layer_with_blob(one, b"\xff\xfe"),
        "unknown v1 type": field_bytes(2, field_bytes(4, b"a") + field_varint(5, 999)),
        "truncated length": field_bytes(100, field_bytes(1, b"a"))[:-1],
    }
    for what, data in cases.items():
        path = tmp_path / "bad.caffemodel"
        path.write_bytes(data)
        with pytest.raises(FormatError) as info:
            read_caffemodel(path)
        assert str(path) in str(info.value), what


def test_blobless_duplicates_are_allowed():
    # A train_val net has a TRAIN and a TEST data layer of the same name, both blobless.
    data = encode_caffemodel(
        [
            CaffeLayerSpec("data", [], "Data"),
            CaffeLayerSpec("data", [], "Data"),
            CaffeLayerSpec("fc", [np.ones((2, 2), np.float32)], "InnerProduct"),
        ]
    )
    assert list(read_caffemodel(data)) == ["data", "fc"]


def _only_format_errors(data: bytes) -> None:
    try:
        read_caffemodel_layers(data)
    except FormatError:
        pass


@pytest.mark.parametrize("layout", ["new", "v1", "v0"])
def test_every_truncation_is_a_format_error_or_clean(layout):
    data = encode_caffemodel(_random_layers(np.random.default_rng(1))[:3], layout=layout)
    for end in range(len(data)):
        _only_format_errors(data[:end])


def test_random_byte_flips_are_format_errors_or_clean():
    rng = np.random.default_rng(2)
    base = np.frombuffer(encode_caffemodel(_random_layers(rng), layout="v1"), np.uint8)
    for _ in range(1500):
        mutated = base.copy()
        where = rng.integers(0, len(base), size=rng.integers(1, 4))
        mutated[where] = rng.integers(0, 256, size=len(where))
        _only_format_errors(mutated.tobytes())
