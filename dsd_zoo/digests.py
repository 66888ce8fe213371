"""Streaming digests of weight files and original releases.

Four algorithms cover every digest a publisher of the DSD models or their baselines gave:

``sha256``
    What dsd-zoo publishes for its own converted weights, and what the cache stamps record.
``sha1``
    The Caffe model zoo (``bvlc_alexnet``, ``bvlc_googlenet``).
``git_blob_sha1``
    Files in a git repository (SqueezeNet, Deep Compression): the sha1 of
    ``b"blob %d\\0" % size + content``, so the size must be known before the first byte.
``sha256_prefix``
    A hex prefix (at least 8 characters) of the sha256, as ``torch.hub`` file names carry.

A :class:`MultiHasher` feeds one stream of chunks to several of them at once, so a download or
a file is read exactly once whatever the digest to check.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Iterable, Mapping

__all__ = ["ALGORITHMS", "CHUNK_SIZE", "Digest", "MultiHasher", "hash_file"]

ALGORITHMS = ("sha256", "sha1", "git_blob_sha1", "sha256_prefix")
# (shortest, longest) hex length accepted for each algorithm. 8 hex digits is the shortest
# prefix torch.hub uses; anything shorter is too easy to match by accident.
_HEX_LENGTHS = {"sha256": (64, 64), "sha1": (40, 40), "git_blob_sha1": (40, 40), "sha256_prefix": (8, 64)}
# The hash that has to be computed to check a digest of each algorithm.
_COMPUTED_BY = {"sha256": "sha256", "sha1": "sha1", "git_blob_sha1": "git_blob_sha1", "sha256_prefix": "sha256"}
_LOWER_HEX = re.compile(r"[0-9a-f]+")
# 4 MiB: large enough that the per-call cost of hashlib and read() vanishes, small enough to stay
# in the CPU caches; hashlib releases the GIL on chunks this size.
CHUNK_SIZE = 4 * 2**20


@dataclass(frozen=True)
class Digest:
    """A published digest: an algorithm of :data:`ALGORITHMS` and its lower-case hex value.

    >>> Digest("sha1", "9116a64c0fbe4459d18f4bb6b56d647b63920377").computed_by
    'sha1'
    """

    algorithm: str
    value: str

    def __post_init__(self) -> None:
        if self.algorithm not in _HEX_LENGTHS:
            raise ValueError(f"unknown digest algorithm {self.algorithm!r}; expected one of {list(ALGORITHMS)}")
        shortest, longest = _HEX_LENGTHS[self.algorithm]
        if not isinstance(self.value, str) or not _LOWER_HEX.fullmatch(self.value):
            raise ValueError(f"{self.algorithm} digest {self.value!r} is not lower-case hex")
        if not shortest <= len(self.value) <= longest:
            expected = str(shortest) if shortest == longest else f"{shortest} to {longest}"
            raise ValueError(
                f"{self.algorithm} digest {self.value!r} has {len(self.value)} hex digits; expected {expected}"
            )

    @property
    def computed_by(self) -> str:
        """The algorithm whose hex digest this one is checked against (``sha256`` for a prefix)."""
        return _COMPUTED_BY[self.algorithm]

    def matches(self, hexdigests: Mapping[str, str]) -> bool:
        """Whether the digests computed over some bytes (``{algorithm: hex}``) agree with this one.

        ``False`` when ``hexdigests`` lacks :attr:`computed_by`: checking nothing must never pass
        for a successful check.
        """
        computed = hexdigests.get(self.computed_by)
        if computed is None:
            return False
        if self.algorithm == "sha256_prefix":
            return computed.startswith(self.value)
        return computed == self.value

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.value}"


class MultiHasher:
    """Computes several digests of one stream of bytes in a single pass.

    ``algorithms`` may name any of :data:`ALGORITHMS`; ``sha256_prefix`` is served by ``sha256``.
    ``git_blob_sha1`` needs ``size``, the total number of bytes that will be fed, because git
    hashes a header holding it before the content.
    """

    def __init__(self, algorithms: Iterable[str], size: int | None = None) -> None:
        self._hashers: dict[str, "hashlib._Hash"] = {}
        self._size = size
        self._fed = 0
        for algorithm in algorithms:
            if algorithm not in _COMPUTED_BY:
                raise ValueError(f"unknown digest algorithm {algorithm!r}; expected one of {list(ALGORITHMS)}")
            name = _COMPUTED_BY[algorithm]
            if name != "git_blob_sha1":
                self._hashers[name] = hashlib.new(name)
            elif size is None or size < 0:
                raise ValueError("a git blob sha1 needs the size of the content before hashing it")
            else:
                self._hashers[name] = hashlib.sha1(b"blob %d\0" % size)

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Feed the next chunk of the stream to every hash."""
        for hasher in self._hashers.values():
            hasher.update(chunk)
        self._fed += len(chunk)

    def hexdigests(self) -> dict[str, str]:
        """The lower-case hex digest of every hash over the bytes fed so far.

        A git blob sha1 is only meaningful once exactly ``size`` bytes were fed; it is left out
        otherwise, so that a short or long stream can never match a published blob hash.
        """
        complete = self._fed == self._size
        return {name: h.hexdigest() for name, h in self._hashers.items() if name != "git_blob_sha1" or complete}


def hash_file(
    path: str | os.PathLike, algorithms: Iterable[str] = ("sha256",), chunk_size: int = CHUNK_SIZE
) -> dict[str, str]:
    """Read ``path`` once and return ``{algorithm: hex}`` for each of ``algorithms``.

    The size a git blob sha1 needs is taken from the open file, so it describes the bytes read.
    """
    if not 2**20 <= chunk_size <= 8 * 2**20:
        raise ValueError(f"chunk_size must be between 1 MiB and 8 MiB, got {chunk_size}")
    with open(path, "rb") as file:
        hasher = MultiHasher(algorithms, size=os.fstat(file.fileno()).st_size)
        buffer = bytearray(chunk_size)
        view = memoryview(buffer)
        for count in iter(lambda: file.readinto(buffer), 0):
            hasher.update(view[:count])
    return hasher.hexdigests()
