"""The one ONNX export of a model, its check against PyTorch, the export cache, and an ONNX Runtime module.

:func:`export_checked` exports with ``torch.onnx.export(..., dynamo=True)`` (the exporter PyTorch
supports; the TorchScript one, ``dynamo=False``, is deprecated and warns that it will be
removed), float32, opset :data:`OPSET`, a dynamic batch dimension, the model's name, weights'
sha256 and preprocessing record in the graph's metadata, and then runs the graph through ONNX
Runtime on the fingerprint probe and compares every logit with PyTorch's (:data:`CHECK_RTOL`).
Nothing is written before the check passed: ``python -m dsd_zoo.export`` then writes the file
atomically, ``verify`` stores it in the cache (:func:`cached_export`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import ExportError, first_line

__all__ = [
    "CHECK_RTOL",
    "EXPORT_FORMAT",
    "ExportError",
    "OPSET",
    "OnnxModule",
    "cache_path",
    "cached_export",
    "export_checked",
    "model_metadata",
    "onnxruntime_available",
    "weights_sha256",
]

logger = logging.getLogger(__name__)

#: The ONNX operator set of the exported graphs (supported by onnxruntime >= 1.14).
OPSET = 18
#: Bumped when the exported graph changes for the same weights (its name in the cache changes with it).
EXPORT_FORMAT = 1
#: Largest allowed |ONNX Runtime logit - PyTorch logit| on the probe, as a fraction of the largest
#: |PyTorch logit| of that output. Measured: at most 7e-7 on the 7 architectures (random weights,
#: onnxruntime 1.32, AVX-512), which is float32 summation order; 1e-4 leaves two orders of magnitude
#: for other CPUs' kernels, while a wrongly exported layer moves the logits by percents.
CHECK_RTOL = 1e-4
INPUT_NAME = "input"


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` can be imported (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def _require_onnx() -> None:
    missing = [name for name in ("onnxruntime", "onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(f"{', '.join(missing)} not installed: pip install 'dsd-zoo[onnx]'")


class _Outputs(nn.Module):
    """The first ``count`` outputs of ``model``: what the exported graph returns, one named output each."""

    def __init__(self, model: nn.Module, count: int) -> None:
        super().__init__()
        self.model = model
        self.count = count

    def forward(self, x: Tensor) -> Union[Tensor, Tuple[Tensor, ...]]:
        output = self.model(x)
        if isinstance(output, Tensor):
            return output
        return tuple(output[: self.count]) if self.count > 1 else output[0]


class OnnxModule(nn.Module):
    """An exported graph run by ONNX Runtime's CPU execution provider, called like the PyTorch model.

    ``graph`` is the ONNX file, or its bytes. Its intra-op threads are ``torch.get_num_threads()``,
    the process's setting, so that ``OMP_NUM_THREADS`` and ``torch.set_num_threads`` govern both engines.

    ``forward`` takes a float32 batch (any memory format, any batch size) and returns the logits
    as a tensor, or a tuple for a graph with several outputs (a model with auxiliary heads).
    It has no parameters: the weights live in the graph.
    """

    def __init__(self, graph: Union[bytes, os.PathLike, str]) -> None:
        super().__init__()
        _require_onnx()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the CPU provider's notes are not the user's business
        source = graph if isinstance(graph, bytes) else os.fspath(graph)
        self.session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [output.name for output in self.session.get_outputs()]

    @property
    def metadata(self) -> Dict[str, str]:
        """The graph's metadata (``dsd_zoo.model``, ``dsd_zoo.weights_sha256``, ``dsd_zoo.preprocessing`` ...)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def forward(self, x: Tensor) -> Union[Tensor, Tuple[Tensor, ...]]:
        array = x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
        outputs = tuple(torch.from_numpy(out) for out in self.session.run(self.output_names, {self.input_name: array}))
        return outputs[0] if len(outputs) == 1 else outputs


