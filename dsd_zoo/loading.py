"""The one loader: a safetensors file -> a model built on the meta device, strictly checked.

Only safetensors is ever read (no pickle, no ``torch.load``). The header is validated before
safetensors touches the file, so a truncated or hostile file gives a :class:`FormatError` that
says what is wrong instead of a low-level exception. The module is built on the meta device
and the tensors are assigned, so loading never pays for a random initialisation, and every
missing, unexpected or wrongly shaped tensor is named.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

from .errors import FormatError, WeightsError
from .sniff import FORMAT_NAMES, sniff

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit
_DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def read_header(path: "os.PathLike[str] | str") -> Tuple[Dict[str, dict], Dict[str, str]]:
    """Validate a safetensors header and return (tensor entries, metadata).

    Checks what a hostile or damaged file could get wrong: the header length against the file
    size and a sane limit, JSON syntax, dtypes, shapes, and that the data offsets tile the data
    section exactly.
    """
    path = Path(path)
    size, raw = _raw_header(path)
    try:
        header = json.loads(raw.decode("utf-8"))
    # ValueError also covers integers longer than Python's digit limit; RecursionError, deep nesting.
    except (ValueError, RecursionError) as exc:
        raise FormatError(_not_safetensors(path, f"its header is not JSON: {exc}")) from exc
    if not isinstance(header, dict):
        raise FormatError(f"{path}: safetensors header must be a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(f"{path}: safetensors __metadata__ must map strings to strings")
    data_size = size - 8 - len(raw)
    spans = sorted(_tensor_span(path, name, info, data_size) for name, info in header.items())
    position = 0
    for begin, end in spans:
        if begin != position:
            raise FormatError(f"{path}: tensor data overlaps or leaves a gap at byte {position}")
        position = end
    if position != data_size:
        raise FormatError(f"{path}: {data_size - position} trailing bytes after the last tensor (damaged file?)")
    return header, metadata


def _raw_header(path: Path) -> Tuple[int, bytes]:
    """The file's size and its header's bytes, the length checked against both before they are read."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise FormatError(f"{path}: not a safetensors file ({size} bytes, too short for a header)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                raise FormatError(
                    _not_safetensors(
                        path,
                        f"header length {header_len} exceeds the file ({size} bytes) "
                        f"or the {MAX_HEADER_BYTES}-byte limit",
                    )
                )
            return size, handle.read(header_len)
    except OSError as exc:
        raise FormatError(f"cannot read weights file {path}: {exc.strerror or exc}") from exc


