"""The preprocessing pipelines, one class each, and the registry that every use of a pipeline name looks up.

A manifest model's ``transforms`` record names its pipeline (``caffe``, ``fb_resnet`` or
``digits``) and gives its parameters. Everything that depends on the pipeline asks its class:

* :meth:`Pipeline.validate`: the fields the record may hold and their values (the manifest);
* :meth:`Pipeline.build`: the transform itself (``Weights.transforms()``);
* :meth:`Pipeline.describe`: one readable line (hub docstrings, model cards);
* :attr:`Pipeline.probe`: the fingerprint probe's input distribution (:mod:`dsd_zoo.fingerprint`);
* :attr:`Pipeline.decodes_photos`: whether ``verify --imagenet`` evaluates it on JPEGs.

Adding a pipeline means adding one class here. Importing this module imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, FrozenSet, Mapping, Sequence, Tuple

__all__ = ["IMAGENET_PIPELINES", "PIPELINES", "Pipeline"]


class Pipeline:
    """One preprocessing pipeline; subclasses fill in the class attributes and the three methods."""

    name: ClassVar[str]
    #: The fields a manifest ``transforms`` record of this pipeline may hold.
    fields: ClassVar[FrozenSet[str]]
    #: The fingerprint probe's distribution: it imitates the range of the models' inputs.
    probe: ClassVar[str]
    #: ILSVRC-2012 photos (JPEGs) are what it preprocesses, so ``verify --imagenet`` can run it.
    decodes_photos: ClassVar[bool] = True

    def validate(self, spec: Mapping[str, Any], check: Any, where: str, assets: Mapping[str, Any]) -> None:
        """Check the values of a ``transforms`` record (``check`` is the manifest's field reader)."""
        crop = check.get(spec, "crop", where, (int,))
        if crop <= 0:
            raise check.fail(f"{where}.crop", f"must be a positive number of pixels, got {crop}")

    def build(self, spec: Mapping[str, Any], mean_image: Callable[[], Any]) -> Any:
        """The transform (an ``nn.Module``); ``mean_image()`` reads a mean image, for the pipelines that need one."""
        raise NotImplementedError

    def describe(self, spec: Mapping[str, Any]) -> str:
        """One readable line for a ``transforms`` record."""
        raise NotImplementedError


def _numbers(check: Any, spec: Mapping[str, Any], key: str, count: int, where: str) -> Sequence[float]:
    value = check.get(spec, key, where, (list,))
    if len(value) != count or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise check.fail(f"{where}.{key}", f"must be a list of {count} numbers, got {value!r}")
    return value


class CaffePipeline(Pipeline):
    """Caffe's evaluation: warp to a fixed size, centre crop, 0-255 scale minus a mean (image or per channel)."""

    name = "caffe"
    fields = frozenset({"pipeline", "crop", "resize", "mean_image", "mean_bgr"})
    probe = "uniform128"

    def validate(self, spec: Mapping[str, Any], check: Any, where: str, assets: Mapping[str, Any]) -> None:
        super().validate(spec, check, where, assets)
        crop = spec["crop"]
        resize = check.get(spec, "resize", where, (list,))
        if len(resize) != 2 or not all(isinstance(v, int) and v >= crop for v in resize):
            raise check.fail(f"{where}.resize", f"must be [height, width], each >= crop {crop}, got {resize!r}")
        has_image, has_values = "mean_image" in spec, "mean_bgr" in spec
        if has_image == has_values:
            raise check.fail(where, "a caffe pipeline needs exactly one of 'mean_image' (an asset name) or 'mean_bgr'")
        if has_image and (not isinstance(spec["mean_image"], str) or spec["mean_image"] not in assets):
            raise check.fail(f"{where}.mean_image", f"names asset {spec['mean_image']!r}, which is not in 'assets'")
        if has_image and assets[spec["mean_image"]].record.local is None:  # a transform never downloads
            raise check.fail(
                f"{where}.mean_image",
                f"asset {spec['mean_image']!r} must ship with the package "
                "('local'), so that building the transform needs no network",
            )
        if has_values:
            _numbers(check, spec, "mean_bgr", 3, where)

    def build(self, spec: Mapping[str, Any], mean_image: Callable[[], Any]) -> Any:
        from .transforms import CaffeTransform

        return CaffeTransform(
            crop=spec["crop"],
            mean_bgr=spec.get("mean_bgr"),
            mean_image=mean_image() if "mean_image" in spec else None,
            resize=(spec["resize"][0], spec["resize"][1]),
        )

    def describe(self, spec: Mapping[str, Any]) -> str:
        mean = (
            "the ILSVRC-2012 mean image (shipped with dsd-zoo)"
            if "mean_image" in spec
            else f"mean BGR {tuple(spec['mean_bgr'])}"
        )
        return (
            f"Caffe evaluation: warp to {spec['resize'][0]}x{spec['resize'][1]} (bilinear, no antialias), "
            f"centre crop {spec['crop']}, 0-255 scale minus {mean}, RGB input"
        )


class FbResNetPipeline(Pipeline):
    """fb.resnet.torch's evaluation: shorter side resized (Torch7 bicubic), centre crop, mean/std."""

    name = "fb_resnet"
    fields = frozenset({"pipeline", "crop", "resize", "mean", "std"})
    probe = "normal"

    def validate(self, spec: Mapping[str, Any], check: Any, where: str, assets: Mapping[str, Any]) -> None:
        super().validate(spec, check, where, assets)
        resize = check.get(spec, "resize", where, (int,))
        if resize < spec["crop"]:
            raise check.fail(f"{where}.resize", f"must be >= crop {spec['crop']}, got {resize}")
        _numbers(check, spec, "mean", 3, where)
        if any(v <= 0 for v in _numbers(check, spec, "std", 3, where)):
            raise check.fail(f"{where}.std", "must be positive")

    def build(self, spec: Mapping[str, Any], mean_image: Callable[[], Any]) -> Any:
        from .transforms import FbResNetTransform

        return FbResNetTransform(resize=spec["resize"], crop=spec["crop"], mean=spec["mean"], std=spec["std"])

    def describe(self, spec: Mapping[str, Any]) -> str:
        return (
            f"fb.resnet.torch evaluation: shorter side {spec['resize']} (Torch7 bicubic), centre crop "
            f"{spec['crop']}, [0, 1] then mean {tuple(spec['mean'])} / std {tuple(spec['std'])}, RGB input"
        )


class DigitsPipeline(Pipeline):
    """The embedded demo's 8x8 digits: values 0..max_value scaled to [0, 1]."""

    name = "digits"
    fields = frozenset({"pipeline", "crop", "max_value"})
    probe = "unit"
    decodes_photos = False

    def validate(self, spec: Mapping[str, Any], check: Any, where: str, assets: Mapping[str, Any]) -> None:
        super().validate(spec, check, where, assets)
        if check.get(spec, "max_value", where, (int,)) <= 0:
            raise check.fail(f"{where}.max_value", "must be positive")

    def build(self, spec: Mapping[str, Any], mean_image: Callable[[], Any]) -> Any:
        from .transforms import DigitsTransform

        return DigitsTransform(max_value=spec["max_value"], crop=spec["crop"])

    def describe(self, spec: Mapping[str, Any]) -> str:
        return f"8x8 digit images, values 0..{spec['max_value']} divided by {spec['max_value']}"


PIPELINES: Dict[str, Pipeline] = {p.name: p for p in (CaffePipeline(), FbResNetPipeline(), DigitsPipeline())}
#: The pipelines of the ImageNet models, which ``verify --imagenet`` evaluates on JPEG photos.
IMAGENET_PIPELINES: Tuple[str, ...] = tuple(name for name, p in PIPELINES.items() if p.decodes_photos)
