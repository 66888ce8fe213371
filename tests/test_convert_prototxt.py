"""The prototxt parser, layer specs with Caffe defaults, and blob-shape propagation."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from .formats.prototxt import LayerSpec, Message, layer_specs, net_layers, param_shapes, parse_prototxt, read_prototxt
from dsd_zoo.errors import ConversionError, FormatError

from .conftest import FIXTURES, RELEASE, require

# --------------------------------------------------------------------------- parser


def test_values_and_repetition():
    msg = parse_prototxt("""
        # a comment
        name: "Net"  # trailing comment
        input_dim: 1 input_dim: 3
        layer { name: 'a' type: "Convolution" bottom: "x" top: "y" }
        layer: { name: "b" }
        sub < k: -2 >;
        floats: 1e-4, floats: .5 floats: 0.75f floats: -inf floats: nan floats: 3.
        ints: 0x1F ints: 017 ints: -7 ints: 0
        enum: MAX flag: true off: false
        text: "tab\\there" "\\x41\\101\\"q\\"" 'it\\'s'
        list: [1, 2, 3] empty: [] msgs: [{a: 1}, {a: 2}]
    """)
    assert msg.get("name") == "Net"
    assert msg.getall("input_dim") == [1, 3]
    layers = msg.getall("layer")
    assert [m.get("name") for m in layers] == ["a", "b"]
    assert layers[0].get("type") == "Convolution" and layers[0].getall("top") == ["y"]
    assert msg.get("sub").get("k") == -2
    floats = msg.getall("floats")
    assert floats[:3] == [1e-4, 0.5, 0.75] and floats[3] == -math.inf and math.isnan(floats[4])
    assert floats[5] == 3.0 and isinstance(floats[5], float)
    assert msg.getall("ints") == [31, 15, -7, 0] and all(type(v) is int for v in msg.getall("ints"))
    assert msg.get("enum") == "MAX" and msg.get("flag") is True and msg.get("off") is False
    assert msg.get("text") == "tab\there" + 'AA"q"' + "it's"
    assert msg.getall("list") == [1, 2, 3] and "empty" not in msg
    assert [m.get("a") for m in msg.getall("msgs")] == [1, 2]
    assert msg.get("missing") is None and msg.get("missing", 5) == 5 and msg.getall("missing") == []


def test_message_equality_and_items():
    a = parse_prototxt("x: 1 y { z: 2 } x: 3")
    assert a == Message({"x": [1, 3], "y": [Message({"z": [2]})]})
    assert [k for k, _ in a.items()] == ["x", "y"] and list(a) == ["x", "y"]


@pytest.mark.parametrize(
    "text, where",
    [
        ("layer {", "missing"),
        ("layer { name: }", "line 1, column 15"),
        ('name "x"', "expected ':'"),
        ("a: 1 }", "field name"),
        ("a: @", "unexpected character"),
        ('a: "unterminated', "unexpected character"),
        ("a: [1 2]", "in a list"),
        ('a: "\\q"', "unknown escape"),
        ('a: "\\777"', "above 255"),
        ("a: -MAX", "expected a value"),
        ("\n\n  b: {c: 1}}", "line 3"),
    ],
)
def test_syntax_errors_say_where(text, where):
    with pytest.raises(FormatError, match=where):
        parse_prototxt(text)


def test_nesting_bomb_is_refused():
    with pytest.raises(FormatError, match="nested"):
        parse_prototxt("a {" * 10_000 + "}" * 10_000)


@pytest.mark.parametrize(
    "text", ["a: " + "1" * 5000, "a: -0" + "7" * 5000, "a: 0x" + "f" * 5000], ids=["decimal", "octal", "hex"]
)
def test_overlong_integer_literals_are_format_errors(text):
    # Python's int() refuses more than 4300 decimal digits with a bare ValueError.
    with pytest.raises(FormatError, match="line 1, column 4: integer literal .* out of range"):
        parse_prototxt(text)


def test_long_digit_runs_and_escapes_parse_in_linear_time():
    start = time.perf_counter()
    # A lookahead after the number pattern backtracked through every prefix: about 50 s here.
    with pytest.raises(FormatError, match="malformed number '11"):
        parse_prototxt("a: " + "1" * 50_000 + "x")
    # Each escape sliced off the rest of the string: gigabytes of copies for this one.
    assert parse_prototxt('a: "' + "\\1" * 200_000 + '"').get("a") == "\x01" * 200_000
    # Adjacent literals ("a" "b" is "ab") were joined one by one: 3.6 MB took 15 s.
    assert parse_prototxt("a: " + '"x"' * 100_000).get("a") == "x" * 100_000
    assert time.perf_counter() - start < 3  # about 0.5 s once linear


def test_a_lone_surrogate_in_text_is_a_format_error():
    # Only text given as str can hold one (files are decoded strictly).
    with pytest.raises(FormatError, match="lone surrogate"):
        parse_prototxt('name: "\udc80"')


def test_line_and_column_are_computed_only_for_errors(monkeypatch):
    # Computing them scans the text from its start; once per value made a 1 MB prototxt take minutes.
    from .formats import prototxt

    calls = []
    real = prototxt._where
    monkeypatch.setattr(prototxt, "_where", lambda text, pos: calls.append(pos) or real(text, pos))
    assert len(parse_prototxt('a: 1 b: "x" c: MAX d: 2.5\n' * 100).getall("a")) == 100
    assert calls == []
    with pytest.raises(FormatError, match="line 101, column 4"):
        parse_prototxt("a: 1\n" * 100 + "a: @")


_SMALL_NET = b"""input: "data" input_dim: 1 input_dim: 3 input_dim: 9 input_dim: 9
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 group: 1 } }
layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 2 } }
layer { name: "cat" type: "Concat" bottom: "p" bottom: "p" top: "cat" }
layer { name: "fc" type: "InnerProduct" bottom: "cat" top: "fc" inner_product_param { num_output: 2 } }
"""


def test_random_mutations_only_raise_format_error():
    base = _SMALL_NET
    # conv keeps 9x9 (pad 1); pooling 2 with the default stride 1 gives 8x8; concat 4 + 4.
    assert param_shapes(parse_prototxt(base.decode()))["fc"][0] == (2, 8 * 8 * 8)
    rng = np.random.default_rng(0)
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(0, len(data))] = int(rng.choice(list(b'{}:"#\\ \n-0a[],<>')))
        try:
            net = parse_prototxt(data.decode("utf-8", "replace"))
            layer_specs(net)
            param_shapes(net)
        except (FormatError, ConversionError):
            pass


# --------------------------------------------------------------------------- layer specs


def test_defaults_and_alternative_spellings():
    net = parse_prototxt("""
      layer { name: "c" type: "Convolution" convolution_param { num_output: 8 kernel_size: 3 } }
      layer { name: "r" type: "Convolution"
              convolution_param { num_output: 8 kernel_size: 3 kernel_size: 5 stride: 2 stride: 1
                                  pad: 1 pad: 2 group: 2 bias_term: false dilation: 2 } }
      layer { name: "hw" type: "Convolution"
              convolution_param { num_output: 4 kernel_h: 1 kernel_w: 7 pad_h: 0 pad_w: 3
                                  stride_h: 1 stride_w: 2 } }
      layer { name: "p" type: "Pooling" pooling_param { pool: AVE kernel_size: 3 } }
      layer { name: "g" type: "Pooling" pooling_param { pool: AVE global_pooling: true } }
      layer { name: "n" type: "LRN" }
      layer { name: "f" type: "InnerProduct" inner_product_param { num_output: 10 } }
      layer { name: "x" type: "ReLU" }
    """)
    specs = {s.name: s for s in layer_specs(net)}
    assert list(specs) == ["c", "r", "hw", "p", "g", "n", "f"]
    c = specs["c"]
    # Caffe's defaults (caffe.proto): stride 1, pad 0, dilation 1, group 1, bias_term true.
    assert (c.kernel_size, c.stride, c.pad, c.dilation, c.group, c.bias_term) == (
        (3, 3),
        (1, 1),
        (0, 0),
        (1, 1),
        1,
        True,
    )
    r = specs["r"]
    assert (r.kernel_size, r.stride, r.pad, r.group, r.bias_term, r.dilation) == (
        (3, 5),
        (2, 1),
        (1, 2),
        2,
        False,
        (2, 2),
    )
    assert (specs["hw"].kernel_size, specs["hw"].pad, specs["hw"].stride) == ((1, 7), (0, 3), (1, 2))
    p = specs["p"]
    assert (p.pool, p.kernel_size, p.stride, p.pad, p.global_pooling, p.round_mode) == (
        "AVE",
        (3, 3),
        (1, 1),
        (0, 0),
        False,
        "CEIL",
    )
    assert specs["g"].global_pooling and specs["g"].kernel_size is None
    n = specs["n"]  # LRNParameter defaults: local_size 5, alpha 1, beta 0.75, k 1
    assert (n.local_size, n.alpha, n.beta, n.k, n.norm_region) == (5, 1.0, 0.75, 1.0, "ACROSS_CHANNELS")
    f = specs["f"]
    assert (f.num_output, f.bias_term, f.axis, f.transpose, f.kernel_size) == (10, True, 1, False, None)


def test_v1_layers():
    net = parse_prototxt("""
      layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
               blobs_lr: 1 convolution_param { num_output: 96 kernel_size: 11 stride: 4 } }
      layers { name: "relu1" type: RELU }
      layers { name: "pool1" type: POOLING pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
      layers { name: "norm1" type: LRN lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
      layers { name: "fc6" type: INNER_PRODUCT inner_product_param { num_output: 4096 } }
    """)
    assert [(s.name, s.type) for s in layer_specs(net)] == [
        ("conv1", "Convolution"),
        ("pool1", "Pooling"),
        ("norm1", "LRN"),
        ("fc6", "InnerProduct"),
    ]
    assert layer_specs(net)[0].stride == (4, 4)


@pytest.mark.parametrize(
    "body",
    [
        'type: "Convolution" convolution_param { kernel_size: 3 }',
        'type: "Convolution" convolution_param { num_output: 4 }',
        'type: "Convolution" convolution_param { num_output: 4 kernel_size: 3 kernel_h: 3 kernel_w: 3 }',
        'type: "Convolution" convolution_param { num_output: 4 kernel_h: 3 }',
        'type: "Convolution" convolution_param { num_output: 4 kernel_size: 1 kernel_size: 2 kernel_size: 3 }',
        'type: "Convolution" convolution_param { num_output: 4 kernel_size: 0 }',
        'type: "Convolution" convolution_param { num_output: "4" kernel_size: 3 }',
        'type: "Pooling" pooling_param { kernel_size: 2 kernel_size: 3 }',
        'type: "Pooling" pooling_param { pool: MAX }',
        'type: "Pooling" pooling_param { global_pooling: true kernel_size: 2 }',
        'type: "Pooling" pooling_param { kernel_size: 2 pool: MEDIAN }',
        'type: "LRN" lrn_param { alpha: "x" }',
        'type: "InnerProduct" inner_product_param { num_output: 4 bias_term: 2 }',
    ],
)
def test_invalid_parameters_are_refused(body):
    with pytest.raises(FormatError, match="'bad'"):
        layer_specs(parse_prototxt(f'layer {{ name: "bad" {body} }}'))


def test_phase_filter():
    net = parse_prototxt("""
      layer { name: "d" type: "Data" include { phase: TRAIN } }
      layer { name: "d" type: "Data" include { phase: TEST } }
      layer { name: "acc" type: "Accuracy" exclude { phase: TRAIN } }
      layer { name: "c" type: "ReLU" }
    """)
    assert [m.get("name") for m in net_layers(net, "TRAIN")] == ["d", "c"]
    assert [m.get("name") for m in net_layers(net, "TEST")] == ["d", "acc", "c"]
    assert len(net_layers(net)) == 4


# --------------------------------------------------------------------------- release files

# Parameter totals with biases: shared/reference/architectures.md section 7.
RELEASE_TOTALS = {
    "AlexNet/train_val.prototxt": (227, 60_965_224, 5, 3),
    "VGG16/train_val.prototxt": (224, 138_357_544, 13, 3),
    "GoogleNet/train_val.prototxt": (224, 13_378_280, 59, 5),
    "SqueezeNet/trainval.prototxt": (227, 1_248_424, 26, 0),
}


@pytest.mark.fixtures
@pytest.mark.parametrize("relpath", sorted(RELEASE_TOTALS))
def test_release_prototxts(relpath):
    size, total, convs, fcs = RELEASE_TOTALS[relpath]
    net = read_prototxt(require(RELEASE / relpath))
    specs = layer_specs(net, phase="TEST")
    assert sum(s.type == "Convolution" for s in specs) == convs
    assert sum(s.type == "InnerProduct" for s in specs) == fcs
    shapes = param_shapes(net, {"data": (1, 3, size, size)})
    assert sum(math.prod(s) for blobs in shapes.values() for s in blobs) == total


@pytest.mark.fixtures
def test_alexnet_specs_match_the_published_architecture():
    net = read_prototxt(require(RELEASE / "AlexNet" / "train_val.prototxt"))
    specs = {s.name: s for s in layer_specs(net)}
    # architectures.md section 4: AlexNet conv2 is grouped (256, 48, 5, 5), pad 2; LRN 5/1e-4/0.75.
    assert specs["conv1"] == LayerSpec(
        "conv1",
        "Convolution",
        ("data",),
        ("conv1",),
        num_output=96,
        bias_term=True,
        kernel_size=(11, 11),
        stride=(4, 4),
        pad=(0, 0),
        dilation=(1, 1),
        group=1,
    )
    assert (specs["conv2"].group, specs["conv2"].pad) == (2, (2, 2))
    assert (specs["norm1"].local_size, specs["norm1"].alpha, specs["norm1"].beta) == (5, 1e-4, 0.75)
    assert (specs["pool5"].kernel_size, specs["pool5"].stride) == ((3, 3), (2, 2))
    shapes = param_shapes(net, {"data": (10, 3, 227, 227)})
    assert shapes["conv2"] == [(256, 48, 5, 5), (256,)]
    assert shapes["fc6"] == [(4096, 9216), (4096,)]  # 256 x 6 x 6 after pool5


@pytest.mark.fixtures
def test_googlenet_pooling_rounds_up_and_concat_adds_channels():
    net = read_prototxt(require(RELEASE / "GoogleNet" / "train_val.prototxt"))
    shapes = param_shapes(net, {"data": (1, 3, 224, 224)})
    # architectures.md: inception_3a output is 64+128+32+32 = 256 channels; the aux fc sees
    # 128 x 4 x 4 = 2048 features; the main classifier sees 1024.
    assert shapes["inception_3b/1x1"][0] == (128, 256, 1, 1)
    assert shapes["loss1/fc"][0] == (1024, 2048)
    assert shapes["loss3/classifier"][0] == (1000, 1024)


@pytest.mark.fixtures
def test_squeezenet_deploy_input_declaration():
    net = read_prototxt(require(FIXTURES / "squeezenet-deep-compression" / "SqueezeNet_deploy.prototxt"))
    shapes = param_shapes(net)  # shape from `input_dim: 1 3 227 227`
    assert shapes["conv1"] == [(96, 3, 7, 7), (96,)]
    assert shapes["fire3/conv1x1_1"] == [(16, 128, 1, 1), (16,)]  # concat of 64 + 64
    assert shapes["conv_final"] == [(1000, 512, 1, 1), (1000,)]


def test_unknown_input_shape_is_a_clear_error():
    net = parse_prototxt(
        'layer { name: "d" type: "Data" top: "data" }'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
        "inner_product_param { num_output: 3 } }"
    )
    with pytest.raises(ConversionError, match="input_shapes"):
        param_shapes(net)
    assert param_shapes(net, {"data": (2, 3, 4, 5)}) == {"fc": [(3, 60), (3,)]}


def test_caffe_pooling_shape_rule():
    # pooling_layer.cpp: out = ceil((in + 2p - k) / s) + 1, minus 1 when p > 0 and the last
    # window would start in the padding. k2 s2 p1: 6 -> 4, 5 -> 3 (ceil alone gives 4).
    # k3 s2 p0: 14 -> 7 (floor would give 6), 13 -> 6.
    net = parse_prototxt("""
      input: "a" input_dim: 1 input_dim: 1 input_dim: 6 input_dim: 5
      input: "b" input_dim: 1 input_dim: 1 input_dim: 14 input_dim: 13
      layer { name: "pa" type: "Pooling" bottom: "a" top: "pa"
              pooling_param { kernel_size: 2 stride: 2 pad: 1 } }
      layer { name: "pb" type: "Pooling" bottom: "b" top: "pb"
              pooling_param { kernel_size: 3 stride: 2 } }
      layer { name: "fa" type: "InnerProduct" bottom: "pa" top: "fa"
              inner_product_param { num_output: 1 } }
      layer { name: "fb" type: "InnerProduct" bottom: "pb" top: "fb"
              inner_product_param { num_output: 1 } }
    """)
    shapes = param_shapes(net)
    assert shapes["fa"][0] == (1, 4 * 3) and shapes["fb"][0] == (1, 7 * 6)
