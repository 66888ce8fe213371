"""Reader of binary Caffe models (``.caffemodel``).

A ``.caffemodel`` is one serialised ``caffe.NetParameter`` protobuf message. This module
parses it with the ``protobuf`` package and a schema of its own, built in code, that
declares only the fields needed to get at the weights; protobuf skips every other field.
Three layouts are read, as Caffe itself does:

* new (2015+): ``NetParameter.layer`` (field 100) of ``LayerParameter``: name 1, type 2
  (a string such as ``"Convolution"``), bottom 3, top 4, blobs 7;
* legacy V1 (2014): ``NetParameter.layers`` (field 2) of ``V1LayerParameter``: bottom 2,
  top 3, name 4, type 5 (an enum such as ``CONVOLUTION``), blobs 6;
* legacy V0 (2013): a V1 entry whose field 1 holds a ``V0LayerParameter`` with name 1,
  type 2 (a string such as ``"conv"``) and blobs 50.

Layer types are reported with their modern names (``"Convolution"``, ``"InnerProduct"``),
whatever the layout.

A ``BlobProto`` gives its shape either as ``shape`` (field 7, a ``BlobShape`` whose ``dim``
field 1 is packed int64) or as the legacy ``num``/``channels``/``height``/``width`` (fields
1-4; Caffe prefers these when any is present, and so does this reader). Values are packed
``float`` in ``data`` (field 5) or packed ``double`` in ``double_data`` (field 8; used
instead of ``data`` when present, as Caffe does). Float blobs come back as ``float32``
arrays and double blobs as ``float64`` arrays: nothing is rounded here, callers cast.

The packed value fields are declared as ``bytes`` in the private schema (a packed repeated
field has the same wire encoding as a length-delimited byte string), so the values go from
the file to numpy with ``numpy.frombuffer`` and never become Python floats: a 550 MB VGG16
model is read in seconds.
"""

from __future__ import annotations

import collections
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import FormatError

__all__ = ["CaffeLayer", "V1_LAYER_TYPES", "read_caffemodel", "read_caffemodel_layers"]

#: Legacy ``V1LayerParameter.LayerType`` enum names -> current type strings
#: (Caffe's ``UpgradeV1LayerType``).
V1_LAYER_TYPES: dict[str, str] = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]

#: Caffe's own limits (``Blob::Reshape``): at most 32 axes, at most INT_MAX elements.
_MAX_AXES = 32
_MAX_COUNT = 2**31 - 1
#: protobuf cannot represent a message of 2 GiB or more, so neither can Caffe.
_MAX_FILE_BYTES = 2**31 - 1

#: ``V1LayerParameter.LayerType`` enum numbers -> enum names (caffe.proto).
_V1_TYPE_IDS = {
    0: "NONE",
    1: "ACCURACY",
    2: "BNLL",
    3: "CONCAT",
    4: "CONVOLUTION",
    5: "DATA",
    6: "DROPOUT",
    7: "EUCLIDEAN_LOSS",
    8: "FLATTEN",
    9: "HDF5_DATA",
    10: "HDF5_OUTPUT",
    11: "IM2COL",
    12: "IMAGE_DATA",
    13: "INFOGAIN_LOSS",
    14: "INNER_PRODUCT",
    15: "LRN",
    16: "MULTINOMIAL_LOGISTIC_LOSS",
    17: "POOLING",
    18: "RELU",
    19: "SIGMOID",
    20: "SOFTMAX",
    21: "SOFTMAX_LOSS",
    22: "SPLIT",
    23: "TANH",
    24: "WINDOW_DATA",
    25: "ELTWISE",
    26: "POWER",
    27: "SIGMOID_CROSS_ENTROPY_LOSS",
    28: "HINGE_LOSS",
    29: "MEMORY_DATA",
    30: "ARGMAX",
    31: "THRESHOLD",
    32: "DUMMY_DATA",
    33: "SLICE",
    34: "MVN",
    35: "ABSVAL",
    36: "SILENCE",
    37: "CONTRASTIVE_LOSS",
    38: "EXP",
    39: "DECONVOLUTION",
}

#: V0 layer type strings -> modern names (Caffe's ``UpgradeV0LayerType``); others pass through.
_V0_TYPES = {
    "accuracy": "Accuracy",
    "bnll": "BNLL",
    "concat": "Concat",
    "conv": "Convolution",
    "data": "Data",
    "dropout": "Dropout",
    "euclidean_loss": "EuclideanLoss",
    "flatten": "Flatten",
    "hdf5_data": "HDF5Data",
    "hdf5_output": "HDF5Output",
    "im2col": "Im2col",
    "images": "ImageData",
    "infogain_loss": "InfogainLoss",
    "innerproduct": "InnerProduct",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MultinomialLogisticLoss",
    "pool": "Pooling",
    "relu": "ReLU",
    "sigmoid": "Sigmoid",
    "softmax": "Softmax",
    "softmax_loss": "SoftmaxWithLoss",
    "split": "Split",
    "tanh": "TanH",
    "window_data": "WindowData",
}