def _tensor_span(path: Path, name: str, info: object, data_size: int) -> Tuple[int, int]:
    """The (begin, end) bytes of one tensor in the data section, after checking its entry."""
    if not isinstance(info, dict):
        raise FormatError(f"{path}: tensor {name!r} must be described by a JSON object, got {type(info).__name__}")
    dtype = info.get("dtype")
    if not isinstance(dtype, str) or dtype not in _DTYPE_SIZES:
        raise FormatError(f"{path}: tensor {name!r} has an unknown dtype {dtype!r:.40}")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    # type() rather than isinstance(): JSON true/false are ints to Python, not to safetensors.
    if (
        not isinstance(shape, list)
        or not all(type(d) is int and d >= 0 for d in shape)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
    ):
        raise FormatError(f"{path}: tensor {name!r} has a malformed shape or data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size or end - begin != math.prod(shape) * _DTYPE_SIZES[dtype]:
        raise FormatError(
            f"{path}: tensor {name!r} ({dtype} {shape}) has data_offsets {offsets} that do not "
            f"fit its size or the {data_size}-byte data section (truncated file?)"
        )
    return begin, end


def load_tensors(path: "os.PathLike[str] | str", device: str = "cpu"):
    """Read every tensor of a validated safetensors file: (tensors, metadata)."""
    from safetensors.torch import load_file

    _, metadata = read_header(path)
    try:
        tensors = load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own SafetensorError; re-raise as ours
        raise FormatError(f"{path}: safetensors could not read it: {exc}") from exc
    return tensors, metadata


class IdentityConflict(NamedTuple):
    """A weights file whose own record says it holds another model or architecture."""

    message: str  # names the file, what it holds and what was asked for
    recorded_model: Optional[str]  # the model it says it holds, if it names one


def recorded_identity(path: "os.PathLike[str] | str") -> Tuple[Optional[str], Optional[str]]:
    """The model and architecture a weights file's metadata says it holds (``None`` for what it does not say)."""
    _, metadata = read_header(path)
    return metadata.get("model") or None, metadata.get("arch") or None


def _not_safetensors(path: Path, detail: str) -> str:
    """Why ``path`` cannot be read as weights: what it is, when that is recognisable, and what to do."""
    kind = sniff(path)
    if kind in ("caffemodel", "torch7", "zip", "pickle"):
        return (
            f"{path} is {FORMAT_NAMES[kind]}, not a safetensors weight file: an original release must be "
            "converted first: python -m dsd_zoo.convert FILE --model NAME --install (then get_model(NAME))"
        )
    if kind is not None and kind != "safetensors":
        return f"{path} is {FORMAT_NAMES[kind]}, not a safetensors weight file"
    return (
        f"{path}: not a safetensors file or truncated ({detail}); an original release file (.caffemodel, .t7, "
        ".net) must be converted first: python -m dsd_zoo.convert FILE --model NAME --install"
    )


def identity_conflict(path: "os.PathLike[str] | str", model: str, arch: str) -> Optional[IdentityConflict]:
    """Why the file at ``path`` is not weights of ``model`` (architecture ``arch``), by its own record; else ``None``.

    Converted and released files record the model and architecture they hold in their
    metadata: loaded as another model, they would make a false table (a sparse stage reported
    as the DSD model). A file that records neither, such as a user's fine-tune, has no conflict.
    """
    recorded_model, recorded_arch = recorded_identity(path)
    if recorded_model is not None and recorded_model != model:
        return IdentityConflict(f"{path} holds {recorded_model} (its metadata says so), not {model}", recorded_model)
    if recorded_arch is not None and recorded_arch != arch:
        return IdentityConflict(
            f"{path} holds a {recorded_arch} network (its metadata says so), not {model}'s {arch}", recorded_model
        )
    return None


def check_state_dict(
    expected: Mapping[str, Tuple[int, ...]],
    found: Mapping[str, Tuple[int, ...]],
    source: str,
    optional_prefixes: Tuple[str, ...] = (),
) -> None:
    """Raise :class:`WeightsError` naming every missing, unexpected or wrongly shaped tensor."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(k for k in set(found) - set(expected) if not k.startswith(optional_prefixes))
    wrong = sorted(
        f"{k}: file {tuple(found[k])}, model {tuple(expected[k])}"
        for k in set(expected) & set(found)
        if tuple(found[k]) != tuple(expected[k])
    )
    if missing or unexpected or wrong:
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        # Same layers, other sizes: most often the class count.
        only_shapes = wrong and not missing and not unexpected
        hint = " (if only the classifier differs, pass the num_classes the file was saved with)" if only_shapes else ""
        raise WeightsError(f"{source} does not fit the architecture: " + "; ".join(parts) + hint)


def build_with_weights(arch, path: "os.PathLike[str] | str", build_kwargs: Optional[dict] = None):
    """Build ``arch`` and fill it from the safetensors file at ``path`` (meta device, assign).

    Tensors under ``arch.optional_prefixes`` (GoogLeNet's auxiliary heads) may be in the file
    without a place in the model.
    """
    import torch

    with torch.device("meta"):
        model = arch.build(**(build_kwargs or {}))
    tensors, _ = load_tensors(path)
    target = model.state_dict(keep_vars=True)
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    check_state_dict(
        {k: tuple(v.shape) for k, v in target.items()}, found, f"weights file {path}", arch.optional_prefixes
    )
    # Assigned in the model's dtypes (.to() returns a tensor that already has it unchanged).
    model.load_state_dict(
        {k: v.to(target[k].dtype) for k, v in tensors.items() if k in target}, strict=True, assign=True
    )
    return model.eval()
