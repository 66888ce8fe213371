"""scikit-learn's bundled digits, split once and for all into the demonstration's train and test sets.

``sklearn.datasets.load_digits`` ships inside scikit-learn (no download): 1,797 real 8x8 images
of handwritten digits, a copy of the test part of the UCI "Optical Recognition of Handwritten
Digits" data set. scikit-learn is the optional extra ``dsd-zoo[demo]``; only this module imports
it, and nothing imports this module but the demonstration and the training CLI's built-in data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DIGITS_SOURCE", "TEST_SIZE", "DigitsSplit", "load_digits_split_sklearn"]

# 600 of 1,797 (a third): every 0.17 % of test error is one image, fine enough to compare runs.
TEST_SIZE = 600
SPLIT_SEED = 0
DIGITS_SOURCE = (
    "scikit-learn sklearn.datasets.load_digits (UCI Optical Recognition of Handwritten Digits, "
    "1,797 8x8 images, pixels 0..16)"
)


@dataclass(frozen=True)
class DigitsSplit:
    """A fixed stratified train/test split: ``uint8 [N, 8, 8]`` images, ``int64 [N]`` labels."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor

    @property
    def description(self) -> str:
        """How the split was made, precisely enough to redo it."""
        return (
            f"sklearn.model_selection.train_test_split(test_size={TEST_SIZE}, stratify=labels, "
            f"random_state={SPLIT_SEED}): {self.train_labels.numel()} train / {self.test_labels.numel()} test"
        )


def load_digits_split_sklearn() -> DigitsSplit:
    """Load ``load_digits`` and split it (stratified, fixed seed): always the same 1,197 / 600 images.

    Raises:
        ImportError: scikit-learn is missing; ``pip install 'dsd-zoo[demo]'`` installs it.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError(
            "the digits demonstration needs scikit-learn: pip install 'dsd-zoo[demo]' (or scikit-learn)"
        ) from exc
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype("uint8"))
    labels = torch.from_numpy(digits.target.astype("int64"))
    train_idx, test_idx = train_test_split(
        torch.arange(labels.numel()).numpy(), test_size=TEST_SIZE, stratify=labels.numpy(), random_state=SPLIT_SEED
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return DigitsSplit(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
