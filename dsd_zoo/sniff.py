"""What a file is, from its first bytes: so that a mix-up is named instead of blamed on the file.

A Deep Compression ``.net`` given as ``weights=``, or a caffemodel converted as a Torch7 model,
used to fail deep inside a parser with "header length 6562710042190 exceeds ..." or "unknown type
tag". :func:`sniff` recognises the formats dsd-zoo meets by their magic or structure, reading at
most a few kilobytes; callers say what was found, what was expected, and the command that fits.
The Deep Compression format has no magic; :mod:`dsd_zoo.convert.mapping` recognises it by its
structure against a model's layer list.
"""

from __future__ import annotations

import os
import struct
from typing import Optional

__all__ = ["FORMAT_NAMES", "sniff"]

#: What each format :func:`sniff` returns is, in words.
FORMAT_NAMES = {
    "safetensors": "a safetensors weight file",
    "caffemodel": "a Caffe .caffemodel (protobuf NetParameter)",
    "torch7": "a Lua Torch7 .t7 file",
    "deep-compression": "a Deep Compression .net file",
    "npy": "a NumPy .npy array",
    "zip": "a zip archive (e.g. a PyTorch .pth written by torch.save)",
    "pickle": "a Python pickle (e.g. an old PyTorch .pth)",
    "html": "a web page (HTML), not a model file: a download that got a login or error page",
}
_PEEK = 4096


def sniff(path: "os.PathLike[str] | str") -> Optional[str]:
    """The format of the file at ``path`` (a key of :data:`FORMAT_NAMES`), or ``None`` when not recognised."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return None
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return "html"
    if _is_torch7(head):
        return "torch7"
    if _is_protobuf_net(head):
        return "caffemodel"
    return None


def _is_torch7(head: bytes) -> bool:
    # A Torch7 file starts with a type tag: 4, a Torch object (index, then its version string
    # "V 1" and class name), or 3, a table (index and size).
    if len(head) < 8:
        return False
    (tag,) = struct.unpack("<i", head[:4])
    if tag == 4:
        return head[8:15] == b"\x03\x00\x00\x00V 1"
    return tag == 3 and struct.unpack("<i", head[4:8])[0] >= 1


def _is_protobuf_net(head: bytes) -> bool:
    # NetParameter's first field is its name (1, a string), its V1 'layers' (2), 'input' (3) or
    # new 'layer' (100): walk the first fields and require them all to be well formed.
    position, fields = 0, 0
    while position < len(head) and fields < 3:
        key, position = _varint(head, position)
        if key is None or key & 7 not in (0, 2):  # a varint or a length-delimited field, as NetParameter has
            return False
        number, wire = key >> 3, key & 7
        if fields == 0 and number not in (1, 2, 3, 4, 5, 100):
            return False
        value, position = _varint(head, position)  # the varint, or the length of what follows
        if value is None:
            return False
        if wire == 2:
            name = head[position : position + value]
            if fields == 0 and number == 1 and not (name and all(32 <= byte < 127 for byte in name)):
                return False  # the name is printable text
            position += value
        fields += 1
    return fields > 0


def _varint(data: bytes, position: int) -> "tuple[Optional[int], int]":
    value = shift = 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return None, position
