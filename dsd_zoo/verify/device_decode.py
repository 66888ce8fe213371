"""Decoding the JPEGs on the evaluation device (nvJPEG on a GPU): ``verify --gpu-decode``.

On a GPU the exact pipeline is limited by the CPU: PIL's decode (4-5 ms per ILSVRC-2012 image)
and the resampling (about 3 ms) in DataLoader workers. In this mode the workers only read the
files; the main process decodes a whole batch with TorchCodec's ``decode_jpeg(device=...)``
(torchvision's, deprecated since torchvision 0.29, when TorchCodec is not installed), groups the
images by size and resamples each group with the same taps as the exact pipeline, on the
device.

nvJPEG's inverse DCT and chroma upsampling are not libjpeg's, so pixels may differ slightly and
with them, rarely, a prediction: the mode is opt-in and announced, like ``--fast``. On a CPU both decoders use libjpeg-turbo, as PIL does, and give the exact pipeline's
crops to the bit (tested), which is how this module is tested without a GPU.

Anything that is not a plain 8-bit baseline or progressive JPEG with 1 or 3 (YCbCr) components
and an end marker (CMYK/YCCK, RGB-coded JPEGs, 12-bit, lossless, arithmetic coding, truncated
files, an Exif orientation other than upright, which TorchCodec applies and the original pipelines
ignored, images over PIL's decompression-bomb limit, PNGs named .JPEG, non-images) goes through the exact CPU path in the
worker instead, so damaged files get the same verdict and reason as without this mode. A file
that the device cannot decode after all is decoded by PIL in the main process.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._decode import decode_failure_types
from ..transforms import EvalTransform
from .datasets import MultiPipelineDataset, decode_failure_reason, decode_image

__all__ = [
    "JPEG_DECODERS",
    "device_decodable_jpeg",
    "EncodedDataset",
    "collate_encoded",
    "DeviceDecoder",
    "default_jpeg_decoder",
]

JPEG_DECODERS = ("torchcodec", "torchvision")
BatchDecoder = Callable[[List[Tensor], torch.device], List[Tensor]]

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_DEVICE_SOF = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive; Huffman coded
_OTHER_SOF = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)  # lossless, hierarchical, arithmetic
_APP1 = 0xE1  # Exif
_ORIENTATION_TAG = 0x0112
_ADOBE = 0xEE  # APP14: its colour transform flag says whether 3 components are YCbCr or RGB
_RGB_COMPONENT_IDS = (ord("R"), ord("G"), ord("B"))
_STANDALONE = set(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM carry no length
_TAIL = 1024  # bytes at the end searched for the end marker (padding after it is common)


def device_decodable_jpeg(data: bytes) -> bool:
    """Whether ``data`` is a JPEG that the device decoder reads as libjpeg does (see the module doc).

    Reads only the marker segments before the scan; every length is bounds-checked and anything
    unexpected answers ``False`` (the exact CPU path then decides).
    """
    if len(data) < 4 or data[0] != 0xFF or data[1] != _SOI:
        return False
    if not data[-_TAIL:].rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        return False  # truncated: PIL refuses it, and a device decoder may not
    frame = _Frame()
    for marker, start, end in _segments(data):
        if marker == _SOS:
            # Adobe's transform 0 on three components means RGB (Photoshop writes 1, YCbCr).
            return frame.components == 1 or (frame.components == 3 and frame.adobe_transform in (None, 1))
        if not _segment_allowed(data, marker, start, end, frame):
            return False
    return False  # malformed, or no scan


class _Frame:
    """What the segments before the scan said: the number of components and Adobe's colour transform."""

    components = 0
    adobe_transform: Optional[int] = None


def _segments(data: bytes) -> Iterator[Tuple[int, int, int]]:
    """(marker, start, end) of each length-carrying segment, in order; stops at the first malformed one."""
    position, size = 2, len(data)
    while position + 4 <= size:
        if data[position] != 0xFF:
            return
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        length = (data[position + 2] << 8) | data[position + 3]
        end = position + 2 + length
        if length < 2 or end > size:
            return
        yield marker, position, end
        position = end


