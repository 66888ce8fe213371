"""Tests of dsd_zoo.cache: location, stamps, verification of cache hits, lock, atomic publication."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from dsd_zoo import cache
from dsd_zoo.digests import Digest

BODY = b"dense-sparse-dense " * 1000
SHA256 = hashlib.sha256(BODY).hexdigest()


def cached_file(directory: Path, body: bytes = BODY, *, pinned: bool = False) -> Path:
    """A file in the cache with a valid stamp, as fetch leaves it."""
    path = directory / "w.bin"
    path.write_bytes(body)
    digests = {"sha256": hashlib.sha256(body).hexdigest()}
    cache.write_stamp(path, cache.Stamp.of(path, digests, pinned=pinned, source="test"))
    return path


def rewrite_in_place(path: Path, body: bytes, mtime_ns: int | None = None) -> None:
    """Change the content without a new inode; optionally keep the old mtime (fools the stat check)."""
    with open(path, "r+b") as file:
        file.write(body)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


@contextlib.contextmanager
def read_only(directory: Path):
    """Make ``directory`` read-only for the duration."""
    directory.chmod(0o555)
    try:
        yield
    finally:
        directory.chmod(0o755)


def require_enforced_permissions(tmp_path: Path) -> None:
    """Skip unless this process is refused writes into a read-only directory (root, or CAP_DAC_OVERRIDE, is not)."""
    probe = tmp_path / "permission-probe"
    probe.mkdir()
    with read_only(probe):
        try:
            (probe / "x").touch()
        except PermissionError:
            return
    pytest.skip(
        "this user writes into read-only directories (root?): run as another user, or drop "
        "CAP_DAC_OVERRIDE (capsh --drop=cap_dac_override,cap_dac_read_search -- -c 'python -m pytest ...')"
    )


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DSD_ZOO_CACHE", str(tmp_path / "from_env"))
    assert cache.resolve_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache.resolve_cache_dir() == tmp_path / "from_env"
    monkeypatch.delenv("DSD_ZOO_CACHE")
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))  # what torch.hub.set_dir() stores
    assert cache.resolve_cache_dir() == tmp_path / "hub" / "dsd_zoo"


def test_stamp_round_trip(tmp_path):
    path = cached_file(tmp_path)
    stamp = cache.read_stamp(path)
    st = path.stat()
    assert stamp == cache.Stamp(st.st_size, st.st_mtime_ns, st.st_ino, SHA256, False, "test", {})
    document = json.loads(cache.stamp_path(path).read_text())
    assert document["sha256"] == SHA256 and document["pinned"] is False and document["format"] == 1


def _edited_stamp(**changes) -> str:
    document = {
        "format": 1,
        "size": len(BODY),
        "mtime_ns": 1,
        "inode": 1,
        "sha256": SHA256,
        "pinned": False,
        "source": None,
        "extra": {},
    }
    return json.dumps({**document, **changes})


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": 1}',
        '{"format": 2, "size": 1}',
        "[]",
        "[" * 100_000,
        # Hand-edited: the string "false" is true, so it would have made a pin.
        _edited_stamp(pinned="false"),
        _edited_stamp(extra="x"),
        _edited_stamp(extra={"sha1": 1}),
        _edited_stamp(source=3),
    ],
)
def test_unreadable_stamp_proves_nothing(tmp_path, content, caplog):
    path = cached_file(tmp_path)
    cache.stamp_path(path).write_text(content)
    assert cache.read_stamp(path) is None
    assert "unreadable cache stamp" in caplog.text
    # The file is still verified, by hashing it, and a fresh stamp replaces the broken one.
    assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY)) is not None
    assert cache.read_stamp(path).sha256 == SHA256


def test_unchanged_stat_trusts_the_stamp_without_hashing(tmp_path):
    path = cached_file(tmp_path)
    st = path.stat()
    # Same size, inode and mtime but other bytes: only a re-hash could notice, and a stamp
    # hit must not re-hash. This pins down that a hit costs a stat, not a read of the file.
    rewrite_in_place(path, b"X" * len(BODY), mtime_ns=st.st_mtime_ns)
    assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY)) is not None


def test_changed_stat_with_same_content_is_rehashed_and_restamped(tmp_path):
    path = cached_file(tmp_path)
    old = cache.read_stamp(path)
    os.utime(path, ns=(old.mtime_ns + 10**9, old.mtime_ns + 10**9))
    stamp = cache.verify_cached(path, Digest("sha256", SHA256), len(BODY))
    assert stamp is not None and stamp.mtime_ns == old.mtime_ns + 10**9 and stamp.source == "test"
    assert cache.read_stamp(path) == stamp


def test_tampered_file_is_removed_and_reported(tmp_path):
    path = cached_file(tmp_path)
    rewrite_in_place(path, b"X")  # one byte changed; mtime moves on
    with pytest.warns(RuntimeWarning, match="corrupt or was modified"):
        assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY)) is None
    assert not path.exists() and not cache.stamp_path(path).exists()


def test_digest_of_the_record_changed(tmp_path):
    path = cached_file(tmp_path)
    with pytest.warns(RuntimeWarning):
        assert cache.verify_cached(path, Digest("sha256", "0" * 64), len(BODY)) is None
    assert not path.exists()


def test_wrong_size_fails_even_with_the_right_digest(tmp_path):
    path = cached_file(tmp_path)
    with pytest.warns(RuntimeWarning):
        assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY) + 1) is None


def test_other_algorithms_are_computed_once_and_stamped(tmp_path):
    path = cached_file(tmp_path)
    blob = Digest("git_blob_sha1", hashlib.sha1(b"blob %d\0" % len(BODY) + BODY).hexdigest())
    stamp = cache.verify_cached(path, blob, None)  # not in the stamp yet: hashed now
    assert stamp.extra == {"git_blob_sha1": blob.value}
    st = path.stat()
    rewrite_in_place(path, b"X" * len(BODY), mtime_ns=st.st_mtime_ns)
    assert cache.verify_cached(path, blob, None) is not None  # now answered by the stamp alone


def test_pinned_file(tmp_path):
    path = cached_file(tmp_path, pinned=True)
    assert cache.verify_cached(path, None, None) is not None
    rewrite_in_place(path, b"X")
    with pytest.warns(RuntimeWarning):
        assert cache.verify_cached(path, None, None) is None
    # The file is gone but the pin stays: a new download must match the sha256 first trusted.
    assert not path.exists()
    assert cache.pinned_stamp(path).sha256 == SHA256


def test_no_digest_and_no_pin_is_never_a_hit(tmp_path):
    path = cached_file(tmp_path, pinned=False)
    assert cache.verify_cached(path, None, None) is None
    assert path.exists()  # not known to be bad either: left for a verified download to replace


def test_a_change_during_the_hash_is_not_stamped_as_verified(tmp_path, monkeypatch):
    path = cached_file(tmp_path)
    os.utime(path, ns=(10**9, 10**9))  # the stat moved: the next check hashes the file
    real_hash_file = cache.hash_file

    def hash_then_change(*args, **kwargs):
        digests = real_hash_file(*args, **kwargs)
        rewrite_in_place(path, b"X")  # another writer, just after the good bytes were read
        return digests

    monkeypatch.setattr(cache, "hash_file", hash_then_change)
    assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY)) is not None  # what was read was good
    monkeypatch.undo()
    # The stamp holds the stat from before the hash, so the change is seen, not trusted.
    with pytest.warns(RuntimeWarning, match="corrupt or was modified"):
        assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY)) is None


def test_unreadable_cache_entry_is_not_a_hit(tmp_path, caplog):
    path = tmp_path / "w.bin"
    path.mkdir()  # not a file: no raw IsADirectoryError, just not a verified copy
    assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY)) is None
    assert "cannot read the cached file" in caplog.text


def test_lock_serialises_holders(tmp_path):
    path = tmp_path / "w.bin"
    events = []

    def holder(name: str) -> None:
        with cache.locked(path):
            events.append(f"{name} in")
            time.sleep(0.2)
            events.append(f"{name} out")

    threads = [threading.Thread(target=holder, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert events in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    # Group-writable whatever the umask, so that every user of a shared cache can take it.
    assert stat.S_IMODE((tmp_path / "w.bin.lock").stat().st_mode) & 0o060 == 0o060


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_read_only_cache_serves_verified_files(tmp_path):
    require_enforced_permissions(tmp_path)
    path = cached_file(tmp_path)
    with read_only(tmp_path), cache.locked(path) as held:
        assert not held
        assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY)) is not None


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_corrupt_file_in_a_read_only_cache_is_reported_not_served(tmp_path):
    require_enforced_permissions(tmp_path)
    path = cached_file(tmp_path)
    rewrite_in_place(path, b"X")
    with read_only(tmp_path), pytest.warns(RuntimeWarning, match="could not be removed.*delete it by hand"):
        assert cache.verify_cached(path, Digest("sha256", SHA256), len(BODY)) is None  # not a raw PermissionError


def test_part_names_are_unique_and_stale_parts_are_removed(tmp_path):
    final = tmp_path / "w.bin"
    parts = {cache.new_part_path(final) for _ in range(100)}
    assert len(parts) == 100
    part = next(iter(parts))
    assert part.parent == tmp_path and part.name.startswith(f"w.bin.{os.getpid()}.") and part.name.endswith(".part")
    part.write_bytes(b"half")
    stamp_part = tmp_path / "w.bin.stamp.json.4242.0123abcd.part"  # a stamp being written when its process died
    stamp_part.write_bytes(b"{")
    unrelated = [
        tmp_path / "w.bin2.123.abcdef01.part",
        tmp_path / "w.bin.stamp.json",
        tmp_path / "w.bin.x.part",
        tmp_path / "w.bin2.stamp.json.4242.0123abcd.part",
    ]
    for path in unrelated:
        path.write_bytes(b"")
    assert cache.remove_stale_parts(final) == 2
    assert not part.exists() and not stamp_part.exists() and all(path.exists() for path in unrelated)


def test_publish_is_an_atomic_rename(tmp_path):
    final = tmp_path / "w.bin"
    final.write_bytes(b"old")
    part = cache.new_part_path(final)
    part.write_bytes(b"new")
    inode = part.stat().st_ino
    cache.publish(part, final)
    assert final.read_bytes() == b"new" and final.stat().st_ino == inode and not part.exists()
