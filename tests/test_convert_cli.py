"""``python -m dsd_zoo.convert``: the real Deep Compression SqueezeNet, metadata, refusals, atomicity."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dsd_zoo.convert.__main__ import main
from dsd_zoo.convert.mapping import CONVERTER_VERSION
from dsd_zoo.loading import load_tensors, read_header
from dsd_zoo.models import ARCHITECTURES

from .conftest import FIXTURES, REPO_ROOT, require
from .formats.caffe_writer import write_caffemodel
from .test_convert_mapping import SQUEEZENET_DSD, caffe_blobs

NET = FIXTURES / "squeezenet-deep-compression" / "compressed_SqueezeNet.net"
MEAN = FIXTURES / "caffe-mean" / "ilsvrc_2012_mean.npy"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    """The real compressed_SqueezeNet.net converted by the CLI: (output path, stdout)."""
    out = tmp_path_factory.mktemp("sparse") / "squeezenet_sparse.safetensors"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main([str(require(NET)), "--model", "squeezenet_sparse", "-o", str(out)]) == 0
    return out, stdout.getvalue()


@pytest.mark.fixtures
def test_real_net_converts_with_provenance(sparse):
    out, printed = sparse
    assert f"sha256  {sha256(out)}" in printed and f"size    {out.stat().st_size} bytes" in printed
    _, metadata = read_header(out)
    assert metadata["model"] == "squeezenet_sparse" and metadata["arch"] == "squeezenet1_0"
    assert metadata["source_file"] == "compressed_SqueezeNet.net" and metadata["source_format"] == "deep-compression"
    assert metadata["source_sha256"] == sha256(NET)
    assert metadata["converter_version"] == CONVERTER_VERSION
    assert json.loads(metadata["conversion_options"])["bgr_to_rgb"] is True
    # The file is what git published: its git blob sha1 is the manifest's digest.
    raw = NET.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest() == "b28ec20a342c1f0dd7f0c148be60df1192ff8036"


@pytest.mark.fixtures
def test_real_net_is_about_one_third_dense(sparse):
    tensors, _ = load_tensors(sparse[0])
    weights = [t for k, t in tensors.items() if k.endswith(".weight")]
    density = sum(int(t.count_nonzero()) for t in weights) / sum(t.numel() for t in weights)
    # "pruned to about 33% density": ../shared/fixtures/README.md.
    assert 0.30 < density < 0.36


@pytest.mark.fixtures
def test_real_net_classifies_the_space_shuttle(sparse):
    from PIL import Image

    import dsd_zoo

    image = Image.open(require(FIXTURES / "images" / "space_shuttle.jpg")).convert("RGB")
    model = dsd_zoo.get_model("squeezenet_sparse", weights=sparse[0])
    x = dsd_zoo.get_weights("squeezenet_sparse").transforms()(image)
    with torch.no_grad():
        probabilities = model(x[None]).softmax(1)[0]
    # Class 812 "space shuttle" with p > 0.9: issue 4 (an independent implementation gives 0.995-0.997).
    assert int(probabilities.argmax()) == 812 and float(probabilities[812]) > 0.9


def _squeezenet_caffemodel(tmp_path: Path, **edits) -> Path:
    blobs = caffe_blobs(ARCHITECTURES["squeezenet1_0"].build(), SQUEEZENET_DSD)
    blobs.update(edits)
    return write_caffemodel(tmp_path / "squeezenet.caffemodel", blobs)


def test_shape_mismatch_is_refused_naming_the_layer(tmp_path, capsys):
    bad = [np.zeros((64, 32, 1, 1), np.float32), np.zeros(64, np.float32)]
    src = _squeezenet_caffemodel(tmp_path, **{"fire2/conv1x1_2": bad})
    out = tmp_path / "s.safetensors"
    assert main([str(src), "--model", "squeezenet_dsd", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "layer 'fire2/conv1x1_2'" in err and "(64, 32, 1, 1)" in err and "(64, 16, 1, 1)" in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["squeezenet.caffemodel"]  # nothing half-written


def test_existing_output_needs_force(tmp_path, capsys):
    src = _squeezenet_caffemodel(tmp_path)
    out = tmp_path / "s.safetensors"
    out.write_bytes(b"keep me")
    assert main([str(src), "--model", "squeezenet_dsd", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main([str(src), "--model", "squeezenet_dsd", "-o", str(out), "--force"]) == 0
    assert read_header(out)[1]["model"] == "squeezenet_dsd"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors", "squeezenet.caffemodel"]  # no temp files


@pytest.mark.slow
def test_an_alexnet_converts_with_nothing_else(tmp_path):
    pytest.importorskip("google.protobuf", reason="the Caffe reader needs protobuf (pip install 'dsd-zoo[convert]')")
    from .test_convert_mapping import ALEXNET

    # The mean image its preprocessing subtracts ships with dsd-zoo; the weight file holds weights only.
    arch = ARCHITECTURES["alexnet"].build()
    src = write_caffemodel(tmp_path / "alexnet.caffemodel", caffe_blobs(arch, ALEXNET))
    out = tmp_path / "a.safetensors"
    assert main([str(src), "--model", "alexnet_dsd", "-o", str(out)]) == 0
    tensors, metadata = load_tensors(out)
    assert sorted(tensors) == sorted(arch.state_dict()) and metadata["converter_version"] == CONVERTER_VERSION


def test_a_caffemodel_of_another_network_names_its_layers(tmp_path, capsys):
    pytest.importorskip("google.protobuf", reason="the Caffe reader needs protobuf (pip install 'dsd-zoo[convert]')")
    src = _squeezenet_caffemodel(tmp_path)
    assert main([str(src), "--model", "alexnet_dsd", "-o", str(tmp_path / "a.safetensors")]) == 2
    assert "conv1" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    for text in (
        "--model NAME",
        "-o OUT.safetensors",
        "--force",
        "--install",
        "examples:",
        "python -m dsd_zoo.convert compressed_SqueezeNet.net --model squeezenet_sparse",
    ):
        assert text in printed


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits (RLIMIT_FSIZE)")
def test_failed_write_leaves_nothing_behind(tmp_path, capsys):
    import resource

    src = _squeezenet_caffemodel(tmp_path)
    out = tmp_path / "s.safetensors"
    out.write_bytes(b"previous version")
    # A real write failure: a 1 MB file-size limit makes the 5 MB output fail with EFBIG.
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10**6, hard))
    try:
        code = main([str(src), "--model", "squeezenet_dsd", "-o", str(out), "--force"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert code == 1 and "File too large" in capsys.readouterr().err
    assert out.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors", "squeezenet.caffemodel"]


def test_conversion_is_reproducible(tmp_path):
    # Same source, same bytes: resolve.py checks local conversions against the published sha256.
    src = _squeezenet_caffemodel(tmp_path)
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert main([str(src), "--model", "squeezenet_dsd", "-o", str(first)]) == 0
    assert main([str(src), "--model", "squeezenet_dsd", "-o", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()


def test_cli_process_exits_2_without_traceback(tmp_path):
    # Through a real interpreter: `python -m dsd_zoo.convert` is wired and prints one error line.
    bad = tmp_path / "bad.t7"
    bad.write_bytes(b"\x2a\x00\x00\x00")  # type tag 42: no Torch7 object
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsd_zoo.convert",
            str(bad),
            "--model",
            "resnet18_dsd",
            "-o",
            str(tmp_path / "o.safetensors"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 2 and failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr
    assert failed.stdout == "" and not (tmp_path / "o.safetensors").exists()


def test_output_paths_that_cannot_be_written_as_given(tmp_path, capsys):
    src = _squeezenet_caffemodel(tmp_path)
    dangling = tmp_path / "link.safetensors"
    dangling.symlink_to(tmp_path / "nowhere")  # a link to nothing is still something to replace
    assert main([str(src), "--model", "squeezenet_dsd", "-o", str(dangling)]) == 2
    assert "exists; pass force=True (CLI: --force)" in capsys.readouterr().err and dangling.is_symlink()
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert main([str(src), "--model", "squeezenet_dsd", "-o", str(plain / "s.safetensors")]) == 2
    assert f"{plain} is a file, not a directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "how, status, message", [("SIGINT", 130, "interrupted: nothing was written"), ("SIGTERM", 143, "")]
)
def test_an_interrupted_or_killed_conversion_leaves_no_part_file(tmp_path, how, status, message):
    # The signal arrives while the output's part file is complete but not yet renamed into place.
    src = _squeezenet_caffemodel(tmp_path)
    out = tmp_path / "s.safetensors"
    code = f"""
import os, signal, sys
import dsd_zoo.atomic as atomic
from dsd_zoo.convert.__main__ import main

def publish(part, final):
    os.kill(os.getpid(), signal.{how})
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [])  # let the handler run here, mid-write
    raise AssertionError("the signal did not stop the conversion")

atomic.publish = publish
sys.exit(main([{str(src)!r}, "--model", "squeezenet_dsd", "-o", {str(out)!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == status, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["squeezenet.caffemodel"]
