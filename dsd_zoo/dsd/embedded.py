"""The embedded digits zoo: its held-out test split as a safetensors file, and its evaluation.

The DSD demonstration (:mod:`dsd_zoo.dsd.demo`) trains :func:`dsd_zoo.models.digits.digits_net`
on scikit-learn's bundled 8x8 digits and ships three of its models (baseline, sparse stage, DSD)
with the test split in ``dsd_zoo/data/embedded/``. This module reads that split and evaluates a
model on it with nothing but torch and safetensors: no network, no scikit-learn.

The split file holds ``images`` (``uint8 [N, 8, 8]``, values 0..16 as ``load_digits`` gives
them) and ``labels`` (``int64 [N]``); its metadata names the source and the split.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from dsd_zoo.atomic import PathLike
from dsd_zoo.errors import FormatError

__all__ = ["DIGITS_FORMAT", "digits_input", "evaluate_digits", "load_digits_split", "save_digits_split",
           "selfcheck_evaluations"]

DIGITS_FORMAT = "dsd_zoo.digits.split"
# load_digits pixels count the set bits of a 4x4 block of the original 32x32 bitmap: 0..16.
_MAX_PIXEL = 16
_NUM_CLASSES = 10


def digits_input(images: Tensor) -> Tensor:
    """The model input for ``uint8 [N, 8, 8]`` digit images: ``float32 [N, 1, 8, 8]`` in ``[0, 1]``."""
    from dsd_zoo.transforms import DigitsTransform

    return DigitsTransform(max_value=_MAX_PIXEL).normalize(images.unsqueeze(1))


def save_digits_split(path: PathLike, images: Tensor, labels: Tensor, metadata: Mapping[str, str]) -> Path:
    """Write a digits split (``uint8 [N, 8, 8]`` images, ``int64 [N]`` labels) with its provenance."""
    from dsd_zoo.atomic import write_safetensors

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
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            keys = set(f.keys())
            if metadata.get("format") != DIGITS_FORMAT or keys != {"images", "labels"}:
                raise FormatError(
                    f"{path}: not a digits split (format {metadata.get('format')!r}, tensors {sorted(keys)}); "
                    f"expected format {DIGITS_FORMAT!r} with tensors ['images', 'labels']"
                )
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
    except SafetensorError as exc:
        raise FormatError(f"{path}: not a readable safetensors file ({exc})") from exc
    _check_split(images, labels, os.fspath(path))
    return images, labels, metadata


def evaluate_digits(
    model: nn.Module, test_file: PathLike, device: torch.device | str = "cpu"
) -> tuple[float, float, int]:
    """``(top1_err, top5_err, n)`` of ``model`` on the digits split in ``test_file``.

    Errors are fractions in ``[0, 1]``. The model is evaluated in eval mode, in one batch.
    """
    from dsd_zoo.dsd.loop import evaluate

    images, labels, _ = load_digits_split(test_file)
    errors = evaluate(model, [(digits_input(images), labels)], device=device)
    return errors.top1_err, errors.top5_err, errors.n


def selfcheck_evaluations(manifest, local) -> list:
    """The embedded zoo's rows of ``python -m dsd_zoo.verify``'s self-check.

    Every manifest model whose ``evaluation.dataset`` is ``"digits"`` is loaded from its verified
    shipped file and evaluated on the shipped test split (itself checked against its sha256),
    through the same manifest, integrity and loading code as the ImageNet models. The result is
    judged against the errors recorded when the file was made, within one image.
    """
    from dsd_zoo.api import get_model
    from dsd_zoo.download import fetch
    from dsd_zoo.verify.selfcheck import LocalEvaluation

    rows = []
    for entry in manifest.models.values():
        if entry.evaluation is None or entry.evaluation["dataset"] != "digits":
            continue
        weights = local.get(entry.name)
        if weights is not None and weights.state == "missing":
            continue  # not on this machine: the models table reports it (a failure only when named)
        if weights is None or not weights.usable:  # an unverifiable file is judged by its fingerprint and errors
            state = "missing" if weights is None else f"{weights.state}: {weights.detail}"
            rows.append(LocalEvaluation(entry.name, "digits", failure=f"weights not verified ({state})"))
            continue
        data = fetch(manifest.assets[entry.evaluation["data"]].record, offline=True)
        top1, top5, n = evaluate_digits(get_model(entry.name, weights=weights.path), data)
        recorded = entry.recorded or {}
        rows.append(LocalEvaluation(
            entry.name, f"digits ({n} held-out images)", images=n, top1_err=100 * top1, top5_err=100 * top5,
            expected_top1_err=recorded.get("top1_err"), expected_top5_err=recorded.get("top5_err"),
            # One image either way: another CPU's float rounding may flip a near-tie.
            tolerance=100 / n if n else 0.0))
    return rows
