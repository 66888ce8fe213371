"""Two classifiers for MNIST-1D's length-40 sequences: an over-parameterised MLP and a small 1-D CNN.

MNIST-1D (Greydanus & Kobak, arXiv 2011.14439) is a procedurally generated, ten-class problem
of 1-D signals. Its authors report about 68 % test accuracy for an MLP and about 94 % for a
small CNN, so both models below leave room for a training method to help or hurt, unlike the
8x8 digits (:mod:`dsd_zoo.models.digits`), which every model fits to about 1 % error.

* :func:`mnist1d_mlp`: 40 -> 512 -> 512 -> 10 with ReLU, 288,778 parameters, about 70 per
  training example of the standard 4,000-example split: it can memorise the training set.
* :func:`mnist1d_cnn`: the MNIST-1D authors' baseline CNN layout (three ``Conv1d`` of 25
  channels with stride 2, then one linear layer), 5,210 parameters.

Inputs are ``float32`` sequences as the generator makes them (zero mean, unit standard
deviation over the whole set): ``[N, 40]`` for the MLP, ``[N, 1, 40]`` for the CNN.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MNIST1D_LENGTH", "Mnist1dCNN", "mnist1d_cnn", "mnist1d_mlp"]

MNIST1D_LENGTH = 40


def mnist1d_mlp(hidden: int = 512, num_classes: int = 10) -> nn.Sequential:
    """Two hidden ReLU layers of ``hidden`` units on ``[N, 40]`` inputs (288,778 parameters at 512)."""
    return nn.Sequential(
        nn.Linear(MNIST1D_LENGTH, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


class Mnist1dCNN(nn.Module):
    """Three stride-2 ``Conv1d`` (kernel 5, 3, 3; padding 1) and a linear layer, on ``[N, 1, 40]``.

    The sequence shrinks 40 -> 19 -> 10 -> 5, so the linear layer sees ``channels * 5`` features.
    ``features.0`` is the first convolution, the one DSD leaves dense.
    """

    def __init__(self, channels: int = 25, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, kernel_size=5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(channels * 5, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


def mnist1d_cnn(channels: int = 25, num_classes: int = 10) -> Mnist1dCNN:
    """Build the 1-D CNN with PyTorch's default initialisation (5,210 parameters at 25 channels)."""
    return Mnist1dCNN(channels=channels, num_classes=num_classes)
