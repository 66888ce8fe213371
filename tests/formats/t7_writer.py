"""Write Torch7 binary serialisation (``torch.save`` format) for tests.

Python values map to Lua values as follows: ``None`` -> nil, ``bool`` -> boolean, ``int`` /
``float`` -> number, ``str`` / ``bytes`` -> string, ``dict`` -> table, ``list`` / ``tuple``
-> table with keys 1..n, ``numpy.ndarray`` -> a tensor of the matching class with its own
contiguous storage. The classes below cover the rest: :class:`T7Object` (any Torch class,
e.g. an ``nn`` module), :class:`T7Tensor` / :class:`T7Storage` (views that share a storage,
Cuda class names), :class:`TdsHash` / :class:`TdsVec`, :class:`T7Function`.

As in torch7's ``File:writeObject``, tables, torch objects and recursive functions get a
reference index the first time they are written and only that index afterwards, so writing
the same Python object twice (or inside itself) produces a shared reference (or a cycle).

Usage::

    conv = nn_module("cudnn.SpatialConvolution", weight=w, bias=b, nInputPlane=3, nOutputPlane=64,
                     kW=7, kH=7, dW=2, dH=2, padW=3, padH=3)
    data = dumps_t7(nn_module("nn.Sequential", modules=[conv, nn_module("nn.ReLU")]))
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence, Union

import numpy as np

__all__ = [
    "T7Function",
    "T7Object",
    "T7Storage",
    "T7Tensor",
    "TdsHash",
    "TdsVec",
    "T7Writer",
    "dumps_t7",
    "nn_module",
    "shared_parameters",
    "write_t7",
]

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH = 0, 1, 2, 3, 4
TYPE_BOOLEAN, TYPE_FUNCTION, TYPE_RECUR_FUNCTION = 5, 6, 8

_ELEMENT_NAMES = {
    np.dtype(np.uint8): "Byte",
    np.dtype(np.int8): "Char",
    np.dtype(np.int16): "Short",
    np.dtype(np.int32): "Int",
    np.dtype(np.int64): "Long",
    np.dtype(np.float32): "Float",
    np.dtype(np.float64): "Double",
    np.dtype(np.float16): "Half",
}


def _class_name(dtype: np.dtype, kind: str, cuda: bool) -> str:
    element = _ELEMENT_NAMES[np.dtype(dtype)]
    if cuda:
        return f"torch.Cuda{'' if element == 'Float' else element}{kind}"
    return f"torch.{element}{kind}"


@dataclass(eq=False)
class T7Object:
    """An instance of a Torch class whose fields are written as one table.

    ``version=None`` writes the class name without a ``"V n"`` string (pre-versioning
    files).
    """

    typename: str
    fields: dict = field(default_factory=dict)
    version: Optional[int] = 1


@dataclass(eq=False)
class T7Storage:
    """A ``torch.*Storage`` holding ``data`` (1-D); ``cuda=True`` uses the cutorch names."""

    data: np.ndarray
    cuda: bool = False

    @property
    def typename(self) -> str:
        return _class_name(self.data.dtype, "Storage", self.cuda)


@dataclass(eq=False)
class T7Tensor:
    """A tensor viewing ``storage`` with the given shape, element strides and 0-based offset."""

    storage: T7Storage
    shape: Sequence[int]
    strides: Optional[Sequence[int]] = None  # None: C-contiguous
    offset: int = 0

    @classmethod
    def from_array(cls, array: np.ndarray, cuda: bool = False) -> "T7Tensor":
        """A tensor with its own contiguous storage holding ``array``."""
        array = np.ascontiguousarray(array)
        return cls(T7Storage(array.ravel(), cuda=cuda), array.shape)

    @property
    def typename(self) -> str:
        return _class_name(self.storage.data.dtype, "Tensor", self.storage.cuda)

    def element_strides(self) -> list[int]:
        if self.strides is not None:
            return list(self.strides)
        out, step = [], 1
        for n in reversed(list(self.shape)):
            out.append(step)
            step *= n
        return out[::-1]


@dataclass(eq=False)
class TdsHash:
    """A ``tds.Hash`` with the given items."""

    items: dict
    typename: ClassVar[str] = "tds.Hash"


@dataclass(eq=False)
class TdsVec:
    """A ``tds.Vec`` with the given elements."""

    items: list
    typename: ClassVar[str] = "tds.Vec"


@dataclass(eq=False)
class T7Function:
    """A serialised Lua function: ``bytecode`` and its ``upvalues`` object.

    ``recursive=True`` writes tag 8 (with a reference index, the modern form), ``False``
    the legacy non-recursive tag 6.
    """

    bytecode: bytes
    upvalues: Any = field(default_factory=list)
    recursive: bool = True


class T7Writer:
    """Serialises objects into one byte string, keeping torch7's reference indices."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._index: dict[int, int] = {}
        self._array_tensors: dict[int, T7Tensor] = {}
        self._keep: list[Any] = []  # keeps ids stable while they serve as memo keys

    def getvalue(self) -> bytes:
        return bytes(self._out)

    def int32(self, value: int) -> None:
        self._out += struct.pack("<i", value)

    def int64(self, value: int) -> None:
        self._out += struct.pack("<q", value)

    def string(self, value: Union[str, bytes]) -> None:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        self.int32(len(raw))
        self._out += raw

    def _reference(self, obj: Any) -> bool:
        """Write the reference index; True when the object was written before."""
        if id(obj) in self._index:
            self.int32(self._index[id(obj)])
            return True
        index = len(self._index) + 1
        self._index[id(obj)] = index
        self._keep.append(obj)
        self.int32(index)
        return False

    def write(self, obj: Any) -> None:
        """Append one object (recursively)."""
        if obj is None:
            self.int32(TYPE_NIL)
        elif isinstance(obj, bool):
            self.int32(TYPE_BOOLEAN)
            self.int32(1 if obj else 0)
        elif isinstance(obj, (int, float, np.integer, np.floating)):
            self.int32(TYPE_NUMBER)
            self._out += struct.pack("<d", float(obj))
        elif isinstance(obj, (str, bytes)):
            self.int32(TYPE_STRING)
            self.string(obj)
        elif isinstance(obj, (dict, list, tuple)):
            self.int32(TYPE_TABLE)
            if not self._reference(obj):
                items = obj.items() if isinstance(obj, dict) else enumerate(obj, start=1)
                items = list(items)
                self.int32(len(items))
                for k, v in items:
                    self.write(k)
                    self.write(v)
        elif isinstance(obj, T7Function):
            self._function(obj)
        elif isinstance(obj, np.ndarray):
            # The same array written twice is one shared tensor, as in Lua.
            self.write(self._tensor_for(obj))
        else:
            self.int32(TYPE_TORCH)
            if not self._reference(obj):
                self._torch(obj)

    def _tensor_for(self, array: np.ndarray) -> T7Tensor:
        if id(array) not in self._array_tensors:
            self._keep.append(array)
            self._array_tensors[id(array)] = T7Tensor.from_array(array)
        return self._array_tensors[id(array)]

    def _function(self, fn: T7Function) -> None:
        if fn.recursive:
            self.int32(TYPE_RECUR_FUNCTION)
            if self._reference(fn):
                return
        else:
            self.int32(TYPE_FUNCTION)
        self.string(fn.bytecode)
        self.write(fn.upvalues)

    def _torch(self, obj: Any) -> None:
        version = obj.version if isinstance(obj, T7Object) else 0 if isinstance(obj, (TdsHash, TdsVec)) else 1
        if version is not None:
            self.string(f"V {version}")
        self.string(obj.typename)
        if isinstance(obj, T7Object):
            self.write(dict(obj.fields))
        elif isinstance(obj, T7Tensor):
            strides = obj.element_strides()
            self.int32(len(obj.shape))
            for n in obj.shape:
                self.int64(n)
            for s in strides:
                self.int64(s)
            self.int64(obj.offset + 1)
            self.write(obj.storage)
        elif isinstance(obj, T7Storage):
            data = np.ascontiguousarray(obj.data)
            self.int64(data.size)
            self._out += data.astype(data.dtype.newbyteorder("<")).tobytes()
        elif isinstance(obj, TdsHash):
            self.int64(len(obj.items))
            for k, v in obj.items.items():
                self.write(k)
                self.write(v)
        elif isinstance(obj, TdsVec):
            self.int64(len(obj.items))
            for v in obj.items:
                self.write(v)
        else:
            raise TypeError(f"cannot write {type(obj).__name__} to a t7 file")


