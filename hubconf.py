"""torch.hub configuration for dsd-zoo: the DSD models, their baselines and the SqueezeNet sparse stage.

    model = torch.hub.load("<owner>/dsd", "resnet50_dsd")
    torch.hub.list("<owner>/dsd")
    print(torch.hub.help("<owner>/dsd", "resnet50_dsd"))

Entry points are generated from weights_manifest.json by dsd_zoo.hub; none is written by hand.
"""

dependencies = ["torch", "torchvision", "safetensors", "huggingface_hub", "requests", "filelock"]

from dsd_zoo.hub import entrypoints as _entrypoints  # noqa: E402

globals().update(_entrypoints())
