"""Top-k counting with a fixed order of ties: shared by ``verify``'s evaluation and the DSD training loop."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["label_rank"]


def label_rank(logits: Tensor, labels: Tensor) -> Tensor:
    """The true class's 0-based place in each row's ranking of the classes (0 = top-1 hit).

    The true class is in the top k when its rank is below k. Equal logits are ranked by class
    index, the higher index first, as Caffe's ``AccuracyLayer`` ranked them when the DSD release
    was evaluated (a ``partial_sort`` of ``(score, index)`` pairs with ``std::greater``, 2016).
    ``topk`` cannot be used: which of several equal logits it returns is unspecified and varies
    with the row length, and exact ties do occur (SqueezeNet's logits are averages of ReLU
    outputs and can be exactly 0; bfloat16 logits under ``--fast`` tie often). A fixed order keeps
    the counts a function of the logits alone, so every run and every rank agrees. A NaN ranks
    above every number; a true class whose logit is NaN gets rank ``num_classes`` (never a hit).
    """
    true = logits.gather(1, labels[:, None])
    later = torch.arange(logits.shape[1], device=logits.device) > labels[:, None]
    ahead = (logits > true) | ((logits == true) & later) | logits.isnan()
    return torch.where(true.squeeze(1).isnan(), logits.shape[1], ahead.sum(dim=1))
