"""The two evaluation pipelines against independent numpy re-implementations on a real photo.

The numpy references follow the original algorithms sample by sample (OpenCV INTER_LINEAR's
coordinate rule; Torch7 image.scale's bicubic loop with its border extrapolation), sharing no
code with dsd_zoo.transforms, which uses precomputed matrices restricted to the crop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import dsd_zoo
from dsd_zoo import transforms
from dsd_zoo.transforms import CaffeTransform, FbResNetTransform, to_uint8_rgb

from .conftest import FIXTURES, require


def dense_weights(kernel: str, n_in: int, n_out: int) -> torch.Tensor:
    """The package's resampling taps along one axis as an (n_out, n_in) matrix (taps sharing a column add up)."""
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        for column, value in transforms._ROWS[kernel](n_in, n_out, i):
            weights[i, column] += value
    return torch.from_numpy(weights)


def bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """OpenCV/PyTorch bilinear resampling without antialiasing, as the package's taps give it.

    Pixel centres are aligned (source position ``(i + 0.5) * n_in / n_out - 0.5``) and the
    position is clamped to the image, as OpenCV's ``INTER_LINEAR`` does.
    """
    return dense_weights("bilinear", n_in, n_out)


def torch7_bicubic_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Torch7 ``image.scale(..., 'bicubic')`` along one axis, as the package's taps give it.

    Output sample ``i`` reads source position ``i * (n_in - 1) / (n_out - 1)`` computed in
    float32 as Torch did; Catmull-Rom weights; the sample before the first and after the last
    are extrapolated linearly (``2*p1 - p2``); the last output copies the last input.
    """
    return dense_weights("bicubic", n_in, n_out)


def numpy_linear_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """OpenCV INTER_LINEAR geometry in float64: centre-aligned, source index clamped to the image."""

    def axis(n_in, n_out):
        f = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(f).astype(int)
        t = f - i0
        t[i0 < 0] = 0.0
        i0 = np.clip(i0, 0, n_in - 1)
        i1 = np.clip(i0 + 1, 0, n_in - 1)
        t[i0 >= n_in - 1] = 0.0
        return i0, i1, t

    y0, y1, ty = axis(img.shape[0], out_h)
    x0, x1, tx = axis(img.shape[1], out_w)
    img = img.astype(np.float64)
    rows = img[y0] * (1 - ty)[:, None, None] + img[y1] * ty[:, None, None]
    out = rows[:, x0] * (1 - tx)[None, :, None] + rows[:, x1] * tx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def numpy_torch7_bicubic_1d(src: np.ndarray, n_out: int) -> np.ndarray:
    """Torch7 image.scale bicubic along axis 0, written as its C loop (float32 positions)."""
    n_in = src.shape[0]
    if n_in == n_out:
        return src.copy()
    dst = np.empty((n_out,) + src.shape[1:], dtype=np.float64)
    scale = np.float32(n_in - 1) / np.float32(n_out - 1)
    for di in range(n_out - 1):
        si_f = np.float32(di) * scale
        si_i = int(si_f)
        x = float(si_f - np.float32(si_i))
        p1, p2 = src[si_i], src[si_i + 1]
        p0 = src[si_i - 1] if si_i > 0 else 2 * p1 - p2
        p3 = src[si_i + 2] if si_i + 2 < n_in else 2 * p2 - p1
        a0, a1, a2, a3 = p1, p2 - p0, 2 * p0 - 5 * p1 + 4 * p2 - p3, 3 * (p1 - p2) + p3 - p0
        dst[di] = a0 + 0.5 * x * (a1 + x * (a2 + x * a3))
    dst[n_out - 1] = src[n_in - 1]
    return dst


@pytest.fixture(scope="module")
def photo():
    return Image.open(require(FIXTURES / "images" / "space_shuttle.jpg"))


@pytest.mark.parametrize("crop", [227, 224])
def test_caffe_pipeline_matches_numpy(photo, crop):
    mean_bgr = [104.0, 117.0, 123.0]
    out = CaffeTransform(crop=crop, mean_bgr=mean_bgr)(photo)
    assert out.shape == (3, crop, crop) and out.dtype == torch.float32
    rgb = np.asarray(photo.convert("RGB"))
    warped = numpy_linear_resize(rgb, 256, 256)
    off = (256 - crop) // 2
    expected = warped[off : off + crop, off : off + crop].astype(np.float64) - np.array(mean_bgr[::-1])
    diff = np.abs(out.permute(1, 2, 0).numpy() - expected)
    # float32 matrices vs float64 loops may round an exact .5 the other way: at most 1 level,
    # on a vanishing fraction of pixels.
    assert diff.max() <= 1.0
    assert (diff > 0).mean() < 1e-3


def test_caffe_mean_image_is_cropped_at_the_offset():
    mean_image = torch.arange(3 * 256 * 256, dtype=torch.float32).view(3, 256, 256)
    pixels = torch.zeros(3, 256, 256, dtype=torch.uint8)
    out = CaffeTransform(crop=227, mean_image=mean_image)(pixels)
    torch.testing.assert_close(out, -mean_image[:, 14:241, 14:241])


def numpy_fb_pipeline(rgb_uint8: np.ndarray) -> np.ndarray:
    """fb.resnet.torch's test transform on an HWC uint8 image, transcribed from the Lua/C code."""
    rgb = rgb_uint8.astype(np.float32) / 255.0
    h, w = rgb.shape[:2]
    if w < h:
        out_h, out_w = math.floor(h / w * 256), 256
    else:
        out_h, out_w = 256, math.floor(w / h * 256)
    scaled = numpy_torch7_bicubic_1d(rgb.transpose(1, 0, 2), out_w).transpose(1, 0, 2)  # width first
    scaled = numpy_torch7_bicubic_1d(scaled, out_h)
    top, left = math.ceil((out_h - 224) / 2), math.ceil((out_w - 224) / 2)
    crop = scaled[top : top + 224, left : left + 224]
    return (crop - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])


