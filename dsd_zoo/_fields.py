"""The one check for fields a JSON or TOML object must not have, shared by the manifest and the recipe reader."""

from __future__ import annotations

import difflib
from typing import Collection, Iterable, Optional

__all__ = ["unknown_fields"]


def unknown_fields(keys: Iterable[str], allowed: Collection[str]) -> Optional[str]:
    """What is wrong with an object holding ``keys`` when only ``allowed`` are understood; ``None`` if nothing.

    A misspelt field must never silently mean "not given" (a ``"sha265"`` would drop a digest
    check), so each unknown one is named, with the closest allowed name as a hint.
    """
    unknown = sorted(key for key in keys if key not in allowed)
    if not unknown:
        return None
    hints = [
        f"{key!r}"
        + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(key, sorted(allowed), n=1)) else "")
        for key in unknown
    ]
    return f"unknown field(s) {', '.join(hints)}; known here: {sorted(allowed)}"
