"""ResNet-18 and ResNet-50 in the layout of the released fb.resnet.torch checkpoints.

The released Torch7 files (and the DSD ResNets retrained from them) differ from both the
public ``models/resnet.lua`` and torchvision's ResNet in three ways that change the numbers:

* every convolution carries a bias (fb.resnet.torch issues #49, #191);
* the 1x1 projection shortcut is a bare convolution, without batch norm;
* the ResNet-50 bottleneck normalises *after* the residual addition (a BatchNorm between the
  sum and the final ReLU) and has no BatchNorm at the end of its residual branch.

torchvision's :class:`~torchvision.models.resnet.ResNet` supplies the stem, stages, pooling and
classifier; the blocks and the shortcut are replaced here, and parameter names follow
torchvision (``layerX.Y.conv1``, ``downsample.0``, ``fc``) so the layout reads the same.
"""

from __future__ import annotations

from typing import List, Optional, Type, Union

from torch import Tensor, nn

# Safe at module level: this module is imported on the first build of a ResNet (through
# dsd_zoo.models.ARCHITECTURES), never by `import dsd_zoo`.
from torchvision.models.resnet import ResNet

__all__ = ["FbBasicBlock", "FbBottleneck", "fb_resnet18", "fb_resnet50", "FbResNet"]


def _conv(in_planes: int, out_planes: int, kernel_size: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=kernel_size // 2, bias=True)


class FbBasicBlock(nn.Module):
    """Post-activation basic block: conv3x3-BN-ReLU-conv3x3-BN, add shortcut, ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class FbBottleneck(nn.Module):
    """Bottleneck of the released ResNet-50: conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1, add, BN, ReLU.

    The stride sits on the 3x3 convolution, as in torchvision. ``bn_after_add`` is named for
    where it acts, so a torchvision ``bn3`` can never be loaded into it by mistake.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = _conv(inplanes, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, width, 1)
        self.bn_after_add = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.conv3(out)
        return self.relu(self.bn_after_add(out + identity))


class FbResNet(ResNet):
    """torchvision's ResNet with a biased stem conv and fb.resnet.torch blocks and shortcuts."""

    inplanes: int  # torchvision's ResNet keeps the channels of the next stage's input here

    def __init__(
        self, block: Type[Union[FbBasicBlock, FbBottleneck]], layers: List[int], num_classes: int = 1000
    ) -> None:
        super().__init__(block, layers, num_classes=num_classes)  # type: ignore[arg-type]
        self.conv1 = _conv(3, 64, 7, stride=2)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:  # type: ignore[override]
        if dilate:
            raise ValueError("fb.resnet.torch checkpoints have no dilated stages")
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            # A bare projection: the released checkpoints have no BatchNorm here.
            downsample = nn.Sequential(_conv(self.inplanes, planes * block.expansion, 1, stride))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


def fb_resnet18(num_classes: int = 1000) -> nn.Module:
    """Build ResNet-18 as released by fb.resnet.torch (11,692,520 parameters)."""
    return FbResNet(FbBasicBlock, [2, 2, 2, 2], num_classes=num_classes)


def fb_resnet50(num_classes: int = 1000) -> nn.Module:
    """Build ResNet-50 as released by fb.resnet.torch, BatchNorm after the addition (25,575,912 parameters)."""
    return FbResNet(FbBottleneck, [3, 4, 6, 3], num_classes=num_classes)
