"""The one downloader of dsd-zoo: verified files from the cache, the Hugging Face Hub or mirrors.

:func:`fetch` turns a :class:`~dsd_zoo.records.FileRecord` (a file name, the digest and size it
must have, and where it can be had) into the path of a verified file in the cache. A file shipped
inside the package (``record.local``) is checked against its pinned sha256 and returned as it is;
any other is looked for, in order:

1. the cache, trusted only through a stamp written after verification (see :mod:`dsd_zoo.cache`);
2. the Hugging Face Hub at a pinned revision, through ``huggingface_hub.hf_hub_download``; the
   file it returns is verified here before it enters the dsd-zoo cache (hard-linked when the two
   caches share a file system), and a bad copy from huggingface_hub's own cache, which it never
   re-checks, is downloaded again once;
3. each URL of the record in order, with connect/read timeouts, retries with exponential backoff
   on timeouts, connection resets and 5xx/429 answers (waiting at least what a ``Retry-After``
   asks, and moving to the next source when it asks for more than a minute), resume of an
   interrupted transfer with HTTP ``Range``/``If-Range``, and the digest computed while the
   bytes stream in.

A host name that does not resolve fails its source at once, with that one-line cause: waiting
does not make a mistyped mirror or a machine with no network resolve (:mod:`dsd_zoo._dns`).

A file that fails its digest or size is never placed under its final name; when every source
fails, :class:`~dsd_zoo.errors.DownloadError` lists each source and why. Concurrent processes
asking for the same file serialise on a per-file lock, so the file is downloaded once.

A record without a digest (an original release its authors published without one) is refused
with :class:`~dsd_zoo.errors.UnverifiedSourceError` unless the user opts in; the sha256 of the
first copy is then pinned in the cache (trust on first use) and later downloads must match it.

Environment variables (an explicit argument to :func:`fetch` wins over the environment):

``DSD_ZOO_CACHE``
    Cache directory; default ``<torch.hub.get_dir()>/dsd_zoo``.
``DSD_ZOO_OFFLINE`` / ``HF_HUB_OFFLINE``
    ``1`` never touches the network; a file missing from the cache raises
    :class:`~dsd_zoo.errors.OfflineError` naming it and the cache path.
``DSD_ZOO_TRUST_UNVERIFIED``
    ``1`` accepts files that have no published digest, pinning the sha256 first seen.
``DSD_ZOO_TIMEOUT``
    Seconds to wait for a connection and for each read: ``"30"`` for both or ``"10,60"``
    for connect and read (default ``10,60``).
``DSD_ZOO_RETRIES``
    Attempts per URL before moving on to the next source (default 4). An attempt that got
    further into the file than any before does not count, so a long download survives many
    resets as long as it progresses.
``DSD_ZOO_RETRY_BACKOFF``
    Seconds before the first retry, doubled for each further one (default 1).
``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE``
    Where the Hugging Face Hub is and where ``huggingface_hub`` keeps its own cache; read on
    every call, not only when ``huggingface_hub`` is first imported. (Its own retry policy
    applies on the Hub: a Hub answering 5xx is retried by ``huggingface_hub`` for about 20 s
    before dsd-zoo moves on to the URLs.)
"""

from __future__ import annotations

import datetime
import functools
import email.utils
import logging
import math
import os
import re
import shutil
import sys
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

import requests

from . import _dns, cache, onedrive
from .digests import CHUNK_SIZE, Digest, MultiHasher, hash_file
from .errors import (
    DownloadError,
    IntegrityError,
    NotAvailableError,
    OfflineError,
    SettingError,
    UnverifiedSourceError,
    first_line,
)
from .records import FileRecord, HFLocation

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = [
    "fetch",
    "import_file",
    "fetch_url_bytes",
    "offline_mode",
]

logger = logging.getLogger(__name__)

OFFLINE_ENV = "DSD_ZOO_OFFLINE"
TRUST_ENV = "DSD_ZOO_TRUST_UNVERIFIED"
TIMEOUT_ENV = "DSD_ZOO_TIMEOUT"
RETRIES_ENV = "DSD_ZOO_RETRIES"
BACKOFF_ENV = "DSD_ZOO_RETRY_BACKOFF"
# True flags, as huggingface_hub also reads its HF_* flags (where anything else is false).
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
# Answers that say "try again later" rather than "this will never work".
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_BACKOFF_S = 60.0
_T = TypeVar("_T")
# Bytes per read from the socket. A connection reset loses at most the chunk in flight, and
# 1 MiB keeps Python's per-chunk cost negligible next to the transfer and the hashing.
_NET_CHUNK = 2**20
# Chunks allowed to wait for the hashing thread (memory held: this many times _NET_CHUNK).
_HASH_BACKLOG = 8