@dataclass(frozen=True)
class CaffeLayer:
    """One layer of a ``.caffemodel``.

    Attributes:
        name: the layer name (``"conv1"``).
        type: the modern Caffe type name (``"Convolution"``), also for V1/V0 files.
        bottom: names of the input blobs.
        top: names of the output blobs.
        blobs: the learned parameters in file order (for Convolution/InnerProduct:
            weight, then bias), ``float32`` or ``float64`` arrays of the stored shape.
    """

    name: str
    type: str
    bottom: tuple[str, ...]
    top: tuple[str, ...]
    blobs: list[np.ndarray]


def read_caffemodel_layers(source: Source) -> list[CaffeLayer]:
    """Read every layer of a ``.caffemodel``, in file order.

    Args:
        source: a path, or the file's bytes.

    Returns:
        One :class:`CaffeLayer` per layer, including layers without blobs.

    Raises:
        FormatError: the bytes are not a Caffe ``NetParameter``, a blob's value count does
            not match its shape, a shape is negative or too large, the file mixes the new
            and legacy layouts, or two layers with blobs share a name. The message names
            the file and the layer.
        OSError: the file cannot be read.
        ImportError: ``protobuf`` is not installed (``pip install 'dsd-zoo[convert]'``).
    """
    data, where = _load(source)
    net = _parse(data, where)
    layers = _layers(net, where)
    _check_unique(layers, where)
    return layers


def read_caffemodel(source: Source) -> dict[str, list[np.ndarray]]:
    """Read the blobs of every layer of a ``.caffemodel``.

    Args:
        source: a path, or the file's bytes.

    Returns:
        Layer name -> its blobs in file order (an empty list for layers without
        parameters), in file order. Float blobs are ``float32``, double blobs ``float64``.

    Raises:
        FormatError: see :func:`read_caffemodel_layers`.
        OSError: the file cannot be read.
    """
    return {layer.name: layer.blobs for layer in read_caffemodel_layers(source)}


