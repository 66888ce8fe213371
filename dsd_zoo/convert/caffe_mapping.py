"""Caffe layer blobs (and Deep Compression ``.net`` layers) -> dsd-zoo state dicts for AlexNet, VGG16, GoogLeNet and
SqueezeNet v1.0.

Each Convolution / InnerProduct layer holds ``blobs[0]`` = weight and ``blobs[1]`` = bias in
the PyTorch layout already (``architectures.md`` section 2); what a mapping has to get right is
which layer goes where, the input colour order and the legacy shapes:

* layer names: one table per naming scheme, in prototxt order (BVLC for AlexNet, VGG16 and
  GoogLeNet; for SqueezeNet both DeepScale's ``fireN/squeeze1x1`` names and the DSD / Deep
  Compression ``fireN/conv1x1_1`` names). A file must use exactly one scheme;
* colour: Caffe nets take BGR, dsd-zoo models RGB, so the input channels of the first
  convolution are reversed (``w[:, [2, 1, 0]]``); nothing else changes;
* legacy V1 files store FC weights as ``(1, 1, out, in)`` and biases as ``(1, 1, 1, out)``:
  shapes that differ from the expected one only by leading 1-axes are reshaped, any other
  difference is an error naming the layer and both shapes;
* GoogLeNet's auxiliary heads (``loss1/*``, ``loss2/*``) are kept when the file has them
  (``aux1.*`` / ``aux2.*``, loadable with ``aux_logits=True``), all or none.

Every weighted layer must be used and every parameter filled: a missing layer, an extra
weighted layer, a layer with fewer than two blobs or a wrong shape raises ConversionError.
A layer with more than two blobs (never seen in these nets) contributes its first two and is
reported in the ``warnings``.

Deep Compression ``.net`` files (the SqueezeNet v1.0 sparse stage) store no layer names or
shapes: the decoder needs the weighted layers in deploy-prototxt order. They are derived here
from the architecture and the naming scheme the file was made with (for SqueezeNet the DSD one,
``conv1``, ``fire2/conv1x1_1`` ... ``conv_final``, the names of ``SqueezeNet_deploy.prototxt``),
so no prototxt is needed. The decoded ``(weight, bias)`` pairs are Caffe blobs of a BGR-input
net and go through the Caffe mapping like any other.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from ..errors import ConversionError
from ..models.googlenet import GoogLeNetCaffe
from .deep_compression import read_deep_compression
from .tensors import architecture_shapes, array_to_tensor, check_against_architecture

__all__ = [
    "CAFFE_SCHEMES",
    "NET_SCHEMES",
    "caffe_layer_shapes",
    "map_caffe_blobs",
    "map_deep_compression",
    "net_layers",
    "read_net",
]

#: (Caffe layer name, the dsd-zoo module that receives its weight and bias), in prototxt order.
Pairs = Tuple[Tuple[str, str], ...]


def _features_classifier(convs: Sequence[str], indices: Sequence[int]) -> Pairs:
    """AlexNet's and VGG16's layers: convolutions in ``features``, fc6-fc8 in ``classifier``."""
    fcs = (("fc6", "classifier.0"), ("fc7", "classifier.3"), ("fc8", "classifier.6"))
    return tuple((name, f"features.{i}") for name, i in zip(convs, indices)) + fcs


def _googlenet() -> Pairs:
    branches = (
        ("1x1", "branch1"),
        ("3x3_reduce", "branch2.0"),
        ("3x3", "branch2.1"),
        ("5x5_reduce", "branch3.0"),
        ("5x5", "branch3.1"),
        ("pool_proj", "branch4.1"),
    )
    inceptions = tuple(
        (f"inception_{block}/{caffe}", f"inception{block}.{module}.conv")
        for block in GoogLeNetCaffe.BLOCKS
        for caffe, module in branches
    )
    stem = (("conv1/7x7_s2", "conv1.conv"), ("conv2/3x3_reduce", "conv2.conv"), ("conv2/3x3", "conv3.conv"))
    return stem + inceptions + (("loss3/classifier", "fc"),)


def _squeezenet(squeeze: str, expand1: str, expand3: str, final: str) -> Pairs:
    fire_index = {2: 3, 3: 4, 4: 5, 5: 7, 6: 8, 7: 9, 8: 10, 9: 12}  # torchvision's features.N
    fires = tuple(
        (f"fire{n}/{caffe}", f"features.{i}.{module}")
        for n, i in fire_index.items()
        for caffe, module in ((squeeze, "squeeze"), (expand1, "expand1x1"), (expand3, "expand3x3"))
    )
    return (("conv1", "features.0"),) + fires + ((final, "classifier.1"),)


#: Architecture -> naming scheme -> its layers, the input convolution first. A file uses exactly
#: one scheme; SqueezeNet has two (DeepScale's and the DSD / Deep Compression one).
CAFFE_SCHEMES: Mapping[str, Mapping[str, Pairs]] = {
    "alexnet": {"bvlc": _features_classifier(("conv1", "conv2", "conv3", "conv4", "conv5"), (0, 4, 8, 10, 12))},
    "vgg16": {
        "vgg": _features_classifier(
            [f"conv{stage}_{i}" for stage, count in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, count + 1)],
            (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
        )
    },
    "googlenet": {"bvlc": _googlenet()},
    "squeezenet1_0": {
        "deepscale": _squeezenet("squeeze1x1", "expand1x1", "expand3x3", "conv10"),
        "dsd": _squeezenet("conv1x1_1", "conv1x1_2", "conv3x3_2", "conv_final"),
    },
}
#: GoogLeNet's auxiliary heads: a file has all of them or none; with them, the model is built with
#: ``aux_logits=True``.
_GOOGLENET_AUX: Pairs = tuple(
    (f"loss{i}/{caffe}", f"aux{i}.{module}")
    for i in (1, 2)
    for caffe, module in (("conv", "conv.conv"), ("fc", "fc1"), ("classifier", "fc2"))
)
#: Architecture -> the Caffe naming scheme of its Deep Compression release.
NET_SCHEMES: Mapping[str, str] = {"squeezenet1_0": "dsd"}


def _schemes(arch: str, source: str) -> Mapping[str, Pairs]:
    if arch not in CAFFE_SCHEMES:
        raise ConversionError(
            f"{source}: architecture {arch!r} is not a Caffe architecture; "
            f"Caffe mappings exist for {sorted(CAFFE_SCHEMES)}"
        )
    return CAFFE_SCHEMES[arch]


def _listing(names: List[str], limit: int = 20) -> str:
    """``names`` for an error message; a file of another network would otherwise list hundreds."""
    shown = repr(names[:limit])
    return shown if len(names) <= limit else f"{shown[:-1]}, ...] ({len(names)} in all)"


def _without_leading_ones(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def map_caffe_blobs(
    blobs: Mapping[str, Sequence[np.ndarray]], arch: str, *, source: str = "<blobs>"
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Map Caffe layer blobs onto the state dict of a dsd-zoo architecture.

    Args:
        blobs: layer name -> blobs in file order, as :func:`dsd_zoo.convert.caffe.read_caffemodel`
            returns them (layers without blobs are ignored).
        arch: ``"alexnet"``, ``"vgg16"``, ``"googlenet"`` or ``"squeezenet1_0"``.
        source: how to name the file in error messages.

    Returns:
        ``(state_dict, report)``: float32 tensors whose keys and shapes are exactly those of the
        architecture (GoogLeNet: with ``aux1.*`` / ``aux2.*`` when the file has the auxiliary
        heads), the first convolution's input channels reversed from BGR to RGB; and a
        JSON-ready report (``arch``, ``layer_names``, ``layers``, ``build_kwargs``, ``options``,
        ``reshaped``, ``cast_from_float64``, ``warnings``).

    Raises:
        ConversionError: a layer is missing, unexpected, has too few blobs or a wrong shape.
    """
    scheme, pairs, build_kwargs = _matched_layers(blobs, arch, source)
    shapes = architecture_shapes(arch, **build_kwargs)
    state: Dict[str, Any] = {}
    reshaped: Dict[str, List[List[int]]] = {}
    warnings: List[str] = []
    for position, (caffe, module) in enumerate(pairs):
        layer_blobs = list(blobs[caffe])
        if len(layer_blobs) < 2:
            raise ConversionError(
                f"{source}: layer {caffe!r} has {len(layer_blobs)} blob(s); {arch} needs a weight and a bias for {module}"
            )
        if len(layer_blobs) > 2:
            warnings.append(
                f"layer {caffe!r} has {len(layer_blobs)} blobs; used the first two (weight, bias), "
                f"ignored blobs with shapes {[tuple(getattr(b, 'shape', ())) for b in layer_blobs[2:]]}"
            )
        for index, (suffix, array) in enumerate(zip(("weight", "bias"), layer_blobs)):
            key, where = f"{module}.{suffix}", f"{source}: layer {caffe!r} blob {index} ({suffix})"
            if not isinstance(array, np.ndarray):
                raise ConversionError(f"{where} is a {type(array).__name__}, not an array")
            # Legacy V1 files store FC weights as (1, 1, out, in): only leading 1-axes may differ.
            if _without_leading_ones(array.shape) != _without_leading_ones(shapes[key]):
                raise ConversionError(f"{where} has shape {array.shape}, but {key} needs {shapes[key]}")
            if array.shape != shapes[key]:
                reshaped[f"{caffe}:{suffix}"] = [list(array.shape), list(shapes[key])]
            tensor = array_to_tensor(array.reshape(shapes[key]), where)
            # Caffe nets take BGR, dsd-zoo models RGB: the input convolution's channels are reversed.
            state[key] = tensor[:, [2, 1, 0]].contiguous() if position == 0 and suffix == "weight" else tensor
    check_against_architecture(state, arch, source, build_kwargs)
    report = {
        "arch": arch,
        "layer_names": scheme,
        "layers": [caffe for caffe, _ in pairs],
        "build_kwargs": build_kwargs,
        "options": {"bgr_to_rgb": True, "input_conv": pairs[0][0]},
        "reshaped": reshaped,
        "cast_from_float64": sorted(
            {caffe for caffe, _ in pairs if any(b.dtype == np.float64 for b in blobs[caffe][:2])}
        ),
        "warnings": warnings,
    }
    return state, report


