"""Write ``.caffemodel`` files for tests.

The protobuf wire format is encoded by hand from caffe.proto's field numbers, so a test that
writes with this module and reads with :mod:`dsd_zoo.convert.caffe` checks the reader's
schema against an independent encoding rather than against itself.

Usage::

    data = encode_caffemodel({"conv1": [w, b], "fc": [w2, b2]}, layout="v1")
    write_caffemodel(tmp_path / "m.caffemodel", [CaffeLayerSpec("conv1", [w, b], "Convolution")])

The low-level helpers (:func:`varint`, :func:`field_bytes`, :func:`field_varint`,
:func:`encode_blob`) are public so that hostile-input tests can build malformed messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "CaffeLayerSpec",
    "encode_blob",
    "encode_caffemodel",
    "field_bytes",
    "field_varint",
    "packed_floats",
    "varint",
    "write_caffemodel",
]

WIRE_VARINT, WIRE_LEN = 0, 2

#: Current type names -> V1LayerParameter.LayerType numbers (caffe.proto).
V1_TYPE_NUMBERS = {
    "": 0,
    "Accuracy": 1,
    "Concat": 3,
    "Convolution": 4,
    "Data": 5,
    "Dropout": 6,
    "InnerProduct": 14,
    "LRN": 15,
    "Pooling": 17,
    "ReLU": 18,
    "Softmax": 20,
    "SoftmaxWithLoss": 21,
    "Split": 22,
    "Eltwise": 25,
}
#: Current type names -> V0 type strings.
V0_TYPE_NAMES = {
    "Convolution": "conv",
    "InnerProduct": "innerproduct",
    "Pooling": "pool",
    "LRN": "lrn",
    "ReLU": "relu",
    "Softmax": "softmax",
    "Data": "data",
    "Dropout": "dropout",
    "Concat": "concat",
}


@dataclass
class CaffeLayerSpec:
    """One layer to write: name, blobs (weight, bias, ...), type and connections."""

    name: str
    blobs: Sequence[np.ndarray] = ()
    type: str = ""
    bottom: Sequence[str] = ()
    top: Sequence[str] = field(default_factory=tuple)


def varint(value: int) -> bytes:
    """Base-128 varint; negative values as 64-bit two's complement, as protobuf does."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (strings, sub-messages, packed repeated values)."""
    return varint(number << 3 | WIRE_LEN) + varint(len(payload)) + payload


def field_varint(number: int, value: int) -> bytes:
    """A varint field (int32/int64/enum/bool)."""
    return varint(number << 3 | WIRE_VARINT) + varint(value)


def packed_floats(number: int, values: np.ndarray, double: bool = False) -> bytes:
    """A packed repeated float (or double) field; nothing when there are no values."""
    raw = np.ascontiguousarray(values, dtype="<f8" if double else "<f4").tobytes()
    return field_bytes(number, raw) if raw else b""


def encode_blob(
    array: np.ndarray, *, legacy_shape: bool = False, double: bool = False, shape: Optional[Sequence[int]] = None
) -> bytes:
    """Encode one ``BlobProto``.

    Args:
        array: the values (flattened in C order).
        legacy_shape: write num/channels/height/width (fields 1-4, left-padded with 1s to
            four axes, as old Caffe stored FC weights as ``(1, 1, out, in)``) instead of a
            ``BlobShape`` (field 7).
        double: write ``double_data`` (field 8) instead of ``data`` (field 5).
        shape: the shape to record, if it must differ from ``array.shape`` (hostile tests).
    """
    dims = list(array.shape if shape is None else shape)
    if legacy_shape:
        if len(dims) > 4:
            raise ValueError(f"a legacy blob has at most 4 axes, got {dims}")
        head = b"".join(field_varint(i + 1, d) for i, d in enumerate([1] * (4 - len(dims)) + dims))
    else:
        head = field_bytes(7, field_bytes(1, b"".join(varint(d) for d in dims)) if dims else b"")
    values = packed_floats(8, array.ravel(), double=True) if double else packed_floats(5, array.ravel())
    return head + values


def _strings(number: int, values: Sequence[str]) -> bytes:
    return b"".join(field_bytes(number, v.encode()) for v in values)


def _layer(spec: CaffeLayerSpec, layout: str, blob_bytes: list[bytes]) -> bytes:
    if layout == "new":
        return (
            field_bytes(1, spec.name.encode())
            + field_bytes(2, spec.type.encode())
            + _strings(3, spec.bottom)
            + _strings(4, spec.top)
            + b"".join(field_bytes(7, b) for b in blob_bytes)
        )
    connections = _strings(2, spec.bottom) + _strings(3, spec.top)
    if layout == "v1":
        return (
            connections
            + field_bytes(4, spec.name.encode())
            + field_varint(5, V1_TYPE_NUMBERS[spec.type])
            + b"".join(field_bytes(6, b) for b in blob_bytes)
        )
    if layout == "v0":
        v0 = (
            field_bytes(1, spec.name.encode())
            + field_bytes(2, V0_TYPE_NAMES.get(spec.type, spec.type).encode())
            + b"".join(field_bytes(50, b) for b in blob_bytes)
        )
        return field_bytes(1, v0) + connections
    raise ValueError(f"layout must be 'new', 'v1' or 'v0', not {layout!r}")


def encode_caffemodel(
    layers: Union[Mapping[str, Sequence[np.ndarray]], Sequence[CaffeLayerSpec]],
    *,
    layout: str = "new",
    legacy_shape: bool = False,
    double: bool = False,
    net_name: str = "net",
) -> bytes:
    """Encode a ``NetParameter`` holding ``layers``.

    Args:
        layers: ``{name: [blobs]}`` or a sequence of :class:`CaffeLayerSpec` (to also set
            types, bottoms and tops, or repeat a name).
        layout: ``"new"`` (``layer``, field 100), ``"v1"`` (``layers``, field 2) or ``"v0"``
            (``layers`` wrapping a V0 ``layer``).
        legacy_shape: see :func:`encode_blob`.
        double: see :func:`encode_blob`.
        net_name: ``NetParameter.name``.
    """
    specs = (
        [CaffeLayerSpec(name, list(blobs)) for name, blobs in layers.items()]
        if isinstance(layers, Mapping)
        else list(layers)
    )
    net_field = 100 if layout == "new" else 2
    body = [field_bytes(1, net_name.encode())]
    for spec in specs:
        blob_bytes = [encode_blob(np.asarray(b), legacy_shape=legacy_shape, double=double) for b in spec.blobs]
        body.append(field_bytes(net_field, _layer(spec, layout, blob_bytes)))
    return b"".join(body)


def write_caffemodel(path: Union[str, Path], layers, **options) -> Path:
    """Write :func:`encode_caffemodel` ``(layers, **options)`` to ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(encode_caffemodel(layers, **options))
    return path
