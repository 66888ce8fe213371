"""Public API: ``list_models``, ``get_model``, ``get_weights`` — one code path for every model.

Every model name comes from the manifest; its architecture from
:data:`dsd_zoo.models.ARCHITECTURES`. There is no per-model code anywhere: adding a model is
one manifest entry (plus an architecture if it is new).
"""

from __future__ import annotations

import fnmatch
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:  # annotations only: importing dsd_zoo must not import torch
    import torch

from .errors import IntegrityError, UnknownModelError, WeightsError
from .manifest import KINDS, Manifest, ModelEntry, load_manifest
from .models import ARCHITECTURES, Architecture

__all__ = ["Weights", "list_models", "get_model", "get_weights", "get_entry", "expand_names"]

_CLASSES_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.tsv"


@functools.lru_cache(maxsize=None)
def imagenet_classes() -> Tuple[Tuple[str, str], ...]:
    """The 1000 ILSVRC-2012 classes in index order (sorted WNIDs): (wnid, names) pairs."""
    rows = [line.split("\t", 1) for line in _CLASSES_FILE.read_text(encoding="utf-8").splitlines() if line]
    return tuple((wnid, names) for wnid, names in rows)


def get_entry(name: str, manifest: Optional[Manifest] = None) -> ModelEntry:
    """The manifest entry of ``name``; an unknown name raises an error listing the closest ones."""
    return (manifest or load_manifest()).entry(name)


