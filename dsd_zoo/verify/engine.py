"""The evaluation engine: many models, one pass over the images, exact integer counts.

Models are grouped by the ``pipeline_key`` of their transform (the 13 ImageNet models need 3:
Caffe 256x256 -> 227, Caffe 256x256 -> 224 and fb.resnet.torch 256 -> 224). DataLoader
workers decode each image once and resample it once per pipeline; the main process applies
each model's cheap ``normalize`` to the batch and runs the model under
``torch.inference_mode``. Top-1 and top-5 hits (:func:`label_rank`: equal logits in a fixed
order, as Caffe ranked them) are summed as integers on the device and read back once at the end.

Each model runs on one of three engines (:data:`ENGINES`): ``torch`` (eager PyTorch),
``compile`` (``torch.compile``: inductor fuses BatchNorm and ReLU into oneDNN convolutions) or
``onnxruntime`` (the model exported once to ONNX by :mod:`dsd_zoo.export`, cached under its
weight file's sha256, and run by ONNX Runtime's CPU provider: 1.1-1.8x eager here,
docs/benchmarks.md). All three compute the same float32 functions up to float rounding. On a
CPU, a model loaded from a weight file runs on onnxruntime when it is installed; otherwise runs
long enough to repay the compilation (``COMPILE_MIN_IMAGES`` per rank) compile, shorter ones
run eagerly. An engine that fails for a model falls back to eager with a warning naming the cause.

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment) every rank evaluates the
images whose index is congruent to its rank modulo the world size (each image exactly once, no
padding duplicates as ``DistributedSampler`` would add), then the counts are all-reduced, so the
totals equal a single-process run exactly. The backend is gloo on CPU and NCCL on CUDA.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .._process_group import all_gather_json, rank_and_world
from ..errors import DSDZooError
from ..pipelines import IMAGENET_PIPELINES
from ..ranking import label_rank
from ..transforms import EvalTransform
from . import COMPILE_MIN_IMAGES
from .datasets import MultiPipelineDataset, ValSamples

if TYPE_CHECKING:  # the device decoder is imported only when asked for
    from .device_decode import DeviceDecoder

__all__ = [
    "BAD_IMAGE_POLICIES",
    "ENGINES",
    "EvalTarget",
    "ModelCounts",
    "EvalResult",
    "choose_engines",
    "group_by_pipeline",
    "describe_pipeline",
    "default_workers",
    "label_rank",
    "load_target",
    "evaluate",
]

BAD_IMAGE_POLICIES = ("count", "skip")
#: How a model's forward pass runs: eager PyTorch, torch.compile, or ONNX Runtime (CPU only).
ENGINES = ("torch", "compile", "onnxruntime")


@dataclass
class EvalTarget:
    """A model to evaluate: its name, the module, and its transform (``resample``/``normalize``/``pipeline_key``).

    ``heads`` names auxiliary classifiers to count as well (GoogLeNet's ``loss1``, ``loss2``):
    the model's ``aux_outputs(x)`` then returns ``(main, *heads)`` logits, and the result has a
    row ``name/head`` for each.

    ``arch``, ``weights_path`` and ``preprocessing`` (the manifest's ``transforms`` record)
    identify a model loaded from a weight file (:func:`load_target` fills them in): its ONNX
    export is then cached under the file's sha256, and onnxruntime is its default engine on a CPU.
    """

    name: str
    model: nn.Module
    transform: EvalTransform
    heads: Tuple[str, ...] = ()
    arch: Optional[str] = None
    weights_path: Optional[Path] = None
    preprocessing: Optional[Mapping[str, Any]] = None

    @property
    def outputs(self) -> List[str]:
        """The result rows of this target: its name, then ``name/head`` per head."""
        return [self.name] + [f"{self.name}/{head}" for head in self.heads]


@dataclass
class ModelCounts:
    """Integer results of one model: images in the denominator, top-1 and top-5 hits."""

    images: int = 0
    top1_correct: int = 0
    top5_correct: int = 0

    @property
    def top1_err(self) -> float:
        """Top-1 error in percent (NaN when no image was counted)."""
        return 100.0 * (self.images - self.top1_correct) / self.images if self.images else float("nan")

    @property
    def top5_err(self) -> float:
        """Top-5 error in percent (NaN when no image was counted)."""
        return 100.0 * (self.images - self.top5_correct) / self.images if self.images else float("nan")


@dataclass
class EvalResult:
    """What :func:`evaluate` found, identical on every rank.

    ``counts`` has a row per model, named as the model, and one per evaluated auxiliary head,
    ``model/head``. ``unreadable`` lists ``(file relative to the root, reason)`` for every image
    that could not be decoded; with ``bad_images="count"`` they are in every model's
    denominator as wrong answers, with ``"skip"`` they are left out of it.
    """

    counts: Dict[str, ModelCounts]
    evaluated: int
    unreadable: List[Tuple[str, str]]
    bad_images: str
    pipelines: Dict[str, List[str]]
    seconds: float
    world_size: int
    device: str
    fast: bool
    channels_last: bool
    workers: int
    batch_size: int
    compiled: List[str] = field(default_factory=list)
    decode_on_device: bool = False
    #: The engine each model ran on (after any fallback): ``{name: "torch" | "compile" | "onnxruntime"}``.
    engines: Dict[str, str] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        """Images through every model per second of wall time (all ranks together)."""
        return self.evaluated / self.seconds if self.seconds > 0 else float("nan")


def describe_pipeline(key: Tuple) -> str:
    """A short readable name of a ``pipeline_key``, e.g. ``caffe 256x256->227``."""
    if len(key) == 3:
        kind, resize, crop = key
        size = "x".join(str(v) for v in resize) if isinstance(resize, (tuple, list)) else str(resize)
        return f"{kind} {size}->{crop}"
    return " ".join(str(part) for part in key)


def group_by_pipeline(targets: Sequence[EvalTarget]) -> Dict[Tuple, List[EvalTarget]]:
    """Targets grouped by ``transform.pipeline_key``, in order of first appearance."""
    groups: Dict[Tuple, List[EvalTarget]] = {}
    for target in targets:
        groups.setdefault(target.transform.pipeline_key, []).append(target)
    return groups


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_workers(device: torch.device) -> int:
    """DataLoader workers per process: decoding is the bottleneck on a GPU, the model on a CPU.

    The machine's cores are shared among the ranks of this node. On CUDA all but one core per
    rank decode (at most 16); on CPU the model needs the cores, and one worker in four keeps
    decoding ahead of it (measured in ``benchmarks/eval_throughput.py``).
    """
    per_rank = max(1, _cpus() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if torch.device(device).type == "cuda":
        return max(1, min(16, per_rank - 1))
    return max(1, per_rank // 4)


def load_target(name: str, weights_path: os.PathLike, *, load_despite_recorded_identity: bool = False) -> EvalTarget:
    """Build the ImageNet model ``name`` from a local weight file, with its own transform.

    When the manifest records errors of the model's auxiliary heads (GoogLeNet DSD's loss1 and
    loss2, from its accuracy log) and the file carries their weights, they are evaluated too.

    Raises:
        DSDZooError: the model is not evaluated on ImageNet images (e.g. an embedded digits model),
            or the file does not fit (:class:`~dsd_zoo.errors.WeightsError`, ``FormatError``).
    """
    from ..api import get_model, get_weights
    from ..models import ARCHITECTURES

    weights = get_weights(name)
    pipeline = weights.entry.transforms.get("pipeline")
    if pipeline not in IMAGENET_PIPELINES:
        raise DSDZooError(
            f"{name} is not an ImageNet model (its preprocessing pipeline is {pipeline!r}); "
            "--imagenet evaluates only models with a caffe or fb_resnet pipeline"
        )
    heads = _logged_heads(weights.entry, weights_path)
    build = ARCHITECTURES[weights.entry.arch].heads_build_kwargs if heads else {}
    model = get_model(
        name,
        weights=weights_path,
        progress=False,
        load_despite_recorded_identity=load_despite_recorded_identity,
        **build,
    )
    return EvalTarget(
        name,
        model,
        weights.transforms(),
        heads,
        arch=weights.entry.arch,
        weights_path=Path(weights_path),
        preprocessing=dict(weights.entry.transforms),
    )


def _logged_heads(entry: Any, weights_path: os.PathLike) -> Tuple[str, ...]:
    """The auxiliary heads of ``entry``'s model with logged errors whose weights the file carries."""
    from ..loading import read_header
    from ..models import ARCHITECTURES

    heads = tuple(head for head in ARCHITECTURES[entry.arch].heads if head in entry.heads)
    if not heads:
        return ()
    keys = read_header(weights_path)[0].keys()  # the tensor names, without reading the tensors
    prefixes = ARCHITECTURES[entry.arch].optional_prefixes
    return heads if all(any(k.startswith(prefix) for k in keys) for prefix in prefixes) else ()


@contextlib.contextmanager
def _exact_float32(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Full float32 (no TF32) for CUDA convolutions and matmuls in the block; settings restored after."""
    if not enabled or device.type != "cuda":
        yield
        return
    backends = torch.backends
    if hasattr(backends.cudnn, "conv") and hasattr(backends.cudnn.conv, "fp32_precision"):  # torch >= 2.9
        settings: List[Tuple[Any, str, Any]] = [
            (backends.cudnn.conv, "fp32_precision", "ieee"),
            (backends.cuda.matmul, "fp32_precision", "ieee"),
        ]
    else:
        settings = [(backends.cudnn, "allow_tf32", False), (backends.cuda.matmul, "allow_tf32", False)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in settings]
    for owner, name, value in settings:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


class _WithHeads(nn.Module):
    """A model's ``aux_outputs`` as its forward, so the heads are run (and compiled) with it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        # A method of the wrapped model (GoogLeNet's), which nn.Module's typing sees as Tensor | Module.
        aux_outputs: Callable[[Tensor], Sequence[Tensor]] = getattr(self.model, "aux_outputs")
        return tuple(aux_outputs(x))


def _logits(output: Any, heads: int) -> Tuple[Tensor, ...]:
    # (main, *heads) logits. Without heads only the main logits count, whatever the model returns.
    if isinstance(output, Tensor):
        return (output,)
    return tuple(output[: 1 + heads])


class _Forward:
    """One model's forward pass, crops to logits, on its engine: eager, ``torch.compile`` or ONNX Runtime.

    The crops are normalised here, on the device (the workers only resample), and the model is put
    in eval mode on the device, channels-last when asked. A compiled graph is specialised to its
    input shape, so a short last batch is padded with zeros to ``batch_size`` and the padding's
    logits dropped (in eval mode every row's logits depend on that row alone) instead of
    compiling a second graph. Compilation happens on the first call; when it fails, ``required``
    decides between an error and a warned eager run (same results: the compiled graph only
    changes float rounding). An ONNX graph has a dynamic batch; it is exported (or found in the
    cache) here, and a failure to export or to run it falls back to eager with a warning naming
    the cause.
    """

    def __init__(
        self,
        target: EvalTarget,
        device: torch.device,
        batch_size: int,
        channels_last: bool,
        fast: bool,
        engine: str,
        required: bool,
        progress: bool,
    ) -> None:
        target.model.eval().to(device)
        if channels_last:
            target.model.to(memory_format=torch.channels_last)
        self.name = target.name
        self.model = _WithHeads(target.model) if target.heads else target.model
        self.heads = len(target.heads)
        self.normalizer = copy.deepcopy(target.transform).to(device)
        self.batch_size = batch_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.fast = fast
        self.required = required
        self.engine = engine  # the engine this model runs on now: "torch" after a fallback
        self.run: Callable[[Tensor], Any] = self.model  # the model, its compiled wrapper or its ONNX graph
        self.compile_seconds = 0.0
        self.export_seconds = 0.0
        self._first_call = True
        start = time.perf_counter()
        try:
            if engine == "compile":
                self.run = torch.compile(self.model, dynamic=False)
            elif engine == "onnxruntime":
                self.run = _onnx_graph(target, self.model, progress)
        except Exception as exc:  # torch.compile on a Python it does not support yet; the exporter, onnxruntime
            self._fall_back(exc)
        if engine == "onnxruntime":
            self.export_seconds = time.perf_counter() - start

    def _fall_back(self, exc: Exception) -> None:
        """Run eagerly from now on, with a warning naming the cause; an error when compilation is ``required``."""
        reason = _reason(exc)
        if self.engine == "onnxruntime":
            message = (
                f"ONNX Runtime cannot evaluate {self.name} ({reason}); evaluating it with eager "
                "PyTorch instead: the same results, more slowly (--engine torch skips the attempt)"
            )
        elif self.required:
            raise DSDZooError(
                f"torch.compile could not compile {self.name} ({reason}); on a CPU inductor needs a "
                "working C++ compiler (set CXX or install gcc/clang), or run without --compile"
            ) from exc
        else:
            message = (
                f"torch.compile could not compile {self.name} ({reason}); evaluating it eagerly: the same "
                "results, more slowly (--no-compile skips the attempt)"
            )
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        self.engine = "torch"
        self.run = self.model

    def __call__(self, crop: Tensor) -> Tuple[Tensor, ...]:
        """The (main, *heads) logits of a batch of crops on the device (compiled on the first call, timed)."""
        batch = self.normalizer.normalize(crop)
        if self.engine != "onnxruntime":  # ONNX Runtime takes NCHW
            batch = batch.contiguous(memory_format=self.memory_format)
        first, self._first_call = self._first_call, False
        compiling = first and self.engine == "compile"
        rows = batch.shape[0]
        if self.engine == "compile" and rows < self.batch_size:
            padding = batch.new_zeros((self.batch_size - rows, *batch.shape[1:]))
            batch = torch.cat([batch, padding]).contiguous(memory_format=self.memory_format)
        start = time.perf_counter()
        with torch.autocast(crop.device.type, dtype=torch.bfloat16, enabled=self.fast):
            try:
                return tuple(out[:rows] for out in _logits(self.run(batch), self.heads))
            except Exception as exc:
                if not first or self.engine == "torch":
                    raise
                self._fall_back(exc)
                return _logits(self.model(batch[:rows]), self.heads)
            finally:
                if compiling:
                    self.compile_seconds = time.perf_counter() - start


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _onnx_graph(target: EvalTarget, model: nn.Module, progress: bool) -> nn.Module:
    """``model`` exported to ONNX (from the cache when the target has a weight file) in an ONNX Runtime session."""
    from ..export.onnx_export import OnnxModule, cached_export, export_checked, model_metadata, weights_sha256
    from ..fingerprint import probe_id
    from ..pipelines import PIPELINES

    key: Tuple = getattr(target.transform, "pipeline_key")  # (pipeline, resize, crop)
    probe = probe_id(PIPELINES[key[0]].probe, key[-1])
    outputs = ["logits", *target.heads]
    if target.arch is not None and target.weights_path is not None:
        # Hashed only here: an evaluation on another engine never reads the whole file again.
        sha256 = weights_sha256(target.weights_path)
        graph = cached_export(
            model,
            name=target.name,
            arch=target.arch,
            weights_sha256=sha256,
            probe=probe,
            output_names=outputs,
            preprocessing=target.preprocessing,
            progress=progress,
        )
    else:  # a model built in memory: nothing identifies its weights, so nothing to cache it under
        graph, _ = export_checked(
            model,
            name=target.name,
            probe=probe,
            output_names=outputs,
            progress=progress,
            metadata=model_metadata(target.name, None, target.preprocessing, target.arch),
        )
    return OnnxModule(graph)


def choose_engines(
    targets: Sequence[EvalTarget],
    device: torch.device,
    images: int,
    engine: Optional[str] = None,
    compile_models: Optional[bool] = None,
) -> Tuple[Dict[str, str], bool]:
    """``({name: engine}, required)``: the engine each target runs on, and whether a failure is an error.

    ``engine`` applies to every target; ``compile_models`` is the older spelling (``True`` =
    ``"compile"``, ``False`` = ``"torch"``). With neither, on a CPU: ``onnxruntime`` for a target
    loaded from a weight file when onnxruntime is installed (its export is cached, so it costs
    seconds once), else ``compile`` from ``COMPILE_MIN_IMAGES`` images (``images``: this rank's
    share), else ``torch``; on a GPU ``torch``. Only an explicitly asked ``compile`` is required
    to work; the other engines fall back to eager with a warning.
    """
    engine = _asked_engine(engine, compile_models, device)
    if engine is not None:
        return {t.name: engine for t in targets}, engine == "compile"
    if device.type != "cpu":
        return {t.name: "torch" for t in targets}, False
    from ..export.onnx_export import onnxruntime_available

    onnx = onnxruntime_available()
    fallback = "compile" if images >= COMPILE_MIN_IMAGES else "torch"
    return {t.name: "onnxruntime" if onnx and t.weights_path is not None else fallback for t in targets}, False


def evaluate(
    targets: Sequence[EvalTarget],
    samples: ValSamples,
    *,
    batch_size: int = 32,
    workers: Optional[int] = None,
    device: Union[str, torch.device] = "cpu",
    fast: bool = False,
    channels_last: Optional[bool] = None,
    compile_models: Optional[bool] = None,
    engine: Optional[str] = None,
    decode_on_device: bool = False,
    bad_images: str = "count",
    progress: bool = True,
) -> EvalResult:
    """Top-1 and top-5 counts of every target on ``samples``, in one pass over the images.

    Args:
        targets: the models with their transforms; models whose transforms share a
            ``pipeline_key`` share one resampled crop per image.
        samples: the labelled images (see :mod:`dsd_zoo.verify.datasets`).
        batch_size: images per batch (per rank).
        workers: DataLoader worker processes (per rank); default :func:`default_workers`.
            0 decodes in the calling process.
        device: where the models run (``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...).
        fast: run the models under bfloat16 autocast. Faster on GPUs, but the results may
            differ from the exact float32 run; the published errors are judged on the latter.
        channels_last: feed the models channels-last tensors (default: yes; faster for these
            convolutional networks with oneDNN on CPU and cuDNN on GPU, same arithmetic up to
            float rounding).
        compile_models: the older spelling of ``engine``: ``True`` is ``"compile"``, ``False``
            is ``"torch"``.
        engine: how every model runs, one of :data:`ENGINES`; default (``None``): see
            :func:`choose_engines` (on a CPU, onnxruntime for models loaded from a weight file
            when it is installed). ``"compile"``: ``torch.compile`` (inductor) on any device,
            raising :class:`~dsd_zoo.errors.DSDZooError` if it fails (by default it falls back
            to eager with a warning). ``"onnxruntime"``: CPU only; the model is exported to ONNX
            (cached when the target has a weight file), checked against PyTorch on the
            fingerprint probe, and run by ONNX Runtime; a failure falls back to eager with a
            warning. Every engine computes the same functions up to float rounding (logits
            within about 1e-6 relative here); compile and export time count in ``seconds``.
        decode_on_device: the workers only read the files and JPEGs are decoded and resampled
            on ``device`` (nvJPEG on a GPU; :mod:`~dsd_zoo.verify.device_decode`), taking off the
            CPU the decoding that limits a GPU run; nvJPEG's pixels differ slightly from libjpeg's,
            so the errors may differ a little from the exact run. On a CPU the crops are
            identical (and nothing is gained).
        bad_images: ``"count"`` (default): an undecodable image is a wrong answer for every
            model; ``"skip"``: it is left out of the denominator. Either way it is listed.
        progress: show a tqdm bar with img/s (rank 0 only).

    Under an initialised ``torch.distributed`` group each rank evaluates every
    ``world_size``-th image and the returned counts are the all-reduced totals.

    The models are put in eval mode and moved to ``device`` (and to channels-last) in place.
    Unless ``fast``, CUDA convolutions and matrix products run in full float32 for the
    duration (PyTorch lets cuDNN use TF32 by default, a 10-bit mantissa).
    """
    _check_targets(targets, bad_images)
    device = torch.device(device)
    channels_last = True if channels_last is None else channels_last
    workers = default_workers(device) if workers is None else workers
    rank, world = rank_and_world()
    progress = progress and rank == 0  # one bar, rank 0's
    shard = range(rank, len(samples), world)  # this rank's images: every world-th from its rank
    engines, required = choose_engines(targets, device, len(shard), engine, compile_models)
    start = time.perf_counter()  # exports and compilations count in the run's time
    forwards = {
        t.name: _Forward(t, device, batch_size, channels_last, fast, engines[t.name], required, progress)
        for t in targets
    }
    groups = group_by_pipeline(targets)
    # The workers resample, once per pipeline; each model's normalisation runs on the device.
    transforms = {key: group[0].transform for key, group in groups.items()}
    loader, decoder = _loader(samples, shard, transforms, device, batch_size, workers, decode_on_device)
    rows = [output for group in groups.values() for t in group for output in t.outputs]
    counts = torch.zeros(len(rows), 3, dtype=torch.int64, device=device)  # images, top-1, top-5
    bar = _progress_bar(len(shard), world, progress)
    with torch.inference_mode(), _exact_float32(device, enabled=not fast), bar:
        unreadable = _count_batches(loader, decoder, samples, groups, forwards, counts, bad_images, bar)
    seconds = time.perf_counter() - start
    engines = {name: forward.engine for name, forward in forwards.items()}
    if world > 1:
        counts, seconds, unreadable, engines = _gathered(device, counts, seconds, unreadable, engines)
    values = counts.cpu().tolist()
    return EvalResult(
        counts={output: ModelCounts(*row) for output, row in zip(rows, values)},
        evaluated=len(samples),
        unreadable=sorted(unreadable),
        bad_images=bad_images,
        pipelines={describe_pipeline(key): [t.name for t in group] for key, group in groups.items()},
        seconds=seconds,
        world_size=world,
        device=str(device),
        fast=fast,
        channels_last=channels_last,
        workers=workers,
        batch_size=batch_size,
        compiled=[name for name, forward in forwards.items() if forward.engine == "compile"],
        decode_on_device=decode_on_device,
        engines=engines,
        extra=_timings(list(forwards.values()), decoder),
    )


def _asked_engine(engine: Optional[str], compile_models: Optional[bool], device: torch.device) -> Optional[str]:
    """The engine asked for by either spelling (``None``: none asked), checked to run on ``device``."""
    if compile_models is not None:
        spelled = "compile" if compile_models else "torch"
        if engine not in (None, spelled):
            raise ValueError(f"engine={engine!r} contradicts compile_models={compile_models}; give one of them")
        engine = spelled
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "onnxruntime":
        from ..export.onnx_export import onnxruntime_available

        if device.type != "cpu":
            raise DSDZooError(
                f"the onnxruntime engine runs on the CPU, not {device}; use --engine torch or compile on a GPU"
            )
        if not onnxruntime_available():
            raise DSDZooError(
                "the onnxruntime engine needs onnxruntime and onnx: pip install 'dsd-zoo[onnx]', or use --engine torch"
            )
    return engine


def _count_batches(
    loader: Any,
    decoder: Optional["DeviceDecoder"],
    samples: ValSamples,
    groups: Mapping[Tuple, Sequence[EvalTarget]],
    forwards: Mapping[str, _Forward],
    counts: Tensor,
    bad_images: str,
    bar: Any,
) -> List[Tuple[str, str]]:
    """The pass over this rank's batches: adds to the (images, top-1, top-5) ``counts`` rows; the unreadable files."""
    unreadable: List[Tuple[str, str]] = []
    compiling = any(forward.engine == "compile" for forward in forwards.values())
    if compiling:
        bar.set_postfix_str("compiling the models on the first batch")
    for indices, labels, errors, *images in loader:
        errors, crops = decoder(errors, *images) if decoder is not None else (errors, images[0])
        unreadable += [(samples.files[int(i)], e) for i, e in zip(indices, errors) if e]
        _add_counts(counts, _batch_logits(groups, crops, forwards, counts.device), labels, errors, bad_images)
        bar.update(labels.numel())
        if compiling:
            bar.set_postfix_str("")
            compiling = False
    return unreadable


def _add_counts(
    counts: Tensor, outputs: Sequence[Tensor], labels: Tensor, errors: Sequence[str], bad_images: str
) -> None:
    """Add one batch to the (images, top-1, top-5) counts, one row per output; an unreadable image is never a hit."""
    device = counts.device
    labels = labels.to(device, non_blocking=True)
    readable = torch.tensor([not e for e in errors])
    # From pageable memory a copy to the GPU first waits for the queued kernels; from pinned
    # memory it does not, so the next batch is prepared while the GPU still runs this one.
    if device.type == "cuda":
        readable = readable.pin_memory()
    readable = readable.to(device, non_blocking=True)
    counted = labels.numel() if bad_images == "count" else readable.sum()
    for row, logits in enumerate(outputs):
        ranks = label_rank(logits, labels)
        counts[row, 0] += counted
        counts[row, 1] += ((ranks < 1) & readable).sum()
        counts[row, 2] += ((ranks < min(5, logits.shape[1])) & readable).sum()


def _timings(forwards: Sequence["_Forward"], decoder: Optional["DeviceDecoder"]) -> Dict[str, Any]:
    """The run's compile and export seconds (and the JPEG decoder, when the device decoded)."""
    extra: Dict[str, Any] = {
        "compile_seconds": round(sum(f.compile_seconds for f in forwards), 3),
        "export_seconds": round(sum(f.export_seconds for f in forwards), 3),
    }
    if decoder is not None:
        extra["jpeg_decoder"] = decoder.jpeg_decoder
    return extra


def _check_targets(targets: Sequence[EvalTarget], bad_images: str) -> None:
    if bad_images not in BAD_IMAGE_POLICIES:
        raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
    if not targets:
        raise ValueError("no models to evaluate")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")


def _loader(
    samples: ValSamples,
    shard: range,
    transforms: Mapping[Tuple, EvalTransform],
    device: torch.device,
    batch_size: int,
    workers: int,
    decode_on_device: bool,
) -> Tuple[Any, Optional["DeviceDecoder"]]:
    """The DataLoader of this rank's images (one crop per pipeline), and the device decoder when it decodes JPEGs."""
    resamplers = {key: transform.resample for key, transform in transforms.items()}
    if decode_on_device and any(key[0] not in IMAGENET_PIPELINES for key in transforms):
        raise ValueError(
            f"decode_on_device needs JPEG pipelines ({', '.join(IMAGENET_PIPELINES)}), got "
            f"{[describe_pipeline(key) for key in transforms if key[0] not in IMAGENET_PIPELINES]}"
        )
    pin = device.type == "cuda"
    if not decode_on_device:
        dataset = MultiPipelineDataset(samples, resamplers, indices=shard)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=pin), None
    from .device_decode import DeviceDecoder, EncodedDataset, collate_encoded

    encoded = EncodedDataset(samples, resamplers, indices=shard)
    decoder = DeviceDecoder({key: copy.deepcopy(t).to(device) for key, t in transforms.items()}, device)
    return torch.utils.data.DataLoader(
        encoded, batch_size=batch_size, num_workers=workers, collate_fn=collate_encoded, pin_memory=pin
    ), decoder


