"""The training loop shared by ``python -m dsd_zoo.train`` and the digits demonstration.

:func:`train_phases` runs a :class:`~dsd_zoo.dsd.DSDSchedule` on a model: it prunes at the start
of a sparse phase, densifies at the start of a dense phase that follows one, builds one optimizer
per phase at the phase's learning rate, keeps the mask attached to it, and evaluates after each
phase. What an epoch is (data, sampler, device, progress bar) is the caller's, passed as
functions, so the same loop serves one process on tensors and DDP on an ImageFolder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from dsd_zoo.dsd.masks import DSD, SparsityReport
from dsd_zoo.dsd.schedule import DSDSchedule, Phase
from dsd_zoo.ranking import label_rank

__all__ = ["ErrorRates", "PhaseResult", "count_correct", "evaluate", "torch_settings", "train_epoch", "train_phases"]

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class ErrorRates:
    """Top-1 and top-5 error (fractions in [0, 1]) over ``n`` examples."""

    top1_err: float
    top5_err: float
    n: int

    @classmethod
    def from_counts(cls, counts: Tensor) -> ErrorRates:
        """From a ``[correct_top1, correct_top5, n]`` tensor, as :func:`count_correct` sums them."""
        correct1, correct5, n = (int(c) for c in counts)
        if n == 0:
            raise ValueError("no examples were evaluated; is the evaluation set empty?")
        # (n - correct) / n, not 1 - correct / n: 11 errors in 600 is 0.018333..., exactly as printed.
        return cls((n - correct1) / n, (n - correct5) / n, n)


@dataclass(frozen=True)
class PhaseResult:
    """What one phase produced: its evaluation, sparsity (when a DSD is used) and timings."""

    phase: Phase
    errors: ErrorRates
    sparsity: Optional[SparsityReport]
    train_loss: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of the phase."""
        return {
            "phase": asdict(self.phase),
            "eval": asdict(self.errors),
            "sparsity": self.sparsity.to_dict() if self.sparsity is not None else None,
            "train_loss": self.train_loss,
            "seconds": self.seconds,
        }


@contextlib.contextmanager
def torch_settings(threads: int | None = None, deterministic: bool = True) -> Iterator[None]:
    """Set torch's CPU thread count and deterministic mode for a run, and restore them after.

    Restoring matters because training may run inside a larger program (or a test session).
    ``threads=None`` leaves the thread count alone.
    """
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
    )
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        # warn_only: an op without a deterministic kernel warns instead of stopping a long run.
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not deterministic
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        torch.set_num_threads(saved[3])


def count_correct(logits: Tensor, target: Tensor) -> Tensor:
    """``[correct top-1, correct top-5, n]`` (int64) of one batch; top-5 is top-all below 5 classes.

    Equal logits are ranked as ``verify`` ranks them (:func:`~dsd_zoo.ranking.label_rank`).
    """
    rank = label_rank(logits, target)
    top5 = rank < min(5, logits.shape[1])
    return torch.tensor([int((rank < 1).sum()), int(top5.sum()), target.numel()], dtype=torch.int64)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device | str = "cpu",
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> ErrorRates:
    """Top-1/top-5 error of ``model`` (in eval mode) over ``batches``.

    ``reduce`` combines the ``[correct1, correct5, n]`` counts across processes (an all-reduce
    sum in distributed evaluation, where each rank saw a disjoint shard).
    """
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.int64)
    try:
        for images, target in batches:
            counts += count_correct(model(images.to(device)).cpu(), target.cpu())
    finally:
        model.train(was_training)
    return ErrorRates.from_counts(reduce(counts) if reduce is not None else counts)


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    device: torch.device | str = "cpu",
) -> float:
    """One pass of SGD over ``batches`` with the cross-entropy loss; returns its mean (weighted by batch size)."""
    model.train()
    total, seen = 0.0, 0
    for images, target in batches:
        images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(images), target)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * target.numel()
        seen += target.numel()
    return total / seen if seen else float("nan")


def train_phases(
    schedule: DSDSchedule,
    dsd: DSD | None,
    make_optimizer: Callable[[Phase], torch.optim.Optimizer],
    run_epoch: Callable[[torch.optim.Optimizer, Phase, int], float],
    evaluate_fn: Callable[[], ErrorRates],
    sync_masks: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
    on_phase_end: Callable[[PhaseResult, dict[str, Tensor]], None] | None = None,
) -> list[PhaseResult]:
    """Run every phase of ``schedule``; returns one :class:`PhaseResult` per phase.

    Args:
        schedule: the phases. A sparse phase right after another keeps the same mask.
        dsd: the pruning of the model being trained; may be ``None`` only if no phase is sparse
            (a dense baseline).
        make_optimizer: builds a fresh optimizer for a phase, at ``phase.lr``.
        run_epoch: trains one epoch, given the optimizer, the phase and the epoch's index
            counted over the whole schedule (for ``DistributedSampler.set_epoch``); returns the
            mean loss.
        evaluate_fn: evaluates the model after each phase.
        sync_masks: in distributed training, turns this rank's freshly computed masks into the
            masks every rank uses (e.g. rank 0's, broadcast).
        on_phase_end: called after each phase's evaluation with the result and the masks in
            force during the phase (empty for a dense phase), e.g. to write a checkpoint.
    """
    if dsd is None and any(p.sparse for p in schedule):
        raise ValueError("the schedule has sparse phases but no DSD was given to prune the model")
    results = []
    epoch = 0
    for phase in schedule:
        start = time.perf_counter()
        if phase.sparse and dsd is not None and not dsd.is_sparse:  # None only without sparse phases
            dsd.prune(sync_masks(dsd.compute_masks()) if sync_masks is not None else None)
        elif not phase.sparse and dsd is not None and dsd.is_sparse:
            dsd.densify()
        optimizer = make_optimizer(phase)
        loss = float("nan")
        # The handle comes off at the end, also when an epoch raises: no optimizer stays hooked to the masks.
        with dsd.attach(optimizer) if dsd is not None else contextlib.nullcontext():
            for _ in range(phase.epochs):
                loss = run_epoch(optimizer, phase, epoch)
                epoch += 1
        result = PhaseResult(
            phase=phase,
            errors=evaluate_fn(),
            sparsity=dsd.report() if dsd is not None else None,
            train_loss=loss,
            seconds=time.perf_counter() - start,
        )
        results.append(result)
        if on_phase_end is not None:
            on_phase_end(result, dsd.masks if dsd is not None else {})
    return results
