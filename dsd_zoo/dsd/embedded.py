"""The digits data: scikit-learn's bundled digits split once, the embedded zoo's test split file, its evaluation.

``sklearn.datasets.load_digits`` ships inside scikit-learn (no download): 1,797 real 8x8 images
of handwritten digits, a copy of the test part of the UCI "Optical Recognition of Handwritten
Digits" data set. :func:`load_digits_split_sklearn` splits it into the demonstration's train and
test sets; scikit-learn is the optional extra ``dsd-zoo[demo]``, imported by that function only.

The DSD demonstration (:mod:`dsd_zoo.dsd.demo`) trains :func:`dsd_zoo.models.digits.digits_net`
on that split and ships three of its models (baseline, sparse stage, DSD) with the test split in
``dsd_zoo/data/embedded/``. This module reads that split and evaluates a model on it with nothing
but torch and safetensors: no network, no scikit-learn.

The split file holds ``images`` (``uint8 [N, 8, 8]``, values 0..16 as ``load_digits`` gives
them) and ``labels`` (``int64 [N]``); its metadata names the source and the split.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from dsd_zoo.atomic import PathLike, write_safetensors
from dsd_zoo.errors import FormatError
from dsd_zoo.loading import load_tensors, read_header

__all__ = [
    "DIGITS_FORMAT",
    "DIGITS_SOURCE",
    "DigitsSplit",
    "digits_input",
    "evaluate_digits",
    "load_digits_split",
    "load_digits_split_sklearn",
    "save_digits_split",
]

DIGITS_FORMAT = "dsd_zoo.digits.split"
DIGITS_SOURCE = (
    "scikit-learn sklearn.datasets.load_digits (UCI Optical Recognition of Handwritten Digits, "
    "1,797 8x8 images, pixels 0..16)"
)
# 600 of 1,797 (a third): every 0.17 % of test error is one image, fine enough to compare runs.
TEST_SIZE = 600
SPLIT_SEED = 0
# load_digits pixels count the set bits of a 4x4 block of the original 32x32 bitmap: 0..16.
_MAX_PIXEL = 16
_NUM_CLASSES = 10


@dataclass(frozen=True)
class DigitsSplit:
    """A fixed stratified train/test split: ``uint8 [N, 8, 8]`` images, ``int64 [N]`` labels.

    ``description`` says how the split was made, precisely enough to redo it.
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    description: str


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
    return DigitsSplit(
        images[train_idx],
        labels[train_idx],
        images[test_idx],
        labels[test_idx],
        description=(
            f"sklearn.model_selection.train_test_split(test_size={TEST_SIZE}, stratify=labels, "
            f"random_state={SPLIT_SEED}): {train_idx.numel()} train / {test_idx.numel()} test"
        ),
    )


def digits_input(images: Tensor) -> Tensor:
    """The model input for ``uint8 [N, 8, 8]`` digit images: ``float32 [N, 1, 8, 8]`` in ``[0, 1]``."""
    from dsd_zoo.transforms import DigitsTransform

    return DigitsTransform(max_value=_MAX_PIXEL).normalize(images.unsqueeze(1))


def save_digits_split(path: PathLike, images: Tensor, labels: Tensor, metadata: Mapping[str, str]) -> Path:
    """Write a digits split (``uint8 [N, 8, 8]`` images, ``int64 [N]`` labels) with its provenance."""
    _check_split(images, labels, os.fspath(path))
    return write_safetensors(
        path,
        {"images": images.contiguous(), "labels": labels.contiguous()},
        {**metadata, "format": DIGITS_FORMAT, "n": str(labels.numel())},
    )


def _check_split(images: Tensor, labels: Tensor, where: str) -> None:
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (8, 8):
        raise FormatError(f"{where}: images must be uint8 [N, 8, 8], got {images.dtype} {tuple(images.shape)}")
    if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
        raise FormatError(
            f"{where}: labels must be int64 [{images.shape[0]}], got {labels.dtype} {tuple(labels.shape)}"
        )
    if images.numel() and int(images.max()) > _MAX_PIXEL:
        raise FormatError(f"{where}: pixel values must be 0..{_MAX_PIXEL}, found {int(images.max())}")
    if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < _NUM_CLASSES):
        raise FormatError(f"{where}: labels must be 0..{_NUM_CLASSES - 1}")


def load_digits_split(path: PathLike) -> tuple[Tensor, Tensor, dict[str, str]]:
    """Read a split written by :func:`save_digits_split`: ``(images, labels, metadata)``, validated.

    Raises:
        FormatError: not a digits split file, or tensors of the wrong name, dtype, shape or range.
    """
    header, metadata = read_header(path)
    if metadata.get("format") != DIGITS_FORMAT or set(header) != {"images", "labels"}:
        raise FormatError(
            f"{path}: not a digits split (format {metadata.get('format')!r}, tensors {sorted(header)}); "
            f"expected format {DIGITS_FORMAT!r} with tensors ['images', 'labels']"
        )
    tensors, _ = load_tensors(path)
    _check_split(tensors["images"], tensors["labels"], os.fspath(path))
    return tensors["images"], tensors["labels"], metadata


def evaluate_digits(model: nn.Module, test_file: PathLike) -> tuple[float, float, int]:
    """``(top1_err, top5_err, n)`` of ``model`` on the digits split in ``test_file``.

    Errors are fractions in ``[0, 1]``. The model is evaluated on the CPU in eval mode, in one batch.
    """
    from dsd_zoo.dsd.loop import evaluate

    images, labels, _ = load_digits_split(test_file)
    errors = evaluate(model, [(digits_input(images), labels)])
    return errors.top1_err, errors.top5_err, errors.n
