"""Write Deep Compression ``.net`` files for tests (format: ``../shared/fixtures/README.md``).

A layer is given as integer ``codes`` of the weight's shape (0 = pruned, else an index
into ``codebook``), a ``codebook`` of ``2**bits`` float32 values with ``codebook[0] == 0``
(``bits`` = 8 when the name contains ``conv``, else 4) and a ``bias``. Runs of more than
15 pruned weights are bridged with filler entries of code 0, as Deep Compression does,
because an index gap is stored in 4 bits.

Usage::

    layer = random_layer("conv1", (96, 3, 7, 7), np.random.default_rng(0), density=0.3)
    data = encode_net([layer])
    weight = layer.weight()  # what a decoder must return
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

__all__ = ["NetLayer", "encode_net", "random_layer", "write_net"]


def bits_for(name: str) -> int:
    """8-bit codes for layers whose name contains ``conv``, 4-bit codes otherwise."""
    return 8 if "conv" in name else 4


@dataclass
class NetLayer:
    """One weighted layer: its codes (weight-shaped), codebook and bias."""

    name: str
    codes: np.ndarray
    codebook: np.ndarray
    bias: np.ndarray

    def weight(self) -> np.ndarray:
        """The dense float32 weight the codes stand for."""
        return self.codebook.astype(np.float32)[self.codes]

    def layout(self) -> tuple[str, tuple[int, ...], int]:
        """``(name, weight_shape, bias_length)`` as the decoder takes it."""
        return self.name, tuple(self.codes.shape), len(self.bias)


def _pack_nibbles(values: np.ndarray) -> bytes:
    padded = np.zeros(len(values) + len(values) % 2, dtype=np.uint8)
    padded[: len(values)] = values
    return (padded[0::2] | (padded[1::2] << 4)).astype(np.uint8).tobytes()


def _entries(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stored (codes, gaps): each non-zero code, preceded by fillers where a gap exceeds 15."""
    flat = codes.ravel()
    positions = np.flatnonzero(flat)
    gaps = np.diff(np.concatenate([[-1], positions])) - 1
    fillers = gaps // 16
    last_of_each = np.cumsum(fillers + 1) - 1
    out_gaps = np.full(int(last_of_each[-1]) + 1 if len(positions) else 0, 15, dtype=np.uint8)
    out_codes = np.zeros_like(out_gaps)
    out_gaps[last_of_each] = gaps - 16 * fillers
    out_codes[last_of_each] = flat[positions]
    return out_codes, out_gaps


def encode_net(layers: Sequence[NetLayer]) -> bytes:
    """The ``.net`` bytes of ``layers``, in the given order."""
    header, bodies = [], []
    for layer in layers:
        bits = bits_for(layer.name)
        if len(layer.codebook) != 2**bits:
            raise ValueError(f"{layer.name}: codebook needs {2**bits} entries")
        codes, gaps = _entries(layer.codes)
        header.append(len(codes))
        packed_codes = codes.astype(np.uint8).tobytes() if bits == 8 else _pack_nibbles(codes)
        bodies.append(
            np.asarray(layer.codebook, "<f4").tobytes()
            + np.asarray(layer.bias, "<f4").tobytes()
            + packed_codes
            + _pack_nibbles(gaps)
        )
    return np.asarray(header, "<u4").tobytes() + b"".join(bodies)


def write_net(path: Union[str, Path], layers: Sequence[NetLayer]) -> Path:
    """Write :func:`encode_net` ``(layers)`` to ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(encode_net(layers))
    return path


def random_layer(
    name: str, shape: Sequence[int], rng: np.random.Generator, density: float = 0.33, bias_length: int | None = None
) -> NetLayer:
    """A layer with random codebook, codes (``density`` of them non-zero) and bias."""
    bits = bits_for(name)
    codebook = np.concatenate([[0.0], rng.standard_normal(2**bits - 1)]).astype(np.float32)
    codes = rng.integers(1, 2**bits, size=shape).astype(np.uint8)
    codes[rng.random(shape) >= density] = 0
    bias = rng.standard_normal(shape[0] if bias_length is None else bias_length)
    return NetLayer(name, codes, codebook, bias.astype(np.float32))
