"""Converting a model's original release: the one path shared by ``get_model`` and the release tool."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, Optional

from ..download import fetch
from ..errors import NotAvailableError
from ..manifest import Manifest, ModelEntry, OriginalRecord
from .mapping import SavedConversion, save_conversion

__all__ = ["convert_original"]


def convert_original(
    entry: ModelEntry,
    manifest: Manifest,
    out_path: Path,
    *,
    original: Optional[OriginalRecord] = None,
    progress: bool = True,
    trust_unverified: Optional[bool] = None,
    offline: Optional[bool] = None,
    say: Callable[[str], None] = lambda message: None,
) -> SavedConversion:
    """Fetch one of ``entry``'s originals, checked against its published digest, and convert it to ``out_path``.

    ``original`` is one of ``entry.originals``; by default the authors' own release.

    The original comes through :func:`dsd_zoo.download.fetch`, so the cache keeps it and an original without a published digest needs ``trust_unverified``. The
    converted file records the original's published file name, not its cache name, so that a
    conversion on any machine gives the bytes the release tool published.

    Raises:
        NotAvailableError: the model has no original release, or reading it needs the converter
            extra (checked before anything is downloaded).
        UnverifiedSourceError / DownloadError / OfflineError: the original could not be had.
        ConversionError / FormatError: it does not convert.
    """
    original = original or entry.original
    if original is None:
        raise NotAvailableError(f"{entry.name}: the manifest names no original release to convert")
    if original.format == "caffemodel" and importlib.util.find_spec("google.protobuf") is None:
        # Said before a download of up to 550 MB rather than after it.
        raise NotAvailableError(
            f"{entry.name}: reading its original release ({original.url}), a caffemodel, needs "
            "protobuf: pip install 'dsd-zoo[convert]'"
        )
    digest = original.digest
    say(f"fetching {original.url} ({digest.algorithm + ' ' + digest.value if digest else 'no published digest'})")
    source = fetch(original.record, progress=progress, trust_unverified=trust_unverified, offline=offline)
    say(f"converting {original.file_name}")
    return save_conversion(
        source, entry.name, out_path, force=True, manifest=manifest, source_name=original.file_name, original=original
    )
