"""The two preprocessing pipelines that produced the published numbers.

* :class:`CaffeTransform` reproduces Caffe's ImageNet evaluation (AlexNet, VGG16, GoogLeNet,
  SqueezeNet): warp to 256x256 with bilinear interpolation and no antialiasing (OpenCV
  ``INTER_LINEAR`` as used by ``create_imagenet.sh``), round to 8 bits, centre crop at
  ``(256 - crop) // 2``, keep the 0-255 scale and subtract the mean image or mean values.
* :class:`FbResNetTransform` reproduces fb.resnet.torch's test transform (ResNets): shorter
  side to 256 with Torch7's ``image.scale(..., 'bicubic')`` (corner-aligned Catmull-Rom,
  linearly extrapolated borders, no antialiasing, no clamping), centre crop 224 at
  ``ceil((W - 224) / 2)``, then ImageNet mean/std normalisation.

Both emit RGB (conv1 of the Caffe models is flipped to RGB at conversion). Each transform
splits into :meth:`resample` (decode-side geometry, shared by every model that uses the same
pipeline; what ``verify`` computes once per image) and :meth:`normalize` (per model, cheap,
batched). Resampling is separable: each output sample of the crop window (and nothing outside
it) is a weighted sum of 2 (bilinear) or 4 (bicubic) input samples, width first, then height.

Known deviations (see ``docs/preprocessing.md``): OpenCV resizes 8-bit images in 11-bit fixed
point, so a few pixels may differ by one grey level from this float computation; JPEG decoders
may differ in the last bit; Torch7 computed its bicubic filter sample by sample in float32.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # PIL is imported only where an image is decoded
    from PIL import Image

__all__ = [
    "CaffeTransform",
    "EvalTransform",
    "FbResNetTransform",
    "DigitsTransform",
    "to_uint8_rgb",
]

ImageLike = Union["Image.Image", Tensor, np.ndarray]


def to_uint8_rgb(image: ImageLike) -> Tensor:
    """Return an image as a uint8 tensor (3, H, W) in RGB order.

    Accepts a PIL image (any mode: grayscale is replicated, CMYK and palette images are
    converted by PIL, 16-bit grayscale keeps its high byte; 32-bit integer and float images
    raise ValueError), a uint8 tensor (3, H, W), (1, H, W) or (H, W), or an HWC uint8 array.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"expected a uint8 image array, got dtype {image.dtype}")
        image = torch.from_numpy(np.ascontiguousarray(image))
        image = image.permute(2, 0, 1) if image.ndim == 3 else image
    elif not isinstance(image, Tensor):
        if image.mode.startswith("I;16") or image.mode in ("I", "F"):
            image = torch.from_numpy(_high_byte_of_16_bit(image))
        else:
            if image.mode != "RGB":
                image = image.convert("RGB")
            image = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    if image.dtype != torch.uint8:
        raise TypeError(
            f"expected a uint8 image tensor (0-255), got {image.dtype}; these pipelines start from 8-bit pixels"
        )
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (3, H, W), (1, H, W) or (H, W), got {tuple(image.shape)}")
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def _high_byte_of_16_bit(image: "Image.Image") -> np.ndarray:
    """A 16-bit grayscale image as 8 bits: the high byte, as OpenCV's IMREAD_COLOR (libpng's
    strip_16) reads it; PIL's convert would clip every value above 255 to white.

    Pillow before 10 opens 16-bit PNGs as 32-bit mode ``I``: values in 0..65535 are read as
    16-bit. Other 32-bit and floating-point images have no 8-bit reading in the original
    pipelines, and raise ValueError.
    """
    values = np.array(image)
    if image.mode == "F" or values.min(initial=0) < 0 or values.max(initial=0) > 65535:
        raise ValueError(
            f"a {'floating-point' if image.mode == 'F' else '32-bit'} image has no 8-bit reading in "
            "the original pipelines"
        )
    return (values.astype(np.uint16) >> 8).astype(np.uint8)


Taps = List[Tuple[int, float]]  # (input index, weight) pairs of one output sample


def _bilinear_row(n_in: int, n_out: int, i: int) -> Taps:
    # OpenCV INTER_LINEAR: centre-aligned source position, clamped to the image.
    pos = max((i + 0.5) * (n_in / n_out) - 0.5, 0.0)
    left = min(math.floor(pos), n_in - 1)
    frac = pos - left
    return [(left, 1.0 - frac), (min(left + 1, n_in - 1), frac)]


