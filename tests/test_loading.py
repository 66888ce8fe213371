"""The safetensors loader refuses damaged or hostile files with messages that say what is wrong."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

import dsd_zoo
from dsd_zoo.errors import FormatError
from dsd_zoo.loading import load_tensors, read_header


def raw_file(tmp_path, header: dict, data: bytes = b"", header_len: int = None):
    body = json.dumps(header).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(body) if header_len is None else header_len) + body + data)
    return path


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.safetensors"
    save_file(
        {"a": torch.arange(6, dtype=torch.float32).view(2, 3), "b": torch.ones(3)}, str(path), metadata={"model": "x"}
    )
    return path


def test_valid_file_gives_tensors_and_metadata(good):
    tensors, metadata = load_tensors(good)
    assert sorted(tensors) == ["a", "b"] and metadata == {"model": "x"}


@pytest.mark.parametrize("cut", [0, 5, 8, 20])
def test_truncated_file(good, tmp_path, cut):
    data = good.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:cut] if cut else b"")
    with pytest.raises(FormatError, match="too short|truncated|exceeds"):
        read_header(bad)


def test_truncated_data_section(good, tmp_path):
    bad = tmp_path / "short.safetensors"
    bad.write_bytes(good.read_bytes()[:-4])
    with pytest.raises(FormatError, match="data_offsets|truncated"):
        read_header(bad)


def test_header_length_beyond_file(tmp_path):
    with pytest.raises(FormatError, match="header length"):
        read_header(raw_file(tmp_path, {}, header_len=10**9))


def test_oversized_header_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as handle:  # a sparse file: 200 MB header claimed and present
        handle.write(struct.pack("<Q", 200 * 2**20))
        handle.truncate(8 + 200 * 2**20)
    with pytest.raises(FormatError, match="limit"):
        read_header(path)


@pytest.mark.parametrize(
    "header, message",
    [
        ({"a": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "malformed"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, "do not fit"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, "gap"),
        ({"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, "unknown dtype"),  # unhashable
        ({"a": "F32"}, "JSON object"),
        ({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, "malformed"),  # a bool is no dimension
        ({"__metadata__": {"k": 1}}, "__metadata__"),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_headers(tmp_path, header, message):
    with pytest.raises(FormatError, match=message):
        read_header(raw_file(tmp_path, header, b"\0" * 8))


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than Python's recursion limit
        b'{"a": {"shape": [' + b"1" * 5000 + b"]}}",
    ],
)  # an int past Python's digit limit
def test_json_that_python_refuses_is_a_format_error(tmp_path, raw):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(FormatError, match="not JSON"):
        read_header(path)


def test_not_json(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{]")
    with pytest.raises(FormatError, match="not JSON"):
        read_header(path)


def test_pickle_file_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(FormatError):
        dsd_zoo.get_model("squeezenet_dsd", weights=path)
