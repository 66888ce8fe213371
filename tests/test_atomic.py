"""Atomic writes and canonical safetensors files (dsd_zoo.atomic)."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from dsd_zoo.atomic import atomic_write, write_safetensors, write_text
from dsd_zoo.loading import read_header


def test_same_tensors_and_metadata_give_the_same_bytes(tmp_path):
    tensors = {
        "b": torch.randn(3, 4),
        "a": torch.arange(5),
        "m": torch.tensor([True, False]),
        "h": torch.ones(2, dtype=torch.bfloat16),
        "e": torch.zeros(0, 3),
    }
    metadata = {"z": "1", "a": "2"}
    one = write_safetensors(tmp_path / "one.safetensors", tensors, metadata)
    reordered = dict(reversed(list(tensors.items())))
    two = write_safetensors(tmp_path / "two.safetensors", reordered, dict(reversed(list(metadata.items()))))
    assert one.read_bytes() == two.read_bytes()
    # What the safetensors library and our own strict header check read back.
    loaded = load_file(str(one))
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value)
    _, found = read_header(one)
    assert found == metadata


def test_new_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write(tmp_path / "f.txt", lambda file: file.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def broken(file):
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_text_is_utf8_whatever_the_locale_and_a_non_utf8_file_name_is_escaped(tmp_path):
    # The reports, tables and JSON files are written through write_text: "±" and "–" in UTF-8
    # (Path.write_text would use the locale's encoding), and a file name that os.fsdecode turned
    # into a lone surrogate as its escape instead of an error after the work is done.
    path = write_text(tmp_path / "sub" / "t.md", "± – " + os.fsdecode(b"bad\xff.jpg"))
    assert path.read_bytes() == "± – bad".encode() + b"\\udcff.jpg"


def test_unsupported_dtype_and_metadata_are_refused(tmp_path):
    with pytest.raises(ValueError, match="complex"):
        write_safetensors(tmp_path / "c.safetensors", {"c": torch.zeros(2, dtype=torch.complex64)}, {})
    with pytest.raises(ValueError, match="str"):
        write_safetensors(tmp_path / "m.safetensors", {"a": torch.zeros(1)}, {"k": 1})
    assert list(tmp_path.iterdir()) == []