def test_fb_pipeline_matches_numpy(photo):
    out = FbResNetTransform()(photo)
    expected = numpy_fb_pipeline(np.asarray(photo.convert("RGB")))
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=2e-5)


@pytest.mark.parametrize("height, width", [(375, 500), (500, 333), (227, 301)])
def test_fb_pipeline_matches_numpy_with_odd_crop_margins(height, width):
    # 500x375 scales to 341x256: a 117-pixel margin, so the crop starts at ceil(58.5) = 59, not 58.
    pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = FbResNetTransform()(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), numpy_fb_pipeline(pixels), atol=2e-5)


def test_fb_scaled_size_follows_lua_rounding():
    t = FbResNetTransform()
    assert t.scaled_size(375, 500) == (256, 341)  # floor(500/375*256) = floor(341.33)
    assert t.scaled_size(256, 999) == (256, 999)  # already 256 on the short side: unchanged


def test_inputs_pil_tensor_gray_agree(photo):
    t = FbResNetTransform()
    rgb = photo.convert("RGB")
    as_tensor = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()
    torch.testing.assert_close(t(rgb), t(as_tensor))
    gray = photo.convert("L")
    g = to_uint8_rgb(gray)
    assert g.shape[0] == 3 and torch.equal(g[0], g[2])
    torch.testing.assert_close(t(gray), t(torch.from_numpy(np.array(gray))))


def test_rejects_float_images():
    with pytest.raises(TypeError, match="uint8"):
        FbResNetTransform()(torch.rand(3, 300, 300))


@pytest.mark.parametrize("name", ["vgg16_dsd", "googlenet_caffe", "squeezenet_sparse", "resnet50_dsd"])
def test_weights_transforms_produce_the_input_size(name):
    weights = dsd_zoo.get_weights(name)
    out = weights.transforms()(torch.zeros(3, 300, 400, dtype=torch.uint8))
    assert tuple(out.shape[1:]) == weights.meta["input_size"]


def test_alexnet_transform_subtracts_caffes_mean_image(photo):
    # AlexNet subtracts the centre 227 crop of Caffe's ILSVRC-2012 mean image (RGB here), which ships with dsd-zoo.
    bgr = np.load(require(FIXTURES / "caffe-mean" / "ilsvrc_2012_mean.npy"), allow_pickle=False)
    out = dsd_zoo.get_weights("alexnet_dsd").transforms()(photo)
    warped = numpy_linear_resize(np.asarray(photo.convert("RGB")), 256, 256)[14:241, 14:241]
    expected = warped.astype(np.float64) - bgr[::-1, 14:241, 14:241].transpose(1, 2, 0)
    diff = np.abs(out.permute(1, 2, 0).numpy() - expected)
    assert diff.max() <= 1.0 + 1e-4 and (diff > 1e-3).mean() < 1e-3
    # Crop means of the fixture: 102.981 / 115.946 / 122.771 (B, G, R), computed from the .npy.
    np.testing.assert_allclose(bgr[:, 14:241, 14:241].mean(axis=(1, 2)), [102.981, 115.946, 122.771], atol=1e-3)