def list_models(pattern: Optional[str] = None, kind: Optional[str] = None) -> List[str]:
    """Names of all models, in manifest order, optionally filtered.

    Args:
        pattern: a shell-style pattern, e.g. ``"*_dsd"`` or ``"resnet*"``.
        kind: ``"dsd"``, ``"baseline"`` or ``"sparse"``.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))} (or None), got {kind!r}")
    return [
        e.name
        for e in load_manifest().models.values()
        if (pattern is None or fnmatch.fnmatchcase(e.name, pattern)) and (kind is None or e.kind == kind)
    ]


def expand_names(patterns: Sequence[str], manifest: Optional[Manifest] = None) -> List[str]:
    """Model names from names or shell patterns (``"*_dsd"``), in the order given, without repeats.

    An unknown name or a pattern that matches nothing raises :class:`UnknownModelError`.
    """
    manifest = manifest or load_manifest()
    names: List[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = fnmatch.filter(list(manifest.models), pattern)
            if not matches:
                raise UnknownModelError(f"no model matches {pattern!r} (all models: {', '.join(manifest.models)})")
        else:
            matches = [get_entry(pattern, manifest).name]
        names += [m for m in matches if m not in names]
    return names


class Weights:
    """A model's released weights: where they come from, what they scored, how to preprocess.

    Modelled on torchvision's ``WeightsEnum`` members: ``.meta`` holds the facts and
    ``.transforms()`` returns the exact preprocessing of the original evaluation.
    """

    def __init__(self, entry: ModelEntry, manifest: Manifest) -> None:
        self.name = entry.name
        self.entry = entry
        self.manifest = manifest

    @property
    def architecture(self) -> Architecture:
        """The :class:`~dsd_zoo.models.Architecture` these weights belong to."""
        return ARCHITECTURES[self.entry.arch]

    @functools.cached_property
    def meta(self) -> Dict[str, Any]:
        """Facts about the weights (keys follow torchvision's ``Weights.meta`` where they overlap)."""
        entry, arch = self.entry, self.architecture
        original = entry.original
        return {
            "name": entry.name,
            "arch": entry.arch,
            "kind": entry.kind,
            "categories": (
                list(entry.categories)
                if entry.categories is not None
                else [names.split(",")[0] for _, names in imagenet_classes()]
            ),
            "wnids": None if entry.categories is not None else [wnid for wnid, _ in imagenet_classes()],
            "num_params": arch.num_params,
            "min_size": arch.min_size,
            "input_size": (arch.input_size, arch.input_size),
            "paper": {"top1_err": entry.paper_top1_err, "top5_err": entry.paper_top5_err, "source": entry.paper_source},
            "recorded": None if entry.recorded is None else dict(entry.recorded),
            "source": entry.source,
            "original": None
            if original is None
            else {
                "url": original.url,
                "format": original.format,
                "digest": {original.digest.algorithm: original.digest.value} if original.digest else None,
            },
            "weights": {"file": entry.weights.file, "sha256": entry.weights.sha256, "size": entry.weights.size},
            "license": entry.license,
            "citation": self.manifest.citation_text(entry),
            "transforms": dict(entry.transforms),
        }

    def transforms(self):
        """The preprocessing that produced the published numbers, as an ``nn.Module``.

        It maps a PIL image or a uint8 tensor (3, H, W) to a float tensor (3, crop, crop).
        Pure and offline: AlexNet's ILSVRC-2012 mean image ships with dsd-zoo.
        """
        from .pipelines import PIPELINES

        def mean_image():  # called only by a pipeline whose validated spec names a shipped asset
            # Imported here: the other pipelines need no file, and verify's run then never imports
            # the downloader (requests and all).
            from .download import fetch
            from .loading import load_tensors

            asset = self.manifest.assets[self.entry.transforms["mean_image"]]
            return load_tensors(fetch(asset.record))[0]["mean_image"]  # checked, never downloaded

        return PIPELINES[self.entry.transforms["pipeline"]].build(self.entry.transforms, mean_image)

    def resolve(self, progress: bool = True, trust_unverified: Optional[bool] = None) -> Path:
        """Return the path of the verified local weight file, fetching or converting it if needed."""
        from .resolve import resolve_weights

        return resolve_weights(self.entry, self.manifest, progress=progress, trust_unverified=trust_unverified)

    def __repr__(self) -> str:
        return f"Weights({self.name!r}, arch={self.entry.arch!r}, kind={self.entry.kind!r})"


def get_weights(name: str) -> Weights:
    """The :class:`Weights` of a model: ``.meta`` and ``.transforms()``; no file or network access."""
    manifest = load_manifest()
    return Weights(get_entry(name, manifest), manifest)


def get_model(
    name: str,
    pretrained: bool = True,
    weights: Optional[Union[str, os.PathLike, Weights]] = None,
    progress: bool = True,
    trust_unverified: Optional[bool] = None,
    load_despite_recorded_identity: bool = False,
    **kwargs: Any,
) -> "torch.nn.Module":
    """Build a model by name, with its released weights by default.

    Args:
        name: a name from :func:`list_models`, e.g. ``"resnet50_dsd"``.
        pretrained: load the released, checksummed weights. ``False`` builds the architecture
            with random weights and touches no file and no network.
        weights: path of a local safetensors file to load instead of any download (for example
            the output of ``python -m dsd_zoo.convert``; its keys and shapes are checked strictly,
            and ``num_classes`` may be given to match it), or a :class:`Weights` of this model
            (the same as ``pretrained=True``).
        progress: show a progress bar while downloading.
        trust_unverified: allow an original release that has no published digest (trust on
            first use: its sha256 is pinned in the cache). Also ``DSD_ZOO_TRUST_UNVERIFIED=1``.
        load_despite_recorded_identity: load a ``weights`` file whose metadata says it holds
            another model or architecture, or that says it holds ``name`` but does not reproduce
            ``name``'s published logit fingerprint (refused otherwise, with both named). Only for
            a deliberate experiment: results are then not ``name``'s.
        **kwargs: passed to the architecture builder (e.g. ``aux_logits=True`` for GoogLeNet;
            ``num_classes`` only without pretrained weights).

    Returns:
        The model in eval mode when weights were loaded.
    """
    from .fingerprint import check_fingerprint
    from .loading import build_with_weights, identity_conflict, recorded_identity

    entry = get_entry(name)
    arch = ARCHITECTURES[entry.arch]
    if isinstance(weights, Weights):
        if weights.name != name:
            raise WeightsError(f"weights of {weights.name} given for {name}; pass get_weights({name!r}) or a file")
        weights, pretrained = None, True
    elif weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"weights must be a path to a safetensors file or a Weights of {name}, got {type(weights).__name__}"
        )
    if weights is None and not pretrained:
        return arch.build(**kwargs)
    user_file = weights is not None  # what resolve() returns was checked there, by its digest
    if weights is None:  # the released file: its class count is the manifest's
        classes = len(entry.categories) if entry.categories is not None else 1000
        if kwargs.get("num_classes", classes) != classes:
            raise WeightsError(
                f"{name}: the released weights have {classes} classes; for another num_classes build "
                "with pretrained=False and train, or pass weights=FILE saved with that many"
            )
        weights = get_weights(name).resolve(progress=progress, trust_unverified=trust_unverified)
    judge = not load_despite_recorded_identity
    conflict = identity_conflict(weights, name, entry.arch) if judge else None
    if conflict is not None:
        other = (
            f"load it as get_model({conflict.recorded_model!r}, weights=...)"
            if conflict.recorded_model in list_models()
            else "load it as the model it holds"
        )
        raise WeightsError(
            f"{conflict.message}; {other}, or pass load_despite_recorded_identity=True to load it as {name} anyway"
        )
    model = build_with_weights(arch, weights, kwargs)
    # A user's file that says it holds this model must compute its published logits (one forward
    # pass on the probe). One that names no model, such as a user's own fine-tune, is meant to differ.
    if judge and user_file and entry.fingerprint is not None and recorded_identity(weights)[0] == name:
        try:
            check_fingerprint(model, entry.fingerprint)
        except IntegrityError as exc:
            raise WeightsError(
                f"{weights} says it holds {name}, but its outputs are not the ones published for "
                f"{name}: {exc}. get_model({name!r}) fetches the verified file; "
                "load_despite_recorded_identity=True loads this one anyway"
            ) from exc
    return model
