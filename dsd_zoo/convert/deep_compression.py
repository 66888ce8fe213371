"""Decoder of the Deep Compression ``.net`` format (pruned + weight-shared Caffe nets).

The format, as written by Han et al.'s SqueezeNet-Deep-Compression release (all values
little-endian):

1. one uint32 per weighted layer: the number ``nz`` of stored entries of that layer;
2. then, for each weighted layer in the same order:

   a. the codebook: ``2**bits`` float32 values, ``bits = 8`` when the layer name contains
      ``conv`` and 4 otherwise;
   b. the bias: one float32 per output channel;
   c. the codes: one uint8 per entry when ``bits = 8``, two 4-bit codes per byte (low
      nibble first) when ``bits = 4``: ``ceil(nz * bits / 8)`` bytes;
   d. the index gaps: two 4-bit values per byte, low nibble first: ``ceil(nz / 2)`` bytes.

The weighted layers are the layers with parameters whose name contains ``conv``, ``fc`` or
``ip``, in prototxt order (for SqueezeNet v1.0: its 26 convolutions). Decoding a layer:
positions = cumsum(gap + 1) - 1; a flat code array of the weight's size is 0 everywhere
except ``codes`` at those positions; the weight is ``codebook[code]`` reshaped to
``(out, in, kh, kw)``. Pruned positions read ``codebook[0]``, which must be 0. Gaps of more
than 15 are bridged by stored entries whose code is 0, so ``nz`` can exceed the number of
non-zero weights.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..errors import FormatError

__all__ = ["LayerLayout", "WEIGHTED_NAME_PARTS", "read_deep_compression"]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]
#: (layer name, weight shape, bias length), in file order.
LayerLayout = tuple[str, tuple[int, ...], int]

#: A layer is stored only when its name contains one of these (the format's rule).
WEIGHTED_NAME_PARTS = ("conv", "fc", "ip")
# Weights one stored entry can move on (a 4-bit index gap of 0..15 is a step of 1..16).
_MAX_SPAN = 16
# Zeros allowed after a layer's last stored entry beyond what its entries reach (4 MB of float32).
_MAX_TRAILING_ZEROS = 2**20


def read_deep_compression(source: Source, layers: Sequence[LayerLayout]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode a Deep Compression ``.net`` file.

    Args:
        source: a path, or the file's bytes.
        layers: ``(name, weight_shape, bias_length)`` of every weighted layer, in file
            order (:func:`dsd_zoo.convert.caffe_mapping.net_layers` gives it for an architecture).

    Returns:
        Layer name -> ``(weight, bias)``, ``float32`` arrays of the given shapes, in order.

    Raises:
        FormatError: the file does not hold exactly these layers: it is too short or has
            bytes left over, a layer stores more entries than its weight has, positions
            run past the weight, ``codebook[0]`` is not 0 while some weights are pruned,
            or the codebook or bias is not finite. The message names the file and layer.
        ValueError: ``layers`` itself is malformed (duplicate names, non-positive sizes).
        OSError: the file cannot be read.
    """
    _check_layout(layers)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, where = bytes(source), "<.net bytes>"
    else:
        data, where = Path(source).read_bytes(), str(source)
    stream = _Stream(data, where)
    counts = stream.array("<u4", len(layers), "the per-layer entry counts")
    out = {
        name: _decode_layer(stream, name, shape, bias_len, nz)
        for (name, shape, bias_len), nz in zip(layers, counts.tolist())
    }
    if stream.pos != len(data):
        raise FormatError(
            f"{where}: {len(data) - stream.pos} bytes left over after the last "
            f"layer ({layers[-1][0] if layers else 'none'}); the file is corrupt "
            "or the layer list does not match it"
        )
    return out


def _check_layout(layers: Sequence[LayerLayout]) -> None:
    names = [layer[0] for layer in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"layer names must be unique, got {names}")
    for name, shape, bias_len in layers:
        if (
            not shape
            or any(not isinstance(d, (int, np.integer)) or d <= 0 for d in shape)
            or not isinstance(bias_len, (int, np.integer))
            or bias_len < 0
        ):
            raise ValueError(
                f"layer {name!r}: weight shape {shape!r} and bias length {bias_len!r} must be positive integers"
            )


class _Stream:
    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.where, self.pos = data, where, 0

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if size > len(self.data) - self.pos:
            raise FormatError(
                f"{self.where}: {what} need {size} bytes at byte {self.pos} but "
                f"only {len(self.data) - self.pos} remain; the file is truncated "
                "or the layer list does not match it"
            )
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out


def _nibbles(packed: np.ndarray, count: int) -> np.ndarray:
    return np.stack([packed & 0x0F, packed >> 4], axis=1).reshape(-1)[:count]  # low nibble first


def _decode_layer(
    stream: _Stream, name: str, shape: tuple[int, ...], bias_len: int, nz: int
) -> tuple[np.ndarray, np.ndarray]:
    where = f"{stream.where}: layer {name!r}"
    size = math.prod(shape)
    if nz > size:
        raise FormatError(
            f"{where}: stores {nz} entries but its weight {shape} has only "
            f"{size}; the file is corrupt or the layer list does not match it"
        )
    if size > _MAX_SPAN * nz + _MAX_TRAILING_ZEROS:
        # A 4-bit gap moves at most 16 weights on, so the stored entries reach at most 16 * nz
        # weights; only a run of zeros at the end goes further. Without this bound, a layer
        # list could make a tiny file allocate gigabytes.
        raise FormatError(
            f"{where}: its weight {shape} has {size} elements but the file stores "
            f"only {nz} entries, which cover at most {_MAX_SPAN * nz}; the layer list "
            "does not match the file"
        )
    bits = 8 if "conv" in name else 4  # the code width
    codebook = stream.array("<f4", 2**bits, f"layer {name!r} codebook").astype(np.float32)
    bias = stream.array("<f4", bias_len, f"layer {name!r} bias").astype(np.float32)
    if bits == 8:
        codes = stream.array("u1", nz, f"layer {name!r} codes")
    else:
        codes = _nibbles(stream.array("u1", (nz + 1) // 2, f"layer {name!r} codes"), nz)
    gaps = _nibbles(stream.array("u1", (nz + 1) // 2, f"layer {name!r} index gaps"), nz)
    if not (np.isfinite(codebook).all() and np.isfinite(bias).all()):
        raise FormatError(f"{where}: codebook or bias holds NaN or infinity; the file is corrupt")
    positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if nz and positions[-1] >= size:
        raise FormatError(
            f"{where}: entry positions run to {int(positions[-1])}, past the "
            f"{size} weights of shape {shape}; the file is corrupt"
        )
    if nz < size and codebook[0] != 0:
        raise FormatError(
            f"{where}: codebook[0] is {codebook[0]!r}, but pruned weights read "
            "codebook[0] and must be 0; the file is corrupt"
        )
    flat_codes = np.zeros(size, dtype=np.uint8)
    flat_codes[positions] = codes
    return codebook[flat_codes].reshape(shape), bias
