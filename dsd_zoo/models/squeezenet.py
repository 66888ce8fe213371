"""SqueezeNet v1.0 as DeepScale released it (baseline, DSD and Deep Compression sparse stage).

torchvision's ``SqueezeNet(version="1_0")`` has the same layers, but its final 1x1 conv has no
padding. The Caffe definition pads it by 1, so the global average runs over 15x15 cells
of which the 56 on the border equal ReLU(bias); with padding 0 the logits differ and rankings
can change. The builder restores the padding.
"""

from __future__ import annotations

from torch import nn

__all__ = ["squeezenet1_0"]


def squeezenet1_0(num_classes: int = 1000) -> nn.Module:
    """Build SqueezeNet v1.0 with the final conv padded by 1, as in Caffe (1,248,424 parameters)."""
    from torchvision.models.squeezenet import SqueezeNet

    model = SqueezeNet(version="1_0", num_classes=num_classes)
    model.classifier[1].padding = (1, 1)
    return model
