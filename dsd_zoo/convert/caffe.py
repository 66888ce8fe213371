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

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

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
        data, where = bytes(source), "<caffemodel bytes>"
    else:
        path = Path(source)
        where = str(path)
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise FormatError(
                f"{where}: {size} bytes is more than a protobuf message can hold; this is not a .caffemodel"
            )
        data = path.read_bytes()
    if len(data) > _MAX_FILE_BYTES:
        raise FormatError(
            f"{where}: {len(data)} bytes is more than a protobuf message can hold; this is not a .caffemodel"
        )
    return data, where


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
    out = []
    if len(net.layer):
        for i, lp in enumerate(net.layer):
            name = _text(lp.name, where, f"layer #{i} name")
            out.append(_layer(name, _text(lp.type, where, f"layer {name!r} type"), lp.bottom, lp.top, lp.blobs, where))
    else:
        for i, lp in enumerate(net.layers):
            if lp.HasField("layer"):  # V0: name, type and blobs live in the nested message
                v0 = lp.layer
                name = _text(v0.name, where, f"layer #{i} name")
                raw_type = _text(v0.type, where, f"layer {name!r} type")
                out.append(_layer(name, _V0_TYPES.get(raw_type, raw_type), lp.bottom, lp.top, v0.blobs, where))
            else:
                name = _text(lp.name, where, f"layer #{i} name")
                out.append(_layer(name, _v1_type(lp.type, where, name), lp.bottom, lp.top, lp.blobs, where))
    return out


def _layer(
    name: str, type_: str, bottom: Iterable[bytes], top: Iterable[bytes], blobs: Sequence[Any], where: str
) -> CaffeLayer:
    return CaffeLayer(
        name=name,
        type=type_,
        bottom=tuple(_text(b, where, f"layer {name!r} bottom") for b in bottom),
        top=tuple(_text(t, where, f"layer {name!r} top") for t in top),
        blobs=[_blob_array(b, where, name, j) for j, b in enumerate(blobs)],
    )


def _v1_type(number: int, where: str, name: str) -> str:
    enum_name = _V1_TYPE_IDS.get(number)
    if enum_name is None:
        raise FormatError(f"{where}: layer {name!r} has unknown V1 layer type {number}")
    return V1_LAYER_TYPES.get(enum_name, "")


def _text(raw: bytes, where: str, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{where}: {what} is not valid UTF-8 ({raw[:40]!r}); the file is corrupt") from None


def _blob_array(blob: Any, where: str, layer: str, index: int) -> np.ndarray:
    what = f"{where}: layer {layer!r} blob {index}"
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = [blob.num, blob.channels, blob.height, blob.width]
    else:
        shape = list(blob.shape.dim)
    if len(shape) > _MAX_AXES:
        raise FormatError(f"{what}: {len(shape)} axes (Caffe allows at most {_MAX_AXES})")
    if any(d < 0 for d in shape):
        raise FormatError(f"{what}: negative dimension in shape {tuple(shape)}")
    count = math.prod(shape)
    # Each axis too: with a 0 beside them, huge axes give a count of 0 that proves nothing.
    if count > _MAX_COUNT or any(d > _MAX_COUNT for d in shape):
        size = f"{count} elements" if count > _MAX_COUNT else f"an axis of {max(shape)}"
        raise FormatError(f"{what}: shape {tuple(shape)} has {size}, more than Caffe allows ({_MAX_COUNT})")
    dtype: np.dtype
    native: type[np.floating]
    if len(blob.double_data):
        chunks, dtype, native = blob.double_data, np.dtype("<f8"), np.float64
    else:
        chunks, dtype, native = blob.data, np.dtype("<f4"), np.float32
    raw = b"".join(chunks)
    if len(raw) % dtype.itemsize or len(raw) // dtype.itemsize != count:
        raise FormatError(
            f"{what}: shape {tuple(shape)} needs {count} values but the blob "
            f"stores {len(raw) / dtype.itemsize:g} {dtype.name} values; "
            "the file is corrupt"
        )
    # astype copies: the caller gets a writable array that does not pin the file's bytes.
    return np.frombuffer(raw, dtype=dtype).astype(native).reshape(shape)


def _check_unique(layers: list[CaffeLayer], where: str) -> None:
    # Blobless duplicates (e.g. a TRAIN and a TEST data layer) are harmless; two weighted
    # layers with one name would make the name -> blobs mapping ambiguous.
    seen: dict[str, bool] = {}
    for layer in layers:
        has_blobs = bool(layer.blobs)
        if layer.name in seen and (has_blobs or seen[layer.name]):
            raise FormatError(
                f"{where}: two layers named {layer.name!r} carry blobs; cannot tell which weights belong to which"
            )
        seen[layer.name] = seen.get(layer.name, False) or has_blobs


@functools.lru_cache(maxsize=None)
def _net_parameter_class() -> type:
    """Build the minimal ``NetParameter`` schema in a private descriptor pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fd = descriptor_pb2.FieldDescriptorProto
    optional, repeated = fd.LABEL_OPTIONAL, fd.LABEL_REPEATED
    package = "dsd_zoo_caffe_min"
    file_proto = descriptor_pb2.FileDescriptorProto(name="dsd_zoo_caffe_min.proto", package=package, syntax="proto2")

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        msg = file_proto.message_type.add(name=name)
        for field_name, number, label, type_, type_name in fields:
            field = msg.field.add(name=field_name, number=number, label=label, type=type_)
            if type_name:
                field.type_name = f".{package}.{type_name}"

    int64, bytes_, msg_ = fd.TYPE_INT64, fd.TYPE_BYTES, fd.TYPE_MESSAGE
    # Strings are declared as bytes so that UTF-8 is checked here, with a useful message.
    message("BlobShape", [("dim", 1, repeated, int64, "")])
    message(
        "BlobProto",
        [
            ("num", 1, optional, int64, ""),
            ("channels", 2, optional, int64, ""),
            ("height", 3, optional, int64, ""),
            ("width", 4, optional, int64, ""),
            ("data", 5, repeated, bytes_, ""),
            ("shape", 7, optional, msg_, "BlobShape"),
            ("double_data", 8, repeated, bytes_, ""),
        ],
    )
    message(
        "LayerParameter",
        [
            ("name", 1, optional, bytes_, ""),
            ("type", 2, optional, bytes_, ""),
            ("bottom", 3, repeated, bytes_, ""),
            ("top", 4, repeated, bytes_, ""),
            ("blobs", 7, repeated, msg_, "BlobProto"),
        ],
    )
    message(
        "V0LayerParameter",
        [
            ("name", 1, optional, bytes_, ""),
            ("type", 2, optional, bytes_, ""),
            ("blobs", 50, repeated, msg_, "BlobProto"),
        ],
    )
    message(
        "V1LayerParameter",
        [
            ("layer", 1, optional, msg_, "V0LayerParameter"),
            ("bottom", 2, repeated, bytes_, ""),
            ("top", 3, repeated, bytes_, ""),
            ("name", 4, optional, bytes_, ""),
            # An enum in caffe.proto; int32 has the same wire encoding and never rejects values.
            ("type", 5, optional, fd.TYPE_INT32, ""),
            ("blobs", 6, repeated, msg_, "BlobProto"),
        ],
    )
    message(
        "NetParameter",
        [
            ("name", 1, optional, bytes_, ""),
            ("layers", 2, repeated, msg_, "V1LayerParameter"),
            ("layer", 100, repeated, msg_, "LayerParameter"),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName(f"{package}.NetParameter")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)
