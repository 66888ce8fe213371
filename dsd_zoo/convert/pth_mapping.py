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

import torch

from ..digests import Digest, hash_file
from ..errors import ConversionError, FormatError, IntegrityError
from .tensors import architecture_shapes, check_against_architecture

__all__ = ["map_port", "read_port"]

_STEM = {"conv1": "0", "bn1": "1", "fc": "10.1"}  # 10 is Sequential[View, Linear]
# A bottleneck block's modules -> their place in the port's block: ``0.0.N`` the branch, ``0.1``
# the projection shortcut, ``2`` the BatchNorm after the addition.
_BLOCK = {
    "conv1": "0.0.0",
    "bn1": "0.0.1",
    "conv2": "0.0.3",
    "bn2": "0.0.4",
    "conv3": "0.0.6",
    "downsample": "0.1",
    "bn_after_add": "2",
}


def read_port(path: "os.PathLike[str] | str", digest: Digest) -> Dict[str, Any]:
    """The tensors of the port's ``.pth`` file, read only once its digest matched ``digest``."""
    seen = hash_file(path, {"sha256", digest.algorithm})  # an unreadable file is an OSError, as for every reader
    if not digest.matches(seen):
        raise IntegrityError(
            f"{path} is not the published file: its sha256 is {seen['sha256']}, the publisher gave "
            f"{digest}; it is not unpickled"
        )
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
    if arch != "fb_resnet50":
        raise ConversionError(f"{source}: the PyTorch port holds a ResNet-50, not {arch}")
    # The 2017 port has no num_batches_tracked counters: they are the only keys it lacks.
    renamed = {_port_key(key): key for key in architecture_shapes(arch) if not key.endswith(".num_batches_tracked")}
    state: Dict[str, Any] = {}
    for key, value in tensors.items():
        if key not in renamed:
            raise ConversionError(f"{source}: key {key!r} has no place in {arch} (not the port's layout)")
        state[renamed[key]] = value.detach().to(torch.float32).contiguous().clone()
    for key in [k for k in state if k.endswith(".running_var")]:
        state.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.zeros((), dtype=torch.long))
    if not all(bool(torch.isfinite(v).all()) for v in state.values()):
        raise ConversionError(f"{source}: the file holds non-finite weights")
    check_against_architecture(state, arch, source)
    return state, {"mapping": "pytorch-planet-amazon resnet50_dsd layout", "warnings": []}


def _port_key(key: str) -> str:
    """The port's name of an ``fb_resnet50`` key: the module's place in the Torch7 tree, then the field."""
    parts = key.split(".")
    if parts[0].startswith("layer"):  # layerS.B.module[.0].field: stage S is the tree's module S + 3
        return f"{int(parts[0][len('layer') :]) + 3}.{parts[1]}.{_BLOCK[parts[2]]}.{parts[-1]}"
    return f"{_STEM[parts[0]]}.{parts[-1]}"
