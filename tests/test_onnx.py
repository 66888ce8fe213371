"""ONNX export and the onnxruntime engine: the same logits as PyTorch for every ImageNet model, cached, with fallback.

Every architecture is exported once per session (random weights, seeded: agreement does not depend
on the values) through the one export, :func:`dsd_zoo.export.onnx_export.export_checked`; each of
the 13 ImageNet models then runs its own preprocessing on the fixture photos through its
architecture's graph. The tolerance is :data:`~dsd_zoo.export.onnx_export.CHECK_RTOL` (1e-4 of the
largest logit; float32 summation order gives at most 7e-7 here, a wrongly exported layer percents).
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'dsd-zoo[onnx]'")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed: pip install 'dsd-zoo[onnx]'")

from dsd_zoo.digests import hash_file  # noqa: E402
from dsd_zoo.export.__main__ import main as export_main  # noqa: E402
from dsd_zoo.export.onnx_export import (
    CHECK_RTOL,
    ExportError,
    OnnxModule,
    cache_path,  # noqa: E402
    export_checked,
)
from dsd_zoo.fingerprint import check_fingerprint, compute_fingerprint, probe_for, probe_input  # noqa: E402
from dsd_zoo.manifest import load_manifest  # noqa: E402
from dsd_zoo.models import ARCHITECTURES  # noqa: E402
from dsd_zoo.pipelines import IMAGENET_PIPELINES  # noqa: E402
from dsd_zoo.verify.engine import _WithHeads, choose_engines, evaluate, load_target  # noqa: E402

from .conftest import FIXTURES  # noqa: E402
from .test_verify_datasets import N_TOP1, N_TOP5, SAMPLES, WNIDS, make_imagefolder  # noqa: E402
from .test_verify_engine import colour_squeezenet_file  # noqa: E402

IMAGENET_MODELS = [
    name for name, entry in load_manifest().models.items() if entry.transforms.get("pipeline") in IMAGENET_PIPELINES
]
PHOTOS = ("cat.jpg", "fish-bike.jpg", "space_shuttle.jpg")


class _Graphs:
    """Each architecture built once with seeded random weights and exported once (GoogLeNet with its heads)."""

    def __init__(self) -> None:
        self.built: dict = {}

    def __call__(self, arch: str):
        if arch not in self.built:
            spec = ARCHITECTURES[arch]
            torch.manual_seed(0)
            heads = spec.heads
            model = spec.build(**(spec.heads_build_kwargs if heads else {})).eval()
            module = _WithHeads(model) if heads else model
            data, difference = export_checked(
                module, name=arch, probe=probe_for(arch), output_names=["logits", *heads], progress=False
            )
            assert difference <= CHECK_RTOL
            self.built[arch] = (module, OnnxModule(data))
        return self.built[arch]


@pytest.fixture(scope="session")
def graphs():
    return _Graphs()


def _outputs(output) -> tuple:
    return (output,) if isinstance(output, torch.Tensor) else tuple(output)


def _assert_agree(module, graph, batch) -> None:
    with torch.inference_mode():
        expected, got = _outputs(module(batch)), _outputs(graph(batch))
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        scale = float(theirs.abs().max())
        assert float((mine - theirs).abs().max()) <= CHECK_RTOL * scale
        assert torch.equal(mine.topk(5).indices, theirs.topk(5).indices)


def _groups() -> dict:
    """The 13 ImageNet models grouped by (architecture, preprocessing): one graph and one input batch per group."""
    groups: dict = {}
    for name in IMAGENET_MODELS:
        entry = load_manifest().models[name]
        groups.setdefault((entry.arch, json.dumps(dict(entry.transforms), sort_keys=True)), []).append(name)
    return groups


GROUPS = _groups()


def test_the_groups_cover_the_13_imagenet_models():
    assert sorted(name for names in GROUPS.values() for name in names) == sorted(IMAGENET_MODELS)
    assert len(IMAGENET_MODELS) == 13


@pytest.mark.parametrize("names", list(GROUPS.values()), ids=["+".join(names) for names in GROUPS.values()])
def test_onnxruntime_gives_pytorchs_logits_for_every_imagenet_model(names, graphs):
    """Models of one architecture and preprocessing differ only in their weights, which do not matter here."""
    from PIL import Image

    from dsd_zoo.api import get_weights

    entry = load_manifest().models[names[0]]
    module, graph = graphs(entry.arch)
    # The logit fingerprint check passes with either engine.
    check_fingerprint(graph, compute_fingerprint(module, entry))
    batch = probe_input(probe_for(entry))
    photos = [FIXTURES / "images" / photo for photo in PHOTOS]
    if all(photo.exists() for photo in photos):
        transform = get_weights(names[0]).transforms()
        batch = torch.cat([batch, torch.stack([transform(Image.open(photo).convert("RGB")) for photo in photos])])
    # A batch of 5 (probe + photos) through a graph exported with a batch of 2: the batch is dynamic.
    _assert_agree(module, graph, batch)
    if batch.shape[0] == 2:
        pytest.skip(
            f"the fixture photos are absent from {FIXTURES / 'images'} (set DSD_ZOO_SHARED to the folder "
            "that holds fixtures/); only the fingerprint probe was compared"
        )


def test_a_graph_that_computes_something_else_fails_the_check(monkeypatch):
    model = ARCHITECTURES["squeezenet1_0"].build().eval()
    real = OnnxModule.forward
    monkeypatch.setattr(OnnxModule, "forward", lambda self, x: real(self, x) * 1.01)
    with pytest.raises(ExportError, match="differs from PyTorch's on the fingerprint probe .*allowed 0.0001"):
        export_checked(model, name="sq", probe=probe_for("squeezenet1_0"), progress=False)


def test_choosing_engines(tmp_path):
    from dsd_zoo.errors import DSDZooError
    from dsd_zoo.verify.engine import EvalTarget

    from .test_verify_datasets import ColourModel

    loaded = EvalTarget("f", ColourModel(), None, arch="squeezenet1_0", weights_path=tmp_path / "f.safetensors")
    memory = EvalTarget("m", ColourModel(), None)
    cpu = torch.device("cpu")
    # On a CPU a model from a weight file runs on onnxruntime (installed here); one built in memory as before.
    assert choose_engines([loaded, memory], cpu, 10) == ({"f": "onnxruntime", "m": "torch"}, False)
    assert choose_engines([loaded, memory], cpu, 10**6)[0]["m"] == "compile"
    assert choose_engines([loaded], cpu, 10, compile_models=False) == ({"f": "torch"}, False)
    assert choose_engines([loaded], cpu, 10, engine="compile") == ({"f": "compile"}, True)
    assert choose_engines([loaded], torch.device("cuda"), 10) == ({"f": "torch"}, False)
    with pytest.raises(DSDZooError, match="runs on the CPU"):
        choose_engines([loaded], torch.device("cuda"), 10, engine="onnxruntime")
    with pytest.raises(ValueError, match="contradicts"):
        choose_engines([loaded], cpu, 10, engine="onnxruntime", compile_models=True)


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    """(the colour SqueezeNet's weight file, the generated ImageFolder samples): a real model with known answers."""
    from dsd_zoo.verify.datasets import scan_imagenet

    folder = tmp_path_factory.mktemp("onnx")
    return colour_squeezenet_file(folder / "colour.safetensors"), scan_imagenet(make_imagefolder(folder / "val"), WNIDS)


def _run(weights, samples, **options):
    target = load_target("squeezenet_sparse", weights)
    return evaluate([target], samples, batch_size=4, workers=0, progress=False, **options)


def test_the_export_is_cached_under_the_weights_sha256_and_reused(colour, isolated_cache, monkeypatch):
    import dsd_zoo.export.onnx_export as onnx_export

    weights, samples = colour
    exact = (len(SAMPLES), N_TOP1, N_TOP5)
    first = _run(weights, samples)
    assert first.engines == {"squeezenet_sparse": "onnxruntime"}
    counts = first.counts["squeezenet_sparse"]
    assert (counts.images, counts.top1_correct, counts.top5_correct) == exact
    cached = cache_path("squeezenet1_0", hash_file(weights)["sha256"])
    assert cached.is_file() and cached.parent.parent == isolated_cache
    metadata = OnnxModule(cached).metadata
    assert metadata["dsd_zoo.weights_sha256"] == hash_file(weights)["sha256"]
    assert metadata["dsd_zoo.model"] == "squeezenet_sparse"

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds the graph")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_export, "export_checked", no_export)
        second = _run(weights, samples)
    assert second.engines == first.engines and second.counts == first.counts
    assert second.extra["export_seconds"] < first.extra["export_seconds"]
    # A modified cache file is not trusted: it is removed (with a warning) and exported again.
    cached.write_bytes(cached.read_bytes()[:-10])
    with pytest.warns(RuntimeWarning, match="corrupt or was modified"):
        third = _run(weights, samples)
    assert third.engines == first.engines and third.counts == first.counts
    OnnxModule(cached)  # a whole graph again


def test_a_failed_export_falls_back_to_torch_with_a_warning(colour, isolated_cache, monkeypatch):
    weights, samples = colour

    def broken(*args, **kwargs):
        raise RuntimeError("no exporter today")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.warns(
        RuntimeWarning,
        match=r"ONNX Runtime cannot evaluate squeezenet_sparse \(ExportError: "
        r"torch.onnx.export could not export squeezenet_sparse: RuntimeError: no "
        r"exporter today\); evaluating it with eager PyTorch",
    ):
        result = _run(weights, samples)
    assert result.engines == {"squeezenet_sparse": "torch"}
    counts = result.counts["squeezenet_sparse"]
    assert (counts.images, counts.top1_correct, counts.top5_correct) == (len(SAMPLES), N_TOP1, N_TOP5)
    assert not list(isolated_cache.rglob("*.onnx"))


def test_verify_cli_names_its_engine(colour, isolated_cache, tmp_path, capsys):
    from dsd_zoo.verify.__main__ import main

    weights, samples = colour
    base = [
        "squeezenet_sparse",
        "--weights",
        f"squeezenet_sparse={weights}",
        "--imagenet",
        str(samples.root),
        "--workers",
        "0",
        "--no-progress",
        "--device",
        "cpu",
    ]
    reports = {}
    for engine in ("onnxruntime", "torch"):
        out = tmp_path / f"{engine}.json"
        assert main(base + ["--engine", engine, "--json", str(out)]) == 3  # 3: the folder's unreadable images
        reports[engine] = json.loads(out.read_text())
        assert reports[engine]["run"]["engines"] == {"squeezenet_sparse": engine}
    assert reports["onnxruntime"]["models"] == reports["torch"]["models"]
    assert any(note.startswith("ONNX Runtime: squeezenet_sparse ran") for note in reports["onnxruntime"]["notes"])
    assert "eager PyTorch: squeezenet_sparse." in reports["torch"]["notes"]
    capsys.readouterr()
    assert main(base + ["--engine", "torch", "--compile"]) == 2
    assert "give --engine alone" in capsys.readouterr().err


def test_export_cli_writes_a_checked_file_with_its_metadata(tmp_path, capsys):
    weights = tmp_path / "random.safetensors"
    from safetensors.torch import save_file

    torch.manual_seed(1)
    save_file({k: v.contiguous() for k, v in ARCHITECTURES["squeezenet1_0"].build().state_dict().items()}, str(weights))
    out = tmp_path / "sq.onnx"
    assert export_main(["squeezenet_sparse", "--weights", str(weights), "-o", str(out), "--quiet"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    graph = OnnxModule(out)
    metadata = graph.metadata
    assert metadata["dsd_zoo.model"] == "squeezenet_sparse" and metadata["dsd_zoo.arch"] == "squeezenet1_0"
    assert metadata["dsd_zoo.weights_sha256"] == hash_file(weights)["sha256"]
    assert json.loads(metadata["dsd_zoo.preprocessing"]) == dict(load_manifest().models["squeezenet_sparse"].transforms)
    assert metadata["dsd_zoo.probe"] == probe_for("squeezenet_sparse")
    assert float(metadata["dsd_zoo.check_rel_diff"]) <= CHECK_RTOL
    for batch in (1, 5):  # the batch dimension is dynamic
        assert graph(torch.zeros(batch, 3, 227, 227)).shape == (batch, 1000)
    # An existing file is kept without --force; an unknown model names the CLI that lists them.
    assert export_main(["squeezenet_sparse", "--weights", str(weights), "-o", str(out)]) == 2
    assert "add --force" in capsys.readouterr().err
    assert export_main(["squeezenet_spars", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "did you mean squeezenet_sparse" in capsys.readouterr().err


def test_export_cli_writes_nothing_when_the_check_fails(tmp_path, capsys, monkeypatch):
    weights = colour_squeezenet_file(tmp_path / "colour.safetensors")
    real = OnnxModule.forward
    monkeypatch.setattr(OnnxModule, "forward", lambda self, x: real(self, x) + 1.0)
    out = tmp_path / "out" / "sq.onnx"
    out.parent.mkdir()
    assert export_main(["squeezenet_sparse", "--weights", str(weights), "-o", str(out), "--quiet"]) == 1
    assert "differs from PyTorch's" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []


def test_export_cli_help():
    from dsd_zoo.export.__main__ import build_parser

    text = build_parser().format_help()
    for words in (
        "dynamic batch",
        "metadata",
        "dsd_zoo.weights_sha256",
        "atomically",
        "pip install 'dsd-zoo[onnx]'",
        "python -m dsd_zoo.export resnet50_dsd -o resnet50_dsd.onnx",
    ):
        assert words in text


def test_a_path_that_is_no_weight_file(tmp_path, capsys):
    assert export_main(["squeezenet_sparse", "--weights", str(tmp_path / "none"), "-o", str(tmp_path / "a.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists()


def test_probe_shape_for_every_architecture_is_what_the_graph_takes(graphs):
    # digits_net is no ImageNet model, but the export takes it all the same (1 channel, 8x8).
    module, graph = graphs("digits_net")
    _assert_agree(module, graph, probe_input(probe_for("digits_net")))
