"""The dsd-zoo file cache: where files live, and what makes a cached file trustworthy.

Layout of the cache directory (``$DSD_ZOO_CACHE``, else ``<torch.hub.get_dir()>/dsd_zoo``)::

    vgg16_dsd.safetensors              the file, only ever created by an atomic rename
    vgg16_dsd.safetensors.stamp.json   its stamp: size, mtime_ns, inode, sha256, source, pin
    vgg16_dsd.safetensors.lock         inter-process lock held while the file is checked or fetched
    vgg16_dsd.safetensors.<pid>.<hex>.part   a download in progress (never read under the final name)

Rules:

* A cached file is trusted only through its stamp, written after the file was verified. The
  stamp is valid while the file's (size, mtime_ns, inode) are those it recorded; otherwise the
  file is hashed again, and a file that no longer verifies is removed, reported, and fetched again.
* A file with no published digest can be pinned (trust on first use): its stamp then carries
  ``"pinned": true`` and outlives the file, so a later download must match the pinned sha256.
* Everything is written to a per-process temporary file in the same directory, fsynced, renamed
  with :func:`os.replace` and the directory fsynced, so no reader ever sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import stat
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import filelock

from ._names import LOCK_SUFFIX, STAMP_SUFFIX
from .atomic import PART_SUFFIX, new_part_path, publish, write_text
from .digests import Digest, hash_file
from .errors import IntegrityError
from .records import FileRecord, shipped_file

__all__ = [
    "CACHE_ENV",
    "Entry",
    "LocalCopy",
    "candidate_problem",
    "claim",
    "store",
    "check_file",
    "find_local",
    "Stamp",
    "locked",
    "new_part_path",
    "pinned_stamp",
    "publish",
    "read_stamp",
    "remove",
    "remove_stale_parts",
    "resolve_cache_dir",
    "stamp_path",
    "verify_cached",
    "write_stamp",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "DSD_ZOO_CACHE"
_STAMP_FORMAT = 1
# Seconds to wait for the lock quietly before telling the user that another process holds it.
_LOCK_PATIENCE_S = 1.0


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir`` if given, else ``$DSD_ZOO_CACHE``, else ``<torch hub dir>/dsd_zoo``.

    The directory is not created here. torch is imported only when neither is set.
    """
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or None
    if cache_dir is None:
        import torch.hub  # lazily: `import dsd_zoo.cache` must not pay for torch

        cache_dir = os.path.join(torch.hub.get_dir(), "dsd_zoo")
    return Path(os.path.expandvars(os.fspath(cache_dir))).expanduser()


@dataclass(frozen=True)
class Stamp:
    """What was verified about a cached file, and when the file looked how.

    ``sha256`` is always known; ``extra`` holds the other digests computed at the same time
    (e.g. the ``sha1`` a Caffe model zoo file is published with). ``pinned`` marks a sha256
    accepted on first use rather than checked against a published digest.
    """

    size: int
    mtime_ns: int
    inode: int
    sha256: str
    pinned: bool = False
    source: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        path: Path,
        hexdigests: Mapping[str, str],
        *,
        pinned: bool = False,
        source: str | None = None,
        st: os.stat_result | None = None,
    ) -> "Stamp":
        """The stamp of ``path`` with the digests just computed over it.

        ``st`` is the file's stat taken *before* it was hashed, when others could write it
        meanwhile: a change during the hash then leaves a stamp that no longer describes the
        file, so it is hashed again. Without ``st`` the file is stat'ed now.
        """
        st = st if st is not None else path.stat()
        extra = {name: value for name, value in hexdigests.items() if name != "sha256"}
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, hexdigests["sha256"], pinned, source, extra)

    def describes(self, st: os.stat_result) -> bool:
        """Whether a file with this stat is, as far as the file system tells, the one stamped."""
        return (st.st_size, st.st_mtime_ns, st.st_ino) == (self.size, self.mtime_ns, self.inode)


def stamp_path(path: Path) -> Path:
    """The stamp sidecar of the cached file ``path``."""
    return path.with_name(path.name + STAMP_SUFFIX)


