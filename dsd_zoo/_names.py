"""What a cache file name and a source URL may be: the rules every :class:`~dsd_zoo.records.FileRecord` obeys."""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import urlsplit

from .atomic import PART_SUFFIX

__all__ = ["LOCK_SUFFIX", "RESERVED_SUFFIXES", "STAMP_SUFFIX", "file_name_problem", "url_problem"]

# The cache's own files beside a cached file (see dsd_zoo.cache): its stamp and its lock.
STAMP_SUFFIX = ".stamp.json"
LOCK_SUFFIX = ".lock"
# Suffixes a cached file's own name must not end with, or it would collide with another's sidecar.
RESERVED_SUFFIXES = (STAMP_SUFFIX, LOCK_SUFFIX, PART_SUFFIX)

# A cache file name must never escape the cache directory nor hide as a dot file.
_SAFE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
# Device names Windows reserves whatever the extension ("nul.safetensors" is the null device).
_WINDOWS_DEVICE = re.compile(r"(?:CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(?:\..*)?", re.IGNORECASE)


def file_name_problem(name: object) -> Optional[str]:
    """Why ``name`` cannot be a file of the cache, or ``None`` when it can."""
    if not isinstance(name, str) or not _SAFE_FILE.fullmatch(name) or ".." in name:
        return "must be a plain file name (letters, digits, '.', '_', '-'; no path, not hidden)"
    if _WINDOWS_DEVICE.fullmatch(name):
        return "is a Windows device name (NUL, CON, COM1 ...), whatever its extension"
    if name.endswith("."):
        return "ends in '.', which Windows drops"
    if name.endswith(RESERVED_SUFFIXES):
        return f"ends in {', '.join(RESERVED_SUFFIXES)}, which the cache uses for its own files"
    return None


def url_problem(url: object) -> Optional[str]:
    """Why ``url`` cannot be a source to download from, or ``None`` when it can (http or https only)."""
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        _ = parts.port if parts is not None else None  # raises for a port out of range
    except ValueError:  # e.g. "https://[mirror" (an unclosed IPv6 bracket)
        parts = None
    if (
        not isinstance(url, str)
        or parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in url)
    ):
        return f"must be an http(s):// URL, got {url!r}"
    return None