def _matched_layers(
    blobs: Mapping[str, Sequence[np.ndarray]], arch: str, source: str
) -> Tuple[str, List[Tuple[str, str]], Dict[str, Any]]:
    """The naming scheme the file's weighted layers follow, the (Caffe layer, module) pairs to map, and the
    builder arguments the optional layers present call for (GoogLeNet's auxiliary heads).

    Every weighted layer of the file must be mapped and every required layer present.
    """
    weighted = [name for name, layer_blobs in blobs.items() if len(layer_blobs) > 0]
    present = set(weighted)
    schemes = _schemes(arch, source)
    scheme = _scheme_in_use(schemes, present, arch, source)
    aux = _aux_heads(arch, present, source)
    pairs = list(schemes[scheme] + aux)
    mapped = {caffe for caffe, _ in pairs}
    missing = [caffe for caffe, _ in pairs if caffe not in present]
    extra = [name for name in weighted if name not in mapped]
    if missing or extra:
        parts = ([f"missing layers {_listing(missing)}"] if missing else []) + (
            [f"unexpected weighted layers {_listing(extra)}"] if extra else []
        )
        raise ConversionError(f"{source}: does not match {arch} ({scheme} layer names): {'; '.join(parts)}")
    return scheme, pairs, {"aux_logits": True} if aux else {}


