"""verify's engine: exact top-1/top-5 counts of models whose answers are known, one pass for many pipelines."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsd_zoo.errors import DSDZooError
from dsd_zoo.transforms import CaffeTransform, FbResNetTransform
from dsd_zoo.verify.datasets import scan_imagenet
from dsd_zoo.verify.engine import (
    EvalTarget,
    ModelCounts,
    default_workers,
    describe_pipeline,
    evaluate,
    group_by_pipeline,
    label_rank,
    load_target,
)

from .test_verify_datasets import (
    FILLER_LOGITS,
    N_READABLE,
    N_TOP1,
    N_TOP5,
    N_UNREADABLE,
    SAMPLES,
    WNIDS,
    ColourModel,
    make_imagefolder,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def colour_squeezenet_file(path: Path) -> Path:
    """SqueezeNet v1.0 weights that make it a ColourModel: a real architecture with known answers.

    conv1 copies each input channel (centre tap), every fire module passes channels 0..2 through
    squeeze1x1 and expand1x1 (expand3x3 is zero), and the final conv maps channel c to class c;
    the final biases of classes 3..7 are FILLER_LOGITS and all others -1 (0 after the ReLU). The
    logits are then relu(normalised colour) averaged with the padded border (a positive factor),
    so red -> 0, green -> 1, blue -> 2, white -> 2, 1, 0 as for ColourModel.
    """
    from safetensors.torch import save_file

    from dsd_zoo.models import ARCHITECTURES

    model = ARCHITECTURES["squeezenet1_0"].build()
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    for c in range(3):
        state["features.0.weight"][c, c, 3, 3] = 1.0
    for key in state:
        if key.endswith(("squeeze.weight", "expand1x1.weight")):
            for c in range(3):
                state[key][c, c, 0, 0] = 1.0
    for c in range(3):
        state["classifier.1.weight"][c, c, 0, 0] = 1.0
    state["classifier.1.bias"].fill_(-1.0)
    state["classifier.1.bias"][:3] = 0.0
    state["classifier.1.bias"][3:8] = torch.tensor(FILLER_LOGITS)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _targets():
    caffe_mean = [104.0, 117.0, 123.0]
    return [
        EvalTarget("caffe227_a", ColourModel(), CaffeTransform(227, mean_bgr=caffe_mean)),
        EvalTarget("fb224", ColourModel(), FbResNetTransform()),
        EvalTarget("caffe224", ColourModel(), CaffeTransform(224, mean_bgr=[103.939, 116.779, 123.68])),
        EvalTarget("caffe227_b", ColourModel(), CaffeTransform(227, mean_bgr=caffe_mean)),
    ]


@pytest.fixture(scope="module")
def val_samples(tmp_path_factory):
    return scan_imagenet(make_imagefolder(tmp_path_factory.mktemp("val")), WNIDS)


def test_grouping_by_pipeline():
    groups = group_by_pipeline(_targets())
    assert [[t.name for t in g] for g in groups.values()] == [["caffe227_a", "caffe227_b"], ["fb224"], ["caffe224"]]
    assert [describe_pipeline(k) for k in groups] == ["caffe 256x256->227", "fb_resnet 256->224", "caffe 256x256->224"]


def test_exact_counts_for_every_pipeline(val_samples):
    result = evaluate(_targets(), val_samples, batch_size=4, workers=0, progress=False)
    # SAMPLES: 13 files, of which 3 unreadable; 6 top-1 and 8 top-5 hits for every model.
    expected = ModelCounts(images=len(SAMPLES), top1_correct=N_TOP1, top5_correct=N_TOP5)
    assert (len(SAMPLES), N_TOP1, N_TOP5, N_UNREADABLE) == (13, 6, 8, 3)
    assert result.counts == {name: expected for name in ("caffe227_a", "caffe227_b", "fb224", "caffe224")}
    assert result.counts["fb224"].top1_err == pytest.approx(100 * 7 / 13)
    assert result.counts["fb224"].top5_err == pytest.approx(100 * 5 / 13)
    assert [f for f, _ in result.unreadable] == sorted(
        [f"{WNIDS[0]}/empty.JPEG", f"{WNIDS[1]}/truncated.JPEG", f"{WNIDS[2]}/notes.txt"]
    )
    assert result.evaluated == 13 and result.world_size == 1 and result.bad_images == "count"
    assert result.pipelines == {
        "caffe 256x256->227": ["caffe227_a", "caffe227_b"],
        "fb_resnet 256->224": ["fb224"],
        "caffe 256x256->224": ["caffe224"],
    }


def test_skip_leaves_unreadable_images_out_of_the_denominator(val_samples):
    result = evaluate(_targets()[:1], val_samples, batch_size=16, workers=0, bad_images="skip", progress=False)
    assert result.counts["caffe227_a"] == ModelCounts(N_READABLE, N_TOP1, N_TOP5)  # 10, 6, 8
    assert result.counts["caffe227_a"].top1_err == pytest.approx(40.0)
    assert len(result.unreadable) == N_UNREADABLE


def test_workers_layout_and_bf16_give_the_same_counts(val_samples):
    # One worker process, contiguous tensors, bf16 autocast: the margins of ColourModel are wide,
    # so every variant must reproduce the exact counts.
    result = evaluate(
        _targets()[1:2], val_samples, batch_size=5, workers=1, channels_last=False, fast=True, progress=False
    )
    assert result.counts["fb224"] == ModelCounts(13, N_TOP1, N_TOP5)
    assert result.fast and not result.channels_last and result.workers == 1


def test_a_real_architecture_with_known_answers(tmp_path, val_samples):
    path = colour_squeezenet_file(tmp_path / "colour.safetensors")
    target = load_target("squeezenet_sparse", path)
    result = evaluate([target], val_samples, batch_size=8, workers=0, progress=False)
    assert result.counts["squeezenet_sparse"] == ModelCounts(13, N_TOP1, N_TOP5)


class ConstantModel(torch.nn.Module):
    """The same logit for every class: a broken model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 1000)


