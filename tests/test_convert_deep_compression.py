"""The Deep Compression .net decoder: the real SqueezeNet file, round trips, hostile input."""

from __future__ import annotations

import numpy as np
import pytest

from dsd_zoo.convert.deep_compression import read_deep_compression
from dsd_zoo.errors import ConversionError, FormatError

from .conftest import FIXTURES, require
from .formats.dc_prototxt import deep_compression_layers, read_deep_compression_prototxt
from .formats.prototxt import parse_prototxt, read_prototxt
from .formats.net_writer import NetLayer, encode_net, random_layer

SQUEEZE = FIXTURES / "squeezenet-deep-compression"


@pytest.fixture(scope="module")
def real():
    net = read_prototxt(require(SQUEEZE / "SqueezeNet_deploy.prototxt"))
    data = require(SQUEEZE / "compressed_SqueezeNet.net").read_bytes()
    return net, data


@pytest.mark.fixtures
def test_real_squeezenet_file(real):
    net, data = real
    # fixtures README: 675,763 bytes, 26 convolutions conv1 ... conv_final, ~33% density.
    assert len(data) == 675_763
    layers = deep_compression_layers(net)
    assert len(layers) == 26 and layers[0][0] == "conv1" and layers[-1][0] == "conv_final"
    decoded = read_deep_compression(data, layers)  # raises unless every byte is consumed
    assert list(decoded) == [name for name, _, _ in layers]
    weights = sum(w.size for w, _ in decoded.values())
    nonzero = sum(int(np.count_nonzero(w)) for w, _ in decoded.values())
    assert weights == 1_244_448  # SqueezeNet v1.0 conv weights (1,248,424 params - 3,976 biases)
    assert 0.32 <= nonzero / weights <= 0.35
    w, b = decoded["fire2/conv3x3_2"]
    assert w.shape == (64, 16, 3, 3) and b.shape == (64,) and w.dtype == np.float32
    assert all(np.isfinite(w).all() and np.abs(w).max() < 10 for w, _ in decoded.values())


@pytest.mark.fixtures
def test_real_file_reencodes_byte_for_byte(real):
    # The test writer, fed the decoded codes, reproduces the release file exactly: the
    # decoder and the writer agree with the original encoder on every field and filler.
    net, data = real
    layers = deep_compression_layers(net)
    decoded = read_deep_compression(data, layers)
    rebuilt, offset = [], 4 * len(layers)
    counts = np.frombuffer(data, "<u4", len(layers))
    for (name, shape, bias_len), nz in zip(layers, counts.tolist()):
        bits = 8 if "conv" in name else 4
        codebook = np.frombuffer(data, "<f4", 2**bits, offset)
        weight, bias = decoded[name]
        order = np.argsort(codebook)  # codebook values are distinct: value -> code is exact
        codes = order[np.searchsorted(codebook[order], weight)].astype(np.uint8)
        rebuilt.append(NetLayer(name, codes, codebook.copy(), bias))
        offset += 4 * (2**bits + bias_len) + (nz * bits + 7) // 8 + (nz + 1) // 2
    assert offset == len(data)
    assert encode_net(rebuilt) == data


@pytest.mark.fixtures
def test_real_file_with_a_byte_more_or_less(real):
    net, data = real
    with pytest.raises(FormatError, match="1 bytes left over"):
        read_deep_compression(data + b"\0", deep_compression_layers(net))
    with pytest.raises(FormatError, match="truncated"):
        read_deep_compression(data[:-1], deep_compression_layers(net))


@pytest.mark.fixtures
def test_prototxt_convenience(tmp_path, real):
    _, data = real
    path = tmp_path / "s.net"
    path.write_bytes(data)
    decoded = read_deep_compression_prototxt(path, SQUEEZE / "SqueezeNet_deploy.prototxt")
    assert decoded["conv_final"][0].shape == (1000, 512, 1, 1)


# --------------------------------------------------------------------------- round trips


def _layers(rng):
    return [
        random_layer("conv1", (8, 3, 3, 3), rng, density=0.04),  # long gaps -> fillers
        random_layer("fire2/conv1x1", (5, 8, 1, 1), rng, density=1.0),
        random_layer("fc6", (7, 13), rng, density=0.5),  # 4-bit codes, odd count
        random_layer("ip2", (3, 5), rng, density=0.0),
    ]  # nothing stored


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    layers = _layers(rng)
    path = tmp_path / "m.net"
    path.write_bytes(encode_net(layers))
    decoded = read_deep_compression(path, [l.layout() for l in layers])
    for layer in layers:
        weight, bias = decoded[layer.name]
        np.testing.assert_array_equal(weight, layer.weight())
        np.testing.assert_array_equal(bias, layer.bias)


