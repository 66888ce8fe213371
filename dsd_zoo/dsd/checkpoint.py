"""DSD masks and stage checkpoints as safetensors files, with per-layer sparsity in the metadata.

Two kinds of file, told apart by their ``format`` metadata entry:

``dsd_zoo.dsd.masks``
    One boolean tensor per pruned weight (``True`` = kept), named like the weight
    (``features.3.weight``). Dense tensors: no index tricks to get wrong.
``dsd_zoo.dsd.checkpoint``
    A model's plain state dict (it loads into the architecture with nothing from dsd-zoo). A
    sparse-stage checkpoint declares the pruned weights it holds; loading checks them.

In both, ``sparsity`` is a JSON object ``{name: {"numel", "pruned", "sparsity"}}``: what a
reader needs to know about the sparse stage without reading tensors, and what a loader checks
the tensors against. Other metadata entries are free-form strings of the caller's.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsd_zoo.atomic import PathLike, write_safetensors
from dsd_zoo.digests import hash_file
from dsd_zoo.dsd.masks import _unwrap
from dsd_zoo.errors import FormatError, WeightsError
from dsd_zoo.loading import check_state_dict, load_tensors, read_header

__all__ = ["file_record", "load_checkpoint", "load_masks", "read_metadata", "save_checkpoint", "save_masks"]

MASKS_FORMAT = "dsd_zoo.dsd.masks"
CHECKPOINT_FORMAT = "dsd_zoo.dsd.checkpoint"
FORMAT_VERSION = "1"
_RESERVED = ("format", "format_version", "sparsity")


def _sparsity_table(masks: Mapping[str, Tensor]) -> dict[str, dict[str, Any]]:
    counts = {name: (mask.numel(), int(mask.numel() - torch.count_nonzero(mask))) for name, mask in masks.items()}
    return {name: {"numel": n, "pruned": p, "sparsity": p / n if n else 0.0} for name, (n, p) in counts.items()}


def _write(
    path: PathLike, tensors: dict[str, Tensor], fmt: str, sparsity: dict[str, Any], extra: Mapping[str, str] | None
) -> Path:
    extra = dict(extra or {})
    clash = [k for k in extra if k in _RESERVED]
    if clash:  # write_safetensors checks that the metadata maps str to str
        raise ValueError(f"metadata may not use the reserved keys {_RESERVED}: {clash}")
    return write_safetensors(
        path,
        tensors,
        {**extra, "format": fmt, "format_version": FORMAT_VERSION, "sparsity": json.dumps(sparsity, sort_keys=True)},
    )


def read_metadata(path: PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (empty if it has none), read after its header is checked."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "a folder, not a safetensors file", os.fspath(path))
    return read_header(path)[1]


def _read(path: PathLike, fmt: str) -> tuple[dict[str, Tensor], dict[str, str], dict[str, dict[str, Any]]]:
    """Tensors, metadata and the parsed sparsity table of a file that must have format ``fmt``."""
    metadata = read_metadata(path)
    found = metadata.get("format")
    if found != fmt and not (fmt == CHECKPOINT_FORMAT and found is None):
        raise FormatError(f"{path}: expected a {fmt!r} file, its metadata says format={found!r}")
    if found is not None and metadata.get("format_version") != FORMAT_VERSION:
        raise FormatError(
            f"{path}: format_version {metadata.get('format_version')!r} is not {FORMAT_VERSION!r}; "
            "upgrade dsd-zoo to read it"
        )
    try:
        sparsity = json.loads(metadata.get("sparsity", "{}"))
    except (ValueError, RecursionError) as exc:  # not JSON, nested too deep, or an over-long number
        raise FormatError(
            f"{path}: the 'sparsity' metadata is not usable JSON ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(sparsity, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("numel"), int) and isinstance(v.get("pruned"), int)
        for v in sparsity.values()
    ):
        raise FormatError(f"{path}: the 'sparsity' metadata must map names to {{'numel': int, 'pruned': int, ...}}")
    tensors, _ = load_tensors(path)
    return tensors, metadata, sparsity


def file_record(path: Path) -> dict[str, Any]:
    """``{"file", "sha256", "size"}`` of a written file, as the training and demo results record it."""
    return {"file": path.name, "sha256": hash_file(path)["sha256"], "size": path.stat().st_size}


def save_masks(path: PathLike, masks: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Write keep-masks (``{weight name: bool tensor}``) with their per-layer sparsity; returns the path."""
    tensors = {name: mask.detach().to("cpu", torch.bool).contiguous() for name, mask in masks.items()}
    return _write(path, tensors, MASKS_FORMAT, _sparsity_table(tensors), metadata)


