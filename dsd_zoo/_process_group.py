"""The torchrun process group, joined one way by training and evaluation.

``torch.distributed.nn.functional`` evaluates ``group=group.WORLD`` default arguments when it is
first imported. Imported after the default group exists (torchvision imports it on its own first
import, DDP when it is first built), those defaults hold the group for the rest of the process:
``destroy_process_group`` then leaves it, and gloo's worker threads, running. A worker that frees
a finished collective while the interpreter shuts down needs the GIL, is stopped by Python's
finalization, and aborts the rank ("terminate called without an active exception"). Imported
before the group exists, the defaults are ``None``: :func:`process_group` imports it first.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Rank", "all_gather_json", "all_reduce_sum", "barrier", "process_group", "rank_and_world"]


@dataclass(frozen=True)
class Rank:
    """This process's place in the job: a plain process is rank 0 of 1."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0


@contextlib.contextmanager
def process_group(device: torch.device | str) -> Iterator[Rank]:
    """Join the process group ``torchrun`` describes in the environment for the block; yield this rank's place.

    Launched by ``torchrun`` (``WORLD_SIZE`` > 1), a CUDA device becomes ``cuda:LOCAL_RANK`` and
    the group is initialised from the environment with NCCL for CUDA and gloo otherwise, then
    destroyed when the block ends. A group that already exists is joined as it is and left
    running: it is its creator's to destroy. A plain process is rank 0 of 1 on ``device``.
    """
    target = torch.device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        yield Rank(0, 1, target)
        return
    if target.type == "cuda":
        target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(target)
    owns_group = not dist.is_initialized()
    if owns_group:
        importlib.import_module("torch.distributed.nn.functional")  # see the module docstring
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    try:
        yield Rank(*rank_and_world(), target)
    finally:
        if owns_group:
            dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks (0 and 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank when a process group is initialised; a no-op otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks, on the CPU (``tensor`` itself without a process group).

    ``device`` is this rank's device: NCCL reduces CUDA tensors only, gloo CPU ones.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    reduced = tensor.to(device)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


def all_gather_json(obj: Any, device: torch.device) -> list[Any]:
    """A JSON-serialisable object from every rank, in rank order (sent as UTF-8 bytes: nothing is unpickled).

    ``device`` is this rank's device; the bytes travel through it under NCCL, which reduces CUDA
    tensors only, and through the CPU under gloo.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    if dist.get_backend() != "nccl":
        device = torch.device("cpu")
    world = dist.get_world_size()
    payload = torch.tensor(list(json.dumps(obj).encode("utf-8")), dtype=torch.uint8, device=device)
    size = torch.tensor([payload.numel()], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    padded = torch.zeros(max(int(s) for s in sizes), dtype=torch.uint8, device=device)
    padded[: payload.numel()] = payload
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return [json.loads(bytes(buf[: int(n)].cpu().tolist()).decode("utf-8")) for buf, n in zip(gathered, sizes)]
