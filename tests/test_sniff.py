"""Files are named for what they are: wrong-format input gets the mix-up, not a parser's complaint."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

import dsd_zoo
from dsd_zoo.convert.__main__ import main as convert
from dsd_zoo.errors import FormatError
from dsd_zoo.sniff import sniff

from .conftest import FIXTURES, require
from .formats.caffe_writer import write_caffemodel
from .formats.t7_writer import nn_module, write_t7

NET = FIXTURES / "squeezenet-deep-compression" / "compressed_SqueezeNet.net"


def test_each_format_is_recognised(tmp_path, isolated_cache):
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "w.safetensors"))
    write_caffemodel(tmp_path / "m.caffemodel", {"conv1": [np.zeros((2, 1, 1, 1), np.float32)]})
    write_t7(tmp_path / "m.t7", nn_module("nn.Sequential", modules=[]))
    np.save(tmp_path / "a.npy", np.zeros(3))
    with zipfile.ZipFile(tmp_path / "m.pth", "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    (tmp_path / "old.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    (tmp_path / "login.html").write_bytes(b"\n<!DOCTYPE html><html><body>Sign in</body></html>")
    (tmp_path / "noise.bin").write_bytes(bytes(range(7, 200)))
    found = {path.name: sniff(path) for path in sorted(tmp_path.iterdir())}
    assert found == {
        "a.npy": "npy",
        "login.html": "html",
        "m.caffemodel": "caffemodel",
        "m.pth": "zip",
        "m.t7": "torch7",
        "noise.bin": None,
        "old.pth": "pickle",
        "w.safetensors": "safetensors",
    }


def test_an_original_given_as_weights_is_named_with_the_command(tmp_path, isolated_cache):
    caffemodel = write_caffemodel(tmp_path / "m.caffemodel", {"conv1": [np.zeros((2, 1, 1, 1), np.float32)]})
    with pytest.raises(
        FormatError,
        match=r"is a Caffe \.caffemodel .*python -m dsd_zoo\.convert FILE --model NAME "
        "--install",
    ):
        dsd_zoo.get_model("squeezenet_dsd", weights=caffemodel)
    page = tmp_path / "w.safetensors"
    page.write_bytes(b"<html><head><title>Sign in</title></head></html>")
    with pytest.raises(FormatError, match="is a web page"):
        dsd_zoo.get_model("squeezenet_dsd", weights=page)
    with pytest.raises(FormatError, match=r"\.net\) must be converted first"):  # a .net has no magic
        dsd_zoo.get_model("squeezenet_sparse", weights=require(NET))


def test_the_convert_cli_names_the_mix_up(tmp_path, capsys, isolated_cache):
    pytest.importorskip("google.protobuf", reason="the Caffe reader needs protobuf (pip install 'dsd-zoo[convert]')")
    net = require(NET)
    assert convert([str(net), "--model", "squeezenet_dsd", "-o", str(tmp_path / "o.safetensors")]) == 2
    assert (
        "is a Deep Compression .net file, but squeezenet_dsd's original is a Caffe .caffemodel (protobuf "
        "NetParameter); convert it as --model squeezenet_sparse"
    ) in capsys.readouterr().err
    caffemodel = write_caffemodel(tmp_path / "m.caffemodel", {"conv1": [np.zeros((2, 1, 1, 1), np.float32)]})
    assert convert([str(caffemodel), "--model", "resnet50_fb", "-o", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "is a Caffe .caffemodel" in err and "resnet50_fb's original is a Lua Torch7 .t7 file" in err
    assert "--model alexnet_caffe" in err
    assert convert([str(caffemodel), "--model", "digits_dsd", "-o", str(tmp_path / "o.safetensors")]) == 2
    assert "digits_dsd has no original release to convert: its weights ship with dsd-zoo" in capsys.readouterr().err