def test_a_constant_output_ranks_the_classes_by_index(val_samples):
    # All 1000 logits tie, so the higher class index ranks first (classes 999..995 are the top 5).
    # torch.topk happens to return classes 0..4 for such a row here: a topk-based count would
    # credit the 10 readable images of classes 0, 1, 2 and 4 with a top-5 hit.
    target = EvalTarget("constant", ConstantModel(), CaffeTransform(227, mean_bgr=[104.0, 117.0, 123.0]))
    result = evaluate([target], val_samples, batch_size=8, workers=0, progress=False)
    assert result.counts["constant"] == ModelCounts(len(SAMPLES), 0, 0)


def test_label_rank_orders_ties_by_class_index_and_nan_first():
    nan = float("nan")
    logits = torch.tensor(
        [
            [5.0, 4.0, 1.0, 3.0, 2.0, 1.0, 0.0, 0.0],  # class 2 ties class 5, which ranks first: rank 5
            [5.0, 4.0, 1.0, 3.0, 2.0, 1.0, 0.0, 0.0],  # ... and class 5 ranks 4th (0-based)
            [0.0] * 8,  # all tied: class 6 is behind class 7 only
            [nan, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # NaN true logit: rank = number of classes
            [1.0, nan, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0],  # a NaN elsewhere ranks above the true class
            [0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0],  # a clear winner: rank 0
        ]
    )
    assert label_rank(logits, torch.tensor([2, 5, 6, 0, 0, 3])).tolist() == [5, 4, 1, 8, 1, 0]


def test_bad_arguments(val_samples):
    with pytest.raises(ValueError, match="no models"):
        evaluate([], val_samples)
    with pytest.raises(ValueError, match="unique"):
        evaluate(_targets()[:1] * 2, val_samples)
    with pytest.raises(ValueError, match="bad_images"):
        evaluate(_targets()[:1], val_samples, bad_images="drop")
    from dsd_zoo.transforms import DigitsTransform

    digits = EvalTarget("digits", ColourModel(), DigitsTransform())
    with pytest.raises(ValueError, match=r"decode_on_device needs JPEG pipelines .*\['digits 8'\]"):
        evaluate([digits], val_samples, decode_on_device=True)


def test_default_workers(monkeypatch):
    monkeypatch.setattr("dsd_zoo.verify.engine._cpus", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers(torch.device("cuda")) == 15 and default_workers(torch.device("cpu")) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 2 cores per rank
    assert default_workers(torch.device("cuda")) == 1 and default_workers(torch.device("cpu")) == 1


@pytest.fixture
def fresh_dynamo():
    """torch.compile's per-process caches emptied before and after, so tests do not see each other's graphs."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compiled_models_give_the_same_counts(val_samples, fresh_dynamo):
    # 13 images in batches of 4: the last batch (1 image) is padded to 4 for the compiled graph,
    # and the padding's rows must not be counted.
    from torch._dynamo.utils import counters

    graphs_before = counters["stats"]["unique_graphs"]  # the counters outlive torch._dynamo.reset()
    targets = _targets()[:2]
    result = evaluate(targets, val_samples, batch_size=4, workers=0, compile_models=True, progress=False)
    assert result.compiled == ["caffe227_a", "fb224"]
    assert result.counts == {name: ModelCounts(len(SAMPLES), N_TOP1, N_TOP5) for name in result.compiled}
    assert result.extra["compile_seconds"] > 0
    # One graph per input shape (227 and 224 crops): the short last batch compiled nothing new.
    assert counters["stats"]["unique_graphs"] - graphs_before == 2


def test_by_default_only_long_cpu_runs_compile(val_samples, fresh_dynamo, monkeypatch):
    assert not evaluate(_targets()[:1], val_samples, batch_size=8, workers=0, progress=False).compiled
    assert not evaluate(
        _targets()[:1], val_samples, batch_size=8, workers=0, compile_models=False, progress=False
    ).compiled
    monkeypatch.setattr("dsd_zoo.verify.engine.COMPILE_MIN_IMAGES", len(SAMPLES))
    result = evaluate(_targets()[:1], val_samples, batch_size=8, workers=0, progress=False)
    assert result.compiled == ["caffe227_a"] and result.counts["caffe227_a"] == ModelCounts(13, N_TOP1, N_TOP5)


@pytest.fixture
def broken_compiler(fresh_dynamo):
    """Inductor pointed at a C++ compiler that does not exist, with its caches off: compiling really fails.

    ``config.patch`` is inductor's own way to change settings for a while; pytest's monkeypatch
    cannot undo an attribute of torch's config proxies reliably (pytest 9.2 deletes the setting).
    """
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",), "force_disable_caches": True}):
        yield


def test_a_failed_compilation_falls_back_to_eager_by_default(val_samples, broken_compiler, monkeypatch):
    monkeypatch.setattr("dsd_zoo.verify.engine.COMPILE_MIN_IMAGES", 1)
    with pytest.warns(RuntimeWarning, match=r"could not compile caffe227_a \(.*C\+\+ compiler.*evaluating it eagerly"):
        result = evaluate(_targets()[:1], val_samples, batch_size=4, workers=0, progress=False)
    assert result.compiled == [] and result.counts["caffe227_a"] == ModelCounts(13, N_TOP1, N_TOP5)


def test_a_failed_compilation_is_an_error_when_asked_for(val_samples, broken_compiler):
    with pytest.raises(DSDZooError, match=r"could not compile caffe227_a .*C\+\+ compiler.*without --compile"):
        evaluate(_targets()[:1], val_samples, batch_size=4, workers=0, compile_models=True, progress=False)


class ColourModelWithHeads(ColourModel):
    """ColourModel with two auxiliary heads: loss1 answers nothing (all logits tie), loss2 as the main head."""

    def aux_outputs(self, x: torch.Tensor):
        main = self(x)
        return main, torch.zeros_like(main), main.clone()


@pytest.mark.parametrize("engine", ["torch", "compile", "onnxruntime"])
def test_auxiliary_heads_are_counted_as_their_own_rows(val_samples, fresh_dynamo, engine):
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'dsd-zoo[onnx]'")
    target = EvalTarget("net", ColourModelWithHeads(), FbResNetTransform(), heads=("loss1", "loss2"))
    result = evaluate([target], val_samples, batch_size=4, workers=0, engine=engine, progress=False)
    assert result.engines == {"net": engine}
    assert list(result.counts) == ["net", "net/loss1", "net/loss2"] == target.outputs
    # loss1's tied logits rank classes 999..995 first: no hit (the labels are 0..4).
    assert result.counts["net/loss1"] == ModelCounts(13, 0, 0)
    assert result.counts["net"] == result.counts["net/loss2"] == ModelCounts(13, N_TOP1, N_TOP5)


def _googlenet_file(path: Path, with_heads: bool) -> Path:
    from safetensors.torch import save_file

    from dsd_zoo.models import ARCHITECTURES

    model = ARCHITECTURES["googlenet"].build(aux_logits=with_heads)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_load_target_evaluates_the_logged_heads_when_the_file_has_them(tmp_path):
    # googlenet_dsd's manifest entry records its accuracy log's loss1/loss2 errors.
    with_heads = load_target("googlenet_dsd", _googlenet_file(tmp_path / "heads.safetensors", True))
    assert with_heads.heads == ("loss1", "loss2") and with_heads.model.aux1 is not None
    without = load_target("googlenet_dsd", _googlenet_file(tmp_path / "plain.safetensors", False))
    assert without.heads == () and without.model.aux1 is None
    # The baseline has no logged head errors: its heads are not evaluated even when present.
    assert load_target("googlenet_caffe", tmp_path / "heads.safetensors").heads == ()
    x = torch.randn(2, 3, 224, 224)
    main, loss1, loss2 = with_heads.model.eval().aux_outputs(x)
    assert torch.equal(main, with_heads.model(x)) and loss1.shape == loss2.shape == (2, 1000)