def read_stamp(path: Path) -> Stamp | None:
    """The stamp of ``path``, or ``None`` when there is none or it cannot be read (then it proves nothing)."""
    sidecar = stamp_path(path)
    try:
        document = json.loads(sidecar.read_text(encoding="utf-8"))
        if document.pop("format") != _STAMP_FORMAT:
            raise ValueError("unknown stamp format")
        stamp = Stamp(**document)
        Digest("sha256", stamp.sha256)  # validates the hex
        numbers = (stamp.size, stamp.mtime_ns, stamp.inode)
        # "pinned": "false" is a true string: a hand-edited stamp must not turn a file into a pin.
        if not (
            all(isinstance(value, int) and not isinstance(value, bool) for value in numbers)
            and isinstance(stamp.pinned, bool)
            and (stamp.source is None or isinstance(stamp.source, str))
            and isinstance(stamp.extra, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in stamp.extra.items())
        ):
            raise ValueError(
                "size, mtime_ns and inode must be integers, pinned true or false, source a string or null, "
                "and extra map digest names to hex strings"
            )
        return stamp
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        logger.warning("ignoring unreadable cache stamp %s (%s); the file will be hashed again", sidecar, exc)
        return None


def write_stamp(path: Path, stamp: Stamp) -> None:
    """Write the stamp of ``path`` atomically (a reader sees the old stamp or the new one)."""
    text = json.dumps({"format": _STAMP_FORMAT, **asdict(stamp)}, indent=1, sort_keys=True) + "\n"
    write_text(stamp_path(path), text)


def pinned_stamp(path: Path) -> Stamp | None:
    """The trust-on-first-use pin recorded for ``path``, even when the file itself is gone."""
    stamp = read_stamp(path)
    return stamp if stamp is not None and stamp.pinned else None


@dataclass(frozen=True)
class LocalCopy:
    """A file on this machine and what was proven about it.

    ``state`` is ``missing``; ``verified`` (its size and digest are the record's); ``pinned``
    (they are those pinned on first use, the record having no digest); ``mismatch`` (they
    differ, or the file cannot be read: ``unreadable``); or ``unverifiable`` (there is no digest
    to compare with). ``detail`` says why in a few words. A verified copy carries the ``stamp``
    that proves it; ``hashed`` tells that the stamp was computed just now rather than read.
    """

    path: Path | None
    state: str
    detail: str = ""
    stamp: Stamp | None = None
    hashed: bool = False
    unreadable: bool = False

    @property
    def present(self) -> bool:
        return self.path is not None

    @property
    def verified(self) -> bool:
        return self.state in ("verified", "pinned")

    @property
    def usable(self) -> bool:
        """Present and not known to be wrong: verified, or with no digest to compare it with."""
        return self.present and self.state != "mismatch"


def check_file(path: Path, digest: Digest | None, size: int | None, *, rehash: bool = False) -> LocalCopy:
    """Whether the file at ``path`` is the one with ``digest`` and ``size``: the one check of a local file.

    With ``digest=None`` the expected file is the one pinned on first use (its stamp says so).
    Unless ``rehash``, a stamp that still describes the file (size, mtime and inode) and records
    the expected digest proves it without reading the file. Nothing is removed or written here:
    the cache (:func:`verify_cached`) repairs, the self-check only reports.
    """
    stamp = read_stamp(path)
    pinned = digest is None
    if digest is None:
        if stamp is None or not stamp.pinned:
            return LocalCopy(
                path,
                "unverifiable",
                "no digest is published for this file and no sha256 was pinned "
                "when it was fetched, so it cannot be checked",
            )
        digest, size = Digest("sha256", stamp.sha256), stamp.size
    good = "pinned" if pinned else "verified"
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a folder or a device, whatever its size says
            return LocalCopy(path, "mismatch", "cannot be read: not a regular file", unreadable=True)
        problem = _size_problem(st.st_size, size)
        if problem:
            return LocalCopy(path, "mismatch", problem)
        if (
            not rehash
            and stamp is not None
            and stamp.describes(st)
            and digest.matches({"sha256": stamp.sha256, **stamp.extra})
        ):
            return LocalCopy(path, good, "cache stamp", stamp)
        hexdigests = hash_file(path, {"sha256", digest.algorithm})
    except FileNotFoundError:
        return LocalCopy(None, "missing", f"{path} does not exist")
    except OSError as exc:  # unreadable, or not a file: not a verified copy, whatever it holds
        return LocalCopy(path, "mismatch", f"cannot be read: {exc.strerror or exc}", unreadable=True)
    problem = _digest_problem(hexdigests, digest)
    if problem:
        return LocalCopy(path, "mismatch", f"{problem} ({'pinned on first use' if pinned else 'published'})")
    fresh = Stamp.of(path, hexdigests, pinned=pinned, source=stamp.source if stamp else None, st=st)
    return LocalCopy(path, good, f"sha256 {fresh.sha256[:16]}...", fresh, hashed=True)


