"""dsd-zoo: the DSD (Dense-Sparse-Dense) ImageNet models as faithful, checksummed PyTorch models.

>>> import dsd_zoo
>>> dsd_zoo.list_models("*_dsd")  # the six ImageNet models and the embedded digits demo
['alexnet_dsd', 'vgg16_dsd', 'googlenet_dsd', 'squeezenet_dsd', 'resnet18_dsd', 'resnet50_dsd', 'digits_dsd']
>>> model = dsd_zoo.get_model("resnet50_dsd")              # doctest: +SKIP
>>> preprocess = dsd_zoo.get_weights("resnet50_dsd").transforms()  # doctest: +SKIP

Importing the package is cheap: torch, torchvision and every optional dependency are
imported on first use of the function that needs them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["list_models", "get_model", "get_weights", "Weights", "errors", "__version__"]

# Imported on first use: name -> the module that holds it (``errors`` is that module itself).
_LAZY = {"list_models": "api", "get_model": "api", "get_weights": "api", "Weights": "api", "errors": "errors"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dsd_zoo' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
    value = module if name == _LAZY[name] else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
