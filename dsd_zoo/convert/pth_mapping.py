"""A third-party PyTorch port of ResNet50_DSD -> the dsd-zoo ``fb_resnet50`` state dict.

rwightman/pytorch-planet-amazon (commit c5a054c, ``models/resnet50_dsd.py``) published the DSD
ResNet-50 as ``resnet50_dsd-b5ae1a3f.pth``: the release's ``.t7`` converted by
convert_torch_to_pytorch into one flat ``nn.Sequential`` whose indices follow the Torch7 tree:

* ``0`` conv1 (with bias), ``1`` its BatchNorm; ``4``..``7`` the four stages;
* in stage ``S`` block ``B``: ``S.B.0.0.{0,1,3,4,6}`` the bottleneck's conv, BN, conv, BN, conv
  (ReLUs at 2 and 5 hold nothing), ``S.B.0.1`` the projection shortcut (a biased 1x1 conv, first
  block of each stage only), ``S.B.2`` the BatchNorm after the addition;
* ``10.1`` the classifier (``10.0`` is the View, which holds nothing).

The file is a pickle. It is read with torch's weights-only loader (``weights_only=True``), which
rebuilds tensors and plain containers and runs no code, and only after its sha256 matched the digest its
publisher gave (the ``-b5ae1a3f`` prefix of its name, torch.hub's convention): this is the one
place dsd-zoo reads that format (docs/architecture.md says why). Every key of the file must be
used and every shape must be the architecture's.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

from ..digests import Digest, hash_file
from ..errors import ConversionError, FormatError, IntegrityError
from .tensors import check_against_architecture

__all__ = ["map_port", "read_port"]

_STAGES = {4: "layer1", 5: "layer2", 6: "layer3", 7: "layer4"}
_BRANCH = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3"}
_BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
_CONV_FIELDS = ("weight", "bias")


def read_port(path: "os.PathLike[str] | str", digest: Digest) -> Dict[str, Any]:
    """The tensors of the port's ``.pth`` file, read only once its digest matched ``digest``."""
    try:
        seen = hash_file(path, {"sha256", digest.algorithm})
    except OSError as exc:
        raise ConversionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not digest.matches(seen):
        raise IntegrityError(
            f"{path} is not the published file: its sha256 is {seen['sha256']}, the publisher gave "
            f"{digest}; it is not unpickled"
        )
    import torch

    try:
        loaded = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds (pickle, zip, key errors) for a malformed file
        raise FormatError(f"{path}: not a PyTorch state dict of plain tensors ({type(exc).__name__}: {exc})") from exc
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise FormatError(f"{path}: expected a mapping of names to tensors, got {type(loaded).__name__}")
    return loaded


def map_port(tensors: Dict[str, Any], arch: str, source: str = "") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Rename the port's keys to ``arch``'s (``fb_resnet50``); every key is used and every shape checked."""
    import torch

    if arch != "fb_resnet50":
        raise ConversionError(f"{source}: the PyTorch port holds a ResNet-50, not {arch}")
    state: Dict[str, Any] = {}
    for key, value in tensors.items():
        target = _target(key)
        if target is None:
            raise ConversionError(f"{source}: key {key!r} has no place in {arch} (not the port's layout)")
        state[target] = value.detach().to(torch.float32).contiguous().clone()
    for key in [k for k in state if k.endswith(".running_var")]:  # the 2017 port has no counters
        state.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    if not all(bool(torch.isfinite(v).all()) for v in state.values()):
        raise ConversionError(f"{source}: the file holds non-finite weights")
    check_against_architecture(state, arch, source)
    return state, {"mapping": "pytorch-planet-amazon resnet50_dsd layout", "warnings": []}


def _target(key: str) -> "str | None":
    """The ``fb_resnet50`` key of a key of the port, or ``None`` when it has no place there."""
    parts = key.split(".")
    field, index = parts[-1], parts[:-1]
    stem = {("0",): ("conv1", _CONV_FIELDS), ("1",): ("bn1", _BN_FIELDS), ("10", "1"): ("fc", _CONV_FIELDS)}
    if tuple(index) in stem:
        name, fields = stem[tuple(index)]
        return f"{name}.{field}" if field in fields else None
    if len(index) < 3 or not index[0].isdigit() or int(index[0]) not in _STAGES or not index[1].isdigit():
        return None
    module = _block_module(index[2:])
    if module is None or field not in (_BN_FIELDS if module.startswith("bn") else _CONV_FIELDS):
        return None
    return f"{_STAGES[int(index[0])]}.{int(index[1])}.{module}.{field}"


def _block_module(rest: "list[str]") -> "str | None":
    """The module of a bottleneck block that the rest of a port key (after stage and block) addresses."""
    if rest[:2] == ["0", "0"] and len(rest) == 3 and rest[2] in _BRANCH:
        return _BRANCH[rest[2]]
    if rest == ["0", "1"]:
        return "downsample.0"
    if rest == ["2"]:
        return "bn_after_add"
    return None