def _segment_allowed(data: bytes, marker: int, position: int, end: int, frame: _Frame) -> bool:
    """Whether one segment before the scan leaves the image decodable on the device; notes what it says in ``frame``."""
    length = end - position - 2
    if marker in _OTHER_SOF or marker == _EOI:
        return False
    if marker == _APP1 and data[position + 4 : position + 10] == b"Exif\x00\x00":
        # TorchCodec turns an image with another orientation upright; the original pipelines did not.
        return _exif_orientation(data[position + 10 : end]) in (None, 1)
    if marker == _ADOBE:
        if length < 14 or data[position + 4 : position + 9] != b"Adobe":
            return False
        frame.adobe_transform = data[position + 15]
    elif marker in _DEVICE_SOF:
        if frame.components or length < 8:
            return False  # a second frame header
        frame.components = data[position + 9]
        return _frame_header_allowed(data, position, length, frame.components)
    return True


def _frame_header_allowed(data: bytes, position: int, length: int, components: int) -> bool:
    from PIL import Image

    precision = data[position + 4]
    if precision != 8 or components not in (1, 3) or length < 8 + 3 * components:
        return False
    height = (data[position + 5] << 8) | data[position + 6]
    width = (data[position + 7] << 8) | data[position + 8]
    limit = Image.MAX_IMAGE_PIXELS  # None: PIL's guard is off
    if not height or not width or (limit is not None and height * width > limit):
        return False  # PIL's decompression-bomb guard decides, as without this mode
    ids = tuple(data[position + 10 + 3 * c] for c in range(components))
    return ids != _RGB_COMPONENT_IDS  # libjpeg reads these as RGB, not YCbCr


def _exif_orientation(tiff: bytes) -> Optional[int]:
    """The orientation tag of IFD0 in an Exif TIFF block; None when absent; -1 when the block is malformed."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return -1
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return -1
    for entry in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        at = ifd + 2 + 12 * entry
        if at + 12 > len(tiff):
            return -1
        if int.from_bytes(tiff[at : at + 2], order) == _ORIENTATION_TAG:
            return int.from_bytes(tiff[at + 8 : at + 10], order)  # a SHORT, left-aligned in the value field
    return None


class EncodedDataset(MultiPipelineDataset):
    """Items ``(sample_index, label, error, encoded, crops)`` for :class:`DeviceDecoder`.

    A JPEG that :func:`device_decodable_jpeg` accepts comes as its bytes (``encoded``, a uint8
    tensor; ``crops`` ``None``); any other file goes through the exact CPU path of
    :class:`MultiPipelineDataset` (``encoded`` ``None``; ``crops`` and ``error`` as there).
    """

    def __getitem__(self, position: int):  # type: ignore[override]
        index = self.indices[position]
        try:
            data = self.samples.path(index).read_bytes()
        except OSError:
            data = b""  # unreadable: the CPU path below reports it as it always does
        if device_decodable_jpeg(data):
            return index, self.samples.labels[index], "", torch.frombuffer(bytearray(data), dtype=torch.uint8), None
        index, label, error, crops = super().__getitem__(position)
        return index, label, error, None, crops


def collate_encoded(items: Sequence[Tuple]) -> Tuple[Tensor, Tensor, List[str], List[Optional[Tensor]], List]:
    """Batch :class:`EncodedDataset` items: index and label tensors, the rest as lists."""
    indices, labels, errors, encoded, crops = zip(*items)
    return (
        torch.tensor(indices, dtype=torch.int64),
        torch.tensor(labels, dtype=torch.int64),
        list(errors),
        list(encoded),
        list(crops),
    )


def default_jpeg_decoder() -> str:
    """TorchCodec's decoder when it is installed (torchvision's is deprecated since 0.29), else torchvision's."""
    import importlib.util

    return "torchcodec" if importlib.util.find_spec("torchcodec") is not None else "torchvision"


