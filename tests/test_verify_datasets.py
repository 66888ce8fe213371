"""verify's datasets: both ILSVRC-2012 layouts on generated image folders, decoding, and every bad input.

The helpers at the top (a generated validation folder whose correct answers are known, and a
tiny model that predicts from the dominant colour) are shared by the other ``test_verify_*`` files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dsd_zoo.api import imagenet_classes
from dsd_zoo.transforms import CaffeTransform, FbResNetTransform
from dsd_zoo.verify import FULL_VAL_SIZE
from dsd_zoo.verify.datasets import (
    DatasetError,
    MultiPipelineDataset,
    ValSamples,
    decode_image,
    scan_flat,
    scan_imagenet,
)

pytestmark = pytest.mark.usefixtures("one_thread")

WNIDS = [wnid for wnid, _ in imagenet_classes()]


RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
# Logits of the classes 3..7 for every image: fixed and decreasing, so a top-5 is fully determined.
FILLER_LOGITS = (0.05, 0.04, 0.03, 0.02, 0.01)


class ColourModel(nn.Module):
    """Logit c (c < 3) is relu(mean of normalised channel c); classes 3..7 get FILLER_LOGITS; others -1.

    With either pipeline's normalisation a saturated red image predicts class 0, green 1, blue
    2, each followed by 3, 4, 5, 6; a white image ranks blue > green > red (the means subtracted
    are smallest for blue), i.e. 2, 1, 0, 3, 4.
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        fill = torch.full((num_classes - 3,), -1.0)
        fill[: len(FILLER_LOGITS)] = torch.tensor(FILLER_LOGITS)
        self.register_buffer("fill", fill)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        colour = torch.relu(x.float().mean(dim=(2, 3)))
        return torch.cat([colour, self.fill.expand(x.shape[0], -1)], dim=1)


@dataclass(frozen=True)
class Sample:
    """One generated file: its class, what it is, and whether the colour model gets it right."""

    label: int
    name: str
    kind: str  # "rgb", "gray", "cmyk", "truncated", "empty", "text"
    colour: Tuple[int, ...] = (0, 0, 0)
    top1: bool = False
    top5: bool = False

    @property
    def readable(self) -> bool:
        return self.kind in ("rgb", "gray", "cmyk")


# The generated validation set. Its expected counts follow from ColourModel's rule above:
# readable 10, top-1 hits 6 (the six marked), top-5 hits 8, unreadable 3.
SAMPLES: Tuple[Sample, ...] = (
    Sample(0, "red.JPEG", "rgb", RED, True, True),
    Sample(0, "red2.png", "rgb", RED, True, True),
    Sample(0, "green.JPEG", "rgb", GREEN, False, False),  # top-5 is 1, 3, 4, 5, 6
    Sample(0, "white_gray.JPEG", "gray", (255,), False, True),  # grey replicated: 2, 1, 0, 3, 4
    Sample(0, "red_cmyk.JPEG", "cmyk", (0, 255, 255, 0), True, True),  # CMYK red -> RGB red
    Sample(0, "empty.JPEG", "empty"),
    Sample(1, "green.JPEG", "rgb", GREEN, True, True),
    Sample(1, "blue.png", "rgb", BLUE, False, False),
    Sample(1, "truncated.JPEG", "truncated"),
    Sample(2, "blue.JPEG", "rgb", BLUE, True, True),
    Sample(2, "white_gray.png", "gray", (255,), True, True),
    Sample(2, "notes.txt", "text"),
    Sample(4, "red.JPEG", "rgb", RED, False, True),  # top-1 is class 0, class 4 is 3rd
)
N_READABLE = sum(s.readable for s in SAMPLES)
N_TOP1 = sum(s.top1 for s in SAMPLES)
N_TOP5 = sum(s.top5 for s in SAMPLES)
N_UNREADABLE = len(SAMPLES) - N_READABLE