def test_layer_list_from_a_prototxt_with_fc_layers():
    net = parse_prototxt("""
      input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
      layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
              convolution_param { num_output: 4 kernel_size: 3 } }
      layer { name: "relu_conv1" type: "ReLU" bottom: "conv1" top: "conv1" }
      layer { name: "pool" type: "Pooling" bottom: "conv1" top: "pool"
              pooling_param { kernel_size: 2 stride: 2 } }
      layer { name: "fc1" type: "InnerProduct" bottom: "pool" top: "fc1"
              inner_product_param { num_output: 6 } }
      layer { name: "classifier" type: "InnerProduct" bottom: "fc1" top: "out"
              inner_product_param { num_output: 2 } }
    """)
    # relu_conv1 has no parameters; "classifier" matches none of conv/fc/ip, as in the
    # original decoder (which walks net.params).
    assert deep_compression_layers(net) == [("conv1", (4, 3, 3, 3), 4), ("fc1", (6, 36), 6)]


def test_layer_without_bias_is_refused():
    net = parse_prototxt(
        'input: "d" input_dim: 1 input_dim: 1 input_dim: 4 input_dim: 4 '
        'layer { name: "conv" type: "Convolution" bottom: "d" top: "c" '
        "convolution_param { num_output: 2 kernel_size: 1 bias_term: false } }"
    )
    with pytest.raises(ConversionError, match="no bias"):
        deep_compression_layers(net)


# --------------------------------------------------------------------------- hostile input


def test_bad_layer_lists_are_value_errors():
    with pytest.raises(ValueError, match="unique"):
        read_deep_compression(b"", [("a", (1,), 1), ("a", (1,), 1)])
    with pytest.raises(ValueError, match="positive"):
        read_deep_compression(b"", [("a", (0, 3), 1)])


def test_bad_layer_lists_from_a_prototxt_are_conversion_errors():
    # From a file, not from the caller: the package's own error, naming the problem.
    two_convs = (
        'input: "d" input_dim: 1 input_dim: {c} input_dim: 4 input_dim: 4 '
        'layer {{ name: "conv1" type: "Convolution" bottom: "d" top: "a" convolution_param {{ num_output: 1 kernel_size: 1 }} }} '
        'layer {{ name: "conv{second}" type: "Convolution" bottom: "a" top: "b" convolution_param {{ num_output: 1 kernel_size: 1 }} }}'
    )
    with pytest.raises(ConversionError, match="unique"):
        read_deep_compression_prototxt(b"", parse_prototxt(two_convs.format(c=1, second=1)))
    with pytest.raises(ConversionError, match="positive"):
        read_deep_compression_prototxt(b"", parse_prototxt(two_convs.format(c=0, second=2)))


def test_a_layer_list_cannot_make_a_tiny_file_allocate_gigabytes():
    # 16 weights per stored entry at most (4-bit gaps), plus a bounded run of zeros at the end:
    # a 2**28-weight layer backed by 10 entries is refused before anything is allocated.
    rng = np.random.default_rng(3)
    layer = random_layer("conv1", (2, 5), rng, density=1.0)
    data = encode_net([layer])
    assert read_deep_compression(data, [layer.layout()])  # the real size is fine
    with pytest.raises(FormatError, match=r"has 268435456 elements but the file stores only 10 entries"):
        read_deep_compression(data, [("conv1", (2**14, 2**14), 10)])


def test_corrupt_fields():
    rng = np.random.default_rng(1)
    layer = random_layer("conv1", (4, 2, 3, 3), rng, density=0.5)
    layout = [layer.layout()]
    good = bytearray(encode_net([layer]))

    bad_codebook = good.copy()
    bad_codebook[4:8] = np.float32(0.5).tobytes()
    with pytest.raises(FormatError, match=r"codebook\[0\]"):
        read_deep_compression(bytes(bad_codebook), layout)

    nan_bias = good.copy()
    nan_bias[4 + 4 * 256 : 8 + 4 * 256] = np.float32(np.nan).tobytes()
    with pytest.raises(FormatError, match="NaN"):
        read_deep_compression(bytes(nan_bias), layout)

    too_many = good.copy()
    too_many[0:4] = np.uint32(73).tobytes()
    with pytest.raises(FormatError, match="stores 73 entries"):
        read_deep_compression(bytes(too_many), layout)

    far_gaps = good.copy()
    far_gaps[-1] = 0xFF  # the last gap jumps past the end of the weight
    with pytest.raises(FormatError, match="past the 72 weights"):
        read_deep_compression(bytes(far_gaps), layout)


def _only_format_errors(data: bytes, layout) -> None:
    try:
        read_deep_compression(data, layout)
    except FormatError:
        pass


def test_every_truncation_and_random_flips():
    rng = np.random.default_rng(2)
    layers = _layers(rng)
    layout = [l.layout() for l in layers]
    data = encode_net(layers)
    for end in range(len(data)):
        with pytest.raises(FormatError):
            read_deep_compression(data[:end], layout)
    base = np.frombuffer(data, np.uint8)
    for _ in range(1000):
        mutated = base.copy()
        where = rng.integers(0, len(base), size=rng.integers(1, 4))
        mutated[where] = rng.integers(0, 256, size=len(where))
        _only_format_errors(mutated.tobytes(), layout)