def _batch_decoder(name: str) -> BatchDecoder:
    if name == "torchcodec":
        from torchcodec.decoders import decode_jpeg as codec_decode

        return lambda encoded, device: list(codec_decode(encoded, mode="RGB", device=device))
    if name == "torchvision":
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as vision_decode

        return lambda encoded, device: list(vision_decode(encoded, mode=ImageReadMode.RGB, device=device))
    raise ValueError(f"unknown JPEG decoder {name!r}; choose one of {JPEG_DECODERS}")


class DeviceDecoder:
    """Turns a :func:`collate_encoded` batch into one crop batch per pipeline, on ``device``.

    Args:
        transforms: ``{pipeline_key: transform}``, each with ``resample_batch``
            (:class:`~dsd_zoo.transforms.CaffeTransform`, ``FbResNetTransform``), in the order
            of the crops the workers produce for the files they decode themselves.
        device: where to decode and resample.
        jpeg_decoder: ``"torchcodec"`` or ``"torchvision"`` (default :func:`default_jpeg_decoder`).
    """

    def __init__(
        self, transforms: Mapping[Any, EvalTransform], device: torch.device, jpeg_decoder: Optional[str] = None
    ) -> None:
        self.transforms = list(transforms.values())
        self.device = torch.device(device)
        self.jpeg_decoder = jpeg_decoder or default_jpeg_decoder()
        self._decode_batch = _batch_decoder(self.jpeg_decoder)
        # The crop of an unreadable file: zeros of each pipeline's shape and dtype.
        dummy = torch.zeros(1, 3, 8, 8, dtype=torch.uint8, device=self.device)
        self._blanks = [torch.zeros_like(t.resample_batch(dummy)[0]) for t in self.transforms]

    def _decode(self, encoded: List[Tensor]) -> List[Optional[Tensor]]:
        try:
            return list(self._decode_batch(encoded, self.device))
        except (RuntimeError, ValueError):
            pass  # one bad file fails the whole batch: find it
        decoded: List[Optional[Tensor]] = []
        for data in encoded:
            try:
                decoded.append(self._decode_batch([data], self.device)[0])
            except (RuntimeError, ValueError):
                decoded.append(None)
        return decoded

    def __call__(
        self, errors: List[str], encoded: List[Optional[Tensor]], cpu_crops: List[Optional[Tuple[Tensor, ...]]]
    ) -> Tuple[List[str], Tuple[Tensor, ...]]:
        """(errors, crops): ``errors`` updated with files that no decoder could read."""
        errors = list(errors)
        present = [(i, data) for i, data in enumerate(encoded) if data is not None]
        pixels: Dict[int, Tensor] = {}
        for (i, data), image in zip(present, self._decode([data for _, data in present])):
            if image is None:
                image, errors[i] = self._decode_with_pil(data)
            if image is not None:
                pixels[i] = image
        by_size: Dict[Tuple[int, ...], List[int]] = {}
        for i, image in pixels.items():
            by_size.setdefault(tuple(image.shape[-2:]), []).append(i)
        outputs = []
        for p, transform in enumerate(self.transforms):
            parts: Dict[int, Tensor] = {}
            for members in by_size.values():
                resampled = transform.resample_batch(torch.stack([pixels[i] for i in members]))
                parts.update(zip(members, resampled))
            for i, crops in enumerate(cpu_crops):
                if crops is not None:
                    parts[i] = crops[p].to(self.device, non_blocking=True)
            outputs.append(torch.stack([parts.get(i, self._blanks[p]) for i in range(len(errors))]))
        return errors, tuple(outputs)

    def _decode_with_pil(self, data: Tensor) -> Tuple[Optional[Tensor], str]:
        try:
            return decode_image(io.BytesIO(data.numpy().tobytes())).to(self.device), ""
        except decode_failure_types() as exc:
            return None, decode_failure_reason(exc)
