"""MNIST-1D, generated on this machine by its authors' generator with its published defaults.

MNIST-1D (Greydanus & Kobak, arXiv 2011.14439; the ``mnist1d`` package, Apache-2.0) draws
5,000 length-40 signals of ten classes from fixed templates with random padding, translation,
scaling, shear and noise. ``mnist1d.data.make_dataset`` seeds NumPy itself (seed 42 in the
default arguments), so every call gives the same 4,000 training and 1,000 test sequences.

Nothing is downloaded or unpickled: only ``make_dataset`` is called, never ``get_dataset``
(which fetches a pickle from the network). The arguments passed to it are the package's
``get_dataset_args()`` without the ``url`` entry, so a generator that tried to use it would
fail instead of fetching. ``mnist1d`` is the optional extra ``dsd-zoo[demo]``; only this module
imports it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["MNIST1D_SOURCE", "Mnist1dSplit", "make_mnist1d_split"]

MNIST1D_SOURCE = (
    "MNIST-1D (Greydanus & Kobak, arXiv 2011.14439), generated locally by "
    "mnist1d.data.make_dataset with the package's default arguments"
)


@dataclass(frozen=True)
class Mnist1dSplit:
    """The generator's own train/test split: ``float32 [N, 40]`` signals, ``int64 [N]`` labels.

    ``args`` are the generator's arguments; ``description`` says how the split was made,
    precisely enough to redo it.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    args: dict[str, Any]
    description: str

    def sha256(self) -> str:
        """Digest of the four tensors' bytes, to check that two machines generated the same data."""
        tensors = (self.train_x, self.train_y, self.test_x, self.test_y)
        return hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for t in tensors)).hexdigest()


def make_mnist1d_split() -> Mnist1dSplit:
    """Generate MNIST-1D with the published defaults (about a second; no network).

    Raises:
        ImportError: ``mnist1d`` is missing; ``pip install 'dsd-zoo[demo]'`` installs it.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset  # type: ignore[import-untyped]  # no stubs
        from mnist1d.utils import ObjectView  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError(
            "the MNIST-1D study needs the mnist1d package: pip install 'dsd-zoo[demo]' (or mnist1d)"
        ) from exc
    args = {k: v for k, v in get_dataset_args(as_dict=True).items() if k != "url"}
    # make_dataset reseeds Python's and NumPy's global generators; the caller's are put back.
    saved = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    return Mnist1dSplit(
        train_x=torch.from_numpy(data["x"].astype(np.float32)),
        train_y=torch.from_numpy(data["y"].astype(np.int64)),
        test_x=torch.from_numpy(data["x_test"].astype(np.float32)),
        test_y=torch.from_numpy(data["y_test"].astype(np.int64)),
        args=args,
        description=(
            f"make_dataset's own split (first {args['train_split']:.0%} of {args['num_samples']} "
            f"shuffled samples, generator seed {args['seed']}): {len(data['y'])} train / {len(data['y_test'])} test"
        ),
    )