def test_a_long_thin_image_costs_only_its_crop():
    # A 1-pixel-wide, 300-pixel-tall image scales to 256 x 76,800 (fb) before its 224 crop. The
    # weights of the resize are computed for the crop window only: a dense 76,800 x 300 float64
    # matrix would be 184 MB here, and 18 GB for a 3000-pixel-tall one.
    import tracemalloc

    image = torch.arange(300, dtype=torch.uint8).view(1, 300, 1).expand(3, -1, -1)
    tracemalloc.start()
    try:
        out = FbResNetTransform()(image)
        caffe = CaffeTransform(227, mean_bgr=[0.0, 0.0, 0.0])(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == caffe.shape[:1] + (224, 224) and caffe.shape == (3, 227, 227)
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB traced"
    # The column is constant along the width, and the warp keeps the top-to-bottom ramp.
    assert torch.equal(caffe[:, :, 0], caffe[:, :, -1]) and caffe[0, 0, 0] < caffe[0, -1, 0]


@pytest.mark.parametrize("n_in, n_out", [(2, 7), (5, 17), (9, 256), (300, 256), (256, 256), (1, 4), (400, 3)])
def test_torch7_bicubic_weights_match_the_c_loop_at_every_sample(n_in, n_out):
    # Every output sample, borders included (the pipeline's crop never reaches the extrapolated
    # border samples of ordinary photos, so this is where they are checked).
    signal = np.random.default_rng(n_in * 1000 + n_out).random((n_in, 3)).astype(np.float32)
    expected = numpy_torch7_bicubic_1d(signal, n_out) if n_in > 1 else np.repeat(signal, n_out, axis=0)
    np.testing.assert_allclose(torch7_bicubic_matrix(n_in, n_out).numpy() @ signal, expected, atol=1e-6)


@pytest.mark.parametrize("n_in, n_out", [(2, 7), (5, 17), (300, 256), (256, 256), (1, 4), (640, 256)])
def test_bilinear_weights_match_opencv_geometry_at_every_sample(n_in, n_out):
    signal = np.random.default_rng(n_in + n_out).integers(0, 256, (n_in, 1)).astype(np.uint8)
    expected = numpy_linear_resize(signal[:, :, None].repeat(3, axis=2), n_out, 1)[:, 0, 0]
    got = np.floor(bilinear_matrix(n_in, n_out).numpy() @ signal[:, 0].astype(np.float64) + 0.5)
    np.testing.assert_array_equal(got, expected)


def straightforward_resample(pixels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The formulation that transforms._resample computes faster: the whole (3, H, W) image in
    float32, each output sample the sum of its taps (the non-zero weights of its row of the dense
    matrix, in column order; a shorter row padded with weight 0 on its first column), float32
    products added left to right, width first. ``rows`` and ``cols`` are the crop's rows of the
    dense matrices."""
    image = pixels.astype(np.float32)
    for axis, matrix in ((2, cols), (1, rows)):
        taps = [np.flatnonzero(row) for row in matrix]
        total = None
        for k in range(max(len(t) for t in taps)):
            index = np.array([t[k] if k < len(t) else t[0] for t in taps])
            weight = np.array([row[t[k]] if k < len(t) else 0.0 for row, t in zip(matrix, taps)], dtype=np.float32)
            term = np.take(image, index, axis=axis) * (weight if axis == 2 else weight[:, None])
            total = term if total is None else total + term
        image = total
    return image


def _same_bits(got: torch.Tensor, expected: np.ndarray) -> bool:
    # Bit patterns, so that even the sign of a zero must agree.
    got = got.contiguous().numpy()
    return got.shape == expected.shape and np.array_equal(got.view(np.uint8), expected.view(np.uint8))


ODD_SIZES = [(1, 1), (2, 3), (7, 300), (255, 257), (256, 256), (227, 301), (500, 333), (333, 500), (480, 640)]


@pytest.mark.parametrize("source", ["cat.jpg", "fish-bike.jpg", "space_shuttle.jpg", *ODD_SIZES])
def test_resampling_is_bit_identical_to_the_straightforward_formulation(source):
    from dsd_zoo.verify.datasets import decode_image

    if isinstance(source, str):
        pixels = decode_image(require(FIXTURES / "images" / source))  # a (3, H, W) view of PIL's (H, W, 3)
    else:
        generated = np.random.default_rng(source[0] * 1000 + source[1]).integers(0, 256, (*source, 3), dtype=np.uint8)
        pixels = torch.from_numpy(generated).permute(2, 0, 1)
    height, width = pixels.shape[1:]
    array = pixels.numpy()
    fb = FbResNetTransform()
    out_h, out_w = fb.scaled_size(height, width)
    top, left = math.ceil((out_h - 224) / 2), math.ceil((out_w - 224) / 2)
    expected = straightforward_resample(
        array,
        torch7_bicubic_matrix(height, out_h).numpy()[top : top + 224],
        torch7_bicubic_matrix(width, out_w).numpy()[left : left + 224],
    ) / np.float32(255.0)
    for layout in (pixels, pixels.contiguous()):
        assert _same_bits(fb.resample(layout), expected)
    assert _same_bits(fb.resample_batch(torch.stack([pixels, pixels]))[1], expected)
    for crop in (227, 224):
        offset = (256 - crop) // 2
        warped = straightforward_resample(
            array,
            bilinear_matrix(height, 256).numpy()[offset : offset + crop],
            bilinear_matrix(width, 256).numpy()[offset : offset + crop],
        )
        caffe = CaffeTransform(crop, mean_bgr=[0.0, 0.0, 0.0]).resample(pixels)
        assert torch.equal(caffe, torch.from_numpy(np.clip(np.floor(warped + 0.5), 0, 255).astype(np.uint8)))
