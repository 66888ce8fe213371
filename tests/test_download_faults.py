"""Fault tests of the downloader (issue 3, item 7), against real HTTP servers on 127.0.0.1.

Each test makes one thing go wrong (the network, the server, the disk, the cache, the user's
trust) and checks that fetch either delivers a verified file or fails cleanly, naming why, with
nothing half-written left under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dsd_zoo import cache
from dsd_zoo.digests import Digest
from dsd_zoo.download import fetch
from dsd_zoo.records import FileRecord, HFLocation
from dsd_zoo.errors import DownloadError, OfflineError, UnverifiedSourceError

from .servers import DEFAULT_COMMIT, LAST_MODIFIED_NOW, Fault
from .test_cache import require_enforced_permissions

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 3 MiB: three of the downloader's 1 MiB reads, so a reset mid-body leaves whole chunks to resume from.
BODY = os.urandom(3 * 2**20)
SHA256 = hashlib.sha256(BODY).hexdigest()


def record(
    *urls: str,
    digest: Digest | None = Digest("sha256", SHA256),
    size: int | None = len(BODY),
    hf: HFLocation | None = None,
) -> FileRecord:
    return FileRecord("w.bin", digest, size, hf=hf, urls=urls)


def leftovers(cache_dir) -> list[str]:
    """Files a failed fetch must not leave: the final name, its stamp, or any part."""
    return sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock")) if cache_dir.exists() else []


# -- the server sends something wrong -----------------------------------------------------------


@pytest.mark.parametrize(
    "fault, reason",
    [
        (Fault(flip_bit_at=1_000_000), "sha256 mismatch"),
        (Fault(truncate_to=len(BODY) - 1), f"announces {len(BODY) - 1} bytes, expected {len(BODY)}"),
    ],
)
def test_corrupt_body_is_never_published(cache_dir, server, fault, reason):
    url = server.add("/w.bin", BODY, faults=[fault])
    with pytest.raises(DownloadError, match=reason):
        fetch(record(url), progress=False)
    assert leftovers(cache_dir) == []
    assert len(server.log) == 1  # a wrong body is not a transient error: no retry on the same URL


def test_truncation_without_a_known_size_fails_the_digest(cache_dir, server):
    url = server.add("/w.bin", BODY, faults=[Fault(truncate_to=len(BODY) // 2)])
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(record(url, size=None), progress=False)
    assert leftovers(cache_dir) == []


def test_corrupt_mirror_then_good_mirror(cache_dir, server):
    bad = server.add("/bad", BODY, faults=[Fault(flip_bit_at=0, repeat=True)])
    good = server.add("/good", BODY)
    assert fetch(record(bad, good), progress=False).read_bytes() == BODY


def test_404_moves_on_without_retrying(cache_dir, server):
    good = server.add("/good", BODY)
    assert fetch(record(server.url("/gone"), good), progress=False).read_bytes() == BODY
    assert [entry.status for entry in server.requests_for("/gone")] == [404]


def test_500_then_success_retries_the_same_url(cache_dir, server):
    url = server.add("/w.bin", BODY, faults=[Fault(status=500), Fault(status=503)])
    other = server.add("/other", BODY)
    assert fetch(record(url, other), progress=False).read_bytes() == BODY
    assert [entry.status for entry in server.requests_for("/w.bin")] == [500, 503, 200]
    assert server.requests_for("/other") == []


def test_retry_after_is_waited_for(cache_dir, server, monkeypatch):
    monkeypatch.setenv("DSD_ZOO_RETRY_BACKOFF", "0")  # only the server's Retry-After makes it wait
    url = server.add("/w.bin", BODY, faults=[Fault(status=429, status_headers={"Retry-After": "1"})])
    start = time.monotonic()
    assert fetch(record(url), progress=False).read_bytes() == BODY
    assert time.monotonic() - start >= 1.0
    assert [entry.status for entry in server.requests_for("/w.bin")] == [429, 200]


def test_a_retry_after_date_is_understood(cache_dir, server, monkeypatch):
    import email.utils

    monkeypatch.setenv("DSD_ZOO_RETRY_BACKOFF", "0")
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: waits 1-2 s
    url = server.add("/w.bin", BODY, faults=[Fault(status=503, status_headers={"Retry-After": when})])
    start = time.monotonic()
    assert fetch(record(url), progress=False).read_bytes() == BODY
    assert time.monotonic() - start >= 0.9


def test_a_long_retry_after_moves_to_the_next_source_at_once(cache_dir, server):
    url = server.add("/w.bin", BODY, faults=[Fault(status=503, status_headers={"Retry-After": "3600"}, repeat=True)])
    other = server.add("/other", BODY)
    start = time.monotonic()
    assert fetch(record(url, other), progress=False).read_bytes() == BODY
    assert time.monotonic() - start < 30
    assert [entry.status for entry in server.requests_for("/w.bin")] == [503]
    with pytest.raises(DownloadError, match="asks to retry in 3600 s"):
        fetch(record(url, digest=Digest("sha256", "0" * 64)), progress=False)


def test_persistent_500_gives_up_after_the_configured_attempts(cache_dir, server):
    url = server.add("/w.bin", BODY, faults=[Fault(status=502, repeat=True)])
    with pytest.raises(DownloadError, match="HTTP 502.*gave up after 3 attempts"):  # DSD_ZOO_RETRIES=3
        fetch(record(url), progress=False)
    assert len(server.requests_for("/w.bin")) == 3


# -- the connection breaks ----------------------------------------------------------------------


def test_reset_mid_body_resumes_with_range(cache_dir, server):
    url = server.add("/w.bin", BODY, faults=[Fault(reset_after=2_500_000)])
    assert fetch(record(url), progress=False).read_bytes() == BODY
    first, second = server.requests_for("/w.bin")
    assert first.status == 200 and first.bytes_sent == 2_500_000
    # The client kept the whole 1 MiB chunks it had read (2, unless the machine is too busy to read
    # them in the server's grace period) and asked for the rest of the same file.
    assert second.range in (f"bytes={2**20}-", f"bytes={2 * 2**20}-") and second.if_range == f'"{SHA256}"'
    assert second.status == 206
    assert server.bytes_sent("/w.bin") < 2 * len(BODY)
    assert server.full_transfers("/w.bin") == 0


def test_server_ignoring_range_restarts_cleanly(cache_dir, server):
    url = server.add("/w.bin", BODY, faults=[Fault(reset_after=2_500_000), Fault(ignore_range=True)])
    assert fetch(record(url), progress=False).read_bytes() == BODY
    second = server.requests_for("/w.bin")[1]
    assert second.range is not None and second.status == 200 and second.full_body  # hashed from scratch


@pytest.mark.parametrize("etag", [f'"{SHA256}"', 'W/"v1"'])
def test_file_replaced_between_attempts_is_never_spliced(cache_dir, server, etag):
    # The mirror replaces its file while a transfer is broken; its Last-Modified does not move (the
    # file was replaced within the same second). Trusted on first use, a splice of the old file's
    # head and the new file's tail would be pinned for good; the copy must be all new bytes.
    new = os.urandom(len(BODY))
    url = server.add("/w.bin", BODY, etag=etag, faults=[Fault(reset_after=2_500_000, then_serve=new)])
    with pytest.warns(UserWarning, match="trusting the copy"):
        path = fetch(record(url, digest=None, size=None), progress=False, trust_unverified=True)
    assert path.read_bytes() == new
    second = server.requests_for("/w.bin")[1]
    if etag.startswith("W/"):  # no strong validator: If-Range cannot be used, so no Range either
        assert (second.range, second.if_range, second.status) == (None, None, 200)
    else:  # the strong ETag no longer matches: the server sends the whole new file
        assert second.if_range == etag and second.status == 200


def test_a_partial_answer_from_another_version_is_never_spliced(cache_dir, server):
    # A broken server or proxy ignores If-Range and answers 206 from the replaced file; its ETag
    # gives it away, and the client must start over instead of appending the new tail.
    new = os.urandom(len(BODY))
    url = server.add("/w.bin", BODY, faults=[Fault(reset_after=2_500_000, then_serve=new), Fault(ignore_if_range=True)])
    with pytest.warns(UserWarning, match="trusting the copy"):
        path = fetch(record(url, digest=None, size=None), progress=False, trust_unverified=True)
    assert path.read_bytes() == new
    assert [entry.status for entry in server.requests_for("/w.bin")] == [200, 206, 200]


def test_resuming_goes_on_when_partial_answers_omit_accept_ranges(cache_dir, server):
    # nginx sends Accept-Ranges with its 200 answers only. A 206 still proves ranges work: the
    # second break must resume too, not restart from byte 0 (which, on a link that breaks every
    # megabyte, would never finish).
    url = server.add(
        "/w.bin",
        BODY,
        accept_ranges_on_partial=False,
        faults=[Fault(reset_after=1_200_000), Fault(reset_after=1_200_000)],
    )
    assert fetch(record(url), progress=False).read_bytes() == BODY
    requests = server.requests_for("/w.bin")
    assert [entry.status for entry in requests] == [200, 206, 206]
    assert all(entry.range is not None for entry in requests[1:]) and server.full_transfers("/w.bin") == 0


def test_a_resume_that_changes_the_length_is_never_spliced(cache_dir, server):
    # No ETag, only a date; the file is replaced within the same second, so If-Range still matches
    # and the server sends the new file's tail. Its Content-Range total gives the change away.
    new = os.urandom(len(BODY) + 4096)
    url = server.add("/w.bin", BODY, send_etag=False, faults=[Fault(reset_after=2_500_000, then_serve=new)])
    with pytest.warns(UserWarning, match="trusting the copy"):
        path = fetch(record(url, digest=None, size=None), progress=False, trust_unverified=True)
    assert path.read_bytes() == new
    assert [entry.status for entry in server.requests_for("/w.bin")] == [200, 206, 200]


def test_a_short_resume_without_a_total_is_not_taken_for_the_whole_file(cache_dir, server):
    # "bytes a-b/*" gives no total and the answer ends cleanly 1 MiB short: the first answer's
    # length still says the file is not complete (it used to be pinned, truncated, on first use).
    url = server.add(
        "/w.bin", BODY, faults=[Fault(reset_after=1_200_000), Fault(unknown_total=True, truncate_to=len(BODY) - 2**20)]
    )
    with pytest.warns(UserWarning, match="trusting the copy"):
        path = fetch(record(url, digest=None, size=None), progress=False, trust_unverified=True)
    assert path.read_bytes() == BODY
    assert [entry.status for entry in server.requests_for("/w.bin")] == [200, 206, 206]


def test_offline_with_a_hub_copy_but_no_usable_cache_is_an_offline_error(cache_dir, server, monkeypatch, tmp_path):
    from huggingface_hub import hf_hub_download

    server.add_hf_file("dsd/vgg16", "model.safetensors", BODY)
    location = HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors")
    hf_hub_download(
        location.repo_id,
        location.filename,
        revision=location.revision,
        endpoint=server.base_url,
        cache_dir=tmp_path / "hf_home" / "hub",
    )
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("DSD_ZOO_CACHE", str(tmp_path / "a_file" / "cache"))  # cannot be created, even as root
    with pytest.raises(OfflineError, match="is in the Hugging Face cache but cannot be taken into the dsd-zoo cache"):
        fetch(record(hf=location), progress=False, offline=True)


def test_a_date_from_the_same_second_is_no_validator(cache_dir, server):
    # A Last-Modified equal to the answer's Date could name two versions written in that second
    # (RFC 9110 8.8.2.2): it must not be used for If-Range, so the break restarts the download.
    url = server.add(
        "/w.bin", BODY, send_etag=False, last_modified=LAST_MODIFIED_NOW, faults=[Fault(reset_after=2_500_000)]
    )
    assert fetch(record(url), progress=False).read_bytes() == BODY
    assert [(entry.range, entry.if_range, entry.status) for entry in server.requests_for("/w.bin")] == [
        (None, None, 200),
        (None, None, 200),
    ]


def test_an_old_date_is_a_validator_when_there_is_no_etag(cache_dir, server):
    url = server.add("/w.bin", BODY, send_etag=False, faults=[Fault(reset_after=2_500_000)])
    assert fetch(record(url), progress=False).read_bytes() == BODY
    second = server.requests_for("/w.bin")[1]
    assert second.if_range == "Mon, 06 Feb 2017 00:00:00 GMT" and second.status == 206


def test_no_range_support_means_no_range_request(cache_dir, server):
    url = server.add("/w.bin", BODY, accept_ranges=False, faults=[Fault(reset_after=2_500_000)])
    assert fetch(record(url), progress=False).read_bytes() == BODY
    assert [entry.range for entry in server.requests_for("/w.bin")] == [None, None]


def test_slow_server_times_out_then_next_url(cache_dir, server, monkeypatch):
    monkeypatch.setenv("DSD_ZOO_TIMEOUT", "2,0.3")
    monkeypatch.setenv("DSD_ZOO_RETRIES", "2")
    slow = server.add("/slow", BODY, faults=[Fault(delay_s=30, repeat=True)])
    good = server.add("/good", BODY)
    start = time.monotonic()
    assert fetch(record(slow, good), progress=False).read_bytes() == BODY
    # Two attempts of 0.3 s read timeout each, then the next URL; far from the 30 s the server sleeps.
    assert time.monotonic() - start < 5
    assert len(server.requests_for("/slow")) == 2 and server.full_transfers("/good") == 1


# -- several processes, a full disk -------------------------------------------------------------

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from dsd_zoo.digests import Digest
from dsd_zoo.download import fetch
from dsd_zoo.records import FileRecord
from dsd_zoo.errors import DownloadError
spec = json.loads(sys.argv[2])
record = FileRecord("w.bin", Digest("sha256", spec["sha256"]), spec["size"], urls=tuple(spec["urls"]))
if spec.get("fsize_limit"):
    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that writing past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (spec["fsize_limit"], spec["fsize_limit"]))
print("ready", flush=True)
sys.stdin.readline()  # wait for "go", so that all processes ask at the same moment
try:
    print(json.dumps({"path": str(fetch(record, progress=False))}))
except DownloadError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def run_children(count: int, spec: dict) -> list[dict]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, REPO_ROOT, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        return [json.loads(child.communicate(timeout=60)[0]) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()


def test_eight_processes_cause_one_download(cache_dir, server, monkeypatch):
    # The delay keeps the first download going while the other seven reach the lock; the read
    # timeout is well above it, so that the delay cannot cause a retry (which would be a 2nd GET).
    monkeypatch.setenv("DSD_ZOO_TIMEOUT", "10")
    url = server.add("/w.bin", BODY, faults=[Fault(delay_s=0.5)])
    results = run_children(8, {"sha256": SHA256, "size": len(BODY), "urls": [url]})
    assert results == [{"path": str(cache_dir / "w.bin")}] * 8
    assert server.full_transfers("/w.bin") == 1 and len(server.log) == 1
    assert hashlib.sha256((cache_dir / "w.bin").read_bytes()).hexdigest() == SHA256


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE and SIGXFSZ are POSIX")
def test_disk_full_fails_cleanly(cache_dir, server):
    first, second = server.add("/a", BODY), server.add("/b", BODY)
    spec = {"sha256": SHA256, "size": len(BODY), "urls": [first, second], "fsize_limit": 2**20}
    (result,) = run_children(1, spec)
    assert result["error"] == "DownloadError" and "cannot write w.bin into the cache directory" in result["message"]
    assert "File too large" in result["message"]  # EFBIG, the disk-full of RLIMIT_FSIZE
    assert leftovers(cache_dir) == []
    assert server.requests_for("/b") == []  # a local failure is not a reason to try another mirror


# -- the cache, offline mode, trust -------------------------------------------------------------


def test_tampered_cache_file_is_fetched_again(cache_dir, server):
    url = server.add("/w.bin", BODY)
    path = fetch(record(url), progress=False)
    with open(path, "r+b") as file:
        file.seek(12345)
        file.write(b"\0")
    with pytest.warns(RuntimeWarning, match="corrupt or was modified"):
        assert fetch(record(url), progress=False).read_bytes() == BODY
    assert server.full_transfers("/w.bin") == 2


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_without_the_lock_no_part_of_another_process_is_removed(cache_dir, server, tmp_path):
    from .test_cache import require_enforced_permissions

    require_enforced_permissions(tmp_path)
    cache_dir.mkdir()
    (cache_dir / "w.bin.lock").touch(mode=0o444)  # a lock file this user cannot open for writing
    theirs = cache_dir / "w.bin.4242.0123abcd.part"  # perhaps a download in progress under that lock
    theirs.write_bytes(b"in progress")
    url = server.add("/w.bin", BODY)
    assert fetch(record(url), progress=False).read_bytes() == BODY
    assert theirs.read_bytes() == b"in progress"


@pytest.mark.parametrize("how", ["argument", "DSD_ZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_never_opens_a_socket(cache_dir, server, monkeypatch, how):
    url = server.add("/w.bin", BODY)
    location = HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors")
    if how != "argument":
        monkeypatch.setenv(how, "1")

    def no_network(*args):
        raise AssertionError("offline mode opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(OfflineError) as info:
        fetch(record(url, hf=location), progress=False, offline=True if how == "argument" else None)
    assert "w.bin" in str(info.value) and str(cache_dir / "w.bin") in str(info.value)
    assert "nor in the Hugging Face cache" in str(info.value)
    # With no digest to check either, being offline is still the reason given (trusting would not help).
    with pytest.raises(OfflineError):
        fetch(record(url, digest=None, size=None), progress=False, offline=True)
    assert server.log == []


@pytest.mark.parametrize("damaged", [False, True])
def test_offline_mode_takes_a_verified_copy_from_the_hugging_face_cache(
    cache_dir, server, monkeypatch, tmp_path, damaged
):
    # Weights fetched with huggingface_hub (`hf download`) on a connected machine, then used offline.
    from huggingface_hub import hf_hub_download

    server.add_hf_file("dsd/vgg16", "model.safetensors", BODY)
    location = HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors")
    blob = Path(
        hf_hub_download(
            location.repo_id,
            location.filename,
            revision=location.revision,
            endpoint=server.base_url,
            cache_dir=tmp_path / "hf_home" / "hub",
        )
    ).resolve()
    if damaged:
        blob.write_bytes(BODY[::-1])
    requests_so_far = len(server.log)

    def no_network(*args):
        raise AssertionError("offline mode opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if damaged:  # verified like any download: a bad copy is refused, never served
        with pytest.raises(DownloadError, match="sha256 mismatch"):
            fetch(record(hf=location), progress=False)
        assert leftovers(cache_dir) == []
    else:
        path = fetch(record(hf=location), progress=False)
        assert path == cache_dir / "w.bin" and path.read_bytes() == BODY
        assert cache.read_stamp(path).source == f"{location} (Hugging Face cache)"
    assert len(server.log) == requests_so_far


def test_hf_hub_offline_is_read_as_huggingface_hub_reads_it(cache_dir, server, monkeypatch):
    # huggingface_hub takes only 1/ON/YES/TRUE as true: anything else means online, for both.
    url = server.add("/w.bin", BODY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "y")
    assert fetch(record(url), progress=False).read_bytes() == BODY


def test_offline_mode_serves_verified_cache_hits(cache_dir, server, monkeypatch):
    url = server.add("/w.bin", BODY)
    path = fetch(record(url), progress=False)
    monkeypatch.setenv("DSD_ZOO_OFFLINE", "1")
    assert fetch(record(url), progress=False) == path
    assert fetch(record(url), progress=False, offline=False) == path  # the argument wins over the environment
    assert len(server.log) == 1


def test_trust_on_first_use(cache_dir, server, monkeypatch):
    url = server.add("/w.bin", BODY)
    unverified = record(url, digest=None, size=None)
    with pytest.raises(UnverifiedSourceError, match="DSD_ZOO_TRUST_UNVERIFIED=1"):
        fetch(unverified, progress=False)
    assert server.log == []  # refused before any download

    with pytest.warns(UserWarning, match=f"pinning its sha256 {SHA256}"):
        path = fetch(unverified, progress=False, trust_unverified=True)
    stamp = cache.read_stamp(path)
    assert stamp.pinned and stamp.sha256 == SHA256 and stamp.source == url
    assert fetch(unverified, progress=False) == path  # the pin is the trust now: no opt-in needed

    # The mirror changes its file; the cached copy is lost. The pin rejects the new bytes.
    server.set_body("/w.bin", BODY[::-1])
    path.unlink()
    monkeypatch.setenv("DSD_ZOO_TRUST_UNVERIFIED", "1")
    with pytest.raises(DownloadError, match=f"sha256 mismatch: got .*, expected sha256:{SHA256}") as info:
        fetch(unverified, progress=False)
    assert not path.exists() and cache.pinned_stamp(path).sha256 == SHA256
    # The error says where the expectation comes from and how to accept the new file.
    assert "pin recorded when w.bin was first downloaded" in str(info.value)
    assert str(cache.stamp_path(path)) in str(info.value)


# -- the Hugging Face Hub -----------------------------------------------------------------------


def test_a_web_page_is_never_trusted_on_first_use(cache_dir, server):
    # A share link that answers 200 with a login or quota page: with no digest to catch it, it
    # would be pinned as the file for good.
    page = server.add(
        "/share", b"<html><body>Sign in to continue</body></html>", headers={"Content-Type": "text/html; charset=utf-8"}
    )
    good = server.add("/mirror", BODY)
    with pytest.warns(UserWarning, match="trusting the copy"):
        path = fetch(record(page, good, digest=None, size=None), progress=False, trust_unverified=True)
    assert path.read_bytes() == BODY and cache.read_stamp(path).source == good
    path.unlink()
    cache.stamp_path(path).unlink()
    with pytest.raises(DownloadError, match=r"answered with a web page \(text/html\)"):
        fetch(record(page, digest=None, size=None), progress=False, trust_unverified=True)
    assert leftovers(cache_dir) == []


def test_hub_with_pinned_revision(cache_dir, server, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.base_url)
    server.add_hf_file("dsd/squeezenet", "model.safetensors", BODY)
    mirror = server.add("/mirror", BODY)
    path = fetch(record(mirror, hf=HFLocation("dsd/squeezenet", DEFAULT_COMMIT, "model.safetensors")), progress=False)
    assert path.read_bytes() == BODY and server.requests_for("/mirror") == []
    assert {entry.path for entry in server.log if "/resolve/" in entry.path} == {
        f"/dsd/squeezenet/resolve/{DEFAULT_COMMIT}/model.safetensors"
    }


def test_a_read_only_hub_blob_is_adopted(cache_dir, server, monkeypatch, tmp_path):
    # A shared, read-only Hugging Face cache: the hard link to its blob cannot be opened for
    # writing, and need not be (fsync needs no write access).
    require_enforced_permissions(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", server.base_url)
    server.add_hf_file("dsd/vgg16", "model.safetensors", BODY)
    location = HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors")
    from huggingface_hub import hf_hub_download

    blob = Path(
        hf_hub_download(
            location.repo_id,
            location.filename,
            revision=location.revision,
            endpoint=server.base_url,
            cache_dir=tmp_path / "hf_home" / "hub",
        )
    ).resolve()
    blob.chmod(0o444)
    path = fetch(record(hf=location), progress=False)
    assert path.read_bytes() == BODY and cache.read_stamp(path).source == str(location)


# Not a 5xx on the metadata request: huggingface_hub itself retries that for ~23 s (1+2+4+8+8 s
# backoff) before giving up, which is its policy, not ours, and too slow for a unit test.
@pytest.mark.parametrize("hub_problem", ["HTTP 500 on the download", "HTTP 403", "unknown repository", "wrong bytes"])
def test_hub_failure_falls_through_to_the_urls(cache_dir, server, monkeypatch, hub_problem):
    monkeypatch.setenv("HF_ENDPOINT", server.base_url)
    if hub_problem.startswith("HTTP"):
        status, methods = (500, ("GET",)) if "download" in hub_problem else (403, ("HEAD", "GET"))
        server.add_hf_file(
            "dsd/vgg16", "model.safetensors", BODY, faults=[Fault(status=status, repeat=True, methods=methods)]
        )
    elif hub_problem == "wrong bytes":  # the Hub's own checks pass; only dsd-zoo's digest catches it
        server.add_hf_file("dsd/vgg16", "model.safetensors", BODY[::-1])
    mirror = server.add("/mirror", BODY)
    hub = HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors")
    path = fetch(record(mirror, hf=hub), progress=False)
    assert path.read_bytes() == BODY and server.full_transfers("/mirror") == 1
    assert cache.read_stamp(path).source == mirror


# -- a host name that does not resolve ----------------------------------------------------------


def test_a_name_that_does_not_resolve_is_not_retried(cache_dir, server, unresolvable_host, caplog):
    good = server.add("/good", BODY)
    with caplog.at_level("WARNING", logger="dsd_zoo.download"):
        assert fetch(record(f"http://{unresolvable_host}/w.bin", good), progress=False).read_bytes() == BODY
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    with pytest.raises(
        DownloadError,
        match=rf"the host name '{unresolvable_host}' does not resolve \(.+\): check "
        r"the address, or the network",
    ) as failure:
        fetch(
            FileRecord("alone.bin", Digest("sha256", SHA256), len(BODY), urls=(f"http://{unresolvable_host}/w.bin",)),
            progress=False,
        )
    assert "attempts" not in str(failure.value) and "\n" not in str(failure.value)


def test_a_hub_endpoint_that_does_not_resolve_moves_on_at_once(
    cache_dir, server, monkeypatch, unresolvable_host, caplog
):
    # Asked itself, huggingface_hub retries a name that does not resolve for about 20 s (1+2+4+8+8 s),
    # logging "Retrying in ..." each time.
    monkeypatch.setenv("HF_ENDPOINT", f"http://{unresolvable_host}")
    mirror = server.add("/mirror", BODY)
    with caplog.at_level("WARNING"):
        path = fetch(record(mirror, hf=HFLocation("dsd/vgg16", DEFAULT_COMMIT, "model.safetensors")), progress=False)
    assert path.read_bytes() == BODY and cache.read_stamp(path).source == mirror
    assert [r.getMessage() for r in caplog.records if "does not resolve" in r.getMessage()]
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
