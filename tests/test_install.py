"""``python -m dsd_zoo.convert FILE --model NAME --install``: a hand-downloaded original, taken in with one command.

The original is the real Deep Compression SqueezeNet (../shared/fixtures). Its URL in the
manifest points at a closed port: nothing here may touch the network.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import dsd_zoo
from dsd_zoo import cache
from dsd_zoo.convert.__main__ import main
from dsd_zoo.verify.selfcheck import run_selfcheck

from .conftest import FIXTURES, REPO_ROOT, require
from .servers import isolate_download_env

NET = FIXTURES / "squeezenet-deep-compression" / "compressed_SqueezeNet.net"
MODEL = "squeezenet_sparse"


@pytest.fixture
def env(monkeypatch, tmp_path):
    isolate_download_env(monkeypatch, tmp_path)
    return tmp_path


def _manifest(env, monkeypatch, *, published_digest: bool) -> None:
    """The bundled manifest with the original unreachable, and (optionally) without its published digest."""
    document = json.loads((REPO_ROOT / "weights_manifest.json").read_text())
    original = document["models"][MODEL]["original"]
    original["url"] = "http://127.0.0.1:9/compressed_SqueezeNet.net"
    if not published_digest:  # like the DSD originals on OneDrive
        original["digest"] = original["size"] = None
    path = env / "manifest.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv("DSD_ZOO_MANIFEST", str(path))


def _original_in_cache(env):
    return env / "cache" / dsd_zoo.api.get_entry(MODEL).original.record.file


@pytest.mark.parametrize("published_digest", [True, False])
def test_an_installed_original_serves_get_model_hub_and_verify_offline(env, monkeypatch, capsys, published_digest):
    net = require(NET)
    _manifest(env, monkeypatch, published_digest=published_digest)
    if published_digest:
        assert main([str(net), "--model", MODEL, "--install"]) == 0
    else:  # pinned on first use, with the warning a download would give
        with pytest.warns(UserWarning, match="trusting the copy from .*imported by hand.* on first use"):
            assert main([str(net), "--model", MODEL, "--install"]) == 0
    out = capsys.readouterr().out
    assert f"installed {MODEL}" in out and "offline too" in out

    stamp = cache.read_stamp(_original_in_cache(env))
    assert stamp.sha256 == hashlib.sha256(net.read_bytes()).hexdigest() and stamp.pinned is not published_digest

    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")  # from here on, no network at all
    model = dsd_zoo.get_model(MODEL, progress=False)
    hub_model = torch.hub.load(str(REPO_ROOT), MODEL, source="local", trust_repo=True, progress=False)
    assert torch.equal(model.classifier[1].weight, hub_model.classifier[1].weight)
    check = {m.entry.name: m for m in run_selfcheck([MODEL]).models}[MODEL]
    assert check.weights.verified and check.ok


def test_a_file_that_is_not_the_model_leaves_no_pin(env, monkeypatch, capsys, tmp_path):
    _manifest(env, monkeypatch, published_digest=False)
    wrong = tmp_path / "resnet50_dsd.t7"
    wrong.write_bytes(b"\x04\x00\x00\x00" * 1000)  # not a Deep Compression file
    with pytest.warns(UserWarning, match="trusting the copy"):
        assert main([str(wrong), "--model", MODEL, "--install"]) == 2
    assert "error:" in capsys.readouterr().err
    original = _original_in_cache(env)
    assert not original.exists() and not cache.stamp_path(original).exists()  # nothing stays pinned
    assert not (env / "cache" / f"{MODEL}.safetensors").exists()


def test_a_file_that_differs_from_the_published_digest_is_refused(env, monkeypatch, capsys, tmp_path):
    net = require(NET)
    _manifest(env, monkeypatch, published_digest=True)
    damaged = tmp_path / "compressed_SqueezeNet.net"
    damaged.write_bytes(net.read_bytes()[:-1] + b"\x00")
    assert main([str(damaged), "--model", MODEL, "--install"]) == 1
    assert "git_blob_sha1 mismatch" in capsys.readouterr().err
    assert not _original_in_cache(env).exists()


def test_install_and_output_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["x.net", "--model", MODEL, "--install", "-o", "y.safetensors"])
    assert exited.value.code == 2 and "not allowed with" in capsys.readouterr().err
