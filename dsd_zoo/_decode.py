"""How PIL says it cannot decode a file: shared by ``verify``'s datasets and the training CLI's image loader."""

from __future__ import annotations

from typing import Tuple

__all__ = ["decode_failure_types"]


def decode_failure_types() -> Tuple[type[BaseException], ...]:
    """The exception types with which PIL reports a file it cannot decode."""
    from PIL import Image

    # PIL reports damaged files with several types (SyntaxError for some PNG/GIF damage).
    return (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
