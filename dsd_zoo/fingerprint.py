"""Logit fingerprints: what a weight file must make its model output on a fixed probe input.

A fingerprint is recorded in the manifest when a weight file is released and checked after
loading. It catches what a digest cannot: a file that is intact but converted wrongly (BGR
instead of RGB, a layer mapped to the wrong place, BatchNorm statistics mishandled) or an
architecture that changed under unchanged weights.

The probe is generated in code, never read from a file: two images of the architecture's
input size, drawn from the PCG64 bit stream seeded with :data:`PROBE_SEED` (NumPy guarantees
that bit generators' raw streams never change). Each draw matches the input range the model
sees after its own preprocessing: uniform in [-128, 128) for Caffe models (0-255 pixels
minus the mean), standard normal for fb.resnet.torch models (normalised by mean and std).
The probe id (``"dsd-zoo-probe-v1/uniform128/227"``) names the distribution and size, so a
fingerprint says how to rebuild its own input.

The fingerprint is the JSON object of the manifest's ``fingerprint`` field::

    {"input": "dsd-zoo-probe-v1/normal/224", "indices": [0, 281, ...],
     "values": [..], "argmax": 417, "atol": 0.05}

``indices`` address the flattened logits of the probe batch (``image * num_classes +
class``), ``argmax`` is the top class of the first probe image, and ``atol`` is
:data:`ATOL_RELATIVE` times the largest logit magnitude. In a CPU emulation of TF32
convolutions (PyTorch's default on recent NVIDIA GPUs) on randomly initialised AlexNet,
SqueezeNet and ResNets, the logits moved by at most 8e-4 of that magnitude; swapping conv1's
colour order moved them by 2-20 %.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Dict, Mapping, Union

import numpy as np

from .errors import IntegrityError
from .manifest import Fingerprint, ModelEntry, load_manifest
from .models import ARCHITECTURES
from .pipelines import PIPELINES

__all__ = [
    "ATOL_RELATIVE",
    "PROBE_CLASSES",
    "PROBE_SEED",
    "check_fingerprint",
    "compute_fingerprint",
    "probe_for",
    "probe_id",
    "probe_input",
]

PROBE_SEED = 20170424
PROBE_IMAGES = 2
#: Classes whose logits are recorded for each probe image (spread over the 1000 classes).
PROBE_CLASSES = (0, 281, 500, 812, 999)
#: Tolerance as a fraction of the largest logit magnitude of the probe batch.
ATOL_RELATIVE = 5e-3
_PROBE = re.compile(r"^dsd-zoo-probe-v1/(uniform128|normal|unit)/([1-9][0-9]{0,3})(?:/c([1-9]))?$")


def probe_id(distribution: str, size: int, channels: int = 3) -> str:
    """The id of the probe with ``distribution`` (``uniform128``, ``normal`` or ``unit``), image size and channels.

    Three-channel probes keep the short form ``dsd-zoo-probe-v1/<distribution>/<size>``.
    """
    name = f"dsd-zoo-probe-v1/{distribution}/{size}" + ("" if channels == 3 else f"/c{channels}")
    if not _PROBE.match(name):
        raise ValueError(
            f"no probe {name!r}: distribution is 'uniform128', 'normal' or 'unit', size 1-9999, channels 1-9"
        )
    return name


def _unit_uniform(count: int) -> np.ndarray:
    # 53 random bits per float64 in [0, 1), straight from the bit generator's stable stream.
    raw = np.random.PCG64(PROBE_SEED).random_raw(count)
    return (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53


def probe_input(probe: str):
    """The probe batch named by ``probe``: a float32 tensor (2, channels, size, size) on the CPU."""
    import torch

    match = _PROBE.match(probe)
    if match is None:
        raise IntegrityError(
            f"unknown fingerprint probe {probe!r}; this dsd-zoo knows 'dsd-zoo-probe-v1/"
            "<uniform128|normal|unit>/<size>[/c<channels>]' (a newer dsd-zoo may be needed)"
        )
    distribution, size, channels = match.group(1), int(match.group(2)), int(match.group(3) or 3)
    count = PROBE_IMAGES * channels * size * size
    if distribution == "uniform128":
        values = _unit_uniform(count) * 256.0 - 128.0
    elif distribution == "unit":
        values = _unit_uniform(count)
    else:  # Box-Muller on pairs of uniforms
        uniform = _unit_uniform(2 * count).reshape(2, count)
        values = np.sqrt(-2.0 * np.log1p(-uniform[0])) * np.cos(2.0 * math.pi * uniform[1])
    return torch.from_numpy(values.astype(np.float32).reshape(PROBE_IMAGES, channels, size, size))


def probe_for(arch_name_or_entry: Union[str, ModelEntry]) -> str:
    """The probe id for a model entry, a model name or an architecture name."""
    entry = arch_name_or_entry
    if isinstance(entry, str):
        models = load_manifest().models
        # An architecture's probe is its manifest models', which share one preprocessing pipeline.
        found = models.get(entry) or next((m for m in models.values() if m.arch == entry), None)
        if found is None:
            if entry not in ARCHITECTURES:
                raise IntegrityError(
                    f"{entry!r} is neither a model nor an architecture; known architectures: {sorted(ARCHITECTURES)}"
                )
            arch = ARCHITECTURES[entry]  # an architecture no model of this manifest uses
            return probe_id(PIPELINES["fb_resnet"].probe, arch.input_size, arch.in_channels)
        entry = found
    arch = ARCHITECTURES[entry.arch]
    return probe_id(PIPELINES[entry.transforms["pipeline"]].probe, arch.input_size, arch.in_channels)


def _logits(model: Any, probe: str):
    """Flattened float32 logits of ``model`` (eval mode, no gradients) on the probe batch."""
    import torch

    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(probe_input(probe).to(device=device, dtype=dtype))
    finally:
        model.train(was_training)
    if isinstance(output, tuple):  # GoogLeNet-style named outputs: the main logits come first
        output = output[0]
    return output.detach().to(device="cpu", dtype=torch.float32)


def compute_fingerprint(model: Any, arch_name_or_entry: Union[str, ModelEntry]) -> Dict[str, Any]:
    """The fingerprint of ``model`` for the manifest's ``fingerprint`` field (JSON-ready).

    Args:
        model: the model with the weights to fingerprint (any device; run in eval mode).
        arch_name_or_entry: a :class:`~dsd_zoo.manifest.ModelEntry`, a model name or an
            architecture name; it picks the probe (input size and value range).

    Returns:
        ``{"input", "indices", "values", "argmax", "atol"}`` (see the module docstring).
    """
    probe = probe_for(arch_name_or_entry)
    logits = _logits(model, probe)
    classes = logits.shape[1]
    # A small head (the embedded digits models) is recorded whole; an ImageNet head at PROBE_CLASSES.
    recorded = range(classes) if classes <= 16 else [c for c in PROBE_CLASSES if c < classes]
    indices = [image * classes + c for image in range(logits.shape[0]) for c in recorded]
    flat = logits.flatten()
    scale = float(flat.abs().max())
    return {
        "input": probe,
        "indices": indices,
        "values": [float(flat[i]) for i in indices],
        "argmax": int(logits[0].argmax()),
        "atol": float(f"{max(ATOL_RELATIVE * scale, 1e-6):.3g}"),
    }


def check_fingerprint(model: Any, fingerprint: Union[Fingerprint, Mapping[str, Any]]) -> None:
    """Raise :class:`IntegrityError` unless ``model`` reproduces ``fingerprint``.

    Every recorded logit must be within ``atol``; the first probe image's top class must be
    the recorded ``argmax``, unless the two classes' logits are within ``atol`` (a near tie).
    The message gives the largest deviation and where it is.
    """
    if isinstance(fingerprint, Fingerprint):  # validated when the manifest was read
        fingerprint = dataclasses.asdict(fingerprint)
    try:
        probe, indices, values, argmax, atol = (
            fingerprint[key] for key in ("input", "indices", "values", "argmax", "atol")
        )
    except KeyError as exc:
        raise IntegrityError(f"fingerprint lacks the field {exc.args[0]!r}") from None
    if len(indices) != len(values):  # zip() would quietly check only the shorter list
        raise IntegrityError(
            f"fingerprint has {len(indices)} indices but {len(values)} values; each recorded logit needs both"
        )
    logits = _logits(model, probe)
    flat = logits.flatten()
    if any(not 0 <= i < flat.numel() for i in indices) or not 0 <= argmax < logits.shape[1]:
        raise IntegrityError(
            f"the fingerprint addresses logits the model does not have ({logits.shape[1]} classes, "
            f"{flat.numel()} logits on probe {probe}): it belongs to another architecture"
        )
    deviations = [abs(float(flat[i]) - v) for i, v in zip(indices, values)]
    worst = max(range(len(deviations)), key=deviations.__getitem__, default=None)
    if worst is not None and not deviations[worst] <= atol:  # `not <=` also catches NaN
        index = indices[worst]
        image, cls = divmod(index, logits.shape[1])
        raise IntegrityError(
            f"logit fingerprint mismatch on probe {probe}: largest deviation {deviations[worst]:.4g} > atol {atol:.4g} "
            f"at index {index} (image {image}, class {cls}): recorded {values[worst]:.6g}, "
            f"got {float(flat[index]):.6g}. "
            "These weights do not produce the outputs recorded at release: a different or wrongly converted file "
            "(e.g. BGR/RGB swapped), or a changed architecture"
        )
    top = int(logits[0].argmax())
    gap = float(logits[0, top] - logits[0, argmax])
    if top != argmax and gap > atol:
        raise IntegrityError(
            f"logit fingerprint mismatch on probe {probe}: the first image's top class is {top}, "
            f"recorded {argmax} (logit gap {gap:.4g} > atol {atol:.4g})"
        )
