"""torch.hub configuration for dsd-zoo: the DSD models, their baselines and the SqueezeNet sparse stage.

    model = torch.hub.load("<owner>/dsd", "resnet50_dsd")
    torch.hub.list("<owner>/dsd")
    print(torch.hub.help("<owner>/dsd", "resnet50_dsd"))

Entry points are generated from weights_manifest.json by dsd_zoo.hub; none is written by hand.
"""

# Import names of install_requires, which torch.hub checks before loading an entry point.
dependencies = ["torch", "torchvision", "safetensors", "huggingface_hub", "requests", "filelock", "tqdm", "numpy", "PIL"]

from dsd_zoo.hub import entrypoints as _entrypoints  # noqa: E402

globals().update(_entrypoints())
