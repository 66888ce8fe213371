"""Tests of dsd_zoo.digests: the algorithms, the Digest record, single-pass file hashing."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsd_zoo.digests import ALGORITHMS, Digest, MultiHasher, hash_file

# FIPS 180-2 test vectors for "abc".
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
ABC_SHA1 = "a9993e364706816aba3e25717850c26c9cd0d89d"
# `printf 'hello world\n' | git hash-object --stdin` and `git hash-object /dev/null`.
HELLO_BLOB = "3b18e512dba79e4c8300dd08aeb37f8e728b8dad"
EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_known_vectors():
    hasher = MultiHasher(ALGORITHMS, size=3)
    hasher.update(b"abc")
    assert hasher.hexdigests()["sha256"] == ABC_SHA256
    assert hasher.hexdigests()["sha1"] == ABC_SHA1
    assert Digest("sha256_prefix", ABC_SHA256[:8]).matches(hasher.hexdigests())


@pytest.mark.parametrize("content, expected", [(b"hello world\n", HELLO_BLOB), (b"", EMPTY_BLOB)])
def test_git_blob_sha1_known_values(content, expected):
    hasher = MultiHasher(["git_blob_sha1"], size=len(content))
    hasher.update(content)
    assert hasher.hexdigests() == {"git_blob_sha1": expected}


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed; it is the reference for git_blob_sha1")
def test_git_blob_sha1_agrees_with_git(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 5000)  # 1.28 MB: more than one 1 MiB chunk
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    expected = git.stdout.strip()
    assert hash_file(path, ["git_blob_sha1"], chunk_size=2**20) == {"git_blob_sha1": expected}


def test_git_blob_sha1_left_out_when_the_size_was_wrong():
    hasher = MultiHasher(["git_blob_sha1", "sha256"], size=5)
    hasher.update(b"abc")  # 3 of the 5 bytes announced: a truncated file must not match a blob hash
    assert set(hasher.hexdigests()) == {"sha256"}
    assert not Digest("git_blob_sha1", HELLO_BLOB).matches(hasher.hexdigests())


def test_git_blob_sha1_needs_the_size():
    with pytest.raises(ValueError, match="size"):
        MultiHasher(["git_blob_sha1"])


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=6))
def test_chunking_does_not_change_digests(data, cuts):
    hasher = MultiHasher(["sha256", "sha1", "git_blob_sha1"], size=len(data))
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    for start, end in zip(bounds, bounds[1:]):
        hasher.update(data[start:end])
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert hasher.hexdigests() == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "git_blob_sha1": blob,
    }


def test_hash_file_matches_hashlib_across_chunks(tmp_path):
    data = bytes(range(256)) * 9000  # 2.3 MB, read in three 1 MiB chunks
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hash_file(path, ["sha256", "sha1"], chunk_size=2**20) == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
    }
    with pytest.raises(ValueError, match="chunk_size"):
        hash_file(path, chunk_size=4096)


@pytest.mark.parametrize(
    "algorithm, value, message",
    [
        ("md5", "0" * 32, "unknown digest algorithm"),
        ("sha256", ABC_SHA256.upper(), "lower-case hex"),
        ("sha256", ABC_SHA256[:-1], "expected 64"),
        ("sha1", ABC_SHA1 + "0", "expected 40"),
        ("git_blob_sha1", "z" * 40, "lower-case hex"),
        ("sha256_prefix", ABC_SHA256[:7], "expected 8 to 64"),  # 7 hex digits: too easy to match by chance
        ("sha256", None, "lower-case hex"),
    ],
)
def test_digest_validation(algorithm, value, message):
    with pytest.raises(ValueError, match=message):
        Digest(algorithm, value)


def test_digest_matches():
    computed = {"sha256": ABC_SHA256, "sha1": ABC_SHA1}
    assert Digest("sha256", ABC_SHA256).matches(computed)
    assert Digest("sha1", ABC_SHA1).matches(computed)
    assert Digest("sha256_prefix", ABC_SHA256).matches(computed)  # a full-length prefix is allowed
    assert not Digest("sha256_prefix", "ba7816bf0").matches(computed)
    assert not Digest("sha256", "0" * 64).matches(computed)
    assert not Digest("git_blob_sha1", HELLO_BLOB).matches(computed)  # not computed: never a match
    assert Digest("sha256_prefix", "ba7816bf").computed_by == "sha256"
    assert str(Digest("sha1", ABC_SHA1)) == f"sha1:{ABC_SHA1}"