def image_bytes(sample: Sample, size=(64, 48)) -> bytes:
    """The bytes of a generated file: a solid-colour image, or a broken one."""
    if sample.kind == "empty":
        return b""
    if sample.kind == "text":
        return b"this is not an image\n"
    if sample.kind == "truncated":
        noise = torch.randint(
            0, 256, (size[1], size[0], 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
        )
        buffer = io.BytesIO()
        Image.fromarray(noise.numpy()).save(buffer, "JPEG", quality=90)
        return buffer.getvalue()[: len(buffer.getvalue()) // 2]
    mode = {"rgb": "RGB", "gray": "L", "cmyk": "CMYK"}[sample.kind]
    buffer = io.BytesIO()
    image = Image.new(mode, size, sample.colour[0] if mode == "L" else sample.colour)
    image.save(buffer, "PNG" if sample.name.endswith(".png") else "JPEG", quality=95)
    return buffer.getvalue()


def make_imagefolder(root: Path, samples=SAMPLES) -> Path:
    """Write ``samples`` as ``root/<wnid>/<name>``."""
    for sample in samples:
        path = root / WNIDS[sample.label] / sample.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(sample))
    return root


def flat_name(sample: Sample) -> str:
    return f"{sample.label}_{sample.name}"


def make_flat(root: Path, samples=SAMPLES) -> Tuple[Path, Path]:
    """Write ``samples`` flat into ``root/images`` with a Caffe-style ``root/val.txt``; returns both."""
    images = root / "images"
    images.mkdir(parents=True)
    for sample in samples:
        (images / flat_name(sample)).write_bytes(image_bytes(sample))
    labels = root / "val.txt"
    labels.write_text("".join(f"{flat_name(s)} {s.label}\n" for s in reversed(samples)))
    return images, labels


def caffe_and_fb() -> Dict[str, nn.Module]:
    """One transform of each pipeline family (SqueezeNet's Caffe 227 and the ResNets' fb 224)."""
    return {"caffe": CaffeTransform(227, mean_bgr=[104.0, 117.0, 123.0]), "fb": FbResNetTransform()}


# ------------------------------------------------------------------------------------------------
# layouts


def test_imagefolder_labels_come_from_the_sorted_wnids(tmp_path):
    root = make_imagefolder(tmp_path / "val")
    samples = scan_imagenet(root, WNIDS)
    assert samples.layout == "imagefolder" and len(samples) == len(SAMPLES) == samples.found
    expected = sorted((f"{WNIDS[s.label]}/{s.name}", s.label) for s in SAMPLES)
    assert list(zip(samples.files, samples.labels)) == expected
    # Class 4's folder is the 5th WNID (n01491361), although only 4 folders exist.
    assert samples.labels[samples.files.index(f"{WNIDS[4]}/red.JPEG")] == 4


def test_flat_layout_reads_caffe_val_txt(tmp_path):
    images, labels = make_flat(tmp_path)
    samples = scan_imagenet(images, WNIDS, labels)
    assert samples.layout == "flat" and samples.labels_file == labels
    assert list(zip(samples.files, samples.labels)) == sorted((flat_name(s), s.label) for s in SAMPLES)


def test_label_file_with_a_byte_order_mark(tmp_path):
    # Saved by a Windows editor: the BOM must not become part of the first file name.
    images, labels = make_flat(tmp_path)
    labels.write_bytes(b"\xef\xbb\xbf" + labels.read_bytes())
    assert len(scan_flat(images, labels)) == len(SAMPLES)


def test_label_file_inside_the_folder_is_not_an_unlisted_image(tmp_path):
    images, labels = make_flat(tmp_path)
    inside = images / "val.txt"
    inside.write_text(labels.read_text())
    assert len(scan_flat(images, inside)) == len(SAMPLES)


def test_subset_spreads_over_the_classes_and_is_deterministic(tmp_path):
    samples = scan_imagenet(make_imagefolder(tmp_path / "val"), WNIDS)
    part = samples.subset(4)
    # i * 13 // 4 for i in 0..3 = 0, 3, 6, 9 (sorted order).
    assert part.files == tuple(samples.files[i] for i in (0, 3, 6, 9))
    assert len({*part.labels}) >= 3 and part.found == len(SAMPLES) and not part.is_full
    assert samples.subset(100) is samples and samples.subset(None) is samples
    with pytest.raises(DatasetError, match="positive"):
        samples.subset(0)
    assert FULL_VAL_SIZE == 50_000  # ILSVRC-2012 validation set size


def test_a_limit_that_leaves_images_out_is_never_a_full_run():
    # A folder with one stray extra sample (50,001) limited to 50,000 must not be judged as complete.
    names = tuple(f"{i:05d}.JPEG" for i in range(FULL_VAL_SIZE + 1))
    samples = ValSamples(Path("/val"), "flat", names, (0,) * len(names), None, len(names))
    assert not samples.is_full and not samples.subset(FULL_VAL_SIZE).is_full
    exact = ValSamples(Path("/val"), "flat", names[:-1], (0,) * FULL_VAL_SIZE, None, FULL_VAL_SIZE)
    assert exact.is_full and exact.subset(FULL_VAL_SIZE) is exact


def test_stray_images_beside_the_class_folders_are_noted(tmp_path):
    root = make_imagefolder(tmp_path / "val", SAMPLES[:1])
    (root / "stray.JPEG").write_bytes(image_bytes(SAMPLES[0]))
    (root / ".DS_Store").write_bytes(b"x")
    samples = scan_imagenet(root, WNIDS)
    assert len(samples) == 1 and "stray.JPEG" in samples.notes[0] and "not evaluated" in samples.notes[0]


def test_linked_folders_are_followed_but_never_around_a_loop(tmp_path):
    # torchvision's ImageFolder follows links; a linked folder's images must not silently leave the set.
    root = make_imagefolder(tmp_path / "val", SAMPLES[:1])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "linked.JPEG").write_bytes(image_bytes(SAMPLES[1]))
    class_folder = root / WNIDS[SAMPLES[0].label]
    (class_folder / "more").symlink_to(elsewhere, target_is_directory=True)
    (class_folder / "loop").symlink_to(class_folder, target_is_directory=True)  # must not recurse forever
    samples = scan_imagenet(root, WNIDS)
    folder = WNIDS[SAMPLES[0].label]
    assert samples.files == tuple(sorted([f"{folder}/{SAMPLES[0].name}", f"{folder}/more/linked.JPEG"]))
    assert samples.labels == (SAMPLES[0].label,) * 2


