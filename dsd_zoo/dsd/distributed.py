"""What DSD training under ``torchrun`` sends between ranks: masks, BatchNorm buffers, digests.

Every rank holds the same weights (DDP broadcasts rank 0's at construction and keeps them equal),
so every rank could compute the same masks, except that ``topk``'s choice among equal magnitudes
is not guaranteed to be the same on every device. The masks are therefore taken from rank 0 and
broadcast, and each rank's digest of them is gathered so a run records that they are identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from dsd_zoo._process_group import Rank

__all__ = ["broadcast_buffers", "broadcast_masks", "tensors_digest"]


def broadcast_masks(masks: Mapping[str, Tensor], here: Rank) -> dict[str, Tensor]:
    """Rank 0's masks on every rank (``masks`` are this rank's; same names and shapes everywhere)."""
    if here.world_size == 1:
        return dict(masks)
    # uint8: both gloo and NCCL broadcast it; bool support varies by backend and version.
    buffers = {name: masks[name].to(here.device, torch.uint8).contiguous() for name in masks}
    for name in sorted(masks):  # the same order on every rank
        dist.broadcast(buffers[name], src=0)
    return {name: buffers[name].bool().to(masks[name].device) for name in masks}


def broadcast_buffers(module: torch.nn.Module, here: Rank) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts buffers at the start of each training forward, then every rank updates its
    own copy with its own batch: after the last step they differ slightly. Syncing them before
    evaluation makes every rank evaluate, and rank 0 save, the same model.
    """
    if here.world_size == 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of ``tensors`` (in name order)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
