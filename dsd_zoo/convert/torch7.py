"""Reader of the Lua Torch7 binary serialisation (``.t7`` files written by ``torch.save``).

The format is the one of torch7's ``File.lua`` ``writeObject`` (binary mode, 8-byte longs,
little-endian). Each object starts with an int32 type tag:

=====  ==================  ==========================================================
tag    type                payload
=====  ==================  ==========================================================
0      nil                 --
1      number              float64
2      string              int32 length, bytes
3      table               int32 reference index; if new: int32 count, count x (key, value)
4      torch object        int32 reference index; if new: version string ``"V <n>"`` (absent
                           in pre-versioning files), class name string, class payload
5      boolean             int32 (1 = true)
6      function            int32 length, bytecode, upvalues object (no reference index)
7, 8   recursive function  int32 reference index; if new: int32 length, bytecode, upvalues
=====  ==================  ==========================================================

Reference indices make shared objects and cycles round-trip: an index seen before stands
for the object already read. Class payloads: ``torch.*Tensor`` = int32 nDimension, int64
sizes, int64 strides, int64 1-based storage offset, storage object; ``torch.*Storage`` =
int64 element count, raw little-endian elements; ``tds.Hash`` = int64 count, count x
(key, value); ``tds.Vec`` = int64 count, count x value; any other class = one table of its
fields.

What the Python objects are:

* nil -> ``None``; booleans -> ``bool``; numbers -> ``int`` when integral (and exactly
  representable, ``|x| < 2**53``), else ``float``; strings -> ``str`` (UTF-8, undecodable
  bytes kept as surrogate escapes: ``s.encode("utf-8", "surrogateescape")`` gives the
  original bytes back).
* tables -> ``list`` when the keys are exactly 1..n (n >= 0, so an empty table is ``[]``),
  else ``dict``. A table that contains a reference to itself (a cycle through it) stays a
  ``dict`` even when its keys are 1..n, so that the cycle keeps pointing at the very
  object returned. Table keys that Python cannot hash (tables, tensors) are wrapped in
  :class:`IdentityKey`.
* tensors -> C-contiguous, writable numpy arrays of the tensor's dtype and shape, copied out
  of the storage through the tensor's strides and offset (``float16`` for Half tensors,
  ``int64`` for Long tensors; Cuda tensors like their CPU twins); an empty tensor (no
  dimensions) -> an empty 1-D array. Tensors never share memory with each other or with
  the file. Standalone storages -> read-only 1-D arrays.
* ``tds.Hash`` -> ``dict``, ``tds.Vec`` -> ``list``.
* every other torch object -> :class:`TorchObject` (``.typename``, attribute and item
  access to its fields); an object can hold itself.
* functions -> :class:`LuaFunction`, bytecode and upvalues only; nothing is ever executed.

Hostile input: every count and length is checked against the bytes that remain before
anything is allocated, nesting depth is bounded, tensor views must lie inside their storage,
the copies of all tensors together are bounded by a multiple of the file's size (many tensors
viewing one storage would otherwise be a decompression bomb), a table of fields may belong to
only one object, and any violation raises :class:`~dsd_zoo.errors.FormatError` with the file
name and byte offset. The ``torchfile`` package was not used: it builds tensors with ``as_strided`` without
bounds checks (reading outside the storage), has no depth limit, uses the platform ``long``
size and reads the non-recursive function tag with a reference index it does not have.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np

from ..errors import FormatError

__all__ = ["IdentityKey", "LuaFunction", "TorchObject", "read_t7"]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]

TYPE_NIL, TYPE_NUMBER, TYPE_STRING, TYPE_TABLE, TYPE_TORCH = 0, 1, 2, 3, 4
TYPE_BOOLEAN, TYPE_FUNCTION, LEGACY_TYPE_RECUR_FUNCTION, TYPE_RECUR_FUNCTION = 5, 6, 7, 8

#: Bound on object nesting; the module trees of the ResNets nest about 30 deep.
_MAX_DEPTH = 200
#: torch7 tensors have at most a few dimensions; anything near this is corrupt.
_MAX_DIMS = 64
#: Tensors are copied out of their storages, so N tensors viewing one storage cost N copies of
#: it: a small file could make the reader allocate without bound. All copies together may take
#: this many times the file's size (at least _MIN_COPY_BUDGET bytes). In real files every storage
#: element is viewed by about one tensor (``getParameters()`` flattens parameters into one
#: storage that each weight views a slice of).
_COPY_RATIO = 16
_MIN_COPY_BUDGET = 64 * 2**20

_ELEMENT_TYPES = {
    "Byte": "u1",
    "Char": "i1",
    "Short": "<i2",
    "Int": "<i4",
    "Long": "<i8",
    "Float": "<f4",
    "Double": "<f8",
    "Half": "<f2",
}


def _class_dtypes(suffix: str) -> dict[str, np.dtype]:
    table = {f"torch.{k}{suffix}": np.dtype(v) for k, v in _ELEMENT_TYPES.items()}
    table.update({f"torch.Cuda{k}{suffix}": np.dtype(v) for k, v in _ELEMENT_TYPES.items() if k != "Float"})
    table[f"torch.Cuda{suffix}"] = np.dtype("<f4")  # cutorch's float type has no prefix
    return table


_TENSOR_DTYPES = _class_dtypes("Tensor")
_STORAGE_DTYPES = _class_dtypes("Storage")
_VERSION = re.compile(r"V (.+)")


class TorchObject:
    """An instance of a Torch class other than tensors, storages and tds containers.

    ``obj.typename`` is the class (``"nn.SpatialConvolution"``), ``obj.version`` the
    serialisation version (0 for pre-versioning files). Fields are reached as attributes
    (``obj.weight``) or items (``obj["weight"]``, also for keys that are not identifiers);
    ``obj.fields`` is the dict of all of them.
    """

    __slots__ = ("typename", "version", "fields")

    def __init__(self, typename: str, version: float = 0, fields: Optional[dict[Any, Any]] = None) -> None:
        self.typename = typename
        self.version = version
        self.fields: dict[Any, Any] = {} if fields is None else fields

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not set slots: copy/pickle probe before __init__ ran, and
        # self.fields below would come back here while its slot is still empty.
        if name == "fields":
            raise AttributeError(name)
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"{self.typename} object has no field {name!r}") from None

    def __getitem__(self, key: Any) -> Any:
        return self.fields[key]

    def __contains__(self, key: Any) -> bool:
        return key in self.fields

    def get(self, key: Any, default: Any = None) -> Any:
        """The field ``key``, or ``default`` when absent."""
        return self.fields.get(key, default)

    def keys(self) -> Iterator[Any]:
        """The field names."""
        return iter(self.fields)

    def __repr__(self) -> str:
        return f"TorchObject({self.typename!r}, fields={sorted(map(str, self.fields))})"


@dataclass(eq=False)
class LuaFunction:
    """A serialised Lua function, kept as data and never executed.

    Attributes:
        bytecode: the ``string.dump`` output (Lua or LuaJIT bytecode).
        upvalues: the upvalues object as stored: for tag 8 a list of ``{"name", "value"}``
            tables, for tags 6 and 7 a list of values.
        tag: the type tag it was stored with (6, 7 or 8).
    """

    bytecode: bytes
    upvalues: Any = None
    tag: int = TYPE_RECUR_FUNCTION

    def __repr__(self) -> str:
        return f"LuaFunction({len(self.bytecode)} bytes of bytecode, tag={self.tag})"


@dataclass(frozen=True, eq=False)
class IdentityKey:
    """A dict key standing for a Lua table/tensor key, equal only to the same object."""

    value: Any = field()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentityKey) and other.value is self.value

    def __hash__(self) -> int:
        return id(self.value)


def read_t7(source: Source) -> Any:
    """Read one object serialised by Torch7's ``torch.save`` (binary mode).

    Args:
        source: a path, or the file's bytes.

    Returns:
        The Python form of the object (see the module docstring). Bytes after the first
        object are ignored, as ``torch.load`` does.

    Raises:
        FormatError: truncated, corrupt or hostile input: an unknown type tag, a length or
            count larger than the bytes that remain, a tensor view outside its storage,
            tensors that together copy more than 16 times the file's size out of their
            storages, nesting beyond 200 tables/objects; the message names the file and the byte
            offset.
        OSError: the file cannot be read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, where = bytes(source), "<t7 bytes>"
    else:
        data, where = Path(source).read_bytes(), str(source)
    try:
        return _Reader(data, where).object(0)
    except RecursionError:
        raise FormatError(f"{where}: objects nested too deep for this Python stack; the file is hostile") from None


