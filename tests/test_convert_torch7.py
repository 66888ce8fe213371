"""The Torch7 reader: the real fixture files, round trips through the test writer, hostile input."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from dsd_zoo.convert.torch7 import IdentityKey, LuaFunction, TorchObject, read_t7
from dsd_zoo.errors import FormatError

from .conftest import FIXTURES, require
from .formats.t7_writer import (
    T7Function,
    T7Object,
    T7Storage,
    T7Tensor,
    TdsHash,
    TdsVec,
    dumps_t7,
    nn_module,
    shared_parameters,
    write_t7,
)

T7 = FIXTURES / "torch7"


def fixture(name: str):
    return read_t7(require(T7 / name))


# --------------------------------------------------------------------------- real files
# Every expected value below is the one stated for the file in ../shared/fixtures/README.md.


@pytest.mark.fixtures
def test_fixture_tables():
    assert fixture("hello=123.t7") == {"hello": 123}
    assert fixture("list_table.t7") == ["hello", "world", "third item", 123]
    # Not in the README table: keys 0..4 are not 1..n, so a dict (torchfile's test file).
    assert fixture("map_table1.t7") == {0: "zero", 1: "hello", 2: "world", 3: "third item", 4: 123}
    assert fixture("map_table2.t7") == {1: "hello", 2: "world", 3: "third item", 4: 123, "a": "non number key"}


@pytest.mark.fixtures
def test_fixture_tensors():
    double = fixture("doubletensor.t7")
    assert double.dtype == np.float64
    np.testing.assert_array_equal(double, [[1, 2, 3], [4, 5, 6.9]])
    floats = fixture("floattensor.t7")
    assert floats.dtype == np.float32 and floats.flags.writeable
    assert abs(float(floats.astype(np.float64).sum()) - 12.97241666913) <= 1e-5


@pytest.mark.fixtures
def test_fixture_objects_and_cycles():
    blah = fixture("custom_class.t7")
    assert isinstance(blah, TorchObject) and blah.typename == "Blah"
    rec = fixture("recursive_class.t7")
    assert rec.a is rec
    table = fixture("recursive_kv_table.t7")
    ((key, value),) = table.items()
    assert isinstance(key, IdentityKey) and key.value is table and value is table
    assert table[IdentityKey(table)] is table


@pytest.mark.fixtures
def test_fixture_tds():
    hashed = fixture("tds_hash.t7")
    assert isinstance(hashed, dict) and len(hashed) == 3 and hashed[1] == 2 and hashed[10] == 11
    assert fixture("tds_vec.t7") == [123, 456]


@pytest.mark.fixtures
def test_fixture_gmodule():
    g = fixture("gmodule_with_linear_identity.t7")
    assert g.typename == "nn.gModule"
    assert {m.typename for m in g.modules} >= {"nn.Linear", "nn.Identity"}
    linear = next(m for m in g.modules if m.typename == "nn.Linear")
    assert linear.weight.shape == (2, 1) and linear.bias.shape == (2,)
    # The graph nodes hold the very module objects of g.modules (shared references).
    node_modules = [n.data.get("module") for n in g.forwardnodes]
    assert any(m is linear for m in node_modules)
    node = fixture("nngraph_node.t7")
    assert node.typename == "nngraph.Node"


@pytest.mark.fixtures
@pytest.mark.parametrize("name", ["function.t7", "function_upvals.t7"])
def test_fixture_functions_stay_opaque(name):
    fn = fixture(name)
    assert isinstance(fn, LuaFunction) and fn.bytecode.startswith(b"\x1bLJ")  # LuaJIT dump
    if name == "function_upvals.t7":
        assert fn.upvalues == [{"name": "asdf", "value": 123}]


# --------------------------------------------------------------------------- round trips


def test_scalars_strings_and_tables():
    value = {
        "n": 1.5,
        "i": -3,
        "big": 2.0**60,
        "t": True,
        "f": False,
        "s": "héllo",
        "raw": b"\xff\x00",
        "list": [1, "two", [3]],
        7: "seven",
        2.5: "float key",
        "empty": {},
    }
    got = read_t7(dumps_t7(value))
    assert got["n"] == 1.5 and got["i"] == -3 and type(got["i"]) is int
    assert got["big"] == 2.0**60 and type(got["big"]) is float  # beyond 2**53 stays a float
    assert got["t"] is True and got["f"] is False and got["s"] == "héllo"
    assert got["raw"].encode("utf-8", "surrogateescape") == b"\xff\x00"
    assert got["list"] == [1, "two", [3]] and got[7] == "seven" and got[2.5] == "float key"
    assert got["empty"] == []


def test_shared_references_and_cycles():
    shared = {"x": 1}
    cyclic_list = [1, 2]
    cyclic_list.append(cyclic_list)
    module = nn_module("nn.Linear")
    module.fields["self"] = module
    got = read_t7(dumps_t7({"a": shared, "b": shared, "c": cyclic_list, "m": module}))
    assert got["a"] is got["b"]
    # A 1..n table that contains itself stays a dict, so the cycle points at what is returned.
    assert isinstance(got["c"], dict) and got["c"][3] is got["c"] and got["c"][1] == 1
    assert got["m"].self is got["m"] and got["m"]["self"] is got["m"]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("cuda", [False, True])
def test_tensor_dtypes(dtype, cuda):
    array = (np.arange(24).reshape(2, 3, 4) % 100).astype(dtype)
    got = read_t7(dumps_t7(T7Tensor.from_array(array, cuda=cuda)))
    assert got.dtype == dtype and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, array)


def test_strided_views_of_a_shared_storage():
    data = np.arange(40, dtype=np.float32)
    storage = T7Storage(data)
    transposed = T7Tensor(storage, (4, 3), strides=(1, 4), offset=5)  # a transpose view
    tail = T7Tensor(storage, (2, 5), offset=30)
    column = T7Tensor(storage, (5, 1), strides=(2, 999))  # size-1 dims may have any stride
    got = read_t7(dumps_t7([transposed, tail, column, storage]))
    np.testing.assert_array_equal(got[0], data[5:17].reshape(3, 4).T)
    np.testing.assert_array_equal(got[1], data[30:40].reshape(2, 5))
    np.testing.assert_array_equal(got[2], data[0:10:2].reshape(5, 1))
    assert got[0].flags.c_contiguous and got[0].flags.writeable
    got[0][0, 0] = -1  # tensors are independent copies
    assert got[1][0, 0] == 30 and got[3][5] == 5
    assert not got[3].flags.writeable  # a bare storage is a read-only view


def test_empty_and_zero_size_tensors():
    storage = T7Storage(np.zeros(0, np.float32))
    empty, zero = read_t7(dumps_t7([T7Tensor(storage, ()), T7Tensor(storage, (3, 0))]))
    assert empty.shape == (0,) and zero.shape == (3, 0) and zero.dtype == np.float32


def test_fb_resnet_style_module_tree(tmp_path):
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    bn = [rng.standard_normal(8).astype(np.float32) for _ in range(4)]
    lw, lb = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    views = shared_parameters([w1, b1, bn[0], bn[1], lw, lb], cuda=True)
    conv = nn_module(
        "cudnn.SpatialConvolution",
        weight=views[0],
        bias=views[1],
        nInputPlane=3,
        nOutputPlane=8,
        kW=3,
        kH=3,
        dW=1,
        dH=1,
        padW=1,
        padH=1,
    )
    norm = nn_module(
        "nn.SpatialBatchNormalization", weight=views[2], bias=views[3], running_mean=bn[2], running_var=bn[3], eps=1e-5
    )
    branch = nn_module("nn.Sequential", modules=[conv, norm])
    block = nn_module(
        "nn.Sequential",
        modules=[
            nn_module("nn.ConcatTable", modules=[branch, nn_module("nn.Identity")]),
            nn_module("nn.CAddTable"),
            nn_module("cudnn.ReLU"),
        ],
    )
    model = nn_module(
        "nn.Sequential",
        modules=[block, nn_module("nn.View", size=[-1]), nn_module("nn.Linear", weight=views[4], bias=views[5])],
    )
    got = read_t7(write_t7(tmp_path / "model.t7", model))
    assert got.typename == "nn.Sequential" and len(got.modules) == 3
    concat = got.modules[0].modules[0]
    assert concat.typename == "nn.ConcatTable" and concat.modules[1].typename == "nn.Identity"
    rconv, rnorm = concat.modules[0].modules
    assert rconv.typename == "cudnn.SpatialConvolution" and rconv.padW == 1 and rconv.train is False
    np.testing.assert_array_equal(rconv.weight, w1)
    np.testing.assert_array_equal(rconv.bias, b1)
    np.testing.assert_array_equal(rnorm.running_var, bn[3])
    assert rnorm.eps == 1e-5 and rnorm.version == 1
    np.testing.assert_array_equal(got.modules[2].weight, lw)
    assert got.modules[1].size == [-1]
    assert rconv.output.shape == (0,)


def test_tds_functions_and_unversioned_classes():
    fn = T7Function(b"\x1bLJ bytecode", upvalues=[{"name": "x", "value": 1}])
    legacy = T7Function(b"old", upvalues=[5], recursive=False)
    old_class = T7Object("Old", {"v": 1}, version=None)
    got = read_t7(dumps_t7([TdsHash({1: "a", "k": [1]}), TdsVec([None, 2]), fn, fn, legacy, old_class]))
    assert got[0] == {1: "a", "k": [1]} and got[1] == [None, 2]
    assert got[2] is got[3] and got[2].bytecode == b"\x1bLJ bytecode" and got[2].tag == 8
    assert got[4].tag == 6 and got[4].upvalues == [5]
    assert got[5].typename == "Old" and got[5].version == 0 and got[5].v == 1


def test_attribute_errors_are_attribute_errors():
    obj = read_t7(dumps_t7(nn_module("nn.ReLU")))
    with pytest.raises(AttributeError):
        obj.weight
    assert obj.get("weight") is None and "train" in obj and "train" in set(obj.keys())


# --------------------------------------------------------------------------- hostile input


def _tag(n: int) -> bytes:
    return struct.pack("<i", n)


def _torch_header(class_name: str) -> bytes:
    return _tag(4) + _tag(1) + _tag(3) + b"V 1" + _tag(len(class_name)) + class_name.encode()


def _tensor(sizes, strides, offset, storage: bytes) -> bytes:
    return (
        _torch_header("torch.FloatTensor")
        + _tag(len(sizes))
        + b"".join(struct.pack("<q", s) for s in sizes)
        + b"".join(struct.pack("<q", s) for s in strides)
        + struct.pack("<q", offset)
        + storage
    )


def _float_storage(n: int, index: int = 2) -> bytes:
    return (
        _tag(4)
        + _tag(index)
        + _tag(3)
        + b"V 1"
        + _tag(len("torch.FloatStorage"))
        + b"torch.FloatStorage"
        + struct.pack("<q", n)
        + b"\0" * 4 * n
    )


def test_huge_string_length_fails_fast():
    data = _tag(2) + struct.pack("<i", 2**31 - 1) + b"x" * 92  # a 100-byte file
    start = time.perf_counter()
    with pytest.raises(FormatError, match="truncated"):
        read_t7(data)
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize(
    "data, message",
    [
        (_tag(99), "unknown type tag 99"),
        (_tag(3) + _tag(1) + _tag(2**30), "table size"),
        (_tag(3) + _tag(1) + _tag(-1), "table size"),
        (_tag(3) + _tag(1) + _tag(1) + _tag(0) + _tag(0), "key None"),
        (_torch_header("torch.FloatStorage") + struct.pack("<q", 2**60), "FloatStorage size"),
        (_torch_header("tds.Hash") + struct.pack("<q", 2**40), "tds.Hash size"),
        (_tensor([3], [1], 1, _float_storage(2)), "reaches element 3"),
        (_tensor([2], [1], 0, _float_storage(2)), "reaches"),  # offset 0 is before the start
        (_tensor([4, 4], [0, 1], 1, _float_storage(4)), "more elements than its storage"),
        (_tensor([2], [-1], 2, _float_storage(2)), "negative"),
        (_tensor([2], [1], 1, _tag(2) + _tag(1) + b"x"), "needs a torch.FloatStorage"),
        (_tensor([2], [1], 1, _tag(4) + _tag(1)), "reference to the tensor itself"),
        (_tensor([2], [1], 1, _tag(0)), "has no storage"),
        (_tensor([0, 2**62], [1, 1], 1, _tag(0)), "too large"),
        (_tag(4) + _tag(1) + _tag(3) + b"V 1" + _tag(1) + b"A" + _tag(1) + b"\0" * 8, "must be a table"),
        (_tag(1) + b"\0" * 7, "number needs 8 bytes"),
    ],
)
def test_malformed_input(data, message):
    with pytest.raises(FormatError, match=message) as info:
        read_t7(data)
    assert "<t7 bytes>: byte " in str(info.value)


def test_nesting_bomb_is_refused_cleanly():
    depth = 5000
    data = b"".join(_tag(3) + _tag(i + 1) + _tag(1) + _tag(1) + struct.pack("<d", 1.0) for i in range(depth)) + _tag(0)
    with pytest.raises(FormatError, match="nested deeper than 200"):
        read_t7(data)
    assert read_t7(_tag(3) + _tag(1) + _tag(0)) == []


def test_many_tensors_viewing_one_storage_are_a_bounded_copy():
    # 200 views of one 1 MiB storage: a 1 MB file that asked for 200 MiB of copies (and 2 GB with
    # 2,000 views) before the copies were budgeted at 16x the file size, but at least 64 MiB.
    storage = T7Storage(np.zeros(2**18, np.float32))
    with pytest.raises(FormatError, match="too many tensors view the same storage"):
        read_t7(dumps_t7([T7Tensor(storage, (2**18,)) for _ in range(200)]))
    # A few tensors sharing one storage, as shared weights do, still read.
    assert len(read_t7(dumps_t7([T7Tensor(storage, (2**18,)) for _ in range(16)]))) == 16


def _object(index: int, class_name: str, fields: bytes) -> bytes:
    return _tag(4) + _tag(index) + _tag(3) + b"V 1" + _tag(len(class_name)) + class_name.encode() + fields


def test_a_fields_table_shared_by_two_objects_is_refused():
    # Each object copies its fields table; one table of n fields shared by m objects cost n * m
    # (a 0.7 MB file took 3 GB). torch.save writes a new table for every object.
    number = lambda x: _tag(1) + struct.pack("<d", x)  # noqa: E731
    fields = _tag(3) + _tag(2) + _tag(1) + _tag(2) + _tag(1) + b"w" + number(5)  # {w = 5}, index 2
    entries = [
        number(1) + fields,
        number(2) + _object(3, "nn.A", _tag(3) + _tag(2)),
        number(3) + _object(4, "nn.B", _tag(3) + _tag(2)),
    ]
    table, a = read_t7(_tag(3) + _tag(1) + _tag(2) + b"".join(entries[:2]))  # also a plain value: fine
    assert table == {"w": 5} and a.w == 5 and a.fields is not table
    with pytest.raises(FormatError, match="fields of this nn.B object are the table of another object"):
        read_t7(_tag(3) + _tag(1) + _tag(3) + b"".join(entries))


def _only_format_errors(data: bytes) -> None:
    try:
        read_t7(data)
    except FormatError:
        pass


def _small_model() -> bytes:
    rng = np.random.default_rng(1)
    views = shared_parameters(
        [rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(2).astype(np.float32)]
    )
    linear = nn_module("nn.Linear", weight=views[0], bias=views[1])
    linear.fields["me"] = linear
    return dumps_t7(
        nn_module("nn.Sequential", modules=[linear, linear], names=TdsVec(["a"]), f=T7Function(b"code", [1]))
    )


def test_every_truncation_is_a_format_error():
    data = _small_model()
    for end in range(len(data)):
        with pytest.raises(FormatError):
            read_t7(data[:end])


def test_random_byte_flips_are_format_errors_or_clean():
    rng = np.random.default_rng(3)
    base = np.frombuffer(_small_model(), np.uint8)
    for _ in range(1500):
        mutated = base.copy()
        where = rng.integers(0, len(base), size=rng.integers(1, 4))
        mutated[where] = rng.choice([0, 1, 2, 3, 4, 8, 0x7F, 0x80, 0xFF], size=len(where))
        _only_format_errors(mutated.tobytes())