def _batch_logits(
    groups: Mapping[Tuple, Sequence[EvalTarget]],
    crops: Sequence[Tensor],
    forwards: Mapping[str, _Forward],
    device: torch.device,
) -> List[Tensor]:
    """The (main, *heads) logits of every model on its pipeline's crops, in row order."""
    logits: List[Tensor] = []
    for group, crop in zip(groups.values(), crops):
        crop = crop.to(device, non_blocking=True)
        logits += [output for target in group for output in forwards[target.name](crop)]
    return logits


def _gathered(
    device: torch.device, counts: Tensor, seconds: float, unreadable: List[Tuple[str, str]], engines: Dict[str, str]
) -> Tuple[Tensor, float, List[Tuple[str, str]], Dict[str, str]]:
    """This rank's counts, time, unreadable files and engines combined with every other rank's, in one gather."""
    gathered = all_gather_json([counts.tolist(), seconds, unreadable, engines], device)
    counts_of, seconds_of, unreadable_of, engines_of = zip(*gathered)  # each a tuple, one item per rank
    everyone = [(str(file), str(error)) for files in unreadable_of for file, error in files]
    # A fallback on one rank only (say, a failed export there) shows as such, not as rank 0's engine.
    engines = {
        name: engine
        if all(part[name] == engine for part in engines_of)
        else ", ".join(f"{part[name]} on rank {r}" for r, part in enumerate(engines_of))
        for name, engine in engines.items()
    }
    return torch.tensor(counts_of).sum(dim=0), max(seconds_of), everyone, engines


def _progress_bar(total: int, world: int, enabled: bool) -> Any:
    """A tqdm bar counting images (its rate is img/s); a silent one when disabled (every rank but 0)."""
    from tqdm import tqdm

    desc = "evaluating" if world == 1 else f"evaluating (rank 0 of {world}, its share)"
    return tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True, disable=not enabled)