def _scheme_in_use(schemes: Mapping[str, Any], present: Set[str], arch: str, source: str) -> str:
    """The one naming scheme whose own layer names the file uses (the first when it uses none)."""
    layer_sets = {name: {caffe for caffe, _ in pairs} for name, pairs in schemes.items()}
    shared = set.intersection(*layer_sets.values())  # SqueezeNet's conv1 is in both schemes
    used = [name for name, layers in layer_sets.items() if present & (layers - shared)]
    if len(used) > 1:
        raise ConversionError(
            f"{source}: the layer names mix the {' and '.join(used)} naming schemes of {arch}; a file must use one"
        )
    return used[0] if used else next(iter(schemes))


def _aux_heads(arch: str, present: Set[str], source: str) -> Tuple[Tuple[str, str], ...]:
    """GoogLeNet's auxiliary heads when the file has them: all of their layers or none."""
    aux = _GOOGLENET_AUX if arch == "googlenet" else ()
    found = [caffe for caffe, _ in aux if caffe in present]
    if found and len(found) < len(aux):
        missing = [caffe for caffe, _ in aux if caffe not in present]
        raise ConversionError(f"{source}: aux_heads are incomplete: has {found} but not {missing}")
    return aux if found else ()


def caffe_layer_shapes(
    arch: str, scheme_name: Optional[str] = None
) -> List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
    """``(Caffe layer, weight shape, bias shape)`` of the required layers of ``arch``, in prototxt order.

    ``scheme_name`` picks a naming scheme of :data:`CAFFE_SCHEMES` (default: the first). The shapes
    are PyTorch's, which new-format Caffe files share. For readers that need the layer list in
    advance (the Deep Compression format stores none).
    """
    schemes = _schemes(arch, "Caffe layer shapes")
    shapes = architecture_shapes(arch)
    pairs = schemes[scheme_name or next(iter(schemes))]
    return [(caffe, shapes[f"{module}.weight"], shapes[f"{module}.bias"]) for caffe, module in pairs]


def net_layers(arch: str) -> List[Tuple[str, Tuple[int, ...], int]]:
    """``(layer name, weight shape, bias length)`` of ``arch`` in ``.net`` file order."""
    if arch not in NET_SCHEMES:
        raise ConversionError(f"no Deep Compression layer list for architecture {arch!r}; known: {sorted(NET_SCHEMES)}")
    return [(name, weight, bias[0]) for name, weight, bias in caffe_layer_shapes(arch, NET_SCHEMES[arch])]


def map_deep_compression(
    decoded: Mapping[str, Tuple[np.ndarray, np.ndarray]], arch: str, *, source: str = "<.net layers>"
) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Map decoded ``.net`` layers (name -> (weight, bias)) onto the architecture's state dict.

    Returns ``(state_dict, report)`` as :func:`map_caffe_blobs`, the report extended with
    ``weight_density`` (non-zero fraction of all weights) and ``layer_density`` per layer.
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
