"""AlexNet exactly as BVLC trained it in Caffe (``bvlc_alexnet``), also the AlexNet_DSD graph.

It is not torchvision's ``alexnet``, which follows the "one weird trick" variant (64/192
channels, conv1 padding 2, no groups, no LRN). This one keeps the two-GPU grouping of conv2,
conv4 and conv5, local response normalisation *after* the ReLU and *before* pooling, and
dropout after the ReLU of fc6/fc7, so Caffe weights load unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["AlexNetCaffe"]


def _lrn() -> nn.LocalResponseNorm:
    # Caffe ACROSS_CHANNELS with local_size 5; both frameworks divide alpha by the size.
    return nn.LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=1.0)


class AlexNetCaffe(nn.Module):
    """AlexNet of Krizhevsky et al. (2012) in its BVLC Caffe form (input 227x227, 60,965,224 parameters).

    Layer names map to Caffe as ``features.{0,4,8,10,12}`` = conv1..conv5 and
    ``classifier.{0,3,6}`` = fc6..fc8. Pools use ``ceil_mode=True`` as Caffe does.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4),
            nn.ReLU(inplace=True),
            _lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
            nn.ReLU(inplace=True),
            _lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            nn.Conv2d(256, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        # Caffe flattens C, H, W row-major, the same order as torch.flatten.
        return self.classifier(x.flatten(1))