_PENDING = object()  # memo placeholder for a tensor whose storage is being read


class _Reader:
    def __init__(self, data: bytes, where: str) -> None:
        self.buf = memoryview(data)  # slices of it are views: a storage is never copied out of the file's bytes
        self.pos = 0
        self.where = where
        self.memo: dict[int, Any] = {}
        self.open_tables: set[int] = set()
        self.cyclic_tables: set[int] = set()
        self.copy_budget = max(_COPY_RATIO * len(data), _MIN_COPY_BUDGET)
        # ids of the tables already copied into an object's fields (they stay alive in memo).
        self.field_tables: set[int] = set()

    # -- primitives -----------------------------------------------------------------

    def error(self, what: str, at: Optional[int] = None) -> FormatError:
        return FormatError(f"{self.where}: byte {self.pos if at is None else at}: {what}")

    def room(self, n: int, what: str) -> int:
        # The reader's one bounds check: n, when n bytes remain to be read.
        if n < 0 or n > len(self.buf) - self.pos:
            raise self.error(
                f"{what} needs {n} bytes but {len(self.buf) - self.pos} remain; the file is truncated or corrupt"
            )
        return n

    def raw(self, n: int, what: str) -> memoryview:
        self.pos += self.room(n, what)
        return self.buf[self.pos - n : self.pos]

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.raw(struct.calcsize(fmt), what))[0]

    def int32(self, what: str) -> int:
        return self.unpack("<i", what)

    def int64(self, what: str) -> int:
        return self.unpack("<q", what)

    def string(self, what: str) -> str:
        return str(self.raw(self.int32(f"{what} length"), what), "utf-8", "surrogateescape")

    def count(self, n: int, min_bytes_each: int, what: str) -> int:
        # Every element needs at least min_bytes_each bytes, so a count the remaining bytes
        # cannot hold is refused before any container is grown.
        self.room(n * min_bytes_each, f"{what} {n}")
        return n

    # -- objects --------------------------------------------------------------------

    def object(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise self.error(f"objects nested deeper than {_MAX_DEPTH}")
        start = self.pos
        tag = self.int32("type tag")
        if tag == TYPE_NIL:
            return None
        if tag == TYPE_NUMBER:
            return _number(self.unpack("<d", "number"))
        if tag == TYPE_STRING:
            return self.string("string")
        if tag == TYPE_BOOLEAN:
            return self.int32("boolean") == 1
        if tag == TYPE_FUNCTION:
            fn = LuaFunction(bytes(self.raw(self.int32("function length"), "function")), tag=tag)
            fn.upvalues = self.object(depth + 1)
            return fn
        if tag not in (TYPE_TABLE, TYPE_TORCH, LEGACY_TYPE_RECUR_FUNCTION, TYPE_RECUR_FUNCTION):
            raise self.error(f"unknown type tag {tag}; not a Torch7 binary file, or corrupt", at=start)
        index = self.int32("reference index")
        if index in self.memo:
            if index in self.open_tables:
                self.cyclic_tables.add(index)
            return self.memo[index]
        if tag == TYPE_TABLE:
            return self.table(index, self.count(self.int32("table size"), 8, "table size"), depth)
        if tag == TYPE_TORCH:
            return self.torch_object(index, depth)
        fn = LuaFunction(bytes(self.raw(self.int32("function length"), "function")), tag=tag)
        self.memo[index] = fn
        fn.upvalues = self.object(depth + 1)
        return fn

    def key(self, depth: int) -> Any:
        at = self.pos
        k = self.object(depth)
        if k is None or (isinstance(k, float) and math.isnan(k)):
            raise self.error(f"table key {k!r} is not allowed in Lua", at=at)
        # Tables and tensors cannot be Python dict keys; in Lua they key by identity.
        return IdentityKey(k) if isinstance(k, (dict, list, np.ndarray)) else k

    def table(self, index: int, size: int, depth: int, tds: bool = False) -> Union[dict, list]:
        """A table of ``size`` (key, value) pairs: a list when its keys are 1..n, unless it is a ``tds.Hash``."""
        table: dict[Any, Any] = {}
        self.memo[index] = table
        self.open_tables.add(index)
        for _ in range(size):
            k = self.key(depth + 1)
            table[k] = self.object(depth + 1)
        self.open_tables.discard(index)
        if tds or index in self.cyclic_tables or not _is_sequence(table):
            return table
        items = [table[i] for i in range(1, len(table) + 1)]
        self.memo[index] = items
        return items

    def torch_object(self, index: int, depth: int) -> Any:
        version_text = self.string("version string")
        match = _VERSION.fullmatch(version_text)
        version = _lua_number(match.group(1)) if match else None
        if version is None:
            class_name, version = version_text, 0  # written before versioning existed
        else:
            class_name = self.string("class name")
        if class_name in _TENSOR_DTYPES or class_name in _STORAGE_DTYPES:
            self.memo[index] = _PENDING  # until read: a tensor whose storage is the tensor itself
            array = self.tensor(class_name, depth) if class_name in _TENSOR_DTYPES else self.storage(class_name)
            self.memo[index] = array
            return array
        if class_name == "tds.Hash":
            return self.table(index, self.count(self.int64("tds.Hash size"), 8, "tds.Hash size"), depth, tds=True)
        if class_name == "tds.Vec":
            return self.tds_vec(index, depth)
        obj = TorchObject(class_name, version)
        self.memo[index] = obj
        at = self.pos
        fields = self.object(depth + 1)
        if not isinstance(fields, (list, dict)):
            raise self.error(f"fields of a {class_name} object must be a table, not {type(fields).__name__}", at=at)
        # torch.save writes a new table of fields for every object. One table shared by many
        # objects would be copied once per object: a small file growing without bound.
        if id(fields) in self.field_tables:
            raise self.error(
                f"the fields of this {class_name} object are the table of another "
                "object; torch.save never writes that, the file is corrupt or "
                "hostile",
                at=at,
            )
        self.field_tables.add(id(fields))
        # Lua copies the fields into the object, so does this.
        obj.fields = dict(enumerate(fields, 1)) if isinstance(fields, list) else dict(fields)
        return obj

    def storage(self, class_name: str) -> np.ndarray:
        dtype = _STORAGE_DTYPES[class_name]
        size = self.int64(f"{class_name} size")
        return np.frombuffer(self.raw(size * dtype.itemsize, f"{class_name} size {size}"), dtype)

    def tensor(self, class_name: str, depth: int) -> np.ndarray:
        # Complexity D, forced by the format: a Torch7 tensor record is its dimension count, sizes,
        # strides, a 1-based storage offset and a storage object, and each of them can lie. Every case
        # (no dimensions, empty, no storage, a view past its storage, overlapping views, the copy
        # budget) is a distinct grammar rule with its own error, checked before any byte is copied.
        dtype = _TENSOR_DTYPES[class_name]
        at = self.pos
        ndim = self.count(self.int32("tensor dimension count"), 16, "tensor dimension count")
        if ndim > _MAX_DIMS:
            raise self.error(f"{class_name} with {ndim} dimensions", at=at)
        sizes = np.frombuffer(self.raw(8 * ndim, "tensor sizes"), "<i8").tolist()
        strides = np.frombuffer(self.raw(8 * ndim, "tensor strides"), "<i8").tolist()
        offset = self.int64("tensor storage offset") - 1
        storage_at = self.pos
        storage = self.object(depth + 1)
        native = dtype.newbyteorder("=")
        if storage is not None and (not isinstance(storage, np.ndarray) or storage.dtype != dtype or storage.ndim != 1):
            raise self.error(
                f"{class_name} needs a {class_name[:-6]}Storage, found {_describe(storage)}", at=storage_at
            )
        if ndim == 0:
            return np.empty((0,), dtype=native)
        if any(s < 0 for s in sizes) or any(s < 0 for s in strides):
            raise self.error(f"{class_name} has negative sizes {sizes} or strides {strides}", at=at)
        numel = math.prod(sizes)
        if numel == 0:
            if math.prod(max(n, 1) for n in sizes) * dtype.itemsize >= 2**62:
                raise self.error(f"{class_name} of size {sizes} is too large to represent", at=at)
            return np.zeros(sizes, dtype=native)
        if storage is None:
            raise self.error(f"{class_name} of size {sizes} has no storage", at=storage_at)
        # The view must stay inside its storage, and the copy inside the budget.
        last = offset + sum((n - 1) * s for n, s in zip(sizes, strides))
        if offset < 0 or last >= len(storage):
            raise self.error(
                f"{class_name} of size {sizes}, strides {strides}, offset "
                f"{offset + 1} reaches element {last + 1} of a storage of "
                f"{len(storage)}",
                at=at,
            )
        if numel > len(storage):
            raise self.error(
                f"{class_name} of size {sizes} has more elements than its storage "
                f"({len(storage)}): overlapping views are not supported",
                at=at,
            )
        if numel * dtype.itemsize > self.copy_budget:
            raise self.error(
                f"{class_name} of size {sizes} would take the tensors copied out of "
                f"their storages past {_COPY_RATIO} times the file's size: too many "
                "tensors view the same storage; the file is corrupt or hostile",
                at=at,
            )
        self.copy_budget -= numel * dtype.itemsize
        # A dimension of size 1 never moves, so its (unchecked) stride is replaced by 0.
        byte_strides = [s * dtype.itemsize if n > 1 else 0 for n, s in zip(sizes, strides)]
        view = np.lib.stride_tricks.as_strided(storage[offset:], shape=sizes, strides=byte_strides, writeable=False)
        return np.array(view, dtype=native, order="C", copy=True)

    def tds_vec(self, index: int, depth: int) -> list:
        size = self.count(self.int64("tds.Vec size"), 4, "tds.Vec size")
        items: list[Any] = []
        self.memo[index] = items
        items.extend(self.object(depth + 1) for _ in range(size))
        return items


def _number(x: float) -> Union[int, float]:
    return int(x) if x.is_integer() and abs(x) < 2**53 else x  # is_integer() is False for inf and NaN


def _lua_number(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return _number(value) if math.isfinite(value) else None


def _is_sequence(table: dict) -> bool:
    return all(type(k) is int for k in table) and all(i in table for i in range(1, len(table) + 1))


def _describe(obj: Any) -> str:
    if obj is _PENDING:
        return "a reference to the tensor itself"
    if isinstance(obj, np.ndarray):
        return f"a {obj.dtype} array"
    return type(obj).__name__