def _as_tuple(output: Any) -> Tuple[Tensor, ...]:
    return (output,) if isinstance(output, Tensor) else tuple(output)


def compare_with_pytorch(graph: OnnxModule, model: nn.Module, batch: Tensor, probe: str) -> float:
    """The largest relative logit difference of ``graph`` and ``model`` on ``batch``, the input of the fingerprint
    probe ``probe``; ExportError above CHECK_RTOL."""
    with torch.inference_mode():
        expected = _as_tuple(model.eval()(batch))
        got = _as_tuple(graph(batch))
    if len(got) != len(expected):
        raise ExportError(f"the ONNX graph has {len(got)} outputs, the model {len(expected)}")
    worst = 0.0
    for index, (mine, theirs) in enumerate(zip(got, expected)):
        if mine.shape != theirs.shape:
            raise ExportError(
                f"output {index}: the ONNX graph gives shape {tuple(mine.shape)}, PyTorch {tuple(theirs.shape)}"
            )
        scale = float(theirs.abs().max())
        difference = float((mine - theirs.float()).abs().max()) / max(scale, 1e-12)
        if not difference <= CHECK_RTOL:  # `not <=` also catches NaN
            raise ExportError(
                f"output {index} differs from PyTorch's on the fingerprint probe {probe}: largest "
                f"difference {difference:.3g} of the largest logit, allowed {CHECK_RTOL:g}"
            )
        worst = max(worst, difference)
    return worst


