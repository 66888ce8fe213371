"""Architectures: one definition per family, shared by its DSD, baseline and sparse weights.

``ARCHITECTURES`` maps the ``arch`` field of the manifest to a builder. Builders are
imported on first use so that ``import dsd_zoo`` stays free of torch and torchvision.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Tuple

__all__ = ["Architecture", "ARCHITECTURES"]


@dataclass(frozen=True)
class Architecture:
    """An architecture family and what the tests and ``verify`` hold it to."""

    name: str
    builder: str  # "module:callable" relative to dsd_zoo.models, called with the build options
    num_params: int  # reference count (spec: ../shared/reference/architectures.md)
    input_size: int  # the evaluation crop of the published numbers
    min_size: Tuple[int, int]
    family: str  # one line, shown in docstrings and model cards
    # Tensors a weight file may carry that a default build has no place for (GoogLeNet's
    # auxiliary heads, kept in converted files so `aux_logits=True` can load them).
    optional_prefixes: Tuple[str, ...] = ()
    in_channels: int = 3
    # Auxiliary classifiers whose accuracies were logged (Caffe's names), evaluated by `verify`:
    # a model built with `heads_build_kwargs` returns (main, *heads) logits from `aux_outputs`.
    heads: Tuple[str, ...] = ()
    heads_build_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def build(self, **kwargs: Any):
        """Construct the architecture with random (or, on the meta device, no) weights."""
        module_name, function_name = self.builder.split(":")
        module = importlib.import_module(f"{__name__}.{module_name}")
        return getattr(module, function_name)(**kwargs)


_ALL = (
    Architecture(
        "alexnet",
        "alexnet:AlexNetCaffe",
        60_965_224,
        227,
        (199, 199),
        "AlexNet, BVLC Caffe graph (grouped conv2/4/5, LRN after ReLU, before pooling)",
    ),
    Architecture(
        "vgg16",
        "vgg:vgg16",
        138_357_544,
        224,
        (32, 32),
        "VGG16 (configuration D, no batch norm), torchvision's VGG class",
    ),
    Architecture(
        "googlenet",
        "googlenet:GoogLeNetCaffe",
        6_998_552,
        224,
        (31, 31),
        "GoogLeNet (Inception v1), BVLC Caffe graph (true 5x5 branches, LRN, ceil-mode pooling)",
        optional_prefixes=("aux1.", "aux2."),
        heads=("loss1", "loss2"),
        heads_build_kwargs={"aux_logits": True},
    ),
    Architecture(
        "squeezenet1_0",
        "squeezenet:squeezenet1_0",
        1_248_424,
        227,
        (21, 21),
        "SqueezeNet v1.0, torchvision's SqueezeNet class with the final conv padded by 1 as in Caffe",
    ),
    Architecture(
        "fb_resnet18",
        "resnet_fb:fb_resnet18",
        11_692_520,
        224,
        (1, 1),
        "ResNet-18, fb.resnet.torch released layout (biased convs, BN-free projection shortcuts)",
    ),
    Architecture(
        "fb_resnet50",
        "resnet_fb:fb_resnet50",
        25_575_912,
        224,
        (1, 1),
        "ResNet-50, fb.resnet.torch released layout (biased convs, BN-free shortcuts, BN after the addition)",
    ),
    Architecture(
        "digits_net",
        "digits:digits_net",
        62_250,
        8,
        (8, 8),
        "small CNN for 8x8 digits (the DSD demonstration of docs/dsd-demo.md, shipped in the package)",
        in_channels=1,
    ),
)
ARCHITECTURES: Mapping[str, Architecture] = {arch.name: arch for arch in _ALL}
