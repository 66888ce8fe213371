"""Tensor helpers shared by every format's mapping: architecture shapes, checked float32 copies, the strict fit.

The bottom of the converter: the per-format mappings import it, and it imports none of them.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional, Tuple

import numpy as np
import torch

from ..errors import ConversionError, WeightsError
from ..loading import check_state_dict
from ..models import ARCHITECTURES

__all__ = ["architecture_shapes", "array_to_tensor", "check_against_architecture"]


@functools.lru_cache(maxsize=None)
def _shapes(arch: str, build_items: Tuple[Tuple[str, Any], ...]) -> Mapping[str, Tuple[int, ...]]:
    # The meta device gives every shape without allocating VGG16's 550 MB.
    with torch.device("meta"):
        model = ARCHITECTURES[arch].build(**dict(build_items))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def architecture_shapes(arch: str, **build_kwargs: Any) -> Mapping[str, Tuple[int, ...]]:
    """State-dict key -> shape of ``arch`` built with ``build_kwargs`` (no memory allocated)."""
    return _shapes(arch, tuple(sorted(build_kwargs.items())))


def array_to_tensor(array: Any, where: str):
    """A float32 CPU tensor copied from a numpy array; non-finite values raise ConversionError.

    ``where`` names the source tensor in the error message.
    """
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise ConversionError(
            f"{where}: expected a numeric array, got {type(array).__name__}"
            f"{' of ' + str(array.dtype) if isinstance(array, np.ndarray) else ''}"
        )
    values = np.asarray(array, dtype=np.float32)
    # min/max propagate NaN and see infinities, without a temporary mask (40x faster than torch.isfinite).
    if values.size and not (np.isfinite(values.min()) and np.isfinite(values.max())):
        raise ConversionError(f"{where}: holds NaN or infinite values; the source file is damaged")
    return torch.tensor(values)


def check_against_architecture(
    state_dict: Mapping[str, Any], arch: str, source: str, build_kwargs: Optional[Mapping[str, Any]] = None
) -> None:
    """Raise ConversionError unless ``state_dict`` has exactly the keys and shapes of ``arch``."""
    expected = architecture_shapes(arch, **dict(build_kwargs or {}))
    try:
        check_state_dict(expected, {key: tuple(value.shape) for key, value in state_dict.items()}, source)
    except WeightsError as exc:
        raise ConversionError(f"{exc} (a bug in the {arch} mapping: please report it)") from exc
