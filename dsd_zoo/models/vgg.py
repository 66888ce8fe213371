"""VGG16 (``VGG_ILSVRC_16_layers``, also the VGG16_DSD graph): torchvision's class, unchanged.

torchvision's ``vgg16`` (no batch norm) is the Caffe network layer for layer: conv1_1..conv5_3
are ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}`` and fc6..fc8 ``classifier.{0,3,6}``;
its adaptive 7x7 pool is the identity at the 224 evaluation crop.
"""

from __future__ import annotations

from torch import nn

__all__ = ["vgg16"]


def vgg16(num_classes: int = 1000) -> nn.Module:
    """Build torchvision's VGG16 without weights (138,357,544 parameters)."""
    # Imported here, not at module level, so that `import dsd_zoo` never loads torchvision.
    from torchvision.models.vgg import VGG, cfgs, make_layers

    return VGG(make_layers(cfgs["D"], batch_norm=False), num_classes=num_classes, init_weights=False)
