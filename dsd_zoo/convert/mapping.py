"""From a file in an original format to a checked dsd-zoo state dict and a safetensors file.

:func:`convert_file` picks the reader from the manifest entry's ``original.format``
(``caffemodel``, ``torch7``, ``deep-compression``) and the mapping from its ``arch``:

* :mod:`dsd_zoo.convert.caffe_mapping` -- Caffe layer blobs (AlexNet, VGG16, GoogLeNet,
  SqueezeNet under both its layer-naming schemes) and the Deep Compression ``.net`` SqueezeNet;
* :mod:`dsd_zoo.convert.torch7_mapping` -- fb.resnet.torch module trees (ResNet-18/50);
* :mod:`dsd_zoo.convert.pth_mapping` -- the PyTorch port of ResNet-50 DSD.

This module is the top of the converter: it imports the readers and mappings, which share
:mod:`dsd_zoo.convert.tensors` below them and never import this module back.

The mappings are pure functions of already parsed structures; this module is the only place
that opens files. Every result is checked against the architecture's own ``state_dict``
(all keys, all shapes) before it is returned, so a converted file always loads strictly.
:func:`save_conversion` writes the result atomically with provenance metadata; the CLI
(``python -m dsd_zoo.convert``) and the release tool both go through it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

from ..atomic import PathLike, file_in_the_way, write_safetensors
from ..digests import hash_file
from ..errors import ConversionError, FormatError
from ..manifest import Manifest, ModelEntry, OriginalRecord, load_manifest
from ..sniff import FORMAT_NAMES, sniff
from .caffe import read_caffemodel
from .caffe_mapping import map_caffe_blobs, read_net
from .pth_mapping import map_port, read_port
from .torch7 import read_t7
from .torch7_mapping import map_fb_resnet

__all__ = [
    "CONVERTER_VERSION",
    "Conversion",
    "SavedConversion",
    "convert_file",
    "save_conversion",
]


#: Version of the mappings. Bump it whenever a mapping would produce different tensors from
#: the same source file, so that metadata tells files made by old and new converters apart.
CONVERTER_VERSION = "2"  # 2: AlexNet files no longer carry the mean image (it ships with dsd-zoo)


class Conversion(NamedTuple):
    """A converted model: unpacks as ``(state_dict, report)``; ``report`` is JSON-ready and says what the mapping did."""

    state_dict: Dict[str, Any]
    report: Dict[str, Any]


class SavedConversion(NamedTuple):
    """What :func:`save_conversion` wrote."""

    path: Path
    sha256: str
    size: int
    metadata: Dict[str, str]
    report: Dict[str, Any]


def convert_file(
    src_path: PathLike,
    model_name: str,
    *,
    manifest: Optional[Manifest] = None,
    original: Optional[OriginalRecord] = None,
) -> Conversion:
    """Convert an original release file of ``model_name`` to a dsd-zoo state dict.

    Args:
        src_path: the ``.caffemodel``, ``.t7`` or ``.net`` file as its authors released it.
        model_name: a manifest name (``"squeezenet_sparse"``); its ``original.format`` picks the
            reader and its ``arch`` the mapping.
        manifest: the manifest to look the model up in (default: :func:`load_manifest`).
        original: which of the model's originals ``src_path`` is (its format picks the reader);
            default: the one whose format matches the file's extension, else the authors' own.

    Returns:
        ``(state_dict, report)`` (a :class:`Conversion`); float32 CPU tensors.

    Raises:
        ConversionError: the file does not map onto the architecture (the message names the
            layer or module and both shapes).
        FormatError: the file is malformed.
        UnknownModelError: ``model_name`` is not in the manifest.
    """
    manifest = manifest or load_manifest()
    entry = manifest.entry(model_name)
    original = original or original_for_file(entry, src_path)
    if original is None:
        raise ConversionError(
            f"{model_name} has no original release to convert: its weights ship with dsd-zoo "
            f"(dsd_zoo.get_model({model_name!r}))"
        )
    fmt = original.format
    if fmt not in _SNIFFED:
        raise ConversionError(
            f"{model_name}: its original format is {fmt!r}; only caffemodel, torch7, pytorch and "
            "deep-compression files are converted"
        )
    source = f"{Path(src_path).name} ({fmt}, model {model_name})"
    _check_file_kind(src_path, model_name, original, manifest)
    if fmt == "caffemodel":
        state_dict, report = map_caffe_blobs(read_caffemodel(src_path), entry.arch, source=source)
    elif fmt == "torch7":
        state_dict, report = map_fb_resnet(read_t7(src_path), entry.arch, source=source)
    elif fmt == "deep-compression":
        state_dict, report = read_net(src_path, entry.arch, source=source)
    elif original.digest is None:
        raise ConversionError(
            f"{model_name}: a PyTorch file is unpickled only after its published digest "
            "matched, and the manifest gives none for it"
        )
    else:
        state_dict, report = map_port(read_port(src_path, original.digest), entry.arch, source=source)
    # The file says which model and architecture it holds, whatever the mapping reported.
    report = {**report, "model": model_name, "arch": entry.arch, "source_format": fmt}
    return Conversion(state_dict, report)


_EXTENSIONS = {"caffemodel": ".caffemodel", "torch7": ".t7", "deep-compression": ".net", "pytorch": ".pth"}
# What dsd_zoo.sniff sees for each format converted (a PyTorch file is a zip or, before 2020, a
# pickle); a .net file has no magic bytes: its kind is found by decoding it.
_SNIFFED = {
    "caffemodel": ("caffemodel",),
    "torch7": ("torch7",),
    "pytorch": ("zip", "pickle"),
    "deep-compression": ("deep-compression",),
}


def _check_file_kind(path: PathLike, model_name: str, original: OriginalRecord, manifest: Manifest) -> None:
    """Refuse, naming the mix-up and the right command, a file that is not of the format ``original`` is.

    Before any parser runs: a caffemodel converted as a Torch7 model used to fail with "unknown
    type tag", a ``.net`` as a caffemodel with "Wire format was corrupt".
    """
    kind = sniff(path)
    if kind is None and original.format in ("caffemodel", "torch7"):
        if not _deep_compression_model(path, manifest):
            raise FormatError(
                f"{path} is not {FORMAT_NAMES[original.format]} ({model_name}'s original format), "
                "nor any other format dsd-zoo knows: a damaged or wrong file"
            )
        kind = "deep-compression"
    if kind is None or kind in _SNIFFED[original.format]:
        return
    fitting = sorted(
        {
            name
            for name, entry in manifest.models.items()
            for other in entry.originals
            if kind in _SNIFFED.get(other.format, ())
        }
    )
    advice = f"; convert it as {' or '.join(f'--model {name}' for name in fitting)}" if fitting else ""
    raise ConversionError(
        f"{path} is {FORMAT_NAMES[kind]}, but {model_name}'s original is {FORMAT_NAMES[original.format]}{advice}"
    )


def _deep_compression_model(path: PathLike, manifest: Manifest) -> bool:
    """Whether ``path`` has the exact structure of a Deep Compression file of some manifest model."""
    for entry in manifest.models.values():
        if entry.original is not None and entry.original.format == "deep-compression":
            try:
                read_net(path, entry.arch, source=str(path))
                return True
            except (FormatError, ConversionError):
                continue
    return False


def original_for_file(entry: ModelEntry, path: PathLike) -> Optional[OriginalRecord]:
    """The original of ``entry`` that a file named ``path`` is: by its extension, else the authors' own."""
    suffix = Path(path).suffix.lower()
    return next((other for other in entry.originals if _EXTENSIONS.get(other.format) == suffix), entry.original)


