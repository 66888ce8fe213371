"""Files that appear whole or not at all, and safetensors files that are byte-reproducible.

Every file dsd-zoo writes for others to read (cache entries, converted weights, checkpoints,
masks, model cards, manifests) goes to a unique temporary name in the destination directory,
is flushed to disk and renamed over the final name, so a crash, a full disk or an interrupt
never leaves half a file under the final name. Temporary files are created with mode
``0o666`` so the process umask applies, as for any ordinary new file.

safetensors files are written canonically (metadata and tensors in sorted order, compact JSON):
the safetensors library stores metadata in hash-map order, so the same tensors could give a
different sha256 on every write, and manifests pin files by sha256.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Union

__all__ = [
    "PART_SUFFIX",
    "PathLike",
    "atomic_write",
    "file_in_the_way",
    "new_part_path",
    "publish",
    "write_safetensors",
]

PART_SUFFIX = ".part"
#: What every dsd-zoo function that takes a file path accepts.
PathLike = Union[str, "os.PathLike[str]"]


def new_part_path(final: Path) -> Path:
    """A temporary name for a new copy of ``final``, unique to this process, in the same directory."""
    return final.with_name(f"{final.name}.{os.getpid()}.{secrets.token_hex(4)}{PART_SUFFIX}")


def file_in_the_way(path: PathLike) -> Path | None:
    """The nearest existing folder of ``path`` if it is a file (so ``path`` cannot be created), else None.

    Checked before long work, so the user hears "X is a file" up front instead of mkdir's
    "File exists" at the end.
    """
    for parent in Path(path).parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def publish(part: Path, final: Path) -> None:
    """Make the complete file ``part`` durable and visible as ``final`` in one atomic step."""
    _fsync_file(part)
    os.replace(part, final)
    _fsync_directory(final.parent)


def _fsync_file(path: Path) -> None:
    # Read-only: ``part`` may be a hard link to a file this process cannot write (a read-only
    # Hugging Face cache blob), and POSIX fsync does not need write access.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    except OSError:
        # Windows commits only handles opened for writing.
        with open(path, "rb+") as file:
            os.fsync(file.fileno())
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Persist a rename; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the rename itself is still atomic
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Create ``path`` through ``write(file)`` on a temporary file and an atomic rename.

    Parent directories are created. On any failure (including KeyboardInterrupt) the temporary
    file is removed and whatever was at ``path`` before is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = new_part_path(path)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
        publish(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


def write_text(path: PathLike, text: str) -> Path:
    """Create ``path`` holding ``text`` in UTF-8, atomically (see :func:`atomic_write`).

    A lone surrogate (a file name that is not UTF-8, as ``os.fsdecode`` gives it) is written as
    its ``\\udcff`` escape rather than failing after the work that produced the text.
    """
    data = text.encode("utf-8", errors="backslashreplace")
    return atomic_write(path, lambda file: file.write(data))


def write_safetensors(path: PathLike, tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> Path:
    """Write torch tensors as a canonical safetensors file, atomically; returns the path.

    Layout (the safetensors format): an 8-byte little-endian header length, the JSON header
    (``__metadata__`` first, keys sorted, no spaces) padded with spaces to 8-byte alignment,
    then the tensors' little-endian bytes in sorted name order. The same tensors and metadata
    always give the same bytes.

    Raises:
        ValueError: a tensor of a dtype safetensors cannot hold, or metadata that is not str -> str.
    """
    import sys

    import torch

    if sys.byteorder != "little":  # pragma: no cover - every platform torch ships wheels for
        raise ValueError("writing safetensors needs a little-endian machine")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("safetensors metadata must map str to str")
    dtypes = {
        torch.float32: "F32",
        torch.float64: "F64",
        torch.float16: "F16",
        torch.bfloat16: "BF16",
        torch.int64: "I64",
        torch.int32: "I32",
        torch.int16: "I16",
        torch.int8: "I8",
        torch.uint8: "U8",
        torch.bool: "BOOL",
    }
    header: dict = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        if tensor.dtype not in dtypes:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot hold")
        data = tensor.reshape(-1).view(torch.uint8).numpy()  # the raw bytes, without a copy
        header[name] = {
            "dtype": dtypes[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + data.nbytes],
        }
        offset += data.nbytes
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-(8 + len(raw)) % 8)

    def write(file: BinaryIO) -> None:
        file.write(len(raw).to_bytes(8, "little"))
        file.write(raw)
        for data in blobs:
            file.write(data)

    return atomic_write(path, write)
