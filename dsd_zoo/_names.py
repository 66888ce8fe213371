"""What a cache file name may be: the one rule the manifest and the downloader both apply."""

from __future__ import annotations

import re
from typing import Optional, Sequence

__all__ = ["file_name_problem"]

# A cache file name must never escape the cache directory nor hide as a dot file.
_SAFE_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
# Device names Windows reserves whatever the extension ("nul.safetensors" is the null device).
_WINDOWS_DEVICE = re.compile(r"(?:CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(?:\..*)?", re.IGNORECASE)


def file_name_problem(name: object, reserved_suffixes: Sequence[str] = ()) -> Optional[str]:
    """Why ``name`` cannot be a file of the cache, or ``None`` when it can."""
    if not isinstance(name, str) or not _SAFE_FILE.fullmatch(name) or ".." in name:
        return "must be a plain file name (letters, digits, '.', '_', '-'; no path, not hidden)"
    if _WINDOWS_DEVICE.fullmatch(name):
        return "is a Windows device name (NUL, CON, COM1 ...), whatever its extension"
    if name.endswith("."):
        return "ends in '.', which Windows drops"
    if name.endswith(tuple(reserved_suffixes)):
        return f"ends in {', '.join(reserved_suffixes)}, which the cache uses for its own files"
    return None
