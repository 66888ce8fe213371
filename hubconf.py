"""torch.hub configuration for dsd-zoo: the DSD models, their baselines and the SqueezeNet sparse stage.

Entry points are generated from weights_manifest.json by dsd_zoo.hub; none is written by hand.
The repository named below is dsd_zoo._project.GITHUB_REPO, the one place that names it:
"""

# Import names of install_requires, which torch.hub checks before loading an entry point.
dependencies = [
    "torch",
    "torchvision",
    "safetensors",
    "huggingface_hub",
    "requests",
    "filelock",
    "tqdm",
    "numpy",
    "PIL",
]

from dsd_zoo.hub import entrypoints as _entrypoints, usage as _usage  # noqa: E402

__doc__ = f"{__doc__ or ''}\n{_usage(indent='    ')}\n"
globals().update(_entrypoints())
