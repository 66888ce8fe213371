"""verify --gpu-decode's path, run on the CPU: there it must reproduce the exact pipeline to the bit.

On a CPU ``torchvision.io.decode_jpeg`` and PIL both use libjpeg-turbo, so the crops of the
device path must equal the exact path's exactly (on a GPU, nvJPEG's pixels differ slightly;
that is why the mode is opt-in). The routing (which files go to the device decoder) is checked
on real files of every kind the generated validation set has.
"""

from __future__ import annotations

import importlib.util
import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from dsd_zoo.transforms import CaffeTransform, FbResNetTransform
from dsd_zoo.verify.datasets import MultiPipelineDataset, scan_imagenet
from dsd_zoo.verify.device_decode import (
    JPEG_DECODERS,
    DeviceDecoder,
    EncodedDataset,
    collate_encoded,
    default_jpeg_decoder,
    device_decodable_jpeg,
)
from dsd_zoo.verify.engine import EvalTarget, evaluate

from .conftest import FIXTURES
from .test_verify_datasets import SAMPLES, WNIDS, ColourModel, make_imagefolder

pytestmark = pytest.mark.usefixtures("one_thread")


def photo_jpeg(size=(150, 100), seed=0, **save) -> bytes:
    """A smooth random picture (compresses like a photo) as JPEG bytes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[1] // 10 + 1, size[0] // 10 + 1, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(coarse).resize(size, Image.BICUBIC).save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def _sof_components_at(data: bytes) -> int:
    """Offset of the first component id in the SOF0/SOF2 segment of ``data``."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return at + 10
    raise AssertionError("no SOF0/SOF2 segment")