def find_local(
    record: FileRecord,
    *,
    path: str | os.PathLike | None = None,
    rehash: bool = False,
) -> LocalCopy:
    """Where ``record``'s file is on this machine, and whether it is the right one. Never downloads.

    Looks at ``path`` if given, else the file shipped inside the package (``record.local``),
    else the cache. A file shipped with the package has no stamp, so it is always hashed.
    """
    if path is not None:
        candidate = Path(path).expanduser()
    elif record.local is not None:
        candidate = shipped_file(record.local)
    else:
        candidate = resolve_cache_dir() / record.file
    if not os.path.lexists(candidate):
        return LocalCopy(None, "missing", f"{candidate} does not exist")
    return check_file(candidate, record.digest, record.size, rehash=rehash)


def verify_cached(path: Path, digest: Digest | None, size: int | None) -> Stamp | None:
    """The stamp of ``path`` if it is a verified copy of the expected file, else ``None``; repairs the cache.

    The check is :func:`check_file`'s. A copy just verified by hashing gets a fresh stamp; one
    that fails is removed (a pin is kept) and reported with a warning, so that the caller
    fetches it again. Call it under :func:`locked`.
    """
    copy = check_file(path, digest, size)
    if copy.verified and copy.stamp is not None:
        if copy.hashed:
            try:
                write_stamp(path, copy.stamp)
            except OSError as exc:  # a read-only shared cache still serves verified files
                logger.info("could not write the stamp of %s (%s); it will be hashed again next time", path, exc)
        return copy.stamp
    if copy.unreadable:
        logger.warning("cannot read the cached file %s (%s); it will be fetched again", path, copy.detail)
    if copy.state != "mismatch" or copy.unreadable:
        return None
    try:
        path.unlink(missing_ok=True)
        if digest is not None:  # a pin outlives its file
            stamp_path(path).unlink(missing_ok=True)
        outcome = "It has been removed and will be downloaded again."
    except OSError as exc:  # a read-only cache: never served, but it stays until someone removes it
        outcome = f"It could not be removed ({exc.strerror or exc}); delete it by hand."
    # stacklevel: past this function, claim() and its context manager, to the caller of fetch().
    warnings.warn(
        f"dsd-zoo: the cached file {path} is corrupt or was modified ({copy.detail}). {outcome}",
        RuntimeWarning,
        stacklevel=5,
    )
    return None


def _size_problem(actual: int, expected: int | None) -> str | None:
    return None if expected is None or actual == expected else f"{actual} bytes, expected {expected}"


def _digest_problem(hexdigests: Mapping[str, str], digest: Digest | None) -> str | None:
    if digest is None or digest.matches(hexdigests):
        return None
    return f"{digest.computed_by} mismatch: got {hexdigests.get(digest.computed_by, '<not computable>')}, expected {digest}"


def candidate_problem(path: Path, hexdigests: Mapping[str, str], digest: Digest | None, size: int | None) -> str | None:
    """Why a new copy at ``path``, with the digests computed while it was written, is not the expected file."""
    return _size_problem(path.stat().st_size, size) or _digest_problem(hexdigests, digest)


