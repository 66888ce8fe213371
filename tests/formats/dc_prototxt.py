"""The layer list of a Deep Compression ``.net`` file derived from its deploy prototxt: a test oracle.

The package knows each architecture's layer list (:func:`dsd_zoo.convert.caffe_mapping.net_layers`);
the tests derive the same list from the prototxt the Deep Compression release published, and
compare.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from dsd_zoo.convert.deep_compression import (
    WEIGHTED_NAME_PARTS,
    LayerLayout,
    Source,
    _check_layout,
    read_deep_compression,
)
from dsd_zoo.errors import ConversionError

from .prototxt import Message, layer_specs, param_shapes, read_prototxt

__all__ = ["deep_compression_layers", "read_deep_compression_prototxt"]


def deep_compression_layers(
    net: Message, input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None
) -> list[LayerLayout]:
    """The weighted layers of a deploy prototxt in the order a ``.net`` file stores them.

    Convolution weight shapes need the input channels of each layer, which are tracked
    through the net (convolution outputs, concatenations, pooling) by
    :func:`tests.formats.prototxt.param_shapes`.

    Args:
        net: the parsed deploy prototxt (e.g. ``SqueezeNet_deploy.prototxt``).
        input_shapes: blob shapes for nets that do not declare their input (see
            :func:`tests.formats.prototxt.param_shapes`).

    Returns:
        ``(name, weight_shape, bias_length)`` for every Convolution / InnerProduct layer
        whose name contains ``conv``, ``fc`` or ``ip`` (TEST phase), in prototxt order.

    Raises:
        ConversionError: a weighted layer has no bias (the format always stores one) or its
            input shape cannot be determined.
        FormatError: the prototxt is malformed.
    """
    shapes = param_shapes(net, input_shapes, phase="TEST")
    layout = []
    for spec in layer_specs(net, phase="TEST"):
        if spec.type not in ("Convolution", "InnerProduct") or not any(
            part in spec.name for part in WEIGHTED_NAME_PARTS
        ):
            continue
        blobs = shapes[spec.name]
        if len(blobs) != 2:
            raise ConversionError(
                f"prototxt: layer {spec.name!r} has no bias, but the .net format stores one for every weighted layer"
            )
        layout.append((spec.name, blobs[0], blobs[1][0]))
    return layout


def read_deep_compression_prototxt(
    source: Source,
    prototxt: Union[str, "os.PathLike[str]", Message],
    input_shapes: Optional[Mapping[str, Sequence[Optional[int]]]] = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode a ``.net`` file with the layer list derived from its deploy prototxt.

    Args:
        source: the ``.net`` file (path or bytes).
        prototxt: the deploy prototxt, as a path or an already parsed :class:`Message`.
        input_shapes: see :func:`deep_compression_layers`.

    Returns:
        See :func:`read_deep_compression`.
    """
    net = prototxt if isinstance(prototxt, Message) else read_prototxt(prototxt)
    layers = deep_compression_layers(net, input_shapes)
    try:
        _check_layout(layers)
    except ValueError as exc:  # from the prototxt, not from a caller: the file is at fault
        raise ConversionError(f"prototxt: {exc}") from None
    return read_deep_compression(source, layers)