@dataclass(frozen=True)
class _Settings:
    """Network behaviour, read from the environment once per call."""

    timeout: tuple[float, float]  # (connect, read)
    attempts: int
    backoff: float
    progress: bool

    @classmethod
    def from_env(cls, progress: bool) -> "_Settings":
        timeouts = [_env_number(TIMEOUT_ENV, part, float) for part in os.environ.get(TIMEOUT_ENV, "10,60").split(",")]
        # "nan" and "inf" parse as floats; neither is a time to wait.
        if len(timeouts) not in (1, 2) or not all(0 < t < math.inf for t in timeouts):
            raise SettingError(f"${TIMEOUT_ENV} must be 'SECONDS' or 'CONNECT,READ' with positive numbers")
        attempts = _env_number(RETRIES_ENV, os.environ.get(RETRIES_ENV, "4"), int)
        backoff = _env_number(BACKOFF_ENV, os.environ.get(BACKOFF_ENV, "1"), float)
        if attempts < 1 or not 0 <= backoff < math.inf:
            raise SettingError(f"${RETRIES_ENV} must be >= 1 and ${BACKOFF_ENV} >= 0")
        return cls((timeouts[0], timeouts[-1]), attempts, backoff, progress)


class _SourceError(Exception):
    """A source that cannot give the file: the next one is tried, or this one again if ``transient``.

    ``transient``: worth retrying on the same source (timeout, reset, 5xx); ``retry_after``: the
    wait in seconds that the server asked for (``Retry-After``), if any; ``status``: the HTTP
    answer that said so, if any.
    """

    def __init__(
        self, message: str, *, transient: bool = False, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after
        self.status = status


def fetch(
    record: FileRecord,
    *,
    progress: bool = True,
    trust_unverified: bool | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Return the path of a verified copy of ``record`` in the cache, downloading it if needed.

    Args:
        record: the file, its digest and size, and its sources (shipped with the package, or the
            Hugging Face Hub, then URLs).
        progress: show a tqdm progress bar (bytes, rate, file name) while downloading.
        trust_unverified: accept a record without a digest, pinning the sha256 of the first copy
            seen (trust on first use); ``None`` reads ``$DSD_ZOO_TRUST_UNVERIFIED``.
        offline: never touch the network; ``None`` reads ``$DSD_ZOO_OFFLINE`` and ``$HF_HUB_OFFLINE``.
            A copy already in huggingface_hub's own cache (e.g. from ``hf download``) is still
            verified and taken into the dsd-zoo cache.
        cache_dir: the cache directory; ``None`` means ``$DSD_ZOO_CACHE`` or ``<torch hub dir>/dsd_zoo``.

    Raises:
        UnverifiedSourceError: ``record`` has no digest, none was pinned, and the user did not opt in.
        OfflineError: offline mode is on and the file is in neither cache.
        NotAvailableError: the file is not cached and ``record`` names no source.
        DownloadError: every source failed (the message lists each and why), or the cache cannot
            be written.
        SettingError: one of the environment variables above has a value that is not understood (a ValueError).
    """
    if record.local is not None:
        return _shipped(record)
    settings = _Settings.from_env(progress)
    offline = offline_mode(offline)
    trust_unverified = _flag(trust_unverified, TRUST_ENV)
    root = cache.resolve_cache_dir(cache_dir)
    final = root / record.file
    sources = _sources(record)
    if offline:
        # The only source is a copy huggingface_hub already holds (looked for only when the dsd-zoo
        # cache has no file by that name, so that a cache hit costs no huggingface_hub import).
        hub_copy = (
            _HubSource(record.hf, local_only=True) if record.hf is not None and not os.path.lexists(final) else None
        )
        sources = [hub_copy] if hub_copy is not None and hub_copy.is_cached() else []
    try:
        if sources or not offline:  # something may be written into the cache
            _make_cache_dir(root)
        with cache.claim(final, record.digest, record.size) as entry:
            if entry.hit is not None:
                logger.debug("verified cache hit: %s", final)
                return final
            if offline and not sources:
                raise OfflineError(
                    f"{record.file} is not in the dsd-zoo cache ({final})"
                    f"{' nor in the Hugging Face cache' if record.hf is not None else ''}, and offline mode is on "
                    f"({OFFLINE_ENV} / HF_HUB_OFFLINE or offline=True). Copy the file there from a machine that "
                    "has it, or turn offline mode off."
                )
            return _download(record, entry, settings, sources, trust_unverified)
    except DownloadError as exc:
        if not offline or isinstance(exc, OfflineError):
            raise
        # A bad copy there, or a cache that cannot be written: offline, the failure is "not available".
        raise OfflineError(
            f"{record.file} is in the Hugging Face cache but cannot be taken into the dsd-zoo cache, and "
            f"offline mode is on: {exc}"
        ) from exc


def import_file(record: FileRecord, path: str | os.PathLike) -> Path:
    """Take ``path``, a copy of ``record``'s file obtained by hand (e.g. in a browser), into the cache.

    The copy is checked as a download would be: against the record's digest, or the sha256 pinned
    when the file was first fetched. A record with neither gets this copy's sha256 pinned (trust on
    first use: importing the file is the opt-in), with a warning. A verified copy already in the
    cache is kept, and ``path`` must match it. Returns the cached path; never touches the network.

    Raises:
        DownloadError: ``path`` cannot be read, is not the file the record describes, or the cache
            cannot be written.
    """
    source = Path(path).expanduser()
    root = cache.resolve_cache_dir()
    _make_cache_dir(root)
    final = root / record.file
    with cache.claim(final, record.digest, record.size) as entry:
        if entry.hit is None:
            settings = _Settings.from_env(progress=False)
            return _download(record, entry, settings, [_FileSource(source)], trust_unverified=True)
        same = cache.check_file(source, Digest("sha256", entry.hit.sha256), entry.hit.size, rehash=True)
        if not same.verified:
            raise DownloadError(
                f"{source} is not the copy of {record.file} already in the cache ({same.detail}); "
                f"to replace that copy, delete {final} and {cache.stamp_path(final)} first"
            )
        return final


def _make_cache_dir(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create the dsd-zoo cache directory {root}: {exc.strerror or exc}; "
            f"set ${cache.CACHE_ENV} to a writable directory"
        ) from exc


def _shipped(record: FileRecord) -> Path:
    """A file shipped inside the package, after checking it against its pinned sha256 (it is never downloaded)."""
    found = cache.find_local(record, rehash=True)
    if found.verified and found.path is not None:
        return found.path
    if found.state == "missing" or found.unreadable:
        raise NotAvailableError(
            f"{record.file}: the copy shipped with dsd-zoo ({record.local}) cannot be read "
            f"({found.detail}); reinstall dsd-zoo"
        )
    raise IntegrityError(
        f"{record.file}: the copy shipped with dsd-zoo, {found.path}, is not the one the manifest "
        f"pins ({found.detail}); it was modified: restore it (git checkout, or reinstall dsd-zoo)"
    )


def _sources(record: FileRecord) -> list["_Source"]:
    """Where ``record`` can be downloaded from, in the order to try: the Hub, then each URL."""
    sources: list[_Source] = [_HubSource(record.hf)] if record.hf is not None else []
    return sources + [_url_source(url) for url in record.urls]


def _url_source(url: str) -> "_UrlSource":
    return _OneDriveSource(url) if onedrive.is_share_link(url) else _UrlSource(url)


def _download(
    record: FileRecord, entry: cache.Entry, settings: _Settings, sources: list["_Source"], trust_unverified: bool
) -> Path:
    """Try each source in turn; the cache publishes the first copy that verifies."""
    final = entry.final
    # A new copy must have the record's digest and size, else those pinned on first use.
    pin = None if record.digest is not None else cache.pinned_stamp(final)
    digest = record.digest or (Digest("sha256", pin.sha256) if pin is not None else None)
    size = record.size if record.size is not None or pin is None else pin.size
    first_use = digest is None  # trust on first use: whatever verifies by size is pinned
    if first_use and not trust_unverified:
        raise UnverifiedSourceError(
            f"{record.file} has no published digest, so what {', '.join(map(str, sources)) or 'its (missing) sources'} "
            "serves cannot be checked. To accept the first copy and pin its sha256 for every later download (trust "
            f"on first use), pass trust_unverified=True or set {TRUST_ENV}=1."
        )
    if not sources:
        raise NotAvailableError(f"{record.file} is not in the cache ({final}) and has no source to download it from.")
    _check_free_space(final.parent, size)
    failures: list[str] = []
    for source in sources:
        try:
            stamp = cache.store(
                entry,
                functools.partial(source.fetch_into, digest=digest, size=size, name=record.file, settings=settings),
                digest,
                size,
                pinned=record.digest is None,
                source=str(source),
            )
        except (_SourceError, IntegrityError) as exc:
            logger.warning("%s: %s", source, exc)
            failures.append(f"  {source}: {exc}")
            continue
        except OSError as exc:  # sources turn their own failures into _SourceError: this one is local
            raise DownloadError(
                f"cannot write {record.file} into the cache directory {final.parent}: {exc}. Free some space "
                f"or point ${cache.CACHE_ENV} at another directory."
            ) from exc
        if first_use:
            warnings.warn(
                f"dsd-zoo: {record.file} has no published digest; trusting the copy from {source} on first use "
                f"and pinning its sha256 {stamp.sha256} in {cache.stamp_path(final)}. Later downloads must "
                "match it.",
                UserWarning,
                stacklevel=3,
            )
        logger.info("downloaded %s from %s (sha256 %s)", record.file, source, stamp.sha256)
        return final
    hint = ""
    if record.digest is None and not first_use:
        hint = (
            f"\nThe expected sha256 and size are the pin recorded when {record.file} was first downloaded "
            f"(trust on first use), in {cache.stamp_path(final)}. If the source has really changed, delete "
            "that file to accept a new copy."
        )
    if len(sources) == 1:
        raise DownloadError(f"could not get {record.file} from {failures[0].strip()}{hint}")
    raise DownloadError(f"could not download {record.file}; every source failed:\n" + "\n".join(failures) + hint)


def _algorithms(digest: Digest | None) -> set[str]:
    """The hashes to compute over a download: sha256 for the stamp, plus what ``digest`` needs."""
    return {"sha256"} | ({digest.algorithm} if digest is not None else set())


class _Source:
    """A place a file can be had from."""

    def fetch_into(
        self, part: Path, digest: Digest | None, size: int | None, name: str, settings: _Settings
    ) -> dict[str, str]:
        """Write the file to ``part`` and return the digests of what was written (all :func:`_algorithms`)."""
        raise NotImplementedError


class _HubSource(_Source):
    """The Hugging Face Hub, through ``huggingface_hub`` and its own cache."""

    def __init__(self, location: HFLocation, local_only: bool = False) -> None:
        self.location = location
        self.local_only = local_only  # offline: only a copy already in huggingface_hub's cache

    def __str__(self) -> str:
        return f"{self.location} (Hugging Face cache)" if self.local_only else str(self.location)

    @staticmethod
    def _hub_cache() -> str | None:
        # huggingface_hub reads these when first imported; read them per call so they can change.
        return os.environ.get("HF_HUB_CACHE") or (
            os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None
        )

    def is_cached(self) -> bool:
        """Whether huggingface_hub's cache holds this file at this revision."""
        from huggingface_hub import try_to_load_from_cache

        location = self.location
        try:
            found = try_to_load_from_cache(
                location.repo_id, location.filename, cache_dir=self._hub_cache(), revision=location.revision
            )
        except (ValueError, OSError):  # a name the Hub refuses (hf_hub_download reports it), an unreadable cache
            return False
        return isinstance(found, str)

    def fetch_into(
        self, part: Path, digest: Digest | None, size: int | None, name: str, settings: _Settings
    ) -> dict[str, str]:
        was_cached = self.is_cached()
        if not self.local_only and not was_cached:  # a cached copy is served without the network
            from huggingface_hub import constants

            unresolved = _dns.unresolvable_host(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
            if unresolved is not None:  # else huggingface_hub retries the name for about 20 s
                raise _SourceError(unresolved)
        hexdigests = self._download(part, digest, settings, force=False)
        problem = cache.candidate_problem(part, hexdigests, digest, size)
        if problem and was_cached and not self.local_only:
            # huggingface_hub never re-checks its cache: a damaged copy there would fail forever.
            logger.warning("%s: the copy in the Hugging Face cache is bad (%s); downloading it again", self, problem)
            part.unlink()
            hexdigests = self._download(part, digest, settings, force=True)
        return hexdigests

    def _download(self, part: Path, digest: Digest | None, settings: _Settings, force: bool) -> dict[str, str]:
        """Have huggingface_hub put the file in its cache (or find it there), and adopt that copy as ``part``."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        # The HTTP library huggingface_hub uses changed across versions; catch whichever it loaded.
        http_errors = tuple(sys.modules[m].HTTPError for m in ("httpx2", "httpx") if m in sys.modules)
        try:
            downloaded = hf_hub_download(
                self.location.repo_id,
                self.location.filename,
                revision=self.location.revision,
                endpoint=os.environ.get("HF_ENDPOINT") or None,
                cache_dir=self._hub_cache(),
                force_download=force,
                local_files_only=self.local_only,
                etag_timeout=settings.timeout[0],
                tqdm_class=None if settings.progress else _silent_tqdm(),
            )
        except (OSError, ValueError, EntryNotFoundError, *http_errors) as exc:
            raise _SourceError(f"{type(exc).__name__}: {first_line(exc)}") from exc
        return _adopt(Path(downloaded).resolve(), part, _algorithms(digest), what="the Hugging Face cache's copy")


def _adopt(source: Path, part: Path, algorithms: set[str], *, what: str, link: bool = True) -> dict[str, str]:
    """Give ``part`` the content of ``source`` (a hard link when ``link`` and possible) and return its digests.

    A copy that cannot be opened is the source's failure (the next source is tried); once it is
    open, a failure is the cache's (it cannot be written). ``what`` names the copy in errors.
    """
    try:
        if link and _hard_link(source, part):
            return hash_file(part, algorithms)
        src = open(source, "rb")
    except OSError as exc:
        raise _SourceError(f"cannot read {what} {source}: {exc.strerror or exc}") from exc
    with src, _PartWriter(part, algorithms, os.fstat(src.fileno()).st_size) as writer:  # a copy, hashed on the way
        for chunk in iter(lambda: src.read(CHUNK_SIZE), b""):
            writer.write(chunk)
        return writer.hexdigests()


def _hard_link(source: Path, part: Path) -> bool:
    """Make ``part`` a hard link to ``source``; ``False`` where links do not work (another file system)."""
    try:
        os.link(source, part)
    except OSError:
        return False
    return True


class _FileSource(_Source):
    """A copy of the file obtained by hand (a browser download), taken into the cache like a download.

    It is copied, not linked: the cache's copy must not change when the user's file does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return f"{self.path} (imported by hand)"

    def fetch_into(
        self, part: Path, digest: Digest | None, size: int | None, name: str, settings: _Settings
    ) -> dict[str, str]:
        return _adopt(self.path, part, _algorithms(digest), what="the file", link=False)


class _UrlSource(_Source):
    """A plain http(s) URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __str__(self) -> str:
        return self.url

    def open(self, session: requests.Session, headers: dict[str, str], settings: _Settings) -> requests.Response:
        """Open the GET of the bytes (see :func:`_get`)."""
        return _get(session, self.url, headers, settings)

    def fetch_into(
        self, part: Path, digest: Digest | None, size: int | None, name: str, settings: _Settings
    ) -> dict[str, str]:
        with (
            requests.Session() as session,
            _PartWriter(part, _algorithms(digest), size) as writer,
            _progress_bar(name, size, settings.progress) as bar,
        ):
            resume = _Resume()
            _retrying(
                lambda: self._attempt(session, writer, resume, size, bar, settings, unverified=digest is None),
                settings,
                what=self.url,
                progress=lambda: writer.written,
            )
            hexdigests = writer.hexdigests()
        if digest is not None and digest.computed_by not in hexdigests:
            # A git blob sha1 of a body whose size was unknown until the end: one more read.
            hexdigests.update(hash_file(part, [digest.algorithm]))
        return hexdigests

    def _attempt(
        self,
        session: requests.Session,
        writer: _PartWriter,
        resume: _Resume,
        size: int | None,
        bar: tqdm,
        settings: _Settings,
        unverified: bool = False,
    ) -> None:
        """One GET, resuming after ``writer.written`` bytes when the server allows it.

        ``unverified``: there is no digest to check what arrives, so a web page (a login or error
        page answered with 200) is refused rather than trusted on first use and pinned.
        """
        headers = {"Accept-Encoding": "identity"}
        if writer.written and resume.validator:
            headers.update({"Range": f"bytes={writer.written}-", "If-Range": resume.validator})
        with self.open(session, headers, settings) as response:
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if unverified and content_type in ("text/html", "application/xhtml+xml"):
                raise _SourceError(
                    f"the server answered with a web page ({content_type}), not the file; open "
                    f"{self.url} in a browser to see why (a login, a quota or a moved file)"
                )
            total = self._total(response, writer, resume, size, bar)
            if size is not None and total is not None and total != size:
                raise _SourceError(f"the server announces {total} bytes, expected {size}")
            _stream_into(response, writer, bar, size if size is not None else total)
            if total is not None and writer.written != total:
                raise _SourceError(f"connection closed after {writer.written} of {total} bytes", transient=True)

    def _total(
        self, response: requests.Response, writer: _PartWriter, resume: _Resume, size: int | None, bar: tqdm
    ) -> int | None:
        """The length of the whole file as this answer gives it; the part restarts if the answer is the whole file.

        A partial answer is taken only when it continues the same version where the part ends.
        """
        start, total = _content_range(response)
        if response.status_code == 206 and start == writer.written:
            changed = resume.version_change(response, total)
            if changed:
                # A server that ignored If-Range, or a file replaced within the validator's
                # resolution, sent part of another version: never splice.
                resume.validator = None
                raise _SourceError(
                    f"the server sent part of a different version ({changed}); starting over", transient=True
                )
            # "bytes a-b/*": the first answer's length still says when it is complete.
            return total if total is not None else resume.total
        if response.status_code != 200:  # a range other than the one asked for: start over
            resume.validator = None
            content_range = response.headers.get("Content-Range")
            raise _SourceError(f"HTTP {response.status_code} with Content-Range {content_range!r}", transient=True)
        if writer.written:
            logger.info("%s: the server sent the whole file again; restarting", self.url)
        resume.remember(response)
        writer.restart(resume.total if size is None else size)
        bar.reset(total=size or resume.total)
        return resume.total


def _stream_into(response: requests.Response, writer: _PartWriter, bar: tqdm, limit: int | None) -> None:
    """Append the body to the part, never past ``limit`` bytes in all; a broken transfer is worth another try."""
    try:
        for chunk in response.iter_content(_NET_CHUNK):
            if limit is not None and writer.written + len(chunk) > limit:
                raise _SourceError(f"the server sent more than the {limit} bytes expected")
            writer.write(chunk)
            bar.update(len(chunk))
    except requests.RequestException as exc:
        raise _SourceError(f"transfer broken after {writer.written} bytes ({first_line(exc)})", transient=True) from exc


class _OneDriveSource(_UrlSource):
    """A OneDrive share link, fetched as an anonymous visitor's browser does (see :mod:`dsd_zoo.onedrive`).

    The share is redeemed for a download link, which is then read like any mirror, with resume.
    A link the content host stops accepting (it expires) is redeemed again, so a transfer
    resumes across a token refresh. When that route fails, the old anonymous API is tried.
    """

    _content_url: str | None = None  # the download link the share was redeemed for

    def open(self, session: requests.Session, headers: dict[str, str], settings: _Settings) -> requests.Response:
        if self._content_url is None:
            try:
                self._content_url = onedrive.redeem(session, self.url, settings.timeout)
            except onedrive.OneDriveError as exc:
                raise _SourceError(str(exc), transient=exc.transient) from exc
        try:
            return _get(session, self._content_url, headers, settings)
        except _SourceError as exc:
            if exc.status not in (401, 403, 404, 410):
                raise
            self._content_url = None
            raise _SourceError(
                f"the download link OneDrive gave was refused ({exc}); redeeming the share again", transient=True
            ) from exc

    def fetch_into(
        self, part: Path, digest: Digest | None, size: int | None, name: str, settings: _Settings
    ) -> dict[str, str]:
        try:
            return super().fetch_into(part, digest, size, name, settings)
        except _SourceError as exc:
            browser_route = exc
        logger.warning("%s: %s; trying OneDrive's old anonymous API", self.url, browser_route)
        part.unlink(missing_ok=True)
        legacy = _UrlSource(onedrive.legacy_content_url(self.url))
        try:
            return legacy.fetch_into(part, digest, size, name, settings)
        except _SourceError as exc:
            why = f"{exc}, as it has answered anonymous visitors since mid-2024" if exc.status == 401 else str(exc)
            raise _SourceError(
                f"OneDrive, reached as a browser does: {browser_route}; OneDrive's old anonymous API ({legacy}): {why}"
            ) from exc


@dataclass
class _Resume:
    """What a later request needs to ask for the rest of the same representation."""

    validator: str | None = None
    total: int | None = None  # the length of the representation the validator names

    def remember(self, response: requests.Response) -> None:
        """Remember the version a whole (200) answer sends.

        Only a whole answer is remembered: a 206 answers for the version already remembered, and
        proves ranges work even without Accept-Ranges (nginx, for one, leaves it out of its 206 answers).
        """
        self.total = _int_header(response, "Content-Length")
        etag = response.headers.get("ETag")
        if response.headers.get("Accept-Ranges", "").lower() != "bytes":
            self.validator = None
        elif etag:
            # If-Range needs a strong validator, and a client that has an ETag must not send a date
            # instead (RFC 9110 13.1.5): with a weak one, a resume could splice two versions.
            self.validator = None if etag.startswith("W/") else etag
        else:
            self.validator = _strong_last_modified(response)

    def version_change(self, partial: requests.Response, total: int | None) -> str:
        """Why the 206 ``partial`` (of ``total`` bytes) is not of the remembered version; ``""`` if it is."""
        # The validator is a strong ETag (quoted) or a date.
        header = "ETag" if self.validator and self.validator.startswith('"') else "Last-Modified"
        sent = partial.headers.get(header)
        if sent and self.validator and sent != self.validator:
            return f"{header} {sent}, expected {self.validator}"
        if total is not None and self.total is not None and total != self.total:
            return f"{total} bytes in all, the first answer announced {self.total}"
        return ""


def _strong_last_modified(response: requests.Response) -> str | None:
    """``Last-Modified`` when it may serve as a strong validator, else ``None``.

    A date names one version only if the file could not change again within that second: RFC
    9110 8.8.2.2 asks for the server's ``Date`` to be at least one second later.
    """
    modified = response.headers.get("Last-Modified")
    when, now = _http_date(modified), _http_date(response.headers.get("Date"))
    return modified if when is not None and now is not None and (now - when).total_seconds() >= 1 else None


def _http_date(value: str | None) -> datetime.datetime | None:
    """An HTTP date, read as GMT when it names no zone; ``None`` when absent or unreadable."""
    try:
        when = email.utils.parsedate_to_datetime(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.timezone.utc)


class _PartWriter:
    """Writes a download to its part file and hashes each chunk on the way, so no second read is needed.

    Hashing runs on one background thread (hashlib releases the GIL), overlapping with the next
    read from the socket; at most :data:`_HASH_BACKLOG` chunks wait for it, bounding memory.
    ``git_blob_sha1`` needs the total size up front; when it is unknown that hash is left out
    and computed after the download.
    """

    def __init__(self, path: Path, algorithms: set[str], size: int | None) -> None:
        self.algorithms = algorithms
        self.written = 0
        self._file = open(path, "xb")
        self._hasher = self._new_hasher(size)
        # One worker: chunks are hashed in the order they were submitted.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dsd_zoo-hash")
        self._pending: deque[Future[None]] = deque()

    def __enter__(self) -> "_PartWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True)
        self._file.close()

    def _new_hasher(self, size: int | None) -> MultiHasher:
        usable = self.algorithms if size is not None else self.algorithms - {"git_blob_sha1"}
        return MultiHasher(usable, size=size)

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._pending.append(self._pool.submit(self._hasher.update, chunk))
        if len(self._pending) > _HASH_BACKLOG:
            self._pending.popleft().result()
        self.written += len(chunk)

    def restart(self, size: int | None) -> None:
        """Drop what was written so far and hash from scratch (the server could not resume)."""
        self._drain()
        if self.written:  # ext4 flushes truncated files on close: do not truncate an empty one
            self._file.seek(0)
            self._file.truncate()
        self.written = 0
        self._hasher = self._new_hasher(size)

    def hexdigests(self) -> dict[str, str]:
        """The digests of everything written, once it is all on its way to the disk."""
        self._drain()
        self._file.flush()
        return self._hasher.hexdigests()


def fetch_url_bytes(url: str, max_bytes: int, *, offline: bool | None = None) -> bytes:
    """GET a small document (e.g. a manifest given by URL) with the downloader's timeouts and retries.

    Raises :class:`~dsd_zoo.errors.OfflineError` in offline mode and
    :class:`~dsd_zoo.errors.DownloadError` when the URL fails or its body exceeds ``max_bytes``.
    """
    if offline_mode(offline):
        raise OfflineError(f"offline mode is on ({OFFLINE_ENV} / HF_HUB_OFFLINE); cannot fetch {url}")
    settings = _Settings.from_env(progress=False)
    source = _url_source(url)

    def attempt() -> bytes:
        body = bytearray()
        with source.open(session, {}, settings) as response:
            if response.status_code != 200:
                raise _SourceError(f"unexpected HTTP {response.status_code}")
            try:
                for chunk in response.iter_content(2**16):
                    body += chunk
                    if len(body) > max_bytes:
                        raise _SourceError(f"the body is larger than {max_bytes} bytes")
            except requests.RequestException as exc:
                raise _SourceError(first_line(exc), transient=True) from exc
        return bytes(body)

    with requests.Session() as session:
        try:
            return _retrying(attempt, settings, what=url)
        except _SourceError as exc:
            raise DownloadError(f"could not fetch {url}: {exc}") from exc


def _get(session: requests.Session, url: str, headers: dict[str, str], settings: _Settings) -> requests.Response:
    """Open a streamed GET; network trouble and 'try later' answers raise a transient :class:`_SourceError`."""
    try:
        response = session.get(url, headers=headers, stream=True, timeout=settings.timeout)
    except requests.RequestException as exc:
        message, transient = _dns.no_answer(exc, url)
        raise _SourceError(message, transient=transient) from exc
    status = response.status_code
    if status < 400:
        return response
    response.close()
    message = f"HTTP {status} {response.reason}"
    if status in _TRANSIENT_STATUS or status >= 500:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if retry_after is not None and retry_after > _MAX_BACKOFF_S:
            # Waiting that long in silence is worse than trying the next source now.
            raise _SourceError(
                f"{message}; the server asks to retry in {retry_after:.0f} s, longer than the "
                f"{_MAX_BACKOFF_S:.0f} s this downloader waits: try again later"
            )
        raise _SourceError(message, transient=True, retry_after=retry_after)
    raise _SourceError(message, status=status)


def _retrying(attempt: Callable[[], _T], settings: _Settings, what: str, progress: Callable[[], int] = lambda: 0) -> _T:
    """Call ``attempt`` until it succeeds, retrying transient failures with exponential backoff.

    An attempt that got further than every earlier one (per ``progress``) resets the count, so
    an unreliable connection that still advances is not abandoned; one that keeps failing at the
    same point is, after ``settings.attempts`` attempts.
    """
    failures, furthest = 0, progress()
    while True:
        try:
            return attempt()
        except _SourceError as exc:
            if not exc.transient:
                raise
            if progress() > furthest:
                failures, furthest = 0, progress()
            failures += 1
            if failures >= settings.attempts:
                raise _SourceError(f"{exc} (gave up after {failures} attempts)") from exc
            delay = min(settings.backoff * 2 ** (failures - 1), _MAX_BACKOFF_S)
            if exc.retry_after is not None:  # the server's own wait (at most _MAX_BACKOFF_S, see _get)
                delay = max(delay, exc.retry_after)
            logger.warning("%s: %s; retrying in %.2g s", what, exc, delay)
            time.sleep(delay)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date); None if absent or unreadable."""
    if value is not None and value.strip().isdigit():
        return float(value)
    when = _http_date(value)
    return None if when is None else max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    """The first byte and the total length of a ``Content-Range`` answer (the total is ``None`` for ``*``)."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    if match is None:
        return None, None
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _int_header(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None  # the header counts compressed bytes; requests hands out decoded ones
    return int(value) if value is not None and value.isdigit() else None


def _check_free_space(directory: Path, size: int | None) -> None:
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if size is not None and free < size:
        raise DownloadError(
            f"{directory} has {free} bytes free but the file needs {size}; free some space or point "
            f"${cache.CACHE_ENV} at another directory."
        )


def _progress_bar(name: str, size: int | None, enabled: bool) -> tqdm:
    from tqdm.auto import tqdm  # lazily: only downloads need it

    return tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        disable=not enabled,
        dynamic_ncols=True,
        miniters=1,
    )


def _silent_tqdm() -> type[tqdm]:
    from tqdm.auto import tqdm

    class SilentTqdm(tqdm):  # huggingface_hub takes a class, not a flag
        def __init__(self, *args, **kwargs) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


def offline_mode(offline: bool | None = None) -> bool:
    """Whether the network is off: ``offline`` if given, else ``$DSD_ZOO_OFFLINE`` / ``$HF_HUB_OFFLINE``.

    The one reading of these variables: a ``DSD_ZOO_OFFLINE`` that is not a boolean is an error.
    """
    return _flag(offline, OFFLINE_ENV, "HF_HUB_OFFLINE")


def _flag(value: bool | None, *names: str) -> bool:
    """An explicit ``value``, else whether any of the environment variables ``names`` is true.

    An ``HF_*`` variable is read as huggingface_hub reads it (anything not true is false), so
    that both agree on the mode.
    """
    if value is not None:
        return bool(value)
    for name in names:
        raw = os.environ.get(name, "").strip().lower()
        if raw in _TRUE:
            return True
        if raw not in _FALSE and not name.startswith("HF_"):
            raise SettingError(f"${name}={os.environ[name]!r} is not a boolean; use 1 or 0")
    return False


def _env_number(name: str, raw: str, kind: Callable[[str], _T]) -> _T:
    try:
        return kind(raw.strip())
    except ValueError:
        raise SettingError(f"${name}={os.environ.get(name)!r} is not a number") from None