def _torch7_bicubic_row(n_in: int, n_out: int, i: int) -> Taps:
    # Torch7 image.scale's bicubic loop (generic/image.c), one output sample.
    if n_in == n_out:
        return [(i, 1.0)]
    if n_in == 1 or i == n_out - 1:  # the last output copies the last input
        return [(n_in - 1, 1.0)]
    pos = np.float32(i) * (np.float32(n_in - 1) / np.float32(n_out - 1))  # float32, as Torch computed it
    j = int(pos)
    x = float(pos - np.float32(j))
    # Catmull-Rom (a = -0.5) in the form Torch7's cubicInterpolate evaluates.
    w = [
        0.5 * (-x + 2 * x * x - x**3),
        1 + 0.5 * (-5 * x * x + 3 * x**3),
        0.5 * (x + 4 * x * x - 3 * x**3),
        0.5 * (-x * x + x**3),
    ]
    taps: Dict[int, float] = {}
    for k, tap in enumerate((j - 1, j, j + 1, j + 2)):
        taps[tap] = taps.get(tap, 0.0) + w[k]
    if j - 1 < 0:  # p0 = 2*p1 - p2
        w0 = taps.pop(j - 1)
        taps[j] += 2 * w0
        taps[j + 1] -= w0
    if j + 2 >= n_in:  # p3 = 2*p2 - p1
        w3 = taps.pop(j + 2)
        taps[j + 1] += 2 * w3
        taps[j] -= w3
    return [(min(tap, n_in - 1), value) for tap, value in taps.items()]


_ROWS: Dict[str, Callable[[int, int, int], Taps]] = {"bilinear": _bilinear_row, "bicubic": _torch7_bicubic_row}
AxisTaps = Tuple[slice, Tensor, Tensor]  # (input window, indices, weights) of one axis of a crop


@functools.lru_cache(maxsize=512)
def _axis_taps(device: torch.device, kernel: str, n_in: int, n_out: int, start: int, length: int) -> AxisTaps:
    """Output samples ``start .. start + length`` of one axis: ``(window, indices, weights)`` on ``device``.

    Only the crop window is computed: the dense (n_out, n_in) matrix of a long thin image is huge
    (one pixel wide and 3,000 tall, an image scales to 768,000 rows: 18 GB of float64 weights).
    Each output sample reads 2 (bilinear) or 4 (bicubic) inputs, listed in column order; shorter
    rows are padded with weight 0. ``window`` is the span of inputs they read; ``indices``
    (taps, length) count from its start, ``weights`` are (taps, length, 1). Cached per device,
    so resampling on a GPU does not copy the taps for every image.
    """
    rows = []
    for i in range(start, start + length):
        merged: Dict[int, float] = {}
        for column, value in _ROWS[kernel](n_in, n_out, i):
            merged[column] = merged.get(column, 0.0) + value
        rows.append(sorted((c, v) for c, v in merged.items() if v != 0.0))
    taps = max((len(row) for row in rows), default=1)
    padded = [row + [(row[0][0] if row else 0, 0.0)] * (taps - len(row)) for row in rows]
    indices = torch.tensor([[c for c, _ in row] for row in padded], dtype=torch.int64).T
    weights = torch.tensor([[v for _, v in row] for row in padded], dtype=torch.float32).T
    first, last = int(indices.min()), int(indices.max())
    return (
        slice(first, last + 1),
        (indices - first).contiguous().to(device),
        weights.contiguous().unsqueeze(-1).to(device),
    )


def _resample(image: Tensor, rows: AxisTaps, cols: AxisTaps) -> Tensor:
    """Apply separable taps (rows @ image @ cols.T per channel), width first as Torch7 did.

    ``image`` is (..., H, W): one image (3, H, W) or a batch of same-size images (N, 3, H, W),
    in any layout, on any device; the taps are on its device. Only the input window that the
    crop reads is converted to float32. Each output element is the same sum of the same
    products in the same order whatever the batch or layout, so neither changes a bit.
    """
    # Each pass gathers whole rows (one copy each), several times faster than gathering single
    # samples; so the width pass runs on the transposed window, the height pass on its result.
    lines = image[..., rows[0], cols[0]].to(torch.float32).transpose(-1, -2).contiguous()
    return _weighted_rows(_weighted_rows(lines, cols).transpose(-1, -2).contiguous(), rows)


