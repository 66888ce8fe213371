"""The ILSVRC-2012 mean image that AlexNet's preprocessing subtracts ships with dsd-zoo, derived from Caffe's file.

Caffe's ``python/caffe/imagenet/ilsvrc_2012_mean.npy`` (3x256x256 float64, BGR) is the source.
The shipped ``dsd_zoo/data/ilsvrc_2012_mean.safetensors`` holds it as one float32 RGB tensor,
``mean_image``: channels reversed, values rounded to float32 (what the transform computes in).
The derivation below is the one that wrote the shipped file; the test redoes it from the
source and compares the bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dsd_zoo
from dsd_zoo.atomic import write_safetensors
from dsd_zoo.digests import hash_file
from dsd_zoo.loading import load_tensors
from dsd_zoo.manifest import load_manifest
from dsd_zoo.records import shipped_file

from .conftest import FIXTURES, require

SOURCE = FIXTURES / "caffe-mean" / "ilsvrc_2012_mean.npy"
# The manifest names the file the shipped one is derived from: its URL and its git blob id there.
ORIGINAL = load_manifest().assets["ilsvrc_2012_mean"].original


def derive(source, out):
    """Write the shipped mean image from Caffe's ``.npy``."""
    bgr = np.load(source, allow_pickle=False)
    assert bgr.shape == (3, 256, 256) and bgr.dtype == np.float64
    rgb = torch.from_numpy(bgr[::-1].astype(np.float32))
    return write_safetensors(
        out,
        {"mean_image": rgb},
        {
            "source": ORIGINAL.url,
            "source_git_blob_sha1": ORIGINAL.digest.value,
            "derivation": "channels reversed (BGR to RGB), float64 rounded to float32",
        },
    )


def _shipped():
    asset = load_manifest().assets["ilsvrc_2012_mean"]
    return shipped_file(asset.record.local)


def test_the_shipped_mean_image_is_derived_from_caffes_file(tmp_path):
    source = require(SOURCE)
    assert (ORIGINAL.format, ORIGINAL.digest.algorithm) == ("npy", "git_blob_sha1")
    assert source.stat().st_size == ORIGINAL.record.size
    assert hash_file(source, ("git_blob_sha1",))["git_blob_sha1"] == ORIGINAL.digest.value
    assert derive(source, tmp_path / "mean.safetensors").read_bytes() == _shipped().read_bytes()


def test_the_shipped_mean_image_is_rgb_with_caffes_channel_means():
    mean = load_tensors(_shipped())[0]["mean_image"]
    # Whole-image channel means of Caffe's file, B/G/R 104.007 / 116.669 / 122.679 (computed from the .npy).
    assert mean.dtype == torch.float32 and tuple(mean.shape) == (3, 256, 256)
    assert mean.mean(dim=(1, 2)).tolist() == pytest.approx([122.679, 116.669, 104.007], abs=1e-3)


def test_the_alexnet_transform_subtracts_the_shipped_mean_offline(monkeypatch, tmp_path):
    # No weights, no cache, no network: the transform is data.
    monkeypatch.setenv("DSD_ZOO_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")
    mean = load_tensors(_shipped())[0]["mean_image"]
    gray = torch.full((3, 256, 256), 128, dtype=torch.uint8)
    out = dsd_zoo.get_weights("alexnet_dsd").transforms()(gray)
    torch.testing.assert_close(out, 128.0 - mean[:, 14:241, 14:241], rtol=0, atol=0)
    # Crop means of Caffe's image, B/G/R 102.981 / 115.946 / 122.771 (its centre 227 crop, computed from the .npy).
    np.testing.assert_allclose(
        mean[:, 14:241, 14:241].mean(dim=(1, 2)).flip(0).double().numpy(), [102.981, 115.946, 122.771], atol=1e-3
    )
    assert not (tmp_path / "empty-cache").exists()


@pytest.mark.parametrize("name", ["alexnet_caffe", "alexnet_dsd"])
def test_both_alexnets_name_the_shipped_asset(name):
    assert dsd_zoo.get_weights(name).entry.transforms["mean_image"] == "ilsvrc_2012_mean"
