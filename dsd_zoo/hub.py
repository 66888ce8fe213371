"""torch.hub entry points, generated from the manifest: one function per model, no copies.

``hubconf.py`` at the repository root calls :func:`entrypoints` and publishes the result, so
``torch.hub.list``, ``torch.hub.help`` and ``torch.hub.load`` see every manifest model with
a docstring written from its manifest entry. The repository those calls name is
:data:`dsd_zoo._project.GITHUB_REPO` (:func:`usage`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from ._project import GITHUB_REPO
from .manifest import Manifest, ModelEntry, load_manifest
from .pipelines import PIPELINES

__all__ = ["entrypoints", "model_docstring", "describe_transforms", "usage"]

#: What each manifest ``kind`` is, for docstrings and model cards.
KIND_TEXT = {
    "dsd": "a DSD-trained model (Dense-Sparse-Dense, Han et al., ICLR 2017)",
    "baseline": "a baseline of the DSD table (the model DSD training started from)",
    "sparse": "the sparse stage (Deep Compression) from which DSD's re-dense phase started",
}


def describe_transforms(spec: Dict[str, Any]) -> str:
    """One readable line for a manifest ``transforms`` record."""
    return PIPELINES[spec["pipeline"]].describe(spec)


def usage(indent: str = "") -> str:
    """The torch.hub calls that load a model from the project's repository, one per line."""
    lines = [
        f"model = torch.hub.load({GITHUB_REPO!r}, 'resnet50_dsd')",
        f"torch.hub.list({GITHUB_REPO!r})",
        f"print(torch.hub.help({GITHUB_REPO!r}, 'resnet50_dsd'))",
    ]
    return "\n".join(indent + line for line in lines)


def _percent(value: float | None) -> str:
    return "not published" if value is None else f"{value:.2f}%"


def model_docstring(entry: ModelEntry, manifest: Manifest) -> str:
    """The help text of one model: what ``torch.hub.help`` prints."""
    from .models import ARCHITECTURES

    arch = ARCHITECTURES[entry.arch]
    if entry.paper_top1_err is not None or entry.paper_top5_err is not None:
        errors = (
            f"Published single-crop ILSVRC-2012 validation error: top-1 {_percent(entry.paper_top1_err)}, "
            f"top-5 {_percent(entry.paper_top5_err)}" + (f" ({entry.paper_source})." if entry.paper_source else ".")
        )
    elif entry.recorded is not None:
        errors = (
            f"Measured error: top-1 {entry.recorded['top1_err']:.2f}%, top-5 {entry.recorded['top5_err']:.2f}% "
            f"({entry.recorded.get('source', 'recorded when the file was made')})."
        )
    else:
        errors = "No published error."
    lines = [
        f"{entry.name}: {arch.family}.",
        "",
        f"Kind: {KIND_TEXT[entry.kind]}. Parameters: {arch.num_params:,}. Evaluation crop: {arch.input_size}x{arch.input_size}.",
        errors,
        f"Preprocessing: {describe_transforms(dict(entry.transforms))}; "
        f"dsd_zoo.get_weights({entry.name!r}).transforms() applies it.",
        f"Source: {entry.source}.",
    ]
    if entry.original is not None:
        digest = (
            "no published digest"
            if entry.original.digest is None
            else f"{entry.original.digest.algorithm} {entry.original.digest.value}"
        )
        lines.append(f"Original release: {entry.original.url} ({entry.original.format}; {digest}).")
    published = entry.weights.local is not None or entry.weights.hf is not None or bool(entry.weights.urls)
    unverified = not published and entry.original is not None and entry.original.digest is None
    trust = ", trust_unverified=True" if unverified else ""
    lines.append(f"Load: torch.hub.load({GITHUB_REPO!r}, {entry.name!r}{trust}).")
    if published:
        pretrained_doc = ["    pretrained (bool): load the released, checksummed weights (default). False builds the"]
    else:  # what a user of this manifest gets today, not what a later release will publish
        pretrained_doc = [
            "    pretrained (bool): load the weights (default): converted weights are not published yet,",
            "        so the original release is fetched and converted on this machine",
        ]
        if unverified:
            pretrained_doc += [
                "        (it has no published digest: pass trust_unverified=True to accept and pin the",
                "        first copy's sha256)",
            ]
        pretrained_doc[-1] += ". False builds the"
    lines += [
        f"License: {entry.license}.",
        "",
        "Args:",
        *pretrained_doc,
        "        architecture with random weights, without any file or network access.",
        "    progress (bool): show a progress bar while downloading.",
        "    **kwargs: passed to dsd_zoo.get_model, e.g. weights='file.safetensors' to load a local",
        "        file instead of downloading, trust_unverified=True for originals without a digest.",
    ]
    return "\n".join(lines)


def _entrypoint(name: str, doc: str) -> Callable[..., Any]:
    def entrypoint(pretrained: bool = True, progress: bool = True, **kwargs: Any):
        from .api import get_model

        return get_model(name, pretrained=pretrained, progress=progress, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = doc
    return entrypoint


def entrypoints() -> Dict[str, Callable[..., Any]]:
    """A hub entry point for every model of the active manifest, keyed by model name."""
    manifest = load_manifest()
    return {name: _entrypoint(name, model_docstring(entry, manifest)) for name, entry in manifest.models.items()}
