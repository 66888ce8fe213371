"""End-to-end weight resolution through real loopback servers: mirrors, the Hub, and the
original release converted locally (the real Deep Compression SqueezeNet)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading

import pytest
import torch
from PIL import Image

import dsd_zoo
from dsd_zoo.errors import DownloadError, OfflineError, UnverifiedSourceError

from .conftest import FIXTURES, REPO_ROOT, require
from .servers import isolate_download_env


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def env(monkeypatch, tmp_path):
    isolate_download_env(monkeypatch, tmp_path)
    return tmp_path


def write_manifest(tmp_path, monkeypatch, edit) -> None:
    document = json.loads((REPO_ROOT / "weights_manifest.json").read_text())
    edit(document["models"])
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv("DSD_ZOO_MANIFEST", str(path))


def safetensors_bytes(model: torch.nn.Module) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in model.state_dict().items()})


def test_hub_load_from_a_url_mirror_returns_the_served_weights(env, server, monkeypatch):
    # Issue 3, "done when": torch.hub.load(<repo>, 'squeezenet_sparse', source='local') through a
    # manifest whose urls serve a safetensors file from a loopback server.
    reference = dsd_zoo.get_model("squeezenet_sparse", pretrained=False)
    body = safetensors_bytes(reference)
    url = server.add("/squeezenet_sparse.safetensors", body)

    def edit(models):
        models["squeezenet_sparse"]["weights"].update(
            sha256=hashlib.sha256(body).hexdigest(), size=len(body), urls=[url]
        )

    write_manifest(env, monkeypatch, edit)
    model = torch.hub.load(str(REPO_ROOT), "squeezenet_sparse", source="local", progress=False, trust_repo=True)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert server.full_transfers("/squeezenet_sparse.safetensors") == 1
    # A second load is a verified cache hit: no new request.
    dsd_zoo.get_model("squeezenet_sparse", progress=False)
    assert len(server.requests_for("/squeezenet_sparse.safetensors", "GET")) == 1


def test_tampered_manifest_digest_refuses_the_file(env, server, monkeypatch):
    body = safetensors_bytes(dsd_zoo.get_model("squeezenet_sparse", pretrained=False))
    url = server.add("/w.safetensors", body)

    def edit(models):
        models["squeezenet_sparse"]["weights"].update(sha256="0" * 64, size=len(body), urls=[url])
        models["squeezenet_sparse"]["original"] = None

    write_manifest(env, monkeypatch, edit)
    with pytest.raises(Exception) as info:
        dsd_zoo.get_model("squeezenet_sparse", progress=False)
    assert "0" * 64 in str(info.value) or "sha256" in str(info.value)
    assert not (env / "cache" / "squeezenet_sparse.safetensors").exists()


@pytest.fixture
def served_original(env, server, monkeypatch):
    """The real compressed_SqueezeNet.net served from loopback as the original release."""
    data = require(FIXTURES / "squeezenet-deep-compression" / "compressed_SqueezeNet.net").read_bytes()
    pytest.importorskip("google.protobuf", reason="the converter extra (protobuf) is not installed")
    url = server.add("/compressed_SqueezeNet.net", data)
    # The manifest's published git blob sha1 must be that of the real file (issue 3, item 2).
    assert git_blob_sha1(data) == dsd_zoo.get_weights("squeezenet_sparse").meta["original"]["digest"]["git_blob_sha1"]

    def edit(models):
        models["squeezenet_sparse"]["original"]["url"] = url

    write_manifest(env, monkeypatch, edit)
    return url


def test_original_release_is_converted_locally_and_classifies(served_original, server, env, monkeypatch):
    model = dsd_zoo.get_model("squeezenet_sparse", progress=False)
    weights = dsd_zoo.get_weights("squeezenet_sparse")
    image = Image.open(require(FIXTURES / "images" / "space_shuttle.jpg"))
    with torch.inference_mode():
        probs = model(weights.transforms()(image).unsqueeze(0)).softmax(1)[0]
    # Fixture README: class 812 "space shuttle", probability > 0.9 (independent implementation: 0.995-0.997).
    assert probs.argmax().item() == 812 and probs[812].item() > 0.9
    assert server.full_transfers("/compressed_SqueezeNet.net") == 1

    # The locally converted file is now a verified cache hit, also offline.
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")
    again = dsd_zoo.get_model("squeezenet_sparse", progress=False)
    assert torch.equal(again.classifier[1].weight, model.classifier[1].weight)
    assert len(server.requests_for("/compressed_SqueezeNet.net", "GET")) == 1
    stamp = json.loads((env / "cache" / "squeezenet_sparse.safetensors.stamp.json").read_text())
    assert stamp["source"].startswith("converted locally from") and stamp["pinned"] is True


def test_a_conversion_done_meanwhile_by_another_process_is_used(served_original, env):
    # Two processes miss the cache and both go to convert: the second, once it has the lock,
    # must find the first one's verified file rather than convert (and replace) it again.
    from dsd_zoo import cache

    final = env / "cache" / "squeezenet_sparse.safetensors"
    dsd_zoo.get_model("squeezenet_sparse", progress=False)
    theirs = env / "theirs.safetensors"
    os.link(final, theirs)
    final.unlink()
    cache.stamp_path(final).unlink()
    blocked = threading.Event()

    class OnWait(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for another process" in record.getMessage():
                blocked.set()

    handler = OnWait()
    logging.getLogger("dsd_zoo.cache").addHandler(handler)
    result = {}
    try:
        with cache.locked(final):  # the other process, converting
            worker = threading.Thread(
                target=lambda: result.update(model=dsd_zoo.get_model("squeezenet_sparse", progress=False))
            )
            worker.start()
            assert blocked.wait(30), "the second loader never waited for the lock"
            os.link(theirs, final)  # the other process publishes its conversion, then its stamp
            cache.write_stamp(
                final,
                cache.Stamp.of(
                    final,
                    {"sha256": hashlib.sha256(final.read_bytes()).hexdigest()},
                    pinned=True,
                    source="the other process",
                ),
            )
        worker.join(60)
    finally:
        logging.getLogger("dsd_zoo.cache").removeHandler(handler)
    assert "model" in result
    assert final.stat().st_ino == theirs.stat().st_ino  # not converted again and replaced
    assert cache.read_stamp(final).source == "the other process"


def test_unpinned_mirror_falls_back_to_the_verified_original(served_original, server, env, monkeypatch):
    # A mirror without a published sha256 cannot be trusted silently; the original has a digest.
    mirror = server.add("/unpinned.safetensors", b"whatever")

    def edit(models):
        models["squeezenet_sparse"]["original"]["url"] = served_original
        models["squeezenet_sparse"]["weights"]["urls"] = [mirror]

    write_manifest(env, monkeypatch, edit)
    model = dsd_zoo.get_model("squeezenet_sparse", progress=False)
    assert model.classifier[1].weight.shape == (1000, 512, 1, 1)
    assert server.requests_for("/unpinned.safetensors") == []  # refused before any request
    assert server.full_transfers("/compressed_SqueezeNet.net") == 1


def test_corrupt_original_is_rejected(served_original, server, env):
    server.set_body("/compressed_SqueezeNet.net", b"\0" * 675_763)
    with pytest.raises(DownloadError, match="compressed_SqueezeNet"):
        dsd_zoo.get_model("squeezenet_sparse", progress=False)
    assert not (env / "cache" / "squeezenet_sparse.safetensors").exists()


def test_original_without_digest_needs_opt_in(served_original, env, monkeypatch):
    def edit(models):
        models["squeezenet_sparse"]["original"]["url"] = served_original
        models["squeezenet_sparse"]["original"]["digest"] = None

    write_manifest(env, monkeypatch, edit)
    with pytest.raises(UnverifiedSourceError, match="DSD_ZOO_TRUST_UNVERIFIED") as info:
        dsd_zoo.get_model("squeezenet_sparse", progress=False)
    # The user asked for a model: the error says why an original is fetched and what else works.
    assert str(info.value).startswith("squeezenet_sparse: converted weights are not published yet")
    assert "python -m dsd_zoo.convert FILE --model squeezenet_sparse" in str(info.value)
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="squeezenet_sparse: converted weights are not published yet"):
        dsd_zoo.get_model("squeezenet_sparse", progress=False)
    monkeypatch.delenv("DSD_ZOO_OFFLINE")
    with pytest.warns(Warning, match="sha256"):
        model = dsd_zoo.get_model("squeezenet_sparse", progress=False, trust_unverified=True)
    assert model.classifier[1].weight.shape == (1000, 512, 1, 1)


def test_an_original_refused_for_want_of_a_digest_names_the_flag_whatever_else_failed(env, server, monkeypatch):
    # The authors' file has no digest (refused without the opt-in, before any request); the
    # alternate that has one fails on the network. The error is the one a flag fixes, so that a
    # CLI names its --trust-unverified, and it lists both.
    def edit(models):
        original = models["squeezenet_sparse"]["original"]
        original.update(url=server.url("/authors.net"), digest=None)
        alternate = {"format": "deep-compression", "url": server.url("/gone.net"), "digest": {"sha256": "0" * 64}}
        models["squeezenet_sparse"]["alternates"] = [alternate]

    write_manifest(env, monkeypatch, edit)
    with pytest.raises(UnverifiedSourceError, match="DSD_ZOO_TRUST_UNVERIFIED") as info:
        dsd_zoo.get_model("squeezenet_sparse", progress=False)
    assert "/gone.net" in str(info.value) and "HTTP 404" in str(info.value)
    assert [r.path for r in server.log] == ["/gone.net"]  # the authors' file was refused before any request


def test_offline_without_cache_names_the_file(env, monkeypatch):
    def edit(models):
        models["squeezenet_sparse"]["weights"].update(sha256="a" * 64, urls=["http://127.0.0.1:9/never.safetensors"])

    write_manifest(env, monkeypatch, edit)
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="squeezenet_sparse.safetensors"):
        dsd_zoo.get_model("squeezenet_sparse", progress=False)


def test_nothing_published_says_how_to_get_weights(env, monkeypatch):
    def edit(models):
        models["vgg16_dsd"]["original"] = None

    write_manifest(env, monkeypatch, edit)
    with pytest.raises(dsd_zoo.errors.NotAvailableError, match="vgg16_dsd"):
        dsd_zoo.get_model("vgg16_dsd", progress=False)


def test_manifest_from_a_url(env, server, monkeypatch):
    # DSD_ZOO_MANIFEST may be an http(s) URL (mirrors, air-gapped clusters), fetched once per process.
    from dsd_zoo.manifest import load_manifest

    document = json.loads((REPO_ROOT / "weights_manifest.json").read_text())
    document["models"] = {"squeezenet_sparse": document["models"]["squeezenet_sparse"]}
    url = server.add("/mirror/manifest.json", json.dumps(document).encode())
    monkeypatch.setenv("DSD_ZOO_MANIFEST", url)
    assert list(load_manifest().models) == ["squeezenet_sparse"]
    assert dsd_zoo.list_models() == ["squeezenet_sparse"]
    assert len(server.requests_for("/mirror/manifest.json", "GET")) == 1
    server.add("/mirror/broken.json", b"{not json")
    monkeypatch.setenv("DSD_ZOO_MANIFEST", server.url("/mirror/broken.json"))
    with pytest.raises(dsd_zoo.errors.ManifestError, match="broken.json.*not valid JSON"):
        load_manifest()


def test_the_convert_hint_is_one_command(env, monkeypatch):
    pytest.importorskip("google.protobuf", reason="AlexNet's original is a caffemodel (pip install 'dsd-zoo[convert]')")
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        dsd_zoo.get_model("alexnet_dsd", progress=False)
    # AlexNet's mean image ships with dsd-zoo: the original is all the command needs.
    text = str(info.value)
    assert "python -m dsd_zoo.convert FILE --model alexnet_dsd --install\n" in text
    # ... and where to get the file by hand: the share link to open in a browser, and what it holds.
    assert "open https://1drv.ms/u/s!AkOf0kjGMRd2bYhyLGPP0nffD2k in a browser" in text and "*.caffemodel" in text


def test_a_failed_published_file_is_named_not_called_unpublished(env, monkeypatch):
    pytest.importorskip("google.protobuf", reason="squeezenet_caffe's original is a caffemodel")

    def edit(models):
        models["squeezenet_caffe"]["weights"].update(sha256="a" * 64, urls=["http://127.0.0.1:9/published.safetensors"])
        models["squeezenet_caffe"]["original"].update(url="http://127.0.0.1:9/original.caffemodel", mirrors=[])

    write_manifest(env, monkeypatch, edit)
    with pytest.raises(DownloadError) as info:
        dsd_zoo.get_model("squeezenet_caffe", progress=False)
    text = str(info.value)
    assert text.startswith("squeezenet_caffe: the published weights could not be had (")
    assert "published.safetensors" in text and "not published yet" not in text