# ------------------------------------------------------------------------------------------------
# bad folders and label files: each a DatasetError naming the problem


def test_missing_file_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_imagenet(tmp_path / "nowhere", WNIDS)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        scan_imagenet(tmp_path / "file", WNIDS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class folders.*--labels"):
        scan_imagenet(tmp_path / "empty", WNIDS)
    (tmp_path / "hollow" / WNIDS[0]).mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        scan_imagenet(tmp_path / "hollow", WNIDS)


def test_unknown_wnids_are_named(tmp_path):
    root = make_imagefolder(tmp_path / "val", SAMPLES[:1])
    (root / "cats").mkdir()
    (root / "n99999999").mkdir()
    with pytest.raises(DatasetError, match=r"2 folder\(s\).*'cats', 'n99999999'.*WNID"):
        scan_imagenet(root, WNIDS)


def test_a_class_folder_that_cannot_be_listed_is_an_error(tmp_path, monkeypatch):
    # os.walk would skip it in silence, dropping its images from the denominator. (The tests run
    # as root, which chmod cannot lock out, so the listing fails through os.scandir instead.)
    import os

    root = make_imagefolder(tmp_path / "val", SAMPLES[:2])
    locked = root / WNIDS[0]
    listing = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DatasetError, match=f"cannot list the folder '{locked}' \\(Permission denied\\)"):
        scan_imagenet(root, WNIDS)


