"""Hugging Face model cards for released weight files, generated from the manifest.

A card is a ``README.md`` with YAML front matter (licence, tags, ``model-index`` with the
published errors as accuracies) followed by what a user needs to trust and use the file:
architecture, preprocessing, how to load it, provenance down to the sha256 of the original
bytes that were converted, the logit fingerprint, citation and licence. Every fact comes from
the manifest entry or from the release that produced the file (:class:`ReleaseFacts`); nothing
is typed by hand per model.

Licences map to Hugging Face licence ids where one exists; the others become ``other`` with a
``license_name`` and ``license_link``, as the Hub asks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import __version__
from ._markdown import markdown_table
from ._project import GITHUB_REPO
from .hub import KIND_TEXT, describe_transforms
from .manifest import Manifest, ModelEntry
from .models import ARCHITECTURES

__all__ = [
    "DATASET_ID",
    "DATASET_NAME",
    "ReleaseFacts",
    "card_metadata",
    "hf_license",
    "model_index",
    "render_model_card",
    "source_url",
]

#: The Hub dataset the published errors were measured on, and how the card names it.
DATASET_ID = "ILSVRC/imagenet-1k"
DATASET_NAME = "ILSVRC-2012 validation"
#: Where the torch.hub entry points live (:data:`dsd_zoo._project.GITHUB_REPO`); the release CLI can override it.
DEFAULT_TORCH_HUB_REPO = GITHUB_REPO

# Exact manifest licence strings -> Hub metadata. A string not listed here becomes "other"
# named after its own text, so a new manifest entry never gets a licence it does not have.
# "{stem}" in a link is the original file's name without its extension.
_LICENSES: Mapping[str, Mapping[str, str]] = {
    "BSD-2-Clause": {"license": "bsd-2-clause"},
    "BSD-3-Clause": {"license": "bsd-3-clause"},
    "CC-BY-4.0": {"license": "cc-by-4.0"},
    # songhan/SqueezeNet-Deep-Compression's LICENCE file is the two-clause BSD text.
    "BSD (songhan/SqueezeNet-Deep-Compression LICENCE)": {"license": "bsd-2-clause"},
    # The Hub's own id for "no licence stated": the DSD release ships no licence file.
    "not stated (the songhan/DSD release has no license file)": {"license": "unknown"},
    "unrestricted use (BVLC model zoo terms for this model)": {
        "license": "other",
        "license_name": "bvlc-unrestricted-use",
        "license_link": "https://github.com/BVLC/caffe/blob/master/models/{stem}/readme.md",
    },
}


@dataclass(frozen=True)
class ReleaseFacts:
    """What a release produced, beyond the manifest entry: the facts a card reports.

    ``metadata`` is the safetensors ``__metadata__`` written by the converter (source file
    and its sha256, converter versions, conversion options and warnings).
    """

    weights_file: str
    sha256: str
    size: int
    metadata: Mapping[str, str]
    fingerprint: Mapping[str, Any]
    nonzero_weights: Optional[Tuple[int, int]] = None  # (non-zero, total) conv/linear weights
    hf_repo_id: Optional[str] = None
    hf_filename: Optional[str] = None
    torch_hub_repo: str = DEFAULT_TORCH_HUB_REPO


def hf_license(entry: ModelEntry) -> Dict[str, str]:
    """The ``license`` (and for ``other``, ``license_name`` / ``license_link``) front-matter fields."""
    original = entry.original
    # Not listed: named after its own text; the original release is where its terms are.
    slug = re.sub(r"[^a-z0-9]+", "-", entry.license.lower()).strip("-")[:64] or "unknown"
    fields = _LICENSES.get(entry.license) or {
        "license": "other",
        "license_name": slug,
        "license_link": original.url if original is not None else "",
    }
    stem = original.file_name.rsplit(".", 1)[0] if original is not None else ""
    return {key: value.replace("{stem}", stem) for key, value in fields.items() if value}


def source_url(text: str) -> Optional[str]:
    """A URL for a manifest ``metrics.paper.source`` text: its arXiv id, else its GitHub repository.

    >>> source_url("SqueezeNet paper (arXiv 1602.07360), Table 2")
    'https://arxiv.org/abs/1602.07360'
    >>> source_url("DSD release README (songhan/DSD), single-crop ILSVRC-2012 val")
    'https://github.com/songhan/DSD'
    """
    arxiv = re.search(r"arXiv[: ]+(\d{4}\.\d{4,5})", text, re.IGNORECASE)
    if arxiv:
        return f"https://arxiv.org/abs/{arxiv.group(1)}"
    repo = re.search(r"\(([A-Za-z0-9-]+/[A-Za-z0-9._-]+)[),]", text)
    return f"https://github.com/{repo.group(1)}" if repo else None


def _accuracy(error: float) -> float:
    return round(100.0 - error, 4)  # 100 - 41.48 is 58.519999... in binary


def _published(entry: ModelEntry) -> List[Tuple[str, float]]:
    """The published errors of ``entry``: ``("Top-1", percent)``, ``("Top-5", percent)``, those it has."""
    return [(k, e) for k, e in (("Top-1", entry.paper_top1_err), ("Top-5", entry.paper_top5_err)) if e is not None]


def model_index(entry: ModelEntry) -> List[Dict[str, Any]]:
    """The ``model-index`` of a card: the published top-1/top-5 errors as accuracies (percent).

    Empty when the manifest has no published numbers for the model.
    """
    metrics = [
        {"type": "accuracy", "value": _accuracy(error), "name": f"{label} accuracy (single crop, %)"}
        for label, error in _published(entry)
    ]
    if not metrics:
        return []
    result: Dict[str, Any] = {
        "task": {"type": "image-classification", "name": "Image Classification"},
        "dataset": {"type": DATASET_ID, "name": DATASET_NAME, "split": "validation"},
        "metrics": metrics,
    }
    url = source_url(entry.paper_source)
    if entry.paper_source and url is not None:  # the Hub requires a URL with a source name
        result["source"] = {"name": entry.paper_source, "url": url}
    return [{"name": entry.name, "results": [result]}]


def card_metadata(entry: ModelEntry, facts: ReleaseFacts) -> Dict[str, Any]:
    """The YAML front matter of the card, as a dict in display order."""
    tags = ["image-classification", "dsd", "pytorch", "safetensors", entry.kind, entry.arch]
    metadata: Dict[str, Any] = {
        **hf_license(entry),
        "library_name": "dsd-zoo",
        "pipeline_tag": "image-classification",
        "tags": list(dict.fromkeys(tags)),  # de-duplicated, in order ("dsd" is also a kind)
        "datasets": [DATASET_ID],
        "metrics": ["accuracy"],
    }
    index = model_index(entry)
    if index:
        metadata["model-index"] = index
    return metadata


def _code(text: str, language: str = "") -> List[str]:
    return [f"```{language}", text.rstrip("\n"), "```"]


def _architecture(entry: ModelEntry, facts: ReleaseFacts) -> List[str]:
    arch = ARCHITECTURES[entry.arch]
    lines = [
        "## Architecture",
        "",
        f"{arch.family} (`{entry.arch}`): {arch.num_params:,} parameters, evaluated on "
        f"{arch.input_size}x{arch.input_size} crops, 1000 ILSVRC-2012 classes (sorted WordNet ids).",
    ]
    if facts.nonzero_weights is not None:
        nonzero, total = facts.nonzero_weights
        lines += [
            "",
            f"Non-zero convolution and fully connected weights in this file: {nonzero:,} of {total:,} "
            f"({100.0 * nonzero / max(total, 1):.1f}%).",
        ]
    return lines


def _results(entry: ModelEntry) -> List[str]:
    rows = [(f"{label} error", f"{error:.2f}% (accuracy {_accuracy(error):g}%)") for label, error in _published(entry)]
    if not rows:
        return ["## Results", "", "No published error for these weights."]
    lines = [
        "## Results",
        "",
        f"Single-crop {DATASET_NAME} (50,000 images), as published"
        + (f": {entry.paper_source.rstrip('.')}." if entry.paper_source else "."),
        "This release does not re-measure them; `python -m dsd_zoo.verify --imagenet DIR` does, on your copy "
        "of the validation set.",
        "",
        *markdown_table(("", ""), rows),
    ]
    if entry.heads:
        heads = [
            (f"`{head}` head", f"top-1 {logged['top1_err']:.2f}%, top-5 {logged['top5_err']:.2f}%")
            for head, logged in entry.heads.items()
        ]
        lines += [
            "",
            "The auxiliary classifiers, as logged at release (kept in this file when the original has them; "
            "`aux_logits=True` loads them, and `verify` checks them too):",
            "",
            *markdown_table(("", ""), heads),
            "",
            "Sources: " + "; ".join(f"{h}: {v['source']}" for h, v in entry.heads.items()),
        ]
    return lines


def _how_to_load(entry: ModelEntry, facts: ReleaseFacts) -> List[str]:
    lines = [
        "## How to load",
        "",
        *_code("pip install dsd-zoo", "bash"),
        "",
        *_code(
            "import dsd_zoo\n"
            f"model = dsd_zoo.get_model({entry.name!r})          # checksummed download, cached\n"
            f"preprocess = dsd_zoo.get_weights({entry.name!r}).transforms()\n"
            "logits = model(preprocess(image).unsqueeze(0))   # image: a PIL image",
            "python",
        ),
        "",
        "With torch.hub:",
        "",
        *_code(f"import torch\nmodel = torch.hub.load({facts.torch_hub_repo!r}, {entry.name!r})", "python"),
    ]
    if facts.hf_repo_id is not None:
        lines += [
            "",
            "Or this file directly (its sha256 is in the provenance table below):",
            "",
            *_code(
                "from huggingface_hub import hf_hub_download\n"
                f"path = hf_hub_download({facts.hf_repo_id!r}, {facts.hf_filename or facts.weights_file!r})\n"
                f"model = dsd_zoo.get_model({entry.name!r}, weights=path)  # strict key and shape check",
                "python",
            ),
        ]
    return lines


def _provenance(entry: ModelEntry, facts: ReleaseFacts) -> List[str]:
    meta = facts.metadata
    rows: List[Tuple[str, str]] = []
    original = entry.original
    if original is not None:
        if original.digest is None:  # a release accepts such an original only with --trust-unverified
            published = (
                "none published; the releaser accepted the downloaded bytes without a check (`--trust-unverified`)"
            )
        elif original.pinned:
            published = (
                f"none published; sha256 `{original.digest.value}` pinned by dsd-zoo's release from the copy "
                "it converted (checked before conversion)"
            )
        else:
            published = f"{original.digest.algorithm} `{original.digest.value}` (checked before conversion)"
        rows += [("Original release", f"<{original.url}> ({original.format})"), ("Published digest", published)]
        if original.record.size is not None:
            rows.append(("Published size", f"{original.record.size:,} bytes"))
    rows += [
        ("Converted from", f"`{meta.get('source_file', '?')}`, sha256 `{meta.get('source_sha256', '?')}`"),
        (
            "Converter",
            f"{meta.get('converter') or f'dsd-zoo {__version__}'}, mapping version {meta.get('converter_version', '?')}",
        ),
        ("Conversion options", f"`{meta.get('conversion_options', '{}')}`"),
        # The converter records its warnings as a JSON list.
        ("Conversion warnings", "; ".join(map(str, json.loads(meta.get("conversion_warnings", "[]")))) or "none"),
        ("This file", f"`{facts.weights_file}`, {facts.size:,} bytes, sha256 `{facts.sha256}`"),
    ]
    return [
        "## Provenance",
        "",
        f"Source: {entry.source.rstrip('.')}." if entry.source else "Source: see the original release below.",
        "",
        *markdown_table(("", ""), rows),
        "",
        "The converter's provenance is also in the file's safetensors metadata "
        "(`safetensors.safe_open(path, 'pt').metadata()`).",
    ]


def _fingerprint(facts: ReleaseFacts) -> List[str]:
    return [
        "## Logit fingerprint",
        "",
        "The logits these weights give on a probe input generated in code (no file), recorded at release. "
        "A file that is intact but wrongly converted (e.g. BGR/RGB swapped) fails it; "
        "`dsd_zoo.fingerprint.check_fingerprint(model, fingerprint)` checks a loaded model.",
        "",
        *_code(_compact_json(facts.fingerprint), "json"),
    ]


def _compact_json(obj: Mapping[str, Any]) -> str:
    """One line per key: the fingerprint's lists stay readable instead of one number per line."""
    return "{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in obj.items()) + "\n}"


