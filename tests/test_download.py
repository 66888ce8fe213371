"""Tests of dsd_zoo.download against real HTTP servers on 127.0.0.1: records, sources, digests, Hub.

The fault tests of issue 3 (item 7) are in test_download_faults.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsd_zoo import cache
from dsd_zoo.digests import Digest
from dsd_zoo.download import fetch, fetch_url_bytes
from dsd_zoo.errors import DownloadError, IntegrityError, NotAvailableError, OfflineError
from dsd_zoo.manifest import load_manifest
from dsd_zoo.records import FileRecord, HFLocation

from .servers import DEFAULT_COMMIT, Fault

BODY = os.urandom(300_000)
SHA256 = hashlib.sha256(BODY).hexdigest()


def record(
    *urls: str,
    digest: Digest | None = Digest("sha256", SHA256),
    size: int | None = len(BODY),
    hf: HFLocation | None = None,
    file: str = "w.bin",
) -> FileRecord:
    return FileRecord(file, digest, size, hf=hf, urls=urls)


def test_importing_the_downloader_stays_light():
    code = (
        "import sys, dsd_zoo.download, dsd_zoo.cache, dsd_zoo.digests; "
        "print(sorted(m for m in ('torch', 'huggingface_hub', 'tqdm') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.stdout.strip() == "[]"  # each is imported on first use only


# -- records ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../w.bin",
        "a/b.bin",
        "a\\b.bin",
        ".hidden",
        "w.bin.lock",
        "w.part",
        "w.bin.stamp.json",
        "x" * 300,
        "w\x00.bin",
        # Windows device names, whatever the extension, and a trailing dot it drops
        "CON",
        "nul.safetensors",
        "Aux.bin",
        "com1.safetensors",
        "LPT9",
        "w.bin.",
    ],
)
def test_file_names_that_could_escape_or_collide_are_refused(name):
    with pytest.raises(ValueError, match="plain file name"):
        FileRecord(name, None, None)


def test_record_validation():
    for name in ("console.bin", "nullable.safetensors", "com10.bin", "auxiliary.pt"):  # not device names
        assert FileRecord(name, None, None).file == name
    assert FileRecord("w.bin", None, None, urls=["http://a/b"]).urls == ("http://a/b",)  # lists become tuples
    with pytest.raises(TypeError, match="not one string"):
        FileRecord("w.bin", None, None, urls="http://a/b")
    with pytest.raises(ValueError, match="http"):
        FileRecord("w.bin", None, None, urls=("file:///etc/passwd",))
    with pytest.raises(ValueError, match="size"):
        FileRecord("w.bin", None, -1)
    with pytest.raises(ValueError, match="size"):
        FileRecord("w.bin", None, True)
    with pytest.raises(TypeError, match="Digest"):
        FileRecord("w.bin", ("sha256", SHA256), None)
    with pytest.raises(ValueError, match="revision"):
        HFLocation("org/repo", "", "w.safetensors")


# -- URLs ---------------------------------------------------------------------------------------


def test_a_file_shipped_with_the_package_is_checked_and_never_fetched(cache_dir, monkeypatch):
    shipped = load_manifest().assets["digits_test"].record  # data/embedded/digits_test.safetensors
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "0")
    assert fetch(shipped, progress=False).read_bytes()[:8]  # the package's own copy, verified by sha256
    assert not cache_dir.exists()  # nothing goes through the cache
    modified = FileRecord(shipped.file, Digest("sha256", "0" * 64), None, local=shipped.local)
    with pytest.raises(IntegrityError, match="was modified: restore it"):
        fetch(modified, progress=False)
    absent = FileRecord(shipped.file, shipped.digest, None, local="data/embedded/no-such-file.safetensors")
    with pytest.raises(NotAvailableError, match="reinstall dsd-zoo"):
        fetch(absent, progress=False)


def test_download_then_verified_cache_hit(cache_dir, server):
    url = server.add("/w.bin", BODY)
    path = fetch(record(url), progress=False)
    assert path == cache_dir / "w.bin" and path.read_bytes() == BODY
    stamp = cache.read_stamp(path)
    assert (stamp.sha256, stamp.source, stamp.pinned, stamp.size) == (SHA256, url, False, len(BODY))
    assert sorted(p.name for p in cache_dir.iterdir()) == ["w.bin", "w.bin.lock", "w.bin.stamp.json"]
    assert fetch(record(url), progress=False) == path
    assert len(server.log) == 1  # the second call was answered by the stamp


def test_explicit_cache_dir_wins_over_the_environment(cache_dir, server, tmp_path):
    url = server.add("/w.bin", BODY)
    assert fetch(record(url), progress=False, cache_dir=tmp_path / "elsewhere") == tmp_path / "elsewhere" / "w.bin"
    assert not cache_dir.exists()


@pytest.mark.parametrize("algorithm", ["sha1", "git_blob_sha1", "sha256_prefix"])
@pytest.mark.parametrize("size", [len(BODY), None])
def test_originals_are_checked_against_the_published_digest(cache_dir, server, algorithm, size):
    values = {
        "sha1": hashlib.sha1(BODY).hexdigest(),
        "git_blob_sha1": hashlib.sha1(b"blob %d\0" % len(BODY) + BODY).hexdigest(),
        "sha256_prefix": SHA256[:8],
    }
    url = server.add("/o.caffemodel", BODY)
    path = fetch(record(url, digest=Digest(algorithm, values[algorithm]), size=size), progress=False)
    assert path.read_bytes() == BODY
    assert cache.read_stamp(path).sha256 == SHA256  # the stamp always holds a sha256 as well
    wrong = Digest(algorithm, "0" * len(values[algorithm]))
    with pytest.raises(DownloadError, match="mismatch"):
        fetch(record(url, digest=wrong, size=size, file="o2.caffemodel"), progress=False)


def test_next_url_after_a_failed_one_and_every_failure_listed(cache_dir, server):
    missing, bad, good = server.url("/missing"), server.add("/bad", b"x" * len(BODY)), server.add("/good", BODY)
    assert fetch(record(missing, bad, good), progress=False).read_bytes() == BODY
    with pytest.raises(DownloadError) as info:
        fetch(record(missing, bad, file="other.bin"), progress=False)
    message = str(info.value)
    assert f"{missing}: HTTP 404" in message and f"{bad}: sha256 mismatch" in message
    assert not (cache_dir / "other.bin").exists()


def test_a_record_without_sources(cache_dir):
    with pytest.raises(NotAvailableError, match="no source"):
        fetch(record(), progress=False)


def test_progress_bar_names_the_file(cache_dir, server, capsys):
    url = server.add("/w.bin", BODY)
    fetch(record(url, file="shown.bin"), progress=True)
    assert "shown.bin" in capsys.readouterr().err
    fetch(record(url, file="hidden.bin"), progress=False)
    assert "hidden.bin" not in capsys.readouterr().err


def test_fetch_url_bytes(cache_dir, server, monkeypatch):
    url = server.add("/manifest.json", b'{"format": 1}', faults=[Fault(status=503)])
    assert json.loads(fetch_url_bytes(url, max_bytes=100)) == {"format": 1}  # after one retry
    with pytest.raises(DownloadError, match="larger than 5 bytes"):
        fetch_url_bytes(url, max_bytes=5)
    with pytest.raises(DownloadError, match="404"):
        fetch_url_bytes(server.url("/nothing"), max_bytes=100)
    requests_so_far = len(server.log)
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="manifest.json"):
        fetch_url_bytes(url, max_bytes=100)
    assert len(server.log) == requests_so_far


@pytest.mark.parametrize(
    "name, value",
    [
        ("DSD_ZOO_TIMEOUT", "soon"),
        ("DSD_ZOO_TIMEOUT", "1,2,3"),
        ("DSD_ZOO_TIMEOUT", "nan"),
        ("DSD_ZOO_TIMEOUT", "10,inf"),
        ("DSD_ZOO_RETRY_BACKOFF", "nan"),
        ("DSD_ZOO_RETRIES", "0"),
        ("DSD_ZOO_OFFLINE", "maybe"),
    ],
)
def test_bad_environment_values_are_named(cache_dir, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        fetch(record("http://127.0.0.1:9/w.bin"), progress=False)


# -- Hugging Face Hub ---------------------------------------------------------------------------

OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.mark.parametrize("via_cdn", [False, True])
def test_hub_download_through_hf_endpoint(cache_dir, server, monkeypatch, tmp_path, via_cdn):
    monkeypatch.setenv("HF_ENDPOINT", server.base_url)
    server.add_hf_file("dsd/vgg16", "model.safetensors", BODY, via_cdn=via_cdn)
    location = HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors")
    path = fetch(record(hf=location), progress=False)
    assert path == cache_dir / "w.bin" and path.read_bytes() == BODY
    assert cache.read_stamp(path).source == f"hf://dsd/vgg16@{DEFAULT_COMMIT}/model.safetensors"
    resolve = f"/dsd/vgg16/resolve/{DEFAULT_COMMIT}/model.safetensors"
    assert [entry.method for entry in server.requests_for(resolve)] == (["HEAD"] if via_cdn else ["HEAD", "GET"])
    if via_cdn:
        assert server.cdn.full_transfers(f"/blobs/{SHA256}") == 1
    assert list((tmp_path / "hf_home" / "hub").glob("models--dsd--vgg16/blobs/*"))  # HF_HOME was honoured


def test_hub_revision_is_pinned(cache_dir, server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.base_url)
    server.add_hf_file("dsd/vgg16", "model.safetensors", BODY, branches=())
    server.add_hf_file("dsd/vgg16", "model.safetensors", b"newer weights", commit=OTHER_COMMIT, branches=("main",))
    path = fetch(record(hf=HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors")), progress=False)
    assert path.read_bytes() == BODY  # not what "main" points at now


def test_hub_location_the_hub_refuses_falls_through_to_the_urls(cache_dir, server, monkeypatch):
    # "a/b/c" is no repo id to huggingface_hub (HFValidationError, a ValueError): the Hub source
    # fails like any other, and the next source is tried, with no request to the Hub.
    monkeypatch.setenv("HF_ENDPOINT", server.base_url)
    mirror = server.add("/mirror", BODY)
    path = fetch(record(mirror, hf=HFLocation("a/b/c", DEFAULT_COMMIT, "model.safetensors")), progress=False)
    assert path.read_bytes() == BODY and [entry.path for entry in server.log] == ["/mirror"]


def test_damaged_copy_in_the_hub_cache_is_downloaded_again(cache_dir, server, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", server.base_url)
    server.add_hf_file("dsd/vgg16", "model.safetensors", BODY)
    hub_record = record(hf=HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors"))
    path = fetch(hub_record, progress=False)
    path.unlink()
    (blob,) = (tmp_path / "hf_home" / "hub").glob("models--dsd--vgg16/blobs/*")
    blob.write_bytes(b"rotten")  # huggingface_hub would hand this out forever without a HEAD request
    assert fetch(hub_record, progress=False).read_bytes() == BODY
    resolve = f"/dsd/vgg16/resolve/{DEFAULT_COMMIT}/model.safetensors"
    assert server.full_transfers(resolve) == 2