def _weighted_rows(lines: Tensor, taps: AxisTaps) -> Tensor:
    # Output row i: the sum, tap by tap in order, of input row indices[k, i] times weights[k, i].
    _, indices, weights = taps
    out = lines.index_select(-2, indices[0]).mul_(weights[0])
    for k in range(1, len(indices)):
        out += lines.index_select(-2, indices[k]).mul_(weights[k])
    return out


def _uint8_batch(pixels: Tensor) -> Tensor:
    if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"expected same-size uint8 RGB images (N, 3, H, W), got {pixels.dtype} {tuple(pixels.shape)}")
    return pixels


class EvalTransform(nn.Module):
    """A preprocessing pipeline split as ``verify`` runs it: resample (resize and crop) a batch, then normalise."""

    crop_size: int

    def forward(self, image: ImageLike) -> Tensor:
        """Preprocess one image into a float tensor (3, crop, crop) ready for the model."""
        return self.normalize(self.resample(image).unsqueeze(0)).squeeze(0)

    def resample(self, image: ImageLike) -> Tensor:
        """Resize and crop one image, before normalisation: (3, crop, crop)."""
        return self.resample_batch(to_uint8_rgb(image).unsqueeze(0)).squeeze(0)

    def resample_batch(self, pixels: Tensor) -> Tensor:  # pragma: no cover - abstract
        """:meth:`resample` of same-size uint8 RGB images (N, 3, H, W), on the device they are on."""
        raise NotImplementedError

    def normalize(self, batch: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def pipeline_key(self) -> Tuple:
        """Transforms with equal keys produce identical :meth:`resample` outputs."""
        raise NotImplementedError


class CaffeTransform(EvalTransform):
    """Caffe ImageNet evaluation: 256x256 warp, centre crop, 0-255 RGB minus the mean.

    Args:
        crop: crop size (227 for AlexNet and SqueezeNet, 224 for VGG16 and GoogLeNet).
        mean_bgr: per-channel mean in Caffe's BGR order (reversed here to RGB).
        mean_image: the mean image (3, H, W) at the resize resolution, **RGB** order
            (AlexNet); its centre crop is subtracted.
        resize: (height, width) of the warp.
    """

    mean: Tensor  # a buffer: the mean to subtract, RGB, on the 0-255 scale

    def __init__(
        self,
        crop: int,
        mean_bgr: Optional[Sequence[float]] = None,
        mean_image: Optional[Tensor] = None,
        resize: Tuple[int, int] = (256, 256),
    ) -> None:
        super().__init__()
        if (mean_bgr is None) == (mean_image is None):
            raise ValueError("give exactly one of mean_bgr (per-channel values) or mean_image (3 x H x W, RGB)")
        self.resize_size = tuple(resize)
        self.crop_size = crop
        self.offset = ((resize[0] - crop) // 2, (resize[1] - crop) // 2)
        if mean_image is not None:
            if tuple(mean_image.shape) != (3, *self.resize_size):
                raise ValueError(f"mean image must be (3, {resize[0]}, {resize[1]}), got {tuple(mean_image.shape)}")
            top, left = self.offset
            mean = mean_image[:, top : top + crop, left : left + crop].to(torch.float32)
            self.mean_description = "ILSVRC-2012 mean image (centre crop)"
        else:
            assert mean_bgr is not None  # one of the two was given, checked above
            mean = torch.tensor(list(mean_bgr)[::-1], dtype=torch.float32).view(3, 1, 1)
            self.mean_description = f"RGB {tuple(float(v) for v in list(mean_bgr)[::-1])}"
        self.register_buffer("mean", mean.contiguous(), persistent=False)

    @property
    def pipeline_key(self) -> Tuple:
        return ("caffe", self.resize_size, self.crop_size)

    def resample_batch(self, pixels: Tensor) -> Tensor:
        """Warp to the resize size, round to uint8 as the LMDB stored it, crop: uint8 (N, 3, crop, crop)."""
        pixels = _uint8_batch(pixels)
        top, left = self.offset
        rows = _axis_taps(pixels.device, "bilinear", pixels.shape[-2], self.resize_size[0], top, self.crop_size)
        cols = _axis_taps(pixels.device, "bilinear", pixels.shape[-1], self.resize_size[1], left, self.crop_size)
        # Half up, as OpenCV's fixed-point cast does (torch.round would round half to even).
        return _resample(pixels, rows, cols).add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)

    def normalize(self, batch: Tensor) -> Tensor:
        """uint8 crops (N, 3, crop, crop) -> float input on the 0-255 scale minus the mean."""
        return batch.to(torch.float32) - self.mean.to(batch.device)

    def extra_repr(self) -> str:
        return (
            f"warp={self.resize_size} bilinear (no antialias), crop={self.crop_size} at offset {self.offset}, "
            f"scale=0-255, mean={self.mean_description}, RGB"
        )


class FbResNetTransform(EvalTransform):
    """fb.resnet.torch evaluation: shorter side 256 (Torch7 bicubic), centre crop 224, mean/std."""

    mean: Tensor  # buffers: the per-channel mean and std of the normalisation
    std: Tensor

    def __init__(
        self,
        resize: int = 256,
        crop: int = 224,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        self.resize_size = resize
        self.crop_size = crop
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1), persistent=False)

    @property
    def pipeline_key(self) -> Tuple:
        return ("fb_resnet", self.resize_size, self.crop_size)

    def scaled_size(self, height: int, width: int) -> Tuple[int, int]:
        """Size after fb.resnet.torch's ``Scale``: shorter side to ``resize``, longer floored."""
        size = self.resize_size
        if (width <= height and width == size) or (height <= width and height == size):
            return height, width
        # Same operation order as the Lua code (h/w*size in doubles, then truncation).
        if width < height:
            return math.floor(height / width * size), size
        return size, math.floor(width / height * size)

    def resample_batch(self, pixels: Tensor) -> Tensor:
        """Scale and crop to float32 RGB in [0, 1] (outside slightly, as bicubic overshoots): (N, 3, crop, crop)."""
        pixels = _uint8_batch(pixels)
        height, width = pixels.shape[-2:]
        out_h, out_w = self.scaled_size(height, width)
        if min(out_h, out_w) < self.crop_size:
            raise ValueError(
                f"image {width}x{height} scales to {out_w}x{out_h}, smaller than the {self.crop_size} crop"
            )
        top = math.ceil((out_h - self.crop_size) / 2)
        left = math.ceil((out_w - self.crop_size) / 2)
        rows = _axis_taps(pixels.device, "bicubic", height, out_h, top, self.crop_size)
        cols = _axis_taps(pixels.device, "bicubic", width, out_w, left, self.crop_size)
        return _resample(pixels, rows, cols).div_(255.0)

    def normalize(self, batch: Tensor) -> Tensor:
        """[0, 1] crops (N, 3, crop, crop) -> (x - mean) / std."""
        return (batch.to(torch.float32) - self.mean.to(batch.device)) / self.std.to(batch.device)

    def extra_repr(self) -> str:
        return (
            f"shorter side={self.resize_size} Torch7 bicubic (corner-aligned, no antialias), "
            f"centre crop={self.crop_size} at ceil offsets, scale=[0,1], mean={self.mean.flatten().tolist()}, "
            f"std={self.std.flatten().tolist()}, RGB"
        )