def render_model_card(entry: ModelEntry, manifest: Manifest, facts: ReleaseFacts) -> str:
    """The ``README.md`` of a released model: YAML front matter, then the card's sections."""
    import yaml  # a dependency of huggingface_hub, itself a dependency of dsd-zoo

    metadata = card_metadata(entry, facts)
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000).rstrip(
            "\n"
        ),
        "---",
        "",
        f"# {entry.name}",
        "",
        f"`{entry.name}` is {KIND_TEXT[entry.kind]}, converted to safetensors from its authors' original "
        "release by `python -m dsd_zoo.release`.",
    ]
    if entry.description:
        lines += ["", entry.description]
    lines += [
        "",
        *_architecture(entry, facts),
        "",
        "## Preprocessing",
        "",
        f"{describe_transforms(dict(entry.transforms))}.",
        f"`dsd_zoo.get_weights({entry.name!r}).transforms()` applies it to a PIL image or a uint8 tensor; "
        "other preprocessing costs accuracy.",
        "",
        *_results(entry),
        "",
        *_how_to_load(entry, facts),
        "",
        *_provenance(entry, facts),
        "",
        *_fingerprint(facts),
    ]
    citation = manifest.citation_text(entry)
    if citation:
        lines += ["", "## Citation", "", *_code(citation, "bibtex")]
    link = metadata.get("license_link")
    lines += [
        "",
        "## License",
        "",
        f"{entry.license}." + (f" Terms: <{link}>." if link else ""),
        "The weights keep the licence their authors released them under; dsd-zoo only converted them.",
    ]
    return "\n".join(lines) + "\n"