def test_flat_folder_without_labels_asks_for_them(tmp_path):
    images, _ = make_flat(tmp_path)
    with pytest.raises(DatasetError, match="--labels val.txt"):
        scan_imagenet(images, WNIDS)


@pytest.mark.parametrize(
    "lines, message",
    [
        ("a.JPEG\n", r"1 unparsable \(line 1: 'a.JPEG'\)"),
        ("a.JPEG x\n", r"1 unparsable"),
        ("a.JPEG 1000\n", r"1 out of range \(line 1: 1000\)"),
        ("a.JPEG -1\n", r"1 out of range"),
        ("a.JPEG 1\n\na.JPEG 2\n", r"1 duplicate \(line 3: 'a.JPEG' \(first on line 1\)\)"),
        ("../a.JPEG 1\n", r"1 unsafe path"),
        ("\n\n", r"lists no images"),
        (b"\xff\xfe 1\n", r"not UTF-8"),
    ],
)
def test_malformed_label_files(tmp_path, lines, message):
    (tmp_path / "a.JPEG").write_bytes(image_bytes(SAMPLES[0]))
    labels = tmp_path / "labels.txt"
    labels.write_bytes(lines if isinstance(lines, bytes) else lines.encode())
    with pytest.raises(DatasetError, match=message):
        scan_flat(tmp_path, labels)


def test_label_file_that_does_not_match_the_images(tmp_path):
    images, labels = make_flat(tmp_path)
    (images / flat_name(SAMPLES[0])).unlink()
    with pytest.raises(DatasetError, match=r"1 of the 13 files listed .* are not in .*0_red\.JPEG.*--limit"):
        scan_flat(images, labels)
    images2, labels2 = make_flat(tmp_path / "two")
    (images2 / "extra.JPEG").write_bytes(image_bytes(SAMPLES[0]))
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* not listed .*'extra\.JPEG'"):
        scan_flat(images2, labels2)
    images3, labels3 = make_flat(tmp_path / "three")
    (images3 / "sub").mkdir()
    (images3 / "sub" / "hidden_in_sub.jfif").write_bytes(image_bytes(SAMPLES[0]))  # .jfif is a JPEG too
    with pytest.raises(DatasetError, match=r"1 image\(s\) .* not listed .*'sub/hidden_in_sub\.jfif'"):
        scan_flat(images3, labels3)
    labels3.write_text(labels3.read_text() + "sub/hidden_in_sub.jfif 2\n")  # a listed subfolder image is fine
    assert len(scan_flat(images3, labels3)) == len(SAMPLES) + 1
    with pytest.raises(DatasetError, match="does not exist"):
        scan_flat(images2, tmp_path / "none.txt")
    with pytest.raises(DatasetError, match="is a folder"):
        scan_flat(images2, images2)


# ------------------------------------------------------------------------------------------------
# decoding and the multi-pipeline dataset


def test_grayscale_is_replicated_and_cmyk_converted(tmp_path):
    gray, cmyk = tmp_path / "g.JPEG", tmp_path / "c.JPEG"
    gray.write_bytes(image_bytes(Sample(0, "g.JPEG", "gray", (200,))))
    cmyk.write_bytes(image_bytes(Sample(0, "c.JPEG", "cmyk", (0, 255, 255, 0))))
    pixels = decode_image(gray)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 48, 64)
    assert torch.equal(pixels[0], pixels[1]) and torch.equal(pixels[1], pixels[2])
    assert abs(int(pixels[0, 10, 10]) - 200) <= 1  # JPEG keeps a flat grey within a level
    red = decode_image(cmyk)[:, 10, 10].tolist()
    assert red[0] >= 250 and red[1] <= 5 and red[2] <= 5, red


