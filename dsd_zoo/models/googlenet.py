"""GoogLeNet exactly as BVLC trained it in Caffe (``bvlc_googlenet``), also the GoogleNet_DSD graph.

torchvision's ``googlenet`` is a different network (batch norm, 3x3 kernels in the "5x5"
branch, no LRN, adaptive auxiliary pools). This one is the Caffe graph of Szegedy et al.
(2015): biased convolutions with ReLU, true 5x5 branches, LRN in the stem, ceil-mode pooling
(floor would give 55/27/13/6 instead of 56/28/14/7) and optional auxiliary heads, which are
off by default because the published accuracies use the main classifier only.
"""

from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["GoogLeNetCaffe", "GoogLeNetOutputs"]


class GoogLeNetOutputs(NamedTuple):
    """Main logits plus the two auxiliary heads' logits (training mode with aux heads)."""

    logits: Tensor
    aux_logits2: Optional[Tensor]
    aux_logits1: Optional[Tensor]


class BasicConv2d(nn.Module):
    """Biased convolution followed by ReLU: every convolution of the Caffe GoogLeNet."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu_(self.conv(x))


class Inception(nn.Module):
    """Four branches concatenated in Caffe's order: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; pool -> 1x1."""

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, 1), BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, 1), BasicConv2d(ch5x5red, ch5x5, 5, padding=2))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(in_channels, pool_proj, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (loss1 / loss2): avgpool 5/3, 1x1 conv 128, fc 1024, dropout 0.7, fc."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.avgpool = nn.AvgPool2d(5, stride=3, ceil_mode=True)
        self.conv = BasicConv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.dropout = nn.Dropout(p=0.7)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.avgpool(x))
        x = torch.relu_(self.fc1(x.flatten(1)))
        return self.fc2(self.dropout(x))


class GoogLeNetCaffe(nn.Module):
    """GoogLeNet (Inception v1) in its BVLC Caffe form (input 224x224).

    With ``aux_logits=True`` the module also holds the two auxiliary heads (13,378,280
    parameters instead of 6,998,552) and, in training mode, returns :class:`GoogLeNetOutputs`;
    in eval mode it always returns the main logits, which produced the published numbers.
    """

    # (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) of Szegedy et al., Table 1.
    BLOCKS = {
        "3a": (192, 64, 96, 128, 16, 32, 32),
        "3b": (256, 128, 128, 192, 32, 96, 64),
        "4a": (480, 192, 96, 208, 16, 48, 64),
        "4b": (512, 160, 112, 224, 24, 64, 64),
        "4c": (512, 128, 128, 256, 24, 64, 64),
        "4d": (512, 112, 144, 288, 32, 64, 64),
        "4e": (528, 256, 160, 320, 32, 128, 128),
        "5a": (832, 256, 160, 320, 32, 128, 128),
        "5b": (832, 384, 192, 384, 48, 128, 128),
    }

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, dropout: float = 0.4) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.lrn2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(*self.BLOCKS["3a"])
        self.inception3b = Inception(*self.BLOCKS["3b"])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(*self.BLOCKS["4a"])
        self.inception4b = Inception(*self.BLOCKS["4b"])
        self.inception4c = Inception(*self.BLOCKS["4c"])
        self.inception4d = Inception(*self.BLOCKS["4d"])
        self.inception4e = Inception(*self.BLOCKS["4e"])
        self.maxpool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception5a = Inception(*self.BLOCKS["5a"])
        self.inception5b = Inception(*self.BLOCKS["5b"])
        self.aux1: Optional[InceptionAux] = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2: Optional[InceptionAux] = InceptionAux(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # Caffe's 7x7/1 average pool at the 224 crop
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Union[Tensor, GoogLeNetOutputs]:
        heads = self.aux_logits and self.training
        x, aux1, aux2 = self._logits(x, heads)
        if heads:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x

    def _logits(self, x: Tensor, heads: bool) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        x = self.maxpool1(self.conv1(x))
        x = self.lrn1(x)
        x = self.lrn2(self.conv3(self.conv2(x)))
        x = self.maxpool2(x)
        x = self.inception3b(self.inception3a(x))
        x = self.inception4a(self.maxpool3(x))
        # Spelled out, with `is not None`, so that TorchScript can compile it (as torchvision's).
        aux1: Optional[Tensor] = None
        if heads and self.aux1 is not None:
            aux1 = self.aux1(x)
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2: Optional[Tensor] = None
        if heads and self.aux2 is not None:
            aux2 = self.aux2(x)
        x = self.inception4e(x)
        x = self.inception5b(self.inception5a(self.maxpool4(x)))
        x = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        return x, aux1, aux2

    def aux_outputs(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(main, loss1, loss2) logits with dropout off, as Caffe's TEST phase computed them.

        Used to check the auxiliary heads' logged accuracies. In eval mode (as ``verify`` runs
        it) nothing is switched, so the method also traces under ``torch.compile``.
        """
        if self.aux1 is None or self.aux2 is None:
            raise RuntimeError("this GoogLeNet was built without auxiliary heads; build it with aux_logits=True")
        if not self.training:
            main, aux1, aux2 = self._logits(x, heads=True)
            assert aux1 is not None and aux2 is not None  # both heads exist, checked above
            return main, aux1, aux2
        self.eval()
        try:
            return self.aux_outputs(x)
        finally:
            self.train()
