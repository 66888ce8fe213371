"""Deep Compression ``.net`` files -> dsd-zoo state dicts (the SqueezeNet v1.0 sparse stage).

A ``.net`` file stores no layer names or shapes: the decoder needs the weighted layers in
deploy-prototxt order. They are derived here from the architecture and the Caffe naming
scheme the file was made with (for SqueezeNet the DSD one, ``conv1``, ``fire2/conv1x1_1``
... ``conv_final``, the names of ``SqueezeNet_deploy.prototxt``), so no prototxt is needed.
The decoded ``(weight, bias)`` pairs are Caffe blobs of a BGR-input net and go through the
Caffe mapping, which flips ``conv1`` to RGB and checks every shape.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Tuple, Union

import numpy as np

from ..errors import ConversionError
from .caffe_mapping import caffe_layer_shapes, map_caffe_blobs
from .deep_compression import WEIGHTED_NAME_PARTS, read_deep_compression

__all__ = ["NET_SCHEMES", "map_deep_compression", "net_layers", "read_net"]

#: Architecture -> the Caffe naming scheme of its Deep Compression release.
NET_SCHEMES: Mapping[str, str] = {"squeezenet1_0": "dsd"}


def net_layers(arch: str) -> List[Tuple[str, Tuple[int, ...], int]]:
    """``(layer name, weight shape, bias length)`` of ``arch`` in ``.net`` file order."""
    if arch not in NET_SCHEMES:
        raise ConversionError(f"no Deep Compression layer list for architecture {arch!r}; known: {sorted(NET_SCHEMES)}")
    layers = [(name, weight, bias[0]) for name, weight, bias in caffe_layer_shapes(arch, NET_SCHEMES[arch])]
    unnamed = [name for name, _, _ in layers if not any(part in name for part in WEIGHTED_NAME_PARTS)]
    if unnamed:  # such layers would not be in the file at all
        raise ConversionError(f"{arch}: layers {unnamed} cannot be stored in a .net file (name lacks conv/fc/ip)")
    return layers


def map_deep_compression(
    decoded: Mapping[str, Tuple[np.ndarray, np.ndarray]], arch: str, *, source: str = "<.net layers>"
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Map decoded ``.net`` layers (name -> (weight, bias)) onto the architecture's state dict.

    Returns ``(state_dict, report)`` as :func:`~dsd_zoo.convert.caffe_mapping.map_caffe_blobs`,
    the report extended with ``weight_density`` (non-zero fraction of all weights) and
    ``layer_density`` per layer.
    """
    state, report = map_caffe_blobs({name: list(pair) for name, pair in decoded.items()}, arch, source=source)
    if arch in NET_SCHEMES and report["layer_names"] != NET_SCHEMES[arch]:
        raise ConversionError(
            f"{source}: Deep Compression {arch} layers are named in the {NET_SCHEMES[arch]} scheme, "
            f"these follow the {report['layer_names']} one"
        )
    nonzero = {name: int(np.count_nonzero(weight)) for name, (weight, _) in decoded.items()}
    total = sum(weight.size for weight, _ in decoded.values())
    report["weight_density"] = sum(nonzero.values()) / total if total else 0.0
    report["layer_density"] = {name: nonzero[name] / weight.size for name, (weight, _) in decoded.items()}
    return state, report


def read_net(
    path: Union[str, "os.PathLike[str]"], arch: str, *, source: str = "<.net>"
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Decode the ``.net`` file at ``path`` as ``arch`` and map it (see :func:`map_deep_compression`)."""
    return map_deep_compression(read_deep_compression(os.fspath(path), net_layers(arch)), arch, source=source)
