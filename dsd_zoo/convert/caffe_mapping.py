"""Caffe layer blobs -> dsd-zoo state dicts for AlexNet, VGG16, GoogLeNet and SqueezeNet v1.0.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConversionError
from .tensors import architecture_shapes, array_to_tensor, check_against_architecture

__all__ = ["CAFFE_SCHEMES", "CaffeScheme", "caffe_layer_shapes", "map_caffe_blobs", "select_scheme"]

Pairs = Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class CaffeScheme:
    """One naming of an architecture's Caffe layers.

    ``layers`` pairs each Caffe layer name with the dsd-zoo module that receives its weight
    and bias, in prototxt order (the first entry is the input convolution). ``optional``
    groups are taken all-or-none; when present the model is built with their build kwargs.
    """

    name: str
    layers: Pairs
    optional: Tuple[Tuple[str, Pairs, Tuple[Tuple[str, Any], ...]], ...] = field(default=())

    def all_layers(self) -> Pairs:
        """Every (Caffe name, module) pair, required then optional."""
        return self.layers + tuple(pair for _, pairs, _ in self.optional for pair in pairs)


def _alexnet() -> Tuple[CaffeScheme, ...]:
    convs = zip(("conv1", "conv2", "conv3", "conv4", "conv5"), (0, 4, 8, 10, 12))
    fcs = zip(("fc6", "fc7", "fc8"), (0, 3, 6))
    return (
        CaffeScheme(
            "bvlc", tuple((n, f"features.{i}") for n, i in convs) + tuple((n, f"classifier.{i}") for n, i in fcs)
        ),
    )


def _vgg16() -> Tuple[CaffeScheme, ...]:
    names = [f"conv{stage}_{i}" for stage, count in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, count + 1)]
    indices = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    fcs = zip(("fc6", "fc7", "fc8"), (0, 3, 6))
    return (
        CaffeScheme(
            "vgg",
            tuple((n, f"features.{i}") for n, i in zip(names, indices)) + tuple((n, f"classifier.{i}") for n, i in fcs),
        ),
    )


def _googlenet() -> Tuple[CaffeScheme, ...]:
    from ..models.googlenet import GoogLeNetCaffe

    branches = (
        ("1x1", "branch1"),
        ("3x3_reduce", "branch2.0"),
        ("3x3", "branch2.1"),
        ("5x5_reduce", "branch3.0"),
        ("5x5", "branch3.1"),
        ("pool_proj", "branch4.1"),
    )
    layers: List[Tuple[str, str]] = [
        ("conv1/7x7_s2", "conv1.conv"),
        ("conv2/3x3_reduce", "conv2.conv"),
        ("conv2/3x3", "conv3.conv"),
    ]
    for block in GoogLeNetCaffe.BLOCKS:
        layers += [(f"inception_{block}/{caffe}", f"inception{block}.{module}.conv") for caffe, module in branches]
    layers.append(("loss3/classifier", "fc"))
    aux = tuple(
        (f"loss{i}/{caffe}", f"aux{i}.{module}")
        for i in (1, 2)
        for caffe, module in (("conv", "conv.conv"), ("fc", "fc1"), ("classifier", "fc2"))
    )
    return (CaffeScheme("bvlc", tuple(layers), optional=(("aux_heads", aux, (("aux_logits", True),)),)),)


def _squeezenet() -> Tuple[CaffeScheme, ...]:
    fire_index = {2: 3, 3: 4, 4: 5, 5: 7, 6: 8, 7: 9, 8: 10, 9: 12}  # torchvision's features.N

    def scheme(name: str, squeeze: str, expand1: str, expand3: str, final: str) -> CaffeScheme:
        fires = tuple(
            (f"fire{n}/{caffe}", f"features.{i}.{module}")
            for n, i in fire_index.items()
            for caffe, module in ((squeeze, "squeeze"), (expand1, "expand1x1"), (expand3, "expand3x3"))
        )
        return CaffeScheme(name, (("conv1", "features.0"),) + fires + ((final, "classifier.1"),))

    return (
        scheme("deepscale", "squeeze1x1", "expand1x1", "expand3x3", "conv10"),
        scheme("dsd", "conv1x1_1", "conv1x1_2", "conv3x3_2", "conv_final"),
    )


#: Architecture -> its Caffe naming schemes (SqueezeNet has two: DeepScale's and the DSD one).
CAFFE_SCHEMES: Mapping[str, Tuple[CaffeScheme, ...]] = {
    "alexnet": _alexnet(),
    "vgg16": _vgg16(),
    "googlenet": _googlenet(),
    "squeezenet1_0": _squeezenet(),
}


def select_scheme(weighted: Sequence[str], arch: str, source: str = "<blobs>") -> CaffeScheme:
    """The naming scheme of ``arch`` that the weighted layer names follow (exactly one)."""
    if arch not in CAFFE_SCHEMES:
        raise ConversionError(
            f"{source}: architecture {arch!r} is not a Caffe architecture; "
            f"Caffe mappings exist for {sorted(CAFFE_SCHEMES)}"
        )
    schemes = CAFFE_SCHEMES[arch]
    layer_sets = [{caffe for caffe, _ in s.all_layers()} for s in schemes]
    shared = set.intersection(*layer_sets)  # SqueezeNet's conv1 is in both schemes
    used = [s for s, layers in zip(schemes, layer_sets) if set(weighted) & (layers - shared)]
    if len(used) > 1:
        raise ConversionError(
            f"{source}: the layer names mix the {' and '.join(s.name for s in used)} naming "
            f"schemes of {arch}; a file must use one"
        )
    return used[0] if used else schemes[0]


def _listing(names: List[str], limit: int = 20) -> str:
    """``names`` for an error message; a file of another network would otherwise list hundreds."""
    shown = repr(names[:limit])
    return shown if len(names) <= limit else f"{shown[:-1]}, ...] ({len(names)} in all)"


def _without_leading_ones(shape: Tuple[int, ...]) -> Tuple[int, ...]:
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _fit(array: np.ndarray, expected: Tuple[int, ...], where: str, key: str) -> Tuple[np.ndarray, bool]:
    """``array`` in the expected shape; only leading 1-axes (legacy V1 shapes) may differ."""
    found = tuple(array.shape)
    if found == expected:
        return array, False
    if _without_leading_ones(found) == _without_leading_ones(expected):
        return array.reshape(expected), True
    raise ConversionError(f"{where} has shape {found}, but {key} needs {expected}")


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
    cast: List[str] = []
    warnings: List[str] = []
    for position, (caffe, module) in enumerate(pairs):
        for index, (suffix, array) in enumerate(
            zip(("weight", "bias"), _weight_and_bias(blobs[caffe], caffe, module, arch, source, warnings))
        ):
            key = f"{module}.{suffix}"
            where = f"{source}: layer {caffe!r} blob {index} ({suffix})"
            fitted, was_reshaped = _fit(array, shapes[key], where, key)
            if was_reshaped:
                reshaped[caffe + ":" + suffix] = [list(array.shape), list(shapes[key])]
            if fitted.dtype == np.float64:
                cast.append(caffe)
            tensor = array_to_tensor(fitted, where)
            state[key] = _rgb_input(tensor, where) if position == 0 and suffix == "weight" else tensor
    check_against_architecture(state, arch, source, build_kwargs)
    report = {
        "arch": arch,
        "layer_names": scheme.name,
        "layers": [caffe for caffe, _ in pairs],
        "build_kwargs": build_kwargs,
        "options": {"bgr_to_rgb": True, "input_conv": pairs[0][0]},
        "reshaped": reshaped,
        "cast_from_float64": sorted(set(cast)),
        "warnings": warnings,
    }
    return state, report


def _matched_layers(
    blobs: Mapping[str, Sequence[np.ndarray]], arch: str, source: str
) -> Tuple[CaffeScheme, List[Tuple[str, str]], Dict[str, Any]]:
    """The naming scheme the file's weighted layers follow, the (Caffe layer, module) pairs to map, and the
    builder arguments the optional layers present call for (GoogLeNet's auxiliary heads).

    Every weighted layer of the file must be mapped and every required layer present.
    """
    weighted = [name for name, layer_blobs in blobs.items() if len(layer_blobs) > 0]
    scheme = select_scheme(weighted, arch, source)
    present = set(weighted)
    pairs = list(scheme.layers)
    build_kwargs: Dict[str, Any] = {}
    for group, group_pairs, kwargs in scheme.optional:
        found = [caffe for caffe, _ in group_pairs if caffe in present]
        if len(found) == len(group_pairs):
            pairs += group_pairs
            build_kwargs.update(kwargs)
        elif found:
            missing = [caffe for caffe, _ in group_pairs if caffe not in present]
            raise ConversionError(f"{source}: {group} are incomplete: has {found} but not {missing}")
    mapped = {caffe for caffe, _ in pairs}
    missing = [caffe for caffe, _ in pairs if caffe not in present]
    extra = [name for name in weighted if name not in mapped]
    if missing or extra:
        parts = ([f"missing layers {_listing(missing)}"] if missing else []) + (
            [f"unexpected weighted layers {_listing(extra)}"] if extra else []
        )
        raise ConversionError(f"{source}: does not match {arch} ({scheme.name} layer names): {'; '.join(parts)}")
    return scheme, pairs, build_kwargs


def _weight_and_bias(
    layer_blobs: Sequence[Any], caffe: str, module: str, arch: str, source: str, warnings: List[str]
) -> Tuple[np.ndarray, np.ndarray]:
    """A layer's first two blobs, checked to be arrays; blobs beyond them are noted in ``warnings``."""
    layer_blobs = list(layer_blobs)
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
        if not isinstance(array, np.ndarray):
            raise ConversionError(
                f"{source}: layer {caffe!r} blob {index} ({suffix}) is a {type(array).__name__}, not an array"
            )
    return layer_blobs[0], layer_blobs[1]


def _rgb_input(weight: Any, where: str) -> Any:
    """The input convolution's weight with its channels reversed: BGR (Caffe) -> RGB (dsd-zoo)."""
    if weight.shape[1] != 3:
        raise ConversionError(f"{where}: the input convolution must take 3 channels, got {weight.shape[1]}")
    return weight[:, [2, 1, 0]].contiguous()


def caffe_layer_shapes(
    arch: str, scheme_name: Optional[str] = None
) -> List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
    """``(Caffe layer, weight shape, bias shape)`` of the required layers of ``arch``, in prototxt order.

    ``scheme_name`` picks a naming scheme (default: the first of :data:`CAFFE_SCHEMES`). The
    shapes are PyTorch's, which new-format Caffe files share. For readers that need the layer
    list in advance (the Deep Compression format stores none).
    """
    if arch not in CAFFE_SCHEMES:
        raise ConversionError(
            f"architecture {arch!r} is not a Caffe architecture; Caffe mappings exist for {sorted(CAFFE_SCHEMES)}"
        )
    schemes = CAFFE_SCHEMES[arch]
    scheme = next((s for s in schemes if s.name == scheme_name), None) if scheme_name else schemes[0]
    if scheme is None:
        raise ConversionError(f"{arch} has no Caffe naming scheme {scheme_name!r}; known: {[s.name for s in schemes]}")
    shapes = architecture_shapes(arch)
    return [(caffe, shapes[f"{module}.weight"], shapes[f"{module}.bias"]) for caffe, module in scheme.layers]
