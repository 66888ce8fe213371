"""Where a model's weights come from: the resolution order, in one place.

1. a file shipped with the manifest (``weights.local``, the embedded zoo), checked by sha256;
2. a verified cache hit (see :mod:`dsd_zoo.cache`);
3. the Hugging Face Hub at the pinned revision, then the URL mirrors (:func:`dsd_zoo.download.fetch`
   does 1 to 3);
4. the original release, downloaded and checked against its published digest (or pinned on
   first use when the user opts in), converted locally with
   :func:`dsd_zoo.convert.original.convert_original`, and stored in the cache through the same
   write protocol as a download, with a stamp that records it was converted here.

(``get_model(weights=PATH)`` comes before all of these and never reaches this module.)
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from . import cache
from .download import fetch
from .errors import (
    ConversionError,
    DownloadError,
    FormatError,
    IntegrityError,
    NotAvailableError,
    OfflineError,
    UnverifiedSourceError,
)
from .manifest import Manifest, ModelEntry, OriginalRecord

__all__ = ["convert_into_cache", "install_original", "resolve_weights"]

logger = logging.getLogger(__name__)


def resolve_weights(
    entry: ModelEntry,
    manifest: Manifest,
    *,
    progress: bool = True,
    trust_unverified: Optional[bool] = None,
) -> Path:
    """Return the path of a verified local weight file for ``entry``, fetching or converting it.

    Raises:
        OfflineError: offline mode is on and no verified copy is cached.
        UnverifiedSourceError: an original without a published digest was refused because the
            user has not opted in to trust it, and no other source gave the file.
        NotAvailableError: no source has the file and no original can be converted here.
        DownloadError: every source failed (the message lists each and why).
        IntegrityError: a shipped file was modified, or a local conversion does not give the
            published sha256.
    """
    record = entry.weights
    failures: List[str] = []
    if record.local is not None or record.hf is not None or record.urls:
        try:
            return fetch(record, progress=progress, trust_unverified=trust_unverified)
        except OfflineError:
            raise
        except UnverifiedSourceError as exc:
            # Unpinned mirrors are no reason to give up while a checkable original exists.
            if entry.original is None or entry.original.digest is None:
                raise
            failures.append(str(exc))
        except DownloadError as exc:
            failures.append(str(exc))
    if entry.original is None:
        raise NotAvailableError(
            f"{entry.name}: no published weights and no original release to convert"
            + (f" ({'; '.join(failures)})" if failures else "")
        )
    return convert_into_cache(entry, manifest, progress=progress, trust_unverified=trust_unverified, failures=failures)


def convert_into_cache(
    entry: ModelEntry,
    manifest: Manifest,
    *,
    progress: bool = True,
    trust_unverified: Optional[bool] = None,
    failures: Sequence[str] = (),
    originals: Optional[Sequence[OriginalRecord]] = None,
) -> Path:
    """Convert ``entry``'s original release into the cache, as ``get_model`` does when nothing is published.

    The original comes through :func:`~dsd_zoo.download.fetch` (a copy imported by hand with
    :func:`~dsd_zoo.download.import_file` is a cache hit). The converted file is stored through the
    cache's write protocol, with its sha256 pinned when none is published. ``originals`` are tried
    in turn (default: all of them, the authors' own first). ``failures`` are the reasons the
    published weights could not be had, for the error message.
    """
    from .convert.original import convert_original

    record = entry.weights
    root = cache.resolve_cache_dir()
    with contextlib.suppress(OSError):  # the lock lives there; a cache that cannot be made fails at the write
        root.mkdir(parents=True, exist_ok=True)
    with cache.claim(root / record.file, record.digest, record.size) as slot:
        if slot.hit is not None:  # converted earlier, or by another process while this one waited for the lock
            return slot.final

        tried: List[Tuple[str, Exception]] = []  # (URL, why it failed) of each original
        for original in entry.originals if originals is None else originals:

            def convert(part: Path, original: OriginalRecord = original) -> dict:  # bound now, called now
                logger.info("%s: converting %s locally", entry.name, original.url)
                saved = convert_original(
                    entry,
                    manifest,
                    part,
                    original=original,
                    progress=progress,
                    trust_unverified=trust_unverified,
                )
                return {"sha256": saved.sha256}

            try:
                cache.store(
                    slot,
                    convert,
                    record.digest,
                    record.size,
                    pinned=record.digest is None,
                    source=f"converted locally from {original.url}",
                )
                return slot.final
            except (UnverifiedSourceError, DownloadError, NotAvailableError) as exc:
                tried.append((original.url, exc))
            except IntegrityError as exc:
                raise IntegrityError(
                    f"{entry.name}: converting {original.url} locally does not give the published file ({exc}); "
                    "the converter version differs from the one that made the published file. Use the published "
                    "file or upgrade dsd-zoo."
                ) from exc
    # The user asked for a model, not for these internal files: say where they come from and what else works.
    why = (
        f"the published weights could not be had ({'; '.join(failures)})"
        if failures
        else "converted weights are not published yet"
    )
    # An original refused for want of a digest is the one failure a flag fixes: its type lets a CLI
    # name that flag whatever the other originals failed on.
    last = tried[-1][1]
    raise (UnverifiedSourceError if any(isinstance(exc, UnverifiedSourceError) for _, exc in tried) else type(last))(
        f"{entry.name}: {why}, so dsd-zoo converts the original release on this machine, "
        "and getting it failed:\n"
        + "\n".join(f"  {url}: {exc}" for url, exc in tried)
        + "\n"
        + _convert_it_yourself(entry, entry.originals[0])
    ) from last


def install_original(entry: ModelEntry, manifest: Manifest, path: os.PathLike | str) -> Path:
    """Take a hand-downloaded original into the cache and convert it there, in one step.

    The original is checked and pinned exactly as a trust-on-first-use download would be
    (:func:`~dsd_zoo.download.import_file`), then converted like ``get_model`` converts. After
    this, ``get_model(name)``, ``torch.hub.load(..., name)`` and ``verify`` use the converted file
    with no argument, offline too. A file that does not convert is not left pinned in the cache.
    Returns the converted file's path.
    """
    from .convert.mapping import original_for_file
    from .download import import_file

    original = original_for_file(entry, path)
    if original is None:
        raise NotAvailableError(f"{entry.name}: the manifest names no original release to import")
    record = original.record
    cached = cache.resolve_cache_dir() / record.file
    new_pin = record.digest is None and not os.path.lexists(cached) and cache.pinned_stamp(cached) is None
    import_file(record, path)
    try:
        return convert_into_cache(entry, manifest, originals=(original,))
    except (ConversionError, FormatError):
        if new_pin:  # the wrong file for this model: it must not stay pinned as its original
            cache.remove(cached)
        raise


def _convert_it_yourself(entry: ModelEntry, original: OriginalRecord) -> str:
    """What a user can do by hand: the link to open, the file to expect, and the one command that takes it in."""
    from .convert.mapping import extension

    size = f", {original.record.size:,} bytes" if original.record.size is not None else ""
    return (
        f"To get it by hand: open {original.url} in a browser and download the file it offers (a {original.format} "
        f"file, *{extension(original)}{size}), then take it in with one command:\n"
        f"    python -m dsd_zoo.convert FILE --model {entry.name} --install\n"
        f"After that, get_model({entry.name!r}) and torch.hub.load(..., {entry.name!r}) use it, offline too."
    )