@dataclass(frozen=True)
class Entry:
    """A file of the cache, held under its lock by :func:`claim`.

    ``hit`` is the stamp of a verified copy already there (then nothing is to be written).
    """

    final: Path
    hit: Stamp | None


@contextlib.contextmanager
def claim(final: Path, digest: Digest | None, size: int | None) -> Iterator[Entry]:
    """Lock ``final``, look for a verified copy of it, and clear what dead writers left: the start of every write.

    Every file enters the cache through ``with claim(...) as entry:`` followed, when
    ``entry.hit`` is ``None``, by :func:`store`, for a download and a local conversion alike.
    Where the cache directory does not exist there is nothing to lock and nothing to find.
    """
    with locked(final) if final.parent.is_dir() else contextlib.nullcontext(False) as exclusive:
        hit = verify_cached(final, digest, size)
        if hit is None and exclusive:  # without the lock, a part may be another process's write in progress
            remove_stale_parts(final)
        yield Entry(final, hit)


def store(
    entry: Entry,
    write: Callable[[Path], Mapping[str, str]],
    digest: Digest | None,
    size: int | None,
    *,
    pinned: bool,
    source: str,
) -> Stamp:
    """Write one candidate copy of ``entry.final``, check it, publish it and stamp it; return the stamp.

    ``write(part)`` creates the file ``part`` and returns the digests computed over it
    (``{algorithm: hex}``, with ``sha256``). A candidate that is not the file with ``digest``
    and ``size`` raises :class:`~dsd_zoo.errors.IntegrityError` and never appears under the
    final name; ``pinned`` records that the sha256 is accepted on first use. The part file is
    removed whatever happens, so a failure or an interrupt leaves the cache as it was.
    """
    final = entry.final
    part = new_part_path(final)
    try:
        hexdigests = write(part)
        problem = candidate_problem(part, hexdigests, digest, size)
        if problem:
            raise IntegrityError(problem)
        publish(part, final)
        stamp = Stamp.of(final, hexdigests, pinned=pinned, source=source)
        write_stamp(final, stamp)
        return stamp
    finally:
        part.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[bool]:
    """Hold the inter-process lock of the cached file ``path`` (``<path>.lock``); yields whether it is held.

    Every check and write of ``path`` happens under it, so N processes asking for the same
    file cause one download and N-1 verified cache hits. The lock file is group-writable, so
    that the users of a shared cache directory can all take it. Where it cannot be taken (a
    read-only cache, or a lock file of another user) this yields ``False`` and the caller goes
    on unlocked: it must then not remove anything another process may be writing.
    """
    lock = filelock.FileLock(str(path) + LOCK_SUFFIX, mode=0o664)
    try:
        try:
            lock.acquire(timeout=_LOCK_PATIENCE_S)
        except filelock.Timeout:
            logger.warning("waiting for another process to finish with %s (lock %s)", path, lock.lock_file)
            lock.acquire()
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        logger.info("cannot lock %s (%s); going on without the lock", path, exc.strerror)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def remove(final: Path) -> None:
    """Remove the cached file ``final`` and its stamp (a pin included), under its lock."""
    with locked(final):
        final.unlink(missing_ok=True)
        stamp_path(final).unlink(missing_ok=True)


def remove_stale_parts(final: Path) -> int:
    """Remove the ``.part`` files of ``final`` left by dead processes; returns how many.

    Must be called under :func:`locked`: parts are written only under the lock, so any part
    found while holding it belongs to a process that died mid-download.
    """
    # A part may hold its own part while it is written (a conversion writing the part atomically).
    part = r"\.\d+\.[0-9a-f]{8}" + re.escape(PART_SUFFIX)
    # The stamp is written under the lock too, through a part of its own.
    pattern = re.compile(re.escape(final.name) + f"(?:{re.escape(STAMP_SUFFIX)})?(?:{part})+")
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(final.parent):
            if pattern.fullmatch(entry.name):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    if removed:
        logger.info("removed %d unfinished download(s) of %s", removed, final.name)
    return removed