def test_routing_of_jpeg_kinds():
    rgb = photo_jpeg()
    assert device_decodable_jpeg(rgb)
    assert device_decodable_jpeg(photo_jpeg(progressive=True))
    assert device_decodable_jpeg(rgb + b"\x00" * 100)  # padding after the end marker
    gray = io.BytesIO()
    Image.new("L", (40, 30), 128).save(gray, "JPEG")
    assert device_decodable_jpeg(gray.getvalue())
    cmyk = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(cmyk, "JPEG")  # 4 components and an Adobe segment
    assert not device_decodable_jpeg(cmyk.getvalue())
    at = _sof_components_at(rgb)
    rgb_ids = rgb[:at] + b"R" + rgb[at + 1 : at + 3] + b"G" + rgb[at + 4 : at + 6] + b"B" + rgb[at + 7 :]
    assert not device_decodable_jpeg(rgb_ids)  # libjpeg reads R, G, B component ids as RGB
    # An Adobe (APP14) segment as Photoshop writes it: transform 1 (YCbCr) is fine, 0 means RGB.
    for transform, expected in ((1, True), (0, False)):
        adobe = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00" + bytes([transform])
        assert device_decodable_jpeg(rgb[:2] + adobe + rgb[2:]) is expected
    assert not device_decodable_jpeg(rgb[: len(rgb) // 2])  # truncated
    # Over PIL's decompression-bomb limit (or 0 pixels): the exact path's verdict, not a GPU allocation.
    sof = _sof_components_at(rgb) - 10
    for height, width in ((40_000, 40_000), (0, 150)):
        dims = height.to_bytes(2, "big") + width.to_bytes(2, "big")
        assert not device_decodable_jpeg(rgb[: sof + 5] + dims + rgb[sof + 9 :])
    assert device_decodable_jpeg(rgb[: sof + 5] + rgb[sof + 5 : sof + 9] + rgb[sof + 9 :])
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, "PNG")
    assert not device_decodable_jpeg(png.getvalue())
    assert not device_decodable_jpeg(b"") and not device_decodable_jpeg(b"\xff\xd8\xff\xd9")


def exif_jpeg(orientation: int, byte_order: str = "<") -> bytes:
    """photo_jpeg() with an Exif orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo_jpeg())).save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    data = buffer.getvalue()
    if byte_order == ">":  # the same tag written big-endian, as many cameras do
        tiff = (
            b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01"
            + bytes([0, orientation, 0, 0])
            + b"\x00" * 4
        )
        segment = b"\xff\xe1" + (len(tiff) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
        data = data[:2] + segment + photo_jpeg()[2:]
    return data


def test_exif_orientation_routes_to_the_exact_path():
    # TorchCodec applies the Exif orientation; PIL (and the original pipelines) ignore it.
    assert device_decodable_jpeg(exif_jpeg(1)) and device_decodable_jpeg(exif_jpeg(1, ">"))
    assert not device_decodable_jpeg(exif_jpeg(6)) and not device_decodable_jpeg(exif_jpeg(8, ">"))
    broken = bytearray(exif_jpeg(6))
    at = broken.find(b"Exif\x00\x00") + 6
    broken[at : at + 2] = b"XX"  # not a TIFF block: the exact path decides
    assert not device_decodable_jpeg(bytes(broken))


def test_routing_survives_hostile_bytes():
    # Random damage anywhere in the header must give an answer, never an exception.
    rng = random.Random(0)
    for i in range(3000):
        data = exif_jpeg(6, "<>"[i % 2]) if i % 3 == 0 else photo_jpeg()
        header = data.find(b"\xff\xda") + 2
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(header)] = rng.randrange(256)
        cut = rng.choice([len(mutated), rng.randrange(len(mutated))])
        assert device_decodable_jpeg(bytes(mutated[:cut])) in (True, False)


@pytest.fixture(params=JPEG_DECODERS)
def jpeg_decoder(request):
    if request.param == "torchcodec" and importlib.util.find_spec("torchcodec") is None:
        pytest.skip("TorchCodec is not installed (pip install torchcodec, or the test extra)")
    return request.param


def _crops_both_ways(samples, transforms, jpeg_decoder):
    resamplers = {key: t.resample for key, t in transforms.items()}
    exact = [MultiPipelineDataset(samples, resamplers)[i] for i in range(len(samples))]
    items = [EncodedDataset(samples, resamplers)[i] for i in range(len(samples))]
    _, _, errors, encoded, cpu_crops = collate_encoded(items)
    errors, crops = DeviceDecoder(transforms, torch.device("cpu"), jpeg_decoder)(errors, encoded, cpu_crops)
    return exact, items, errors, crops


def test_device_crops_equal_the_exact_crops_on_cpu(tmp_path, jpeg_decoder):
    root = tmp_path / "val"
    sizes = [(150, 100), (100, 150), (150, 100), (333, 500), (150, 100)]  # three share a size: one batched group
    for i, size in enumerate(sizes):
        folder = root / WNIDS[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"photo{i}.JPEG").write_bytes(photo_jpeg(size, seed=i, progressive=i == 3))
    (root / WNIDS[0] / "rotated.JPEG").write_bytes(exif_jpeg(6))  # routed to the exact path
    photos = FIXTURES / "images"
    if photos.is_dir():  # real photographs too, when the fixtures are there
        for name in ("cat.jpg", "fish-bike.jpg", "space_shuttle.jpg"):
            (root / WNIDS[3]).mkdir(exist_ok=True)
            (root / WNIDS[3] / name).write_bytes((photos / name).read_bytes())
    samples = scan_imagenet(root, WNIDS)
    transforms = {"caffe": CaffeTransform(227, mean_bgr=[104.0, 117.0, 123.0]), "fb": FbResNetTransform()}
    exact, items, errors, crops = _crops_both_ways(samples, transforms, jpeg_decoder)
    routed = [samples.files[i] for i, item in enumerate(items) if item[3] is None]
    assert routed == [f"{WNIDS[0]}/rotated.JPEG"], "every other JPEG goes to the device decoder"
    assert errors == [""] * len(samples)
    for p in range(2):
        expected = torch.stack([item[3][p] for item in exact])
        assert crops[p].dtype == expected.dtype and torch.equal(crops[p], expected)


def test_every_kind_of_file_gets_the_exact_verdict_and_crop(tmp_path, jpeg_decoder):
    samples = scan_imagenet(make_imagefolder(tmp_path / "val"), WNIDS)
    # A JPEG that passes the routing but cannot be decoded: its Huffman table is destroyed.
    data = bytearray(photo_jpeg())
    table = data.find(b"\xff\xc4") + 5
    data[table : table + 16] = b"\xff" * 16
    bad = tmp_path / "val" / WNIDS[0] / "bad_huffman.JPEG"
    bad.write_bytes(bytes(data))
    assert device_decodable_jpeg(bytes(data))
    samples = scan_imagenet(tmp_path / "val", WNIDS)
    transforms = {"caffe": CaffeTransform(227, mean_bgr=[104.0, 117.0, 123.0]), "fb": FbResNetTransform()}
    exact, items, errors, crops = _crops_both_ways(samples, transforms, jpeg_decoder)
    assert errors == [item[2] for item in exact]
    assert sum(bool(e) for e in errors) == 4  # empty, truncated, text, and the broken Huffman table
    routed = {samples.files[i].split("/")[1] for i, item in enumerate(items) if item[3] is not None}
    assert {"red.JPEG", "green.JPEG", "blue.JPEG", "white_gray.JPEG", "bad_huffman.JPEG"} == routed
    for p in range(2):
        assert torch.equal(crops[p], torch.stack([item[3][p] for item in exact]))


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(
                not torch.cuda.is_available(),
                reason="needs a CUDA GPU (nvJPEG); benchmarks/gpu_check.sh runs it on one",
            ),
        ),
    ],
)
def test_evaluate_with_device_decoding_gives_the_exact_counts(tmp_path, device):
    # On CUDA the pixels may differ slightly, but the colour model's margins are far wider.
    samples = scan_imagenet(make_imagefolder(tmp_path / "val"), WNIDS)
    targets = lambda: [
        EvalTarget("caffe", ColourModel(), CaffeTransform(227, mean_bgr=[104.0, 117.0, 123.0])),  # noqa: E731
        EvalTarget("fb", ColourModel(), FbResNetTransform()),
    ]
    exact = evaluate(targets(), samples, batch_size=4, workers=0, progress=False)
    on_device = evaluate(
        targets(), samples, batch_size=4, workers=1, device=device, decode_on_device=True, progress=False
    )
    assert on_device.decode_on_device and not exact.decode_on_device
    assert on_device.extra["jpeg_decoder"] == default_jpeg_decoder()
    assert on_device.counts == exact.counts and on_device.unreadable == exact.unreadable
    assert len(SAMPLES) == on_device.counts["fb"].images


def test_exact_float32_turns_tf32_off_for_cuda_and_restores_it():
    from dsd_zoo.verify.engine import _exact_float32

    if not hasattr(torch.backends.cudnn, "conv"):
        pytest.skip("torch < 2.9 has only the allow_tf32 flags")
    conv = torch.backends.cudnn.conv
    before = (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    with _exact_float32(torch.device("cuda")):  # only flags: no GPU needed
        assert (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == ("ieee", "ieee")
    assert (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before
    with _exact_float32(torch.device("cuda"), enabled=False), _exact_float32(torch.device("cpu")):
        assert (conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == before