class DigitsTransform(EvalTransform):
    """The embedded demonstration's input: 8x8 digit images with values 0..``max_value`` -> [0, 1].

    Accepts a uint8 tensor (8, 8) or (1, 8, 8) (``load_digits`` values, 0..16) and returns a
    float tensor (1, 8, 8).
    """

    def __init__(self, max_value: int = 16, crop: int = 8) -> None:
        super().__init__()
        self.max_value = max_value
        self.crop_size = crop

    @property
    def pipeline_key(self) -> Tuple:
        return ("digits", self.crop_size)

    def resample(self, image: ImageLike) -> Tensor:
        """The image as uint8 (1, 8, 8); no resampling: the models see the images as stored."""
        if not isinstance(image, Tensor) or image.dtype != torch.uint8:
            raise TypeError("digits images are uint8 tensors (8, 8) with values 0..16")
        image = image.reshape(1, *image.shape[-2:])
        if tuple(image.shape[1:]) != (self.crop_size, self.crop_size):
            raise ValueError(f"digits images are {self.crop_size}x{self.crop_size}, got {tuple(image.shape[1:])}")
        return image

    def normalize(self, batch: Tensor) -> Tensor:
        """uint8 images (N, 1, 8, 8) -> float32 in [0, 1]."""
        return batch.to(torch.float32) / self.max_value

    def extra_repr(self) -> str:
        return f"8x8 digits, values 0..{self.max_value} scaled to [0, 1]"
