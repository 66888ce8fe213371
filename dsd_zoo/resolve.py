"""Where a model's weights come from: the resolution order, in one place.

1. a file shipped with the manifest (``weights.local``, the embedded zoo), checked by sha256;
2. a verified cache hit (see :mod:`dsd_zoo.cache`);
3. the Hugging Face Hub at the pinned revision, then the URL mirrors (:func:`dsd_zoo.download.fetch`);
4. the original release, downloaded and checked against its published digest (or pinned on
   first use when the user opts in), converted locally with :mod:`dsd_zoo.convert`, and stored
   in the cache with a stamp that records it was converted here.

(``get_model(weights=PATH)`` comes before all of these and never reaches this module.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional

from . import cache
from .digests import hash_file
from .errors import DownloadError, IntegrityError, NotAvailableError, OfflineError, UnverifiedSourceError
from .manifest import AssetRecord, Manifest, ModelEntry, shipped_file

__all__ = ["resolve_weights", "resolve_asset", "cached_weights", "verified_shipped_file"]

logger = logging.getLogger(__name__)


def cached_weights(entry: ModelEntry, manifest: Manifest, cache_dir: Optional[os.PathLike] = None) -> Optional[Path]:
    """The verified local weight file of ``entry`` if one exists, without any network access."""
    if entry.weights.local is not None:
        return _local_file(entry, manifest)
    final = cache.resolve_cache_dir(cache_dir) / entry.weights.file
    if not final.exists():
        return None
    record = entry.weights
    with cache.locked(final):
        return final if cache.verify_cached(final, record.digest, record.size) is not None else None


def _local_file(entry: ModelEntry, manifest: Manifest) -> Path:
    return verified_shipped_file(entry.name, entry.weights.local, entry.weights.sha256)


def verified_shipped_file(what: str, relative: str, sha256: Optional[str]) -> Path:
    """A file shipped inside the package, after checking it against its pinned sha256."""
    path = shipped_file(relative)
    if sha256 is None:
        raise IntegrityError(f"{what}: the shipped file {relative} has no sha256 in the manifest; it must be pinned")
    try:
        seen = hash_file(path, {"sha256"})["sha256"]
    except OSError as exc:
        raise NotAvailableError(f"{what}: its shipped file {path} cannot be read ({exc.strerror or exc}); "
                                "reinstall dsd-zoo") from exc
    if seen != sha256:
        raise IntegrityError(f"{what}: {path} has sha256 {seen}, the manifest requires {sha256}; "
                             "the file was modified: restore it (git checkout, or reinstall dsd-zoo)")
    return path


def resolve_asset(asset: AssetRecord, *, progress: bool = True, offline: Optional[bool] = None) -> Path:
    """The verified local copy of an asset: shipped with the package, or fetched into the cache."""
    from .download import fetch

    if asset.record.local is not None:
        return verified_shipped_file(f"asset {asset.name!r}", asset.record.local, asset.record.sha256)
    return fetch(asset.record, progress=progress, offline=offline)


def resolve_weights(entry: ModelEntry, manifest: Manifest, *, progress: bool = True,
                    trust_unverified: Optional[bool] = None, offline: Optional[bool] = None) -> Path:
    """Return the path of a verified local weight file for ``entry``, fetching or converting it.

    Raises:
        OfflineError: offline mode is on and no verified copy is cached.
        UnverifiedSourceError: only an original without a published digest is left and the
            user has not opted in to trust it.
        NotAvailableError: no source has the file and no original can be converted here.
        DownloadError: every source failed (the message lists each and why).
        IntegrityError: a shipped file was modified, or a local conversion does not give the
            published sha256.
    """
    from .download import fetch

    if entry.weights.local is not None:
        return _local_file(entry, manifest)
    record = entry.weights
    failures: List[str] = []
    if record.hf is not None or record.urls:
        try:
            return fetch(record, progress=progress, trust_unverified=trust_unverified, offline=offline)
        except OfflineError:
            raise
        except UnverifiedSourceError as exc:
            # Unpinned mirrors are no reason to give up while a checkable original exists.
            if entry.original is None or entry.original.digest is None:
                raise
            failures.append(str(exc))
        except DownloadError as exc:
            failures.append(str(exc))
    else:
        hit = cached_weights(entry, manifest)
        if hit is not None:
            return hit
    if entry.original is None:
        raise NotAvailableError(f"{entry.name}: no published weights and no original release to convert"
                                + (f" ({'; '.join(failures)})" if failures else ""))
    return _convert_original(entry, manifest, progress=progress, trust_unverified=trust_unverified,
                             offline=offline, failures=failures)


def _convert_original(entry: ModelEntry, manifest: Manifest, *, progress: bool, trust_unverified: Optional[bool],
                      offline: Optional[bool], failures: List[str]) -> Path:
    import importlib.util

    from .convert import mapping
    from .download import fetch

    # Checked before any download: only the Caffe reader needs the converter extra (protobuf).
    if entry.original.format == "caffemodel" and importlib.util.find_spec("google.protobuf") is None:
        raise NotAvailableError(
            f"{entry.name}: converted weights are not published yet, and converting the original release "
            f"({entry.original.url}) needs the converter extra: pip install 'dsd-zoo[convert]'")
    try:
        source = fetch(entry.original.record, progress=progress, trust_unverified=trust_unverified, offline=offline)
    except (UnverifiedSourceError, DownloadError) as exc:
        # The user asked for a model, not for this internal file: say where it comes from and what else works.
        mean = entry.transforms.get("mean_image")
        mean_option = f" --mean-image {manifest.assets[mean].record.file}" if mean in manifest.assets else ""
        why = (f"the published weights could not be had ({'; '.join(failures)})" if failures
               else "converted weights are not published yet")
        raise type(exc)(
            f"{entry.name}: {why}, so dsd-zoo converts the original release "
            f"({entry.original.url}) on this machine, and getting it failed: {exc}\nWith a copy of the original, "
            f"convert it yourself: python -m dsd_zoo.convert FILE --model {entry.name}{mean_option} "
            f"-o {entry.name}.safetensors, "
            f"then get_model({entry.name!r}, weights='{entry.name}.safetensors')"
        ) from exc
    mean_image = None
    asset_name = entry.transforms.get("mean_image")
    if asset_name is not None:
        mean_image = resolve_asset(manifest.assets[asset_name], progress=progress, offline=offline)
    final = cache.resolve_cache_dir() / entry.weights.file
    record = entry.weights
    with cache.locked(final) as exclusive:
        # Another process may have converted it while this one waited for the lock.
        if cache.verify_cached(final, record.digest, record.size) is not None:
            return final
        if exclusive:  # parts found under the lock belong to a process that died mid-conversion
            cache.remove_stale_parts(final)
        logger.info("%s: converting the original release %s locally", entry.name, entry.original.url)
        part = cache.new_part_path(final)
        try:
            # The original's own file name, not the cache's, goes into the metadata, so that a
            # local conversion is byte-identical to the one the release tool published.
            saved = mapping.save_conversion(source, entry.name, part, mean_image_path=mean_image, force=True,
                                            manifest=manifest, source_name=entry.original.file_name)
            if entry.weights.sha256 is not None and saved.sha256 != entry.weights.sha256:
                raise IntegrityError(
                    f"{entry.name}: converting {entry.original.url} locally gave sha256 {saved.sha256}, but the "
                    f"published file has {entry.weights.sha256}; the converter version differs from the one that "
                    "made the published file. Use the published file or upgrade dsd-zoo.")
            cache.publish(part, final)
        finally:
            part.unlink(missing_ok=True)
        origin_digest = cache.read_stamp(source)
        cache.write_stamp(final, cache.Stamp.of(
            final, {"sha256": saved.sha256}, pinned=entry.weights.sha256 is None,
            source=f"converted locally from {entry.original.url} (sha256 {origin_digest.sha256 if origin_digest else '?'})"))
    return final