def extension(original: OriginalRecord) -> str:
    """The file extension of an original's format (``.t7`` ...), for messages to people."""
    return _EXTENSIONS.get(original.format, "")


def save_conversion(
    src_path: PathLike,
    model_name: str,
    out_path: PathLike,
    *,
    force: bool = False,
    manifest: Optional[Manifest] = None,
    source_name: Optional[str] = None,
    original: Optional[OriginalRecord] = None,
) -> SavedConversion:
    """Convert ``src_path`` and write it as safetensors at ``out_path``, atomically.

    The file holds the model tensors and, as its safetensors ``__metadata__``, their provenance
    as strings: ``format`` ("pt"), ``model``, ``arch``, ``source_file`` (``source_name``, by
    default the file's own name; the original's published name when converting a cached copy),
    ``source_format``, ``source_sha256``, ``converter_version`` (:data:`CONVERTER_VERSION`),
    ``conversion_options`` (JSON) and ``conversion_warnings`` (JSON list). Nothing that varies
    between runs or dsd-zoo releases is recorded: the same source always gives the same bytes,
    which the published sha256 can then check. It is written to a temporary file next to ``out_path`` and
    renamed into place, so a failure never leaves a partial file under the final name. An
    existing ``out_path`` is refused unless ``force``.

    Raises:
        ConversionError: as :func:`convert_file`, or ``out_path`` exists without ``force``.
    """
    out = Path(out_path)
    if out.is_dir():  # before the force check: --force cannot help here
        raise ConversionError(f"{out} is a directory; give a file name such as {out / (model_name + '.safetensors')}")
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise ConversionError(f"{out}: {blocking} is a file, not a directory")
    if os.path.lexists(out) and not force:  # lexists: a dangling link is replaced only with force too
        raise ConversionError(f"{out} exists; pass force=True (CLI: --force) to replace it")
    conversion = convert_file(src_path, model_name, manifest=manifest, original=original)
    report = conversion.report
    metadata = {
        "format": "pt",
        "model": model_name,
        "arch": report["arch"],
        "source_file": source_name or Path(src_path).name,
        "source_format": report["source_format"],
        "source_sha256": hash_file(src_path)["sha256"],
        "converter_version": CONVERTER_VERSION,
        "conversion_options": json.dumps(report.get("options", {}), sort_keys=True),  # the port's mapping has none
        "conversion_warnings": json.dumps(report["warnings"]),
    }
    write_safetensors(out, conversion.state_dict, metadata)  # canonical bytes, atomically
    digest = hash_file(out)["sha256"]
    return SavedConversion(out, digest, out.stat().st_size, metadata, report)