def load_masks(path: PathLike) -> dict[str, Tensor]:
    """Read masks written by :func:`save_masks`, checking dtype and the declared sparsity.

    Raises:
        FormatError: not a masks file, a non-boolean tensor, or tensors that disagree with the
            per-layer sparsity the metadata declares (a corrupted or hand-edited file).
    """
    tensors, _, sparsity = _read(path, MASKS_FORMAT)
    if set(tensors) != set(sparsity):
        raise FormatError(f"{path}: tensors {sorted(tensors)} and declared layers {sorted(sparsity)} differ")
    for name, mask in tensors.items():
        if mask.dtype != torch.bool:
            raise FormatError(f"{path}: mask {name!r} has dtype {mask.dtype}, expected torch.bool")
        declared = sparsity[name]
        pruned = int(mask.numel() - torch.count_nonzero(mask))
        if (mask.numel(), pruned) != (declared["numel"], declared["pruned"]):
            raise FormatError(
                f"{path}: mask {name!r} prunes {pruned} of {mask.numel()} weights, "
                f"its metadata declares {declared['pruned']} of {declared['numel']}"
            )
    return tensors


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    masks: Mapping[str, Tensor] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s state dict; with ``masks`` (a sparse stage) declare the pruned weights.

    The file holds exactly the state dict's tensors, under the same names, so that
    ``model.load_state_dict(safetensors.torch.load_file(path))`` works on the plain architecture
    (a DDP, DataParallel or ``torch.compile`` wrapper is looked through, as :class:`DSD` does).
    """
    state = _unwrap(model).state_dict()
    unknown = [name for name in (masks or {}) if name not in state]
    if unknown:
        raise WeightsError(f"masks name weights that are not in the model's state dict: {unknown}")
    return _write(path, state, CHECKPOINT_FORMAT, _sparsity_table(masks or {}), metadata)


def load_checkpoint(path: PathLike, model: nn.Module) -> dict[str, str]:
    """Load a checkpoint into ``model`` strictly and return the file's metadata.

    Raises:
        WeightsError: a tensor missing, unexpected or of another shape than the model's.
        FormatError: an unreadable file, or a sparse-stage checkpoint whose weights have fewer
            zeros than it declares pruned.
    """
    model = _unwrap(model)
    tensors, metadata, sparsity = _read(path, CHECKPOINT_FORMAT)
    check_state_dict(
        {k: tuple(v.shape) for k, v in model.state_dict().items()},
        {k: tuple(v.shape) for k, v in tensors.items()},
        f"checkpoint {path}",
    )
    for name, declared in sparsity.items():
        if name not in tensors:
            raise FormatError(f"{path}: declares sparsity for {name!r}, which it does not hold")
        if declared["numel"] != tensors[name].numel():
            raise FormatError(
                f"{path}: declares {declared['numel']} elements for {name!r}, which has {tensors[name].numel()}"
            )
        zeros = int((tensors[name] == 0).sum())
        if zeros < declared["pruned"]:
            raise FormatError(f"{path}: {name!r} has {zeros} zeros but declares {declared['pruned']} pruned weights")
    model.load_state_dict(tensors, strict=True)
    return metadata
