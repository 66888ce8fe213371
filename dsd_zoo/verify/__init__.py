"""``python -m dsd_zoo.verify``: check the weight files, and reproduce the published error table.

* No ``--imagenet``: the offline self-check (:mod:`~dsd_zoo.verify.selfcheck`): manifest,
  architectures, every local weight file re-hashed and fingerprinted, local evaluations.
* ``--imagenet DIR``: single-crop ILSVRC-2012 validation errors of the selected models, each
  with its own original preprocessing, next to the paper's numbers
  (:mod:`~dsd_zoo.verify.datasets`, :mod:`~dsd_zoo.verify.engine`, :mod:`~dsd_zoo.verify.report`).

The same steps are available from Python::

    from dsd_zoo.verify import scan_imagenet, load_target, evaluate
    samples = scan_imagenet("/data/imagenet/val", wnids)          # wnids: get_weights(..).meta["wnids"]
    result = evaluate([load_target("resnet50_dsd", path)], samples)
    result.counts["resnet50_dsd"].top1_err

Importing this package is cheap; torch is imported by the submodules that need it.
"""

from __future__ import annotations

from typing import Any

FULL_VAL_SIZE = 50_000  # images in the ILSVRC-2012 validation set; the tolerance is meant for all of them
DEFAULT_TOLERANCE = 0.3  # percentage points of top-1 and top-5 error
# Images per process from which a CPU run compiles its models by default: compiling ResNet-50 takes
# about 20 s on 2 cores and saves about 15 ms per image there (docs/benchmarks.md).
COMPILE_MIN_IMAGES = 2000
EXIT_OK = 0  # everything checked passed
EXIT_FAILED = 1  # a check failed: digest, fingerprint, architecture, or an error outside the tolerance
EXIT_BAD_INPUT = 2  # bad usage or input (folder, labels, model names, offline): nothing trustworthy was evaluated
EXIT_UNREADABLE = 3  # evaluated, but some images could not be decoded (listed, and counted as errors by default)

_LAZY = {
    "main": "__main__",
    "DatasetError": "datasets",
    "ValSamples": "datasets",
    "MultiPipelineDataset": "datasets",
    "scan_imagenet": "datasets",
    "decode_image": "datasets",
    "EvalTarget": "engine",
    "EvalResult": "engine",
    "ModelCounts": "engine",
    "evaluate": "engine",
    "load_target": "engine",
    "process_group": "engine",
    "LocalEvaluation": "selfcheck",
    "run_selfcheck": "selfcheck",
    "Report": "report",
    "eval_report": "report",
    "selfcheck_report": "report",
}

__all__ = [
    "FULL_VAL_SIZE",
    "DEFAULT_TOLERANCE",
    "COMPILE_MIN_IMAGES",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_BAD_INPUT",
    "EXIT_UNREADABLE",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
