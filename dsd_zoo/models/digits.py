"""A small CNN for 8x8 single-channel digit images (the DSD demonstration's model).

Sized for scikit-learn's bundled ``load_digits`` (1,797 real 8x8 images of handwritten digits,
pixel values 0..16): small enough that five seeds of dense-sparse-dense training take about
a minute on two CPU cores, and its weights (62,250 parameters, 249 kB as float32) live in the
repository. The layout follows torchvision's AlexNet/VGG: ``features`` (convolutions),
``classifier`` (fully connected), so DSD code written for those models applies unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DigitsNet", "digits_net"]


class DigitsNet(nn.Module):
    """Three 3x3 convolutions and two fully connected layers for ``[N, 1, 8, 8]`` inputs.

    Inputs are pixel values scaled to ``[0, 1]`` (divide ``load_digits`` values by 16).
    Layer names: ``features.{0,2,5}`` are the convolutions (``features.0`` is the first conv,
    the one DSD leaves dense), ``classifier.{0,2}`` the fully connected layers.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2),  # 8x8 -> 4x4
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2),  # 4x4 -> 2x2
        )
        self.classifier = nn.Sequential(
            nn.Linear(64 * 2 * 2, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def digits_net(num_classes: int = 10) -> DigitsNet:
    """Build the 8x8-digits CNN with PyTorch's default initialisation (62,250 parameters at 10 classes)."""
    return DigitsNet(num_classes=num_classes)
