"""The record of a file dsd-zoo can get: what it is called, what it must hash to, and where it is.

The manifest produces these records; the cache, the downloader and the self-check consume them.
They sit below all three, so that none of them needs the manifest to name a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Optional, Tuple

from ._names import file_name_problem, url_problem
from .digests import Digest
from .errors import RecordError

__all__ = ["COMMIT", "FileRecord", "HFLocation", "PACKAGE_DIR", "shipped_file"]

#: A git commit id, as a Hub revision must be pinned (applied with fullmatch).
COMMIT = re.compile(r"[0-9a-f]{40}")
# Files shipped inside the package (the embedded zoo, the mean image) are named relative to this
# directory, so the same manifest works from a checkout and from an installed wheel.
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class HFLocation:
    """A file in a Hugging Face Hub repository at a pinned revision (a 40-hex commit id)."""

    repo_id: str
    revision: str
    filename: str

    def __post_init__(self) -> None:
        for name in ("repo_id", "revision", "filename"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or value != value.strip():
                raise RecordError(name, f"must be a non-empty string without surrounding spaces, got {value!r}")
        if not COMMIT.fullmatch(self.revision):
            # A branch name would let the bytes change under a fixed manifest.
            raise RecordError("revision", f"must be a 40-hex commit id (pinned), got {self.revision!r}")

    def __str__(self) -> str:
        return f"hf://{self.repo_id}@{self.revision}/{self.filename}"


@dataclass(frozen=True)
class FileRecord:
    """A file dsd-zoo can get: its name in the cache, what it must hash to, and where it is.

    The one record of a file, produced by the manifest and consumed by the cache, the
    downloader and the self-check. ``file`` is a plain file name (no directory part).
    ``digest`` is the sha256 of a dsd-zoo weight file, or whatever digest the publisher of an
    original release gave; ``None`` means there is none to check (trust on first use, see
    :func:`dsd_zoo.download.fetch`). ``size`` in bytes, when known, is checked too. The sources
    are tried in order: ``local`` (a file shipped inside the package, relative to it), ``hf``,
    then ``urls``. A record checks its own fields on creation and raises :class:`RecordError`
    (a ``ValueError``) naming the field.
    """

    file: str
    digest: Optional[Digest]
    size: Optional[int]
    hf: Optional[HFLocation] = None
    urls: Tuple[str, ...] = ()
    local: Optional[str] = None

    def __post_init__(self) -> None:
        problem = file_name_problem(self.file)
        if problem:
            raise RecordError("file", f"{problem}, got {self.file!r} (a plain file name is needed)")
        if self.digest is not None and not isinstance(self.digest, Digest):
            raise TypeError(f"FileRecord.digest must be a Digest or None, got {type(self.digest).__name__}")
        if self.size is not None and (not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 0):
            raise RecordError("size", f"must be a non-negative number of bytes, got {self.size!r}")
        if isinstance(self.urls, str):
            raise TypeError("FileRecord.urls must be a sequence of URLs, not one string")
        object.__setattr__(self, "urls", tuple(self.urls))
        for i, url in enumerate(self.urls):
            problem = url_problem(url)
            if problem:
                raise RecordError(f"urls[{i}]", problem)
        # Judged the same on every OS: no drive ("C:"), no backslash (a separator on Windows), no "..".
        local = self.local
        if local is not None and (
            PurePosixPath(local).is_absolute() or ".." in PurePosixPath(local).parts or "\\" in local or ":" in local
        ):
            raise RecordError(
                "local", f"must be a relative path inside the package, with '/' separators, got {local!r}"
            )
        if local is not None and self.sha256 is None:
            raise RecordError("digest", "a file shipped with the package must have its sha256 pinned")

    @property
    def sha256(self) -> Optional[str]:
        """The pinned sha256, when the digest is one (every dsd-zoo weight file's is)."""
        return self.digest.value if self.digest is not None and self.digest.algorithm == "sha256" else None


def shipped_file(relative: str) -> Path:
    """The path of a file shipped inside the package (a manifest ``local`` path)."""
    return PACKAGE_DIR / relative
