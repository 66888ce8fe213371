"""Process-group plumbing for DSD training under ``torchrun``: setup, mask broadcast, digests.

Every rank holds the same weights (DDP broadcasts rank 0's at construction and keeps them equal),
so every rank could compute the same masks, except that ``topk``'s choice among equal magnitudes
is not guaranteed to be the same on every device. The masks are therefore taken from rank 0 and
broadcast, and each rank's digest of them is gathered so a run records that they are identical.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from dsd_zoo._process_group import all_gather_json, barrier, process_group, rank_and_world

__all__ = [
    "Distributed",
    "broadcast_buffers",
    "broadcast_masks",
    "gather_strings",
    "setup_distributed",
    "tensors_digest",
]


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job (a single process is rank 0 of 1)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group is running."""
        return self.world_size > 1

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        """The sum of ``tensor`` over ranks (``tensor`` itself when single-process)."""
        if not self.enabled:
            return tensor
        # NCCL reduces CUDA tensors only; gloo takes CPU ones.
        reduced = tensor.to(self.device)
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced.cpu()

    def barrier(self) -> None:
        """Wait for every rank (no-op single-process)."""
        barrier()


@contextlib.contextmanager
def setup_distributed(use_cuda: bool) -> Iterator[Distributed]:
    """Join the process group ``torchrun`` describes in the environment for the block, or run single-process.

    Under torchrun each rank takes GPU ``LOCAL_RANK`` with the NCCL backend when ``use_cuda``,
    else the CPU with gloo (see :func:`dsd_zoo._process_group.process_group`, which verify joins
    the same way), and the group is destroyed when the block ends. A process group that is
    already initialized is joined as it is and left running: it is the caller's to destroy.
    """
    with process_group("cuda" if use_cuda else "cpu") as device:
        rank, world_size = rank_and_world()
        yield Distributed(rank, world_size, device)


def broadcast_masks(masks: Mapping[str, Tensor], dist_info: Distributed) -> dict[str, Tensor]:
    """Rank 0's masks on every rank (``masks`` are this rank's; same names and shapes everywhere)."""
    if not dist_info.enabled:
        return dict(masks)
    # uint8: both gloo and NCCL broadcast it; bool support varies by backend and version.
    buffers = {name: masks[name].to(dist_info.device, torch.uint8).contiguous() for name in masks}
    for name in sorted(masks):  # the same order on every rank
        dist.broadcast(buffers[name], src=0)
    return {name: buffers[name].bool().to(masks[name].device) for name in masks}


def broadcast_buffers(module: torch.nn.Module, dist_info: Distributed) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP broadcasts buffers at the start of each training forward, then every rank updates its
    own copy with its own batch: after the last step they differ slightly. Syncing them before
    evaluation makes every rank evaluate, and rank 0 save, the same model.
    """
    if not dist_info.enabled:
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


def gather_strings(value: str, dist_info: Distributed) -> list[str]:
    """``value`` from every rank, in rank order (sent as JSON, not pickled)."""
    return all_gather_json(value, dist_info.device)