def _load(source: Source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        where, size = "<caffemodel bytes>", memoryview(source).nbytes
    else:
        where, size = str(source), Path(source).stat().st_size  # measured before the file is read
    if size > _MAX_FILE_BYTES:
        raise FormatError(f"{where}: {size} bytes is more than a protobuf message can hold; this is not a .caffemodel")
    return bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes(), where


def _parse(data: bytes, where: str) -> Any:
    try:
        from google.protobuf.message import DecodeError
    except ImportError as exc:  # an optional dependency: say how to get it
        raise ImportError("reading a .caffemodel needs the protobuf package: pip install 'dsd-zoo[convert]'") from exc

    net = _net_parameter_class()()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise FormatError(
            f"{where}: not a valid Caffe NetParameter protobuf ({exc}); the file "
            "is truncated, corrupt or not a .caffemodel"
        ) from None
    return net


def _layers(net: Any, where: str) -> list[CaffeLayer]:
    if len(net.layer) and len(net.layers):
        raise FormatError(
            f"{where}: the net has both new-style 'layer' and legacy 'layers' "
            "entries, which Caffe refuses to load; the file is corrupt"
        )
    if not len(net.layer) and not len(net.layers):
        raise FormatError(f"{where}: no layers found; this is not a .caffemodel (or it is empty)")
    new = len(net.layer) > 0
    return [_layer(lp, i, new, where) for i, lp in enumerate(net.layer if new else net.layers)]


def _layer(lp: Any, index: int, new: bool, where: str) -> CaffeLayer:
    # new: lp is a LayerParameter; else a V1LayerParameter, which may hold a V0 layer.
    v0 = not new and lp.HasField("layer")
    own = lp.layer if v0 else lp  # V0 keeps name, type and blobs in a nested message
    name = _text(own.name, where, f"layer #{index} name")
    if new or v0:
        raw_type = _text(own.type, where, f"layer {name!r} type")
        type_ = _V0_TYPES.get(raw_type, raw_type) if v0 else raw_type
    elif lp.type in _V1_TYPE_IDS:
        type_ = V1_LAYER_TYPES.get(_V1_TYPE_IDS[lp.type], "")
    else:
        raise FormatError(f"{where}: layer {name!r} has unknown V1 layer type {lp.type}")
    bottom = tuple(_text(b, where, f"layer {name!r} bottom") for b in lp.bottom)
    top = tuple(_text(t, where, f"layer {name!r} top") for t in lp.top)
    blobs = [_blob_array(blob, where, name, j) for j, blob in enumerate(own.blobs)]
    return CaffeLayer(name, type_, bottom, top, blobs)


def _text(raw: bytes, where: str, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{where}: {what} is not valid UTF-8 ({raw[:40]!r}); the file is corrupt") from None


def _blob_array(blob: Any, where: str, layer: str, index: int) -> np.ndarray:
    what = f"{where}: layer {layer!r} blob {index}"
    legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
    shape = [blob.num, blob.channels, blob.height, blob.width] if legacy else list(blob.shape.dim)
    if len(shape) > _MAX_AXES:
        raise FormatError(f"{what}: {len(shape)} axes (Caffe allows at most {_MAX_AXES})")
    if any(d < 0 for d in shape):
        raise FormatError(f"{what}: negative dimension in shape {tuple(shape)}")
    count = math.prod(shape)
    # Each axis too: with a 0 beside them, huge axes give a count of 0 that proves nothing.
    if count > _MAX_COUNT or any(d > _MAX_COUNT for d in shape):
        size = f"{count} elements" if count > _MAX_COUNT else f"an axis of {max(shape)}"
        raise FormatError(f"{what}: shape {tuple(shape)} has {size}, more than Caffe allows ({_MAX_COUNT})")
    double = len(blob.double_data) > 0
    dtype = np.dtype("<f8" if double else "<f4")
    raw = b"".join(blob.double_data if double else blob.data)
    if len(raw) % dtype.itemsize or len(raw) // dtype.itemsize != count:
        raise FormatError(
            f"{what}: shape {tuple(shape)} needs {count} values but the blob "
            f"stores {len(raw) / dtype.itemsize:g} {dtype.name} values; "
            "the file is corrupt"
        )
    # astype copies: the caller gets a writable array that does not pin the file's bytes.
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(shape)


def _check_unique(layers: list[CaffeLayer], where: str) -> None:
    # Blobless duplicates (e.g. a TRAIN and a TEST data layer) are harmless; two weighted
    # layers with one name would make the name -> blobs mapping ambiguous.
    counts = collections.Counter(layer.name for layer in layers)
    for layer in layers:
        if layer.blobs and counts[layer.name] > 1:
            raise FormatError(
                f"{where}: two layers named {layer.name!r} carry blobs; cannot tell which weights belong to which"
            )


#: The private schema: message -> (field, number, repeated, type), the type a scalar type or another
#: message of the schema. Strings are declared as bytes so that UTF-8 is checked here, with a useful
#: message; V1's type enum as int32, which has the same wire encoding and never rejects values.
_SCHEMA = {
    "BlobShape": [("dim", 1, True, "int64")],
    "BlobProto": [
        ("num", 1, False, "int64"),
        ("channels", 2, False, "int64"),
        ("height", 3, False, "int64"),
        ("width", 4, False, "int64"),
        ("data", 5, True, "bytes"),
        ("shape", 7, False, "BlobShape"),
        ("double_data", 8, True, "bytes"),
    ],
    "LayerParameter": [
        ("name", 1, False, "bytes"),
        ("type", 2, False, "bytes"),
        ("bottom", 3, True, "bytes"),
        ("top", 4, True, "bytes"),
        ("blobs", 7, True, "BlobProto"),
    ],
    "V0LayerParameter": [("name", 1, False, "bytes"), ("type", 2, False, "bytes"), ("blobs", 50, True, "BlobProto")],
    "V1LayerParameter": [
        ("layer", 1, False, "V0LayerParameter"),
        ("bottom", 2, True, "bytes"),
        ("top", 3, True, "bytes"),
        ("name", 4, False, "bytes"),
        ("type", 5, False, "int32"),
        ("blobs", 6, True, "BlobProto"),
    ],
    "NetParameter": [
        ("name", 1, False, "bytes"),
        ("layers", 2, True, "V1LayerParameter"),
        ("layer", 100, True, "LayerParameter"),
    ],
}


@functools.lru_cache(maxsize=None)
def _net_parameter_class() -> type:
    """Build the minimal ``NetParameter`` schema in a private descriptor pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fd = descriptor_pb2.FieldDescriptorProto
    package = "dsd_zoo_caffe_min"
    file_proto = descriptor_pb2.FileDescriptorProto(name="dsd_zoo_caffe_min.proto", package=package, syntax="proto2")
    for name, fields in _SCHEMA.items():
        message = file_proto.message_type.add(name=name)
        for field_name, number, repeated, type_ in fields:
            label = fd.LABEL_REPEATED if repeated else fd.LABEL_OPTIONAL
            field = message.field.add(name=field_name, number=number, label=label)
            if type_ in _SCHEMA:
                field.type, field.type_name = fd.TYPE_MESSAGE, f".{package}.{type_}"
            else:
                field.type = getattr(fd, f"TYPE_{type_.upper()}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName(f"{package}.NetParameter")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)