def export_checked(
    model: nn.Module,
    *,
    name: str,
    probe: str,
    output_names: Sequence[str] = ("logits",),
    metadata: Optional[Mapping[str, str]] = None,
    progress: bool = True,
) -> Tuple[bytes, float]:
    """Export ``model`` to ONNX and check the graph against PyTorch on ``probe``; returns (graph bytes, difference).

    The one export of dsd-zoo, used by ``python -m dsd_zoo.export`` and by ``verify``'s onnxruntime
    engine. The graph takes ``input`` (batch, channels, size, size) float32 with a dynamic batch
    and returns one output per name of ``output_names`` (the model's first outputs: the main
    logits, then auxiliary heads'). ``metadata`` (str -> str) goes into the graph's
    ``metadata_props`` with ``dsd_zoo.model`` = ``name``, ``dsd_zoo.probe`` and
    ``dsd_zoo.check_rel_diff``. ``difference`` is the largest relative logit difference found
    (see :data:`CHECK_RTOL`).

    Raises:
        ExportError: the exporter failed, ONNX Runtime could not load the graph, or its logits
            differ from PyTorch's by more than :data:`CHECK_RTOL` (the cause is named).
    """
    _require_onnx()
    from ..fingerprint import probe_input

    module = _Outputs(model, len(output_names)).eval()
    example = probe_input(probe)
    start = time.perf_counter()
    if progress:
        print(
            f"dsd-zoo: exporting {name} to ONNX and checking it against PyTorch (seconds to a minute, once)...",
            file=sys.stderr,
            flush=True,
        )
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                opset_version=OPSET,
                optimize=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
                external_data=False,
            )
        if program is None:  # only with dynamo=False and a file to write to
            raise RuntimeError("torch.onnx.export returned no ONNX program")
        proto = program.model_proto
    except Exception as exc:
        raise ExportError(
            f"torch.onnx.export could not export {name}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    graph_seconds = time.perf_counter() - start
    try:
        difference = compare_with_pytorch(OnnxModule(proto.SerializeToString()), module, example, probe)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(
            f"ONNX Runtime could not run the graph of {name}: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    # The metadata, written once the check has passed: dsd-zoo's fields only, sorted, so that the
    # same model always gives the same bytes.
    fields = {
        "dsd_zoo.model": name,
        "dsd_zoo.probe": probe,
        **(metadata or {}),
        "dsd_zoo.check_rel_diff": f"{difference:.3g}",
    }
    del proto.metadata_props[:]
    for key, value in sorted(fields.items()):
        proto.metadata_props.add(key=key, value=value)
    data = proto.SerializeToString()
    if progress:
        print(
            f"dsd-zoo: exported {name} in {graph_seconds:.1f} s; ONNX Runtime's logits match PyTorch's within "
            f"{difference:.2g} of the largest (allowed {CHECK_RTOL:g})",
            file=sys.stderr,
            flush=True,
        )
    return data, difference


def model_metadata(
    name: str, weights_sha256: Optional[str], preprocessing: Optional[Mapping[str, Any]], arch: Optional[str]
) -> Dict[str, str]:
    """The metadata fields of an exported dsd-zoo model (all strings; absent values left out)."""
    from .. import __version__

    fields = {
        "dsd_zoo.version": __version__,
        "dsd_zoo.torch": torch.__version__,
        "dsd_zoo.weights_sha256": weights_sha256,
        "dsd_zoo.preprocessing": None if preprocessing is None else json.dumps(dict(preprocessing), sort_keys=True),
        "dsd_zoo.arch": arch,
    }
    return {key: value for key, value in fields.items() if value}


def weights_sha256(path: Union[str, os.PathLike]) -> str:
    """The sha256 of a weight file: from its cache stamp while that still describes the file, else hashed now."""
    from ..cache import read_stamp
    from ..digests import hash_file

    path = Path(path)
    stamp = read_stamp(path)
    if stamp is not None and stamp.describes(path.stat()):
        return stamp.sha256
    return hash_file(path)["sha256"]


def cache_path(arch: str, weights_sha256: str, outputs: Sequence[str] = ("logits",)) -> Path:
    """Where the cache keeps the exported graph of ``arch`` with the weights whose sha256 is given.

    The name also carries the graph's outputs (a model with auxiliary heads is another graph),
    :data:`EXPORT_FORMAT` and the dsd-zoo version (an architecture fixed in a new release is
    exported again).
    """
    from .. import __version__
    from ..cache import resolve_cache_dir

    heads = "".join(f"+{name}" for name in outputs[1:])
    return resolve_cache_dir() / "onnx" / f"{arch}{heads}.{weights_sha256}.x{EXPORT_FORMAT}-{__version__}.onnx"


def cached_export(
    model: nn.Module,
    *,
    name: str,
    arch: str,
    weights_sha256: str,
    probe: str,
    output_names: Sequence[str] = ("logits",),
    preprocessing: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
) -> Union[Path, bytes]:
    """The exported graph of ``model`` from the cache, exported (:func:`export_checked`) and stored on a miss.

    The cache entry is written through the cache's one write protocol (:func:`dsd_zoo.cache.claim`
    and :func:`~dsd_zoo.cache.store`: locked, so concurrent processes such as ``torchrun``'s ranks
    export once, and atomic); its stamp pins the graph's sha256, so a modified file is exported
    again. Returns the cached file's path, or the graph's bytes when the cache cannot be written
    (a read-only cache: logged, and the graph is used for this run only).
    """
    from ..cache import claim, store

    final = cache_path(arch, weights_sha256, output_names)
    export = functools.partial(
        export_checked,
        model,
        name=name,
        probe=probe,
        output_names=output_names,
        progress=progress,
        metadata=model_metadata(name, weights_sha256, preprocessing, arch),
    )
    data: Optional[bytes] = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)  # where the cache's lock lives
        with claim(final, None, None) as entry:
            if entry.hit is not None:
                return final
            data, _ = export()
            graph = data

            def write(part: Path) -> Mapping[str, str]:
                part.write_bytes(graph)
                return {"sha256": hashlib.sha256(graph).hexdigest()}

            store(entry, write, None, None, pinned=True, source=f"ONNX export of {name} (weights {weights_sha256})")
            return final
    except OSError as exc:
        logger.warning(
            "cannot write the ONNX export of %s to the cache %s (%s); it is used for this run only",
            name,
            final.parent,
            exc,
        )
        return data if data is not None else export()[0]
