"""fb.resnet.torch module trees (Lua Torch7) -> dsd-zoo state dicts for ResNet-18 and ResNet-50.

The released checkpoints do not follow the public ``models/resnet.lua`` (``architectures.md``
section 5): their convolutions carry biases, projection shortcuts are bare 1x1 convolutions
and the ResNet-50 bottleneck normalises after the addition. A tree in another layout would
map onto the wrong network without any shape error, so the whole tree is checked against the
dsd-zoo architecture *before* anything is taken from it:

* top level ``nn.Sequential``: conv, BN, ReLU, max-pool 3/2 p1, four stages, avg-pool 7/1,
  View, Linear;
* basic block: ``Sequential[ConcatTable[Sequential[conv, BN, ReLU, conv, BN], shortcut],
  CAddTable, ReLU]``;
* bottleneck: ``Sequential[ConcatTable[Sequential[conv, BN, ReLU, conv, BN, ReLU, conv],
  shortcut], CAddTable, BN, ReLU]``;
* shortcut: ``nn.Identity`` where the architecture has none, a bare biased convolution where
  it has a projection;
* every convolution's planes, kernel, stride and padding, every pooling's window, every
  tensor's shape; ``cudnn.*`` variants and ``SpatialConvolutionMM``'s 2-D weights are accepted.

Anything else raises ConversionError naming the module's path in the tree (0-based, as
``model[4][0][0][0][3]``), the dsd-zoo key it would have filled, and what was found.

BatchNorm: ``weight``, ``bias``, ``running_mean`` and ``running_var`` map directly. Legacy
objects that store ``running_std`` (= 1/sqrt(var + eps)) get ``var = running_std**-2 - 1e-5``,
which keeps the normaliser whatever their eps; with ``running_var``, an ``eps`` other than
PyTorch's 1e-5 is folded into it (``var + eps - 1e-5``, the same normaliser) and reported.
``num_batches_tracked`` is 0.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from ..errors import ConversionError
from ..models import ARCHITECTURES
from .tensors import array_to_tensor, check_against_architecture

__all__ = ["FB_RESNET_ARCHS", "TORCH_EPS", "map_fb_resnet"]

FB_RESNET_ARCHS = ("fb_resnet18", "fb_resnet50")
TORCH_EPS = 1e-5  # nn.BatchNorm2d's default, fixed in dsd-zoo's architectures

# Accepted Torch7 class names for each kind of module (nn and its cudnn drop-in twins).
_TYPES = {
    "conv": ("nn.SpatialConvolution", "nn.SpatialConvolutionMM", "cudnn.SpatialConvolution"),
    "BN": ("nn.SpatialBatchNormalization", "cudnn.SpatialBatchNormalization"),
    "ReLU": ("nn.ReLU", "cudnn.ReLU"),
    "maxpool": ("nn.SpatialMaxPooling", "cudnn.SpatialMaxPooling"),
    "avgpool": ("nn.SpatialAveragePooling", "cudnn.SpatialAveragePooling"),
    "Sequential": ("nn.Sequential",),
    "ConcatTable": ("nn.ConcatTable",),
    "CAddTable": ("nn.CAddTable",),
    "Identity": ("nn.Identity",),
    "View": ("nn.View",),
    "Linear": ("nn.Linear",),
}
_KIND_OF = {typename: kind for kind, typenames in _TYPES.items() for typename in typenames}

_TOP = (
    "conv",
    "BN",
    "ReLU",
    "maxpool",
    "Sequential",
    "Sequential",
    "Sequential",
    "Sequential",
    "avgpool",
    "View",
    "Linear",
)
# The residual branch of a block: (kind, the dsd-zoo block's module it fills).
_BASIC_BRANCH = (("conv", "conv1"), ("BN", "bn1"), ("ReLU", ""), ("conv", "conv2"), ("BN", "bn2"))
_BOTTLENECK_BRANCH = _BASIC_BRANCH + (("ReLU", ""), ("conv", "conv3"))
_HINTS = {
    "branch": " (a branch ending in BN is the public models/resnet.lua layout; the released "
    "fb.resnet.torch ResNet-50 has BN after the addition instead)",
    "block": " (no BN after the addition: the public models/resnet.lua layout, not the released "
    "checkpoints'; dsd-zoo's fb_resnet50 has no place for it)",
    "shortcut": " (a projection shortcut with BN is the public models/resnet.lua layout; the released "
    "checkpoints have a bare 1x1 convolution, which is what dsd-zoo's fb_resnet holds)",
}


def _typename(obj: Any) -> str:
    typename = getattr(obj, "typename", None)
    return typename if isinstance(typename, str) else f"<{type(obj).__name__}>"


def _describe(obj: Any, depth: int = 1) -> str:
    """``kind`` or ``kind[children]``: what a module is, for error messages."""
    name = _KIND_OF.get(_typename(obj), _typename(obj))
    children = getattr(obj, "modules", None) if name in ("Sequential", "ConcatTable") else None
    if depth > 0 and isinstance(children, (list, tuple)):
        return f"{name}[{', '.join(_describe(child, depth - 1) for child in children)}]"
    return name


class _TreeMapper:
    """Walks a Torch7 tree alongside the dsd-zoo model, checking and collecting tensors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.state: Dict[str, Any] = {}
        self.running_std: List[str] = []
        self.eps_folded: Dict[str, float] = {}
        self.reshaped: List[str] = []
        self.typenames: collections.Counter = collections.Counter()

    def error(self, path: str, key: str, message: str) -> ConversionError:
        target = f" (-> {key})" if key else ""
        return ConversionError(f"{self.source}: t7 module {path}{target}: {message}")

    def children(
        self, obj: Any, path: str, key: str, kind: str, layout: Sequence[str], hint: str = "", depth: int = 1
    ) -> list:
        """The children of a container, whose kinds must be exactly ``layout`` (so that the methods
        given a child need not check its kind again; only the root's kind is checked here)."""
        if _KIND_OF.get(_typename(obj)) != kind:
            raise self.error(path, key, f"expected {kind} ({' or '.join(_TYPES[kind])}), found {_describe(obj)}")
        modules = getattr(obj, "modules", None)
        if not isinstance(modules, (list, tuple)):
            raise self.error(path, key, f"{kind} has no list of modules (found {type(modules).__name__})")
        found = [_KIND_OF.get(_typename(child), _typename(child)) for child in modules]
        if found != list(layout):
            raise self.error(path, key, f"expected {kind}[{', '.join(layout)}], found {_describe(obj, depth)}{hint}")
        self.typenames.update(_typename(child) for child in modules)
        return list(modules)

    def number(self, obj: Any, field: str, path: str, key: str, default: Any = None) -> float:
        value = getattr(obj, field, default)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise self.error(path, key, f"field {field!r} must be a number, found {value!r}")
        return float(value)

    def check_fields(self, obj: Any, path: str, key: str, expected: Dict[str, int], default: Any = None) -> None:
        """Raise unless each field of ``obj`` (``default`` when absent) is the number ``expected`` gives."""
        for field, want in expected.items():
            if self.number(obj, field, path, key, default) != want:
                raise self.error(
                    path,
                    key,
                    f"{field} = {getattr(obj, field, default)!r}, but {key or 'the architecture'} needs {want!r}",
                )

    def tensor(self, obj: Any, field: str, path: str, key: str, shape: Tuple[int, ...]):
        array = getattr(obj, field, None)
        if not isinstance(array, np.ndarray):
            raise self.error(
                path,
                key,
                f"has no {field} tensor (found {type(array).__name__}); the released "
                "fb.resnet.torch layout has one here",
            )
        if tuple(array.shape) != tuple(shape):
            raise self.error(path, key, f"{field} has shape {tuple(array.shape)}, but {key} needs {tuple(shape)}")
        return array_to_tensor(array, f"{self.source}: t7 module {path} {field}")

    def conv(self, obj: Any, path: str, key: str, module: Any) -> None:
        (kh, kw), (sh, sw), (ph, pw) = module.kernel_size, module.stride, module.padding
        self.check_fields(
            obj,
            path,
            key,
            {
                "nInputPlane": module.in_channels,
                "nOutputPlane": module.out_channels,
                "kH": kh,
                "kW": kw,
                "dH": sh,
                "dW": sw,
                "padH": ph,
                "padW": pw,
            },
        )
        groups = self.number(obj, "groups", path, key, default=1)
        if groups != 1:
            raise self.error(path, key, f"grouped convolution (groups = {groups:g}) where the architecture has none")
        shape = tuple(module.weight.shape)
        # SpatialConvolutionMM (and old nn) keep the weight as (out, in*kH*kW), in im2col order.
        mm = isinstance(getattr(obj, "weight", None), np.ndarray) and obj.weight.ndim == 2
        stored = (shape[0], math.prod(shape[1:])) if mm else shape
        self.state[f"{key}.weight"] = self.tensor(obj, "weight", path, key + ".weight", stored).reshape(shape)
        if mm:
            self.reshaped.append(path)
        self.state[f"{key}.bias"] = self.tensor(obj, "bias", path, key + ".bias", (module.out_channels,))

    def batch_norm(self, obj: Any, path: str, key: str, module: Any) -> None:
        shape = (module.num_features,)
        eps = self.number(obj, "eps", path, key)
        if not 0 <= eps < 1:
            raise self.error(path, key, f"eps = {eps} is not a BatchNorm epsilon")
        for field in ("weight", "bias", "running_mean"):
            self.state[f"{key}.{field}"] = self.tensor(obj, field, path, f"{key}.{field}", shape)
        if isinstance(getattr(obj, "running_var", None), np.ndarray):
            var = self.tensor(obj, "running_var", path, key + ".running_var", shape).double() + (eps - TORCH_EPS)
            if eps != TORCH_EPS:
                self.eps_folded[path] = eps
        elif isinstance(getattr(obj, "running_std", None), np.ndarray):
            # Old nn (before BN version 2) kept 1/sqrt(var + eps) instead of the variance.
            std = self.tensor(obj, "running_std", path, key + ".running_var", shape).double()
            if not bool((std > 0).all()):
                raise self.error(path, key, "running_std has zero or negative entries")
            var = std.pow(-2) - TORCH_EPS
            self.running_std.append(path)
        else:
            raise self.error(path, key, "has neither running_var nor running_std")
        if not bool((var + TORCH_EPS > 0).all()):
            raise self.error(path, key, "running variance + eps is not positive; the statistics are damaged")
        self.state[f"{key}.running_var"] = var.float()
        self.state[f"{key}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    def pool(self, obj: Any, path: str, kernel: int, stride: int, padding: int) -> None:
        self.check_fields(obj, path, "", {"kH": kernel, "kW": kernel, "dH": stride, "dW": stride})
        self.check_fields(obj, path, "", {"padH": padding, "padW": padding}, default=0)  # nn before padding: 0
        ceil_mode = getattr(obj, "ceil_mode", False)
        if ceil_mode is not False:  # an identity test: a hostile tensor here has no truth value
            raise self.error(
                path,
                "",
                f"ceil-mode pooling (ceil_mode = {ceil_mode!r}), but fb.resnet.torch and the "
                "architecture use floor mode",
            )

    def block(self, obj: Any, path: str, key: str, block: Any, bottleneck: bool) -> None:
        tail = ("BN", "ReLU") if bottleneck else ("ReLU",)
        top = self.children(
            obj, path, key, "Sequential", ("ConcatTable", "CAddTable", *tail), _HINTS["block"] if bottleneck else ""
        )
        # The residual branch first, then the shortcut: Identity, or a bare projection conv.
        projection = block.downsample is not None
        concat = self.children(
            top[0],
            f"{path}[0]",
            key,
            "ConcatTable",
            ("Sequential", "conv" if projection else "Identity"),
            _HINTS["shortcut"] if projection else "",
            depth=2,
        )
        layout = _BOTTLENECK_BRANCH if bottleneck else _BASIC_BRANCH
        kinds = [kind for kind, _ in layout]
        branch = self.children(
            concat[0], f"{path}[0][0]", key, "Sequential", kinds, _HINTS["branch"] if bottleneck else ""
        )
        if projection:
            self.conv(concat[1], f"{path}[0][1]", f"{key}.downsample.0", block.downsample[0])
        for index, (kind, name) in enumerate(layout):
            map_module = {"conv": self.conv, "BN": self.batch_norm}.get(kind)
            if map_module is not None:
                map_module(branch[index], f"{path}[0][0][{index}]", f"{key}.{name}", getattr(block, name))
        if bottleneck:
            self.batch_norm(top[2], f"{path}[2]", f"{key}.bn_after_add", block.bn_after_add)

    def network(self, tree: Any, model: Any, bottleneck: bool) -> None:
        top = self.children(tree, "model", "", "Sequential", _TOP)
        self.conv(top[0], "model[0]", "conv1", model.conv1)
        self.batch_norm(top[1], "model[1]", "bn1", model.bn1)
        self.pool(top[3], "model[3]", 3, 2, 1)
        for stage in range(4):
            name = f"layer{stage + 1}"
            torch_stage = getattr(model, name)
            blocks = self.children(
                top[4 + stage], f"model[{4 + stage}]", name, "Sequential", ("Sequential",) * len(torch_stage)
            )
            for index, (obj, block) in enumerate(zip(blocks, torch_stage)):
                self.block(obj, f"model[{4 + stage}][{index}]", f"{name}.{index}", block, bottleneck)
        # A 7x7/1 average pool equals the architecture's global pool at the 224 evaluation crop.
        self.pool(top[8], "model[8]", 7, 1, 0)
        self.state["fc.weight"] = self.tensor(top[10], "weight", "model[10]", "fc.weight", tuple(model.fc.weight.shape))
        self.state["fc.bias"] = self.tensor(top[10], "bias", "model[10]", "fc.bias", (model.fc.out_features,))


def map_fb_resnet(tree: Any, arch: str, *, source: str = "<t7 tree>") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Map a released fb.resnet.torch module tree onto ``fb_resnet18`` or ``fb_resnet50``.

    Args:
        tree: the object :func:`dsd_zoo.convert.torch7.read_t7` returns (modules with
            ``.typename`` and attribute access, ``modules`` as lists, tensors as numpy arrays).
        arch: ``"fb_resnet18"`` or ``"fb_resnet50"``.
        source: how to name the file in error messages.

    Returns:
        ``(state_dict, report)``: float32 tensors (``num_batches_tracked`` int64 0) whose keys
        and shapes are exactly the architecture's, and a JSON-ready report (``arch``,
        ``typenames``, ``running_std_converted``, ``bn_eps_folded``, ``reshaped_mm_weights``,
        ``options``, ``warnings``).

    Raises:
        ConversionError: the tree's layout differs from the released fb.resnet.torch layout of
            ``arch`` anywhere; the message names the module's path and what was found.
    """
    if arch not in FB_RESNET_ARCHS:
        raise ConversionError(f"{source}: Torch7 mappings exist for {FB_RESNET_ARCHS}, not {arch!r}")
    with torch.device("meta"):
        model = ARCHITECTURES[arch].build()
    mapper = _TreeMapper(source)
    mapper.typenames[_typename(tree)] += 1  # the root; every other module is counted in its parent
    mapper.network(tree, model, bottleneck=arch == "fb_resnet50")
    check_against_architecture(mapper.state, arch, source)
    folded = sorted(set(mapper.eps_folded.values()))
    warning = f"{len(mapper.eps_folded)} BatchNorm layer(s) use eps {folded}; folded into running_var for PyTorch's {TORCH_EPS}"
    report = {
        "arch": arch,
        "typenames": dict(sorted(mapper.typenames.items())),
        "running_std_converted": mapper.running_std,
        "bn_eps_folded": mapper.eps_folded,
        "reshaped_mm_weights": mapper.reshaped,
        "options": {"bn_eps": TORCH_EPS},
        "warnings": [warning] if folded else [],
    }
    return mapper.state, report
