"""ILSVRC-2012 validation images for ``verify``: the two layouts, decoding, and one dataset for many pipelines.

Two layouts are read:

* **ImageFolder**: one folder per class, named by its WNID (``n01440764/...``). The class index
  is the WNID's position among the 1000 sorted ILSVRC-2012 WNIDs, not among the folders present,
  so a subset of the classes keeps the right labels. A folder that is not one of the 1000 WNIDs
  is an error (a typo would otherwise shift every label after it).
* **flat**: every image in one folder plus a Caffe-style label file (``val.txt`` of
  ``caffe_ilsvrc12.tar.gz``): one ``filename index`` line per image, the index in sorted-WNID
  order. Missing files, duplicate or unparsable lines, out-of-range indices and images that the
  file does not list are errors, each named.

Decoding is PIL's, in full (no draft mode, which would change the pixels). Grayscale images are
replicated to three channels, as OpenCV's ``IMREAD_COLOR`` (Caffe's ``convert_imageset``) and
Torch7's ``image.load(path, 3)`` (fb.resnet.torch) did; CMYK and palette images are converted by
PIL; alpha is dropped. EXIF orientation is ignored, as both original pipelines ignored it.

A file that cannot be decoded (corrupt, truncated, not an image) is never dropped silently: the
dataset returns it with its reason, and the engine counts it as a wrong answer for every model
(or, if asked, leaves it out of the denominator) and reports it by name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..atomic import PathLike
from .._decode import decode_failure_types
from ..errors import DatasetError
from . import FULL_VAL_SIZE

__all__ = [
    "FULL_VAL_SIZE",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "ValSamples",
    "MultiPipelineDataset",
    "scan_imagenet",
    "scan_imagefolder",
    "scan_flat",
    "decode_image",
    "decode_failure_reason",
]

# File name endings that count as images when a layout is checked for unlisted or stray files.
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".jpe", ".jfif", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_SHOWN = 10  # names listed per problem before "... and N more"
_INTEGER = re.compile(r"-?[0-9]+")

Resampler = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ValSamples:
    """The labelled image files of a validation set, in a fixed order (sorted relative paths).

    ``files`` are POSIX paths relative to ``root``; ``labels`` are class indices in sorted-WNID
    order. ``found`` is how many images the folder holds in total (before :meth:`subset`).
    ``notes`` are facts the report must show (ignored stray files, for instance).
    """

    root: Path
    layout: str  # "imagefolder" or "flat"
    files: Tuple[str, ...]
    labels: Tuple[int, ...]
    labels_file: Optional[Path] = None
    found: int = 0
    notes: Tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        """The absolute path of sample ``index``."""
        return self.root / self.files[index]

    @property
    def is_full(self) -> bool:
        """Whether this is the whole ILSVRC-2012 validation set (50,000 images), nothing left out.

        A ``--limit`` that removed samples is never full, even when 50,000 remain (a folder with a
        stray extra file holds 50,001 samples).
        """
        return len(self.files) == self.found == FULL_VAL_SIZE

    def subset(self, limit: Optional[int]) -> "ValSamples":
        """``limit`` samples spread evenly over the sorted list (every class of an ImageFolder is visited).

        Deterministic: the same folder and limit always give the same images.
        """
        total = len(self.files)
        if limit is None or limit >= total:
            return self
        if limit <= 0:
            raise DatasetError(f"--limit must be a positive number of images, got {limit}")
        picks = [i * total // limit for i in range(limit)]
        return replace(self, files=tuple(self.files[i] for i in picks), labels=tuple(self.labels[i] for i in picks))


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _looks_like_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _check_root(root: PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(
            f"image folder {str(path)!r} does not exist; give the ILSVRC-2012 validation folder "
            "(ImageFolder layout, or flat with --labels val.txt)"
        )
    if not path.is_dir():
        raise DatasetError(f"{str(path)!r} is a file, not a folder; --imagenet takes the folder of validation images")
    return path


def scan_imagenet(root: PathLike, wnids: Sequence[str], labels_file: Optional[PathLike] = None) -> ValSamples:
    """Read a validation folder in whichever layout it has.

    With ``labels_file`` the folder is read as flat (:func:`scan_flat`); otherwise it must hold
    one folder per WNID (:func:`scan_imagefolder`).

    Args:
        root: the folder of validation images.
        wnids: the class WNIDs in index order (``get_weights(name).meta["wnids"]``, sorted).
        labels_file: a Caffe-style ``val.txt`` for a flat folder.
    """
    path = _check_root(root)
    if labels_file is not None:
        return scan_flat(path, labels_file, len(wnids))
    with os.scandir(path) as entries:
        has_folders = any(e.is_dir() and _visible(e.name) for e in entries)
    if not has_folders:
        raise DatasetError(
            f"{str(path)!r} holds no class folders; for a flat folder of images pass the label file "
            "with --labels val.txt ('filename index' lines), or give a folder with one sub-folder per WNID"
        )
    return scan_imagefolder(path, wnids)


def _unreadable_folder(error: OSError) -> None:
    # os.walk skips a folder it cannot list unless told otherwise: its images would silently
    # leave the denominator.
    raise DatasetError(
        f"cannot list the folder {error.filename!r} ({error.strerror or error}); its images would be "
        "missing from the evaluation: fix its permissions or remove it"
    ) from error


def _walk(top: Path) -> Iterator[Tuple[Path, List[str]]]:
    """Each folder under ``top`` with its visible file names, sorted.

    Links to folders are followed, as ImageFolder does, so that no linked image silently leaves
    the set; a link back to a folder already walked (a loop) is not entered again.
    """
    seen = set()
    for dirpath, dirnames, filenames in os.walk(top, onerror=_unreadable_folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        yield Path(dirpath), sorted(n for n in filenames if _visible(n))


def scan_imagefolder(root: PathLike, wnids: Sequence[str]) -> ValSamples:
    """Read an ImageFolder layout: ``root/<wnid>/<image>``, labels from the WNID's sorted position.

    Every visible file below a class folder is a sample (an undecodable one is reported later,
    not skipped); hidden files (``.DS_Store``) are ignored.

    Raises:
        DatasetError: a folder that is not an ILSVRC-2012 WNID, a folder that cannot be listed,
            or no files at all.
    """
    path = _check_root(root)
    index = {wnid: i for i, wnid in enumerate(wnids)}
    with os.scandir(path) as listing:
        entries = sorted((e for e in listing if _visible(e.name)), key=lambda e: e.name)
    folders = [e.name for e in entries if e.is_dir()]
    unknown = [name for name in folders if name not in index]
    if unknown:
        raise DatasetError(
            f"{len(unknown)} folder(s) of {str(path)!r} are not ILSVRC-2012 WNIDs: {_listing(unknown)}. "
            f"An ImageFolder layout needs one folder per class named by its WNID ({wnids[0]} ... "
            f"{wnids[-1]}); for a flat folder of images pass --labels val.txt"
        )
    stray = [e.name for e in entries if not e.is_dir() and _looks_like_image(e.name)]
    samples: List[Tuple[str, int]] = []
    for folder in folders:
        for dirpath, names in _walk(path / folder):
            relative = dirpath.relative_to(path)  # once per folder: ImageNet's has 50,000 files
            samples += [((relative / name).as_posix(), index[folder]) for name in names]
    samples.sort()
    if not samples:
        raise DatasetError(f"no images found in the class folders of {str(path)!r}")
    files, labels = zip(*samples)
    stray_note = f"{len(stray)} image file(s) directly in {path} (outside every class folder) were not evaluated: "
    notes = (stray_note + _listing(stray),) if stray else ()
    return ValSamples(path, "imagefolder", files, labels, None, len(samples), notes)


def _parse_label_lines(text: str, source: str, num_classes: int) -> Dict[str, int]:
    """``{filename: index}`` from ``filename index`` lines; every problem found is reported at once."""
    labels: Dict[str, int] = {}
    first_line: Dict[str, int] = {}
    problems: Dict[str, List[str]] = {"unparsable": [], "out of range": [], "duplicate": [], "unsafe path": []}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)  # the index is the last field; Caffe splits at the last space too
        if len(parts) != 2 or not _INTEGER.fullmatch(parts[1]):
            problems["unparsable"].append(f"line {lineno}: {line[:80]!r}")
            continue
        name, label = parts[0], int(parts[1])
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            problems["unsafe path"].append(f"line {lineno}: {name!r}")
            continue
        key = relative.as_posix()
        if not 0 <= label < num_classes:
            problems["out of range"].append(f"line {lineno}: {label}")
        elif key in first_line:
            problems["duplicate"].append(f"line {lineno}: {name!r} (first on line {first_line[key]})")
        else:
            first_line[key] = lineno
            labels[key] = label
    found = {kind: items for kind, items in problems.items() if items}
    if found:
        details = "; ".join(
            f"{len(items)} {kind} ({', '.join(items[:_SHOWN])}{' ...' if len(items) > _SHOWN else ''})"
            for kind, items in found.items()
        )
        raise DatasetError(
            f"label file {source}: {details}. Each line must be 'filename index' with the index in "
            f"0..{num_classes - 1} (sorted-WNID order, as Caffe's val.txt), each file listed once"
        )
    if not labels:
        raise DatasetError(f"label file {source} lists no images")
    return labels


def scan_flat(root: PathLike, labels_file: PathLike, num_classes: int = 1000) -> ValSamples:
    """Read a flat folder of images and its Caffe-style label file.

    Raises:
        DatasetError: the label file is unreadable or malformed, lists files that are not in the
            folder, or the folder holds images the label file does not list.
    """
    path = _check_root(root)
    labels_path = Path(labels_file).expanduser()
    try:
        text = labels_path.read_bytes().decode("utf-8-sig")  # a byte-order mark (Windows editors) is not a name
    except FileNotFoundError:
        raise DatasetError(f"label file {str(labels_path)!r} does not exist") from None
    except IsADirectoryError:
        raise DatasetError(
            f"label file {str(labels_path)!r} is a folder; --labels takes a file such as val.txt"
        ) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"label file {str(labels_path)!r} is not UTF-8 text ({exc}); is it really a val.txt?"
        ) from None
    except OSError as exc:
        raise DatasetError(f"cannot read label file {str(labels_path)!r}: {exc.strerror or exc}") from None
    labels = _parse_label_lines(text, repr(str(labels_path)), num_classes)
    missing = [name for name in labels if not (path / name).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} of the {len(labels)} files listed in {str(labels_path)!r} are not in "
            f"{str(path)!r}: {_listing(missing)}. Is this the label file of these images? (to evaluate "
            "a part of the set, keep every image and use --limit N)"
        )
    # Subfolders too: the label file may name "sub/x.JPEG", and an image in one it does not list
    # would otherwise leave the set unnoticed.
    unlisted = sorted(
        relative
        for dirpath, names in _walk(path)
        for name in names
        if _looks_like_image(name) and (relative := (dirpath / name).relative_to(path).as_posix()) not in labels
    )
    if unlisted:
        raise DatasetError(
            f"{len(unlisted)} image(s) in {str(path)!r} are not listed in {str(labels_path)!r}: "
            f"{_listing(unlisted)}. The label file must list every image of the folder"
        )
    files = tuple(sorted(labels))
    return ValSamples(path, "flat", files, tuple(labels[f] for f in files), labels_path, len(files))


def decode_image(path: Union[PathLike, BinaryIO]) -> Tensor:
    """Decode an image file (a path or an open binary file) fully into a uint8 RGB tensor (3, H, W),
    as the original pipelines saw it: a view of PIL's (H, W, 3) pixels, not copied again, since
    the resampling reads any layout.

    Raises:
        OSError, SyntaxError, ValueError: PIL's errors for corrupt, truncated or non-image files.
    """
    from PIL import Image

    from ..transforms import to_uint8_rgb

    with Image.open(path) as image:
        image.load()  # a truncated file raises here, not later with half an image
        return to_uint8_rgb(image)


def decode_failure_reason(exc: BaseException, path: Optional[Path] = None) -> str:
    """The reason a report gives for an undecodable file, e.g. ``OSError: image file is truncated``."""
    # The report names the file already; PIL's message repeats its absolute path.
    message = str(exc)
    if path is not None:
        message = message.replace(repr(str(path)), "").replace(str(path), "")
    message = message.strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class MultiPipelineDataset(torch.utils.data.Dataset):
    """Each image decoded once and resampled once per distinct preprocessing pipeline.

    Item ``i`` is ``(sample_index, label, error, crops)``: ``crops`` holds one tensor per
    resampler, in the order of ``resamplers``; ``error`` is ``""`` or the reason the file could
    not be read (its crops are then zeros of the right shape, so a batch still stacks).

    Args:
        samples: the labelled files.
        resamplers: ``{pipeline_key: resample}``, e.g. ``{t.pipeline_key: t.resample}`` of the
            transforms of the models to evaluate; models sharing a key share the crop.
        indices: the sample indices this dataset serves (a shard), default all.
    """

    def __init__(
        self, samples: ValSamples, resamplers: Mapping[Any, Resampler], indices: Optional[Sequence[int]] = None
    ) -> None:
        self.samples = samples
        self.keys = tuple(resamplers)
        self.resamplers = tuple(resamplers.values())
        self.indices = list(range(len(samples))) if indices is None else list(indices)
        self._blanks: Optional[Tuple[Tensor, ...]] = None

    def __len__(self) -> int:
        return len(self.indices)

    def _blank_crops(self) -> Tuple[Tensor, ...]:
        # The shape and dtype of each pipeline's output, learnt from a tiny dummy image.
        if self._blanks is None:
            dummy = torch.zeros(3, 8, 8, dtype=torch.uint8)
            self._blanks = tuple(torch.zeros_like(resample(dummy)) for resample in self.resamplers)
        return self._blanks

    def __getitem__(self, position: int) -> Tuple[int, int, str, Tuple[Tensor, ...]]:
        index = self.indices[position]
        label = self.samples.labels[index]
        path = self.samples.path(index)
        try:
            pixels = decode_image(path)
        except decode_failure_types() as exc:
            return index, label, decode_failure_reason(exc, path), self._blank_crops()
        return index, label, "", tuple(resample(pixels) for resample in self.resamplers)