def dumps_t7(obj: Any) -> bytes:
    """The t7 bytes of ``obj``."""
    writer = T7Writer()
    writer.write(obj)
    return writer.getvalue()


def write_t7(path: Union[str, Path], obj: Any) -> Path:
    """Write ``obj`` to ``path`` in t7 format; returns the path."""
    path = Path(path)
    path.write_bytes(dumps_t7(obj))
    return path


def nn_module(typename: str, **fields: Any) -> T7Object:
    """A module object such as ``nn_module("nn.Linear", weight=w, bias=b)``.

    ``train`` defaults to False and ``output`` / ``gradInput`` to empty float tensors, as in
    a module saved after ``clearState()``.
    """
    defaults: dict[str, Any] = {
        "train": False,
        "output": np.zeros((0,), np.float32),
        "gradInput": np.zeros((0,), np.float32),
    }
    defaults.update(fields)
    return T7Object(typename, defaults)


def shared_parameters(arrays: Sequence[np.ndarray], cuda: bool = False) -> list[T7Tensor]:
    """Views of one flat storage holding ``arrays`` back to back.

    This is the layout ``module:getParameters()`` leaves behind in fb.resnet.torch
    checkpoints: every weight and bias is a tensor with a storage offset into one storage.
    """
    dtype = np.result_type(*arrays) if arrays else np.float32
    flat = np.concatenate([np.ravel(a).astype(dtype) for a in arrays]) if arrays else np.zeros((0,), dtype)
    storage = T7Storage(flat, cuda=cuda)
    views, offset = [], 0
    for a in arrays:
        views.append(T7Tensor(storage, a.shape, offset=offset))
        offset += a.size
    return views