def test_16_bit_grayscale_keeps_its_high_byte_and_float_images_are_unreadable(tmp_path):
    # OpenCV's IMREAD_COLOR (libpng's strip_16) reads 16-bit PNGs by their high byte; PIL's
    # convert("RGB") clipped everything above 255 to white.
    from PIL import Image

    values = np.array([[65535, 32768, 255, 0]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    pixels = decode_image(tmp_path / "g16.png")
    assert pixels.shape == (3, 1, 4) and pixels[0].tolist() == [[255, 128, 0, 0]]
    assert torch.equal(pixels[0], pixels[2])
    Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ValueError, match="floating-point image has no 8-bit reading"):
        decode_image(tmp_path / "f.tif")


def test_exif_orientation_is_ignored_as_by_the_original_pipelines(tmp_path):
    # OpenCV 2.4's imread (Caffe's convert_imageset) and Torch7's libjpeg loader never rotated
    # by the EXIF Orientation tag; 6 means "rotate 90 degrees clockwise to display".
    stored = torch.zeros(48, 64, 3, dtype=torch.uint8)
    stored[:, :32] = 255  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.JPEG"
    Image.fromarray(stored.numpy()).save(path, "JPEG", quality=95, exif=exif)
    with Image.open(path) as check:
        assert check.getexif()[0x0112] == 6
    pixels = decode_image(path)
    assert pixels.shape == (3, 48, 64)  # rows and columns as stored, not as displayed
    assert pixels[:, :, :28].min() > 240 and pixels[:, :, 36:].max() < 15


def test_each_image_is_decoded_once_and_resampled_once_per_pipeline(tmp_path, monkeypatch):
    import dsd_zoo.verify.datasets as datasets

    root = make_imagefolder(tmp_path / "val")
    samples = scan_imagenet(root, WNIDS)
    decoded: List[str] = []
    original = datasets.decode_image

    def counting_decode(path):
        decoded.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(datasets, "decode_image", counting_decode)
    transforms = caffe_and_fb()
    calls = {key: 0 for key in transforms}

    def counting(key):
        def resample(image):
            calls[key] += 1
            return transforms[key].resample(image)

        return resample

    dataset = MultiPipelineDataset(samples, {key: counting(key) for key in transforms})
    items = [dataset[i] for i in range(len(dataset))]
    assert len(decoded) == len(SAMPLES)
    # Each readable image once per pipeline, plus one 8x8 dummy that gives the unreadable files' blank crops.
    assert calls == {"caffe": N_READABLE + 1, "fb": N_READABLE + 1}
    for index, label, error, crops in items:
        assert crops[0].shape == (3, 227, 227) and crops[0].dtype == torch.uint8  # Caffe crops stay 8-bit
        assert crops[1].shape == (3, 224, 224) and crops[1].dtype == torch.float32
        assert label == samples.labels[index]
        readable = not error
        name = samples.files[index]
        assert readable == next(s.readable for s in SAMPLES if f"{WNIDS[s.label]}/{s.name}" == name)
        if not readable:
            assert not crops[0].any() and not crops[1].any()
    reasons = {samples.files[i]: e for i, _, e, _ in items if e}
    assert "truncated" in reasons[f"{WNIDS[1]}/truncated.JPEG"]
    assert reasons[f"{WNIDS[2]}/notes.txt"].startswith("UnidentifiedImageError")
    assert reasons[f"{WNIDS[0]}/empty.JPEG"].startswith("UnidentifiedImageError")


def test_shard_indices(tmp_path):
    samples = scan_imagenet(make_imagefolder(tmp_path / "val"), WNIDS)
    dataset = MultiPipelineDataset(samples, {"caffe": caffe_and_fb()["caffe"].resample}, indices=range(1, 13, 2))
    assert len(dataset) == 6 and [dataset[i][0] for i in range(6)] == [1, 3, 5, 7, 9, 11]
