"""The offline self-check: ``python -m dsd_zoo.verify`` with no ``--imagenet``.

It needs no network and no dataset, and never touches the network (``DSD_ZOO_OFFLINE=1`` or not):

1. the manifest loads and validates; each entry's architecture exists and its crop is the
   architecture's input size;
2. every architecture builds on the meta device with its reference parameter count;
3. every weight file present locally (shipped with the package, or in the cache) is hashed
   again and compared with the manifest's sha256 (or, for a file the manifest has no digest for,
   with the sha256 pinned when it was first fetched), and its logit fingerprint is checked when
   the manifest records one;
4. the local evaluations run: the embedded digits zoo, on data that ships with the package.

A missing weight file is reported, not a failure, unless the model was named on the command line.

:func:`dsd_zoo.cache.find_local` answers "is this model's weight file here, and is it the right one?",
as for the ImageNet evaluation and ``get_model``: it never downloads, deletes or rewrites anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from ..cache import LocalCopy, find_local
from ..loading import identity_conflict, recorded_identity
from ..errors import DSDZooError
from ..manifest import Manifest, ModelEntry

__all__ = [
    "LocalEvaluation",
    "ArchCheck",
    "ModelCheck",
    "SelfCheckResult",
    "run_selfcheck",
]


@dataclass(frozen=True)
class LocalEvaluation:
    """One evaluation on data shipped with the package, shown in the self-check's table.

    Errors are percentages; ``expected_*`` are the numbers recorded for the file (``None``: not
    judged). ``failure`` is set when the evaluation could not run.
    """

    model: str
    dataset: str
    images: int = 0
    top1_err: Optional[float] = None
    top5_err: Optional[float] = None
    expected_top1_err: Optional[float] = None
    expected_top5_err: Optional[float] = None
    tolerance: float = 0.0
    failure: str = ""

    @property
    def ok(self) -> bool:
        if self.failure:
            return False
        pairs = ((self.top1_err, self.expected_top1_err), (self.top5_err, self.expected_top5_err))
        return all(e is None or (v is not None and abs(v - e) <= self.tolerance + 1e-9) for v, e in pairs)


def _embedded_zoo(manifest: Manifest, local: Mapping[str, LocalCopy]) -> List["LocalEvaluation"]:
    """The embedded zoo's rows of the self-check, from the manifest and every model's :class:`LocalCopy`.

    Every manifest model whose ``evaluation.dataset`` is ``"digits"`` is loaded from its verified
    shipped file and evaluated on the shipped test split (itself checked against its sha256),
    through the same manifest, integrity and loading code as the ImageNet models. The result is
    judged against the errors recorded when the file was made, within one image.
    """
    from ..api import get_model
    from ..download import fetch
    from ..dsd.embedded import evaluate_digits

    rows = []
    for entry in manifest.models.values():
        if entry.evaluation is None or entry.evaluation["dataset"] != "digits":
            continue
        weights = local.get(entry.name)
        if weights is not None and weights.state == "missing":
            continue  # not on this machine: the models table reports it (a failure only when named)
        if weights is None or weights.path is None or not weights.usable:  # unverifiable: judged by its results
            state = "missing" if weights is None else f"{weights.state}: {weights.detail}"
            rows.append(LocalEvaluation(entry.name, "digits", failure=f"weights not verified ({state})"))
            continue
        data = fetch(manifest.assets[entry.evaluation["data"]].record, offline=True)
        top1, top5, n = evaluate_digits(get_model(entry.name, weights=weights.path), data)
        recorded = entry.recorded or {}
        rows.append(
            LocalEvaluation(
                entry.name,
                f"digits ({n} held-out images)",
                images=n,
                top1_err=100 * top1,
                top5_err=100 * top5,
                expected_top1_err=recorded.get("top1_err"),
                expected_top5_err=recorded.get("top5_err"),
                # One image either way: another CPU's float rounding may flip a near-tie.
                tolerance=100 / n if n else 0.0,
            )
        )
    return rows


@dataclass(frozen=True)
class ArchCheck:
    """An architecture built on the meta device against its reference parameter count."""

    name: str
    params: Optional[int]
    reference: int
    failure: str = ""

    @property
    def ok(self) -> bool:
        return not self.failure and self.params == self.reference


@dataclass
class ModelCheck:
    """Everything the self-check found about one manifest model."""

    entry: ModelEntry
    weights: LocalCopy
    named: bool
    fingerprint: str = "-"
    fingerprint_ok: Optional[bool] = None
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing is wrong: a file that could not be checked (no digest to compare) is reported, not failed."""
        if self.problems or self.fingerprint_ok is False:
            return False
        if not self.weights.present:
            return not self.named
        return self.weights.usable


@dataclass
class SelfCheckResult:
    """The whole self-check; ``ok`` is what the exit status reports."""

    manifest_origin: str
    manifest_error: str = ""
    architectures: List[ArchCheck] = field(default_factory=list)
    models: List[ModelCheck] = field(default_factory=list)
    local_evaluations: List[LocalEvaluation] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.manifest_error
            and all(a.ok for a in self.architectures)
            and all(m.ok for m in self.models)
            and all(e.ok for e in self.local_evaluations)
        )


def check_architectures() -> List[ArchCheck]:
    """Build each architecture on the meta device (no memory, no init) and count its parameters."""
    import torch

    from ..models import ARCHITECTURES

    checks = []
    for name, arch in ARCHITECTURES.items():
        try:
            with torch.device("meta"):
                model = arch.build()
            checks.append(ArchCheck(name, sum(p.numel() for p in model.parameters()), arch.num_params))
        except Exception as exc:  # a broken builder is exactly what this check is for
            checks.append(ArchCheck(name, None, arch.num_params, f"{type(exc).__name__}: {exc}"))
    return checks


def _entry_problems(entry: ModelEntry) -> List[str]:
    from ..models import ARCHITECTURES

    arch = ARCHITECTURES[entry.arch]  # the manifest admits only architectures of this version
    crop = entry.transforms.get("crop")
    if crop != arch.input_size:
        return [f"transforms crop {crop} differs from the architecture's input size {arch.input_size}"]
    return []


def _check_fingerprint(entry: ModelEntry, path: Path) -> tuple:
    """(ok or None when not checked, text) for the logit fingerprint of a verified file."""
    if entry.fingerprint is None:
        return None, "none recorded"
    from ..api import get_model
    from ..fingerprint import check_fingerprint

    try:
        check_fingerprint(get_model(entry.name, weights=path, progress=False), entry.fingerprint)
    except DSDZooError as exc:  # a mismatch raises IntegrityError naming the deviation
        return False, f"FAIL: {exc}"
    return True, "ok"


def run_selfcheck(
    names: Sequence[str] = (), weights: Optional[Mapping[str, os.PathLike]] = None, manifest: Optional[Manifest] = None
) -> SelfCheckResult:
    """Run the offline self-check.

    Args:
        names: models named by the user: each must be present and verified.
        weights: ``{name: path}`` of local files to check instead of the cached ones.
        manifest: the manifest to check (default :func:`~dsd_zoo.manifest.load_manifest`).
    """
    from ..manifest import load_manifest

    weights = dict(weights or {})
    try:
        manifest = manifest or load_manifest()
    except DSDZooError as exc:
        return SelfCheckResult(
            manifest_origin=os.environ.get("DSD_ZOO_MANIFEST", "bundled manifest"), manifest_error=str(exc)
        )
    result = SelfCheckResult(manifest_origin=manifest.origin, architectures=check_architectures())
    for entry in manifest.models.values():
        check = ModelCheck(
            entry,
            find_local(entry.weights, path=weights.get(entry.name), rehash=True),
            named=entry.name in names,
            problems=_entry_problems(entry),
        )
        # An unverifiable file (e.g. converted by the user) is still compared with a recorded fingerprint.
        if check.weights.usable and check.weights.path is not None and not check.problems:
            check.fingerprint_ok, check.fingerprint = _check_fingerprint(entry, check.weights.path)
        result.models.append(check)
    for name, path in weights.items():
        entry = manifest.models[name]
        conflict = identity_conflict(path, name, entry.arch)
        if conflict is not None:  # given with --load-despite-recorded-identity
            result.notes.append(f"{name}: checked despite its recorded identity: {conflict.message}")
        elif recorded_identity(path) == (None, None):
            result.notes.append(
                f"{name}: {path} records no identity (no model or architecture in its metadata): "
                "nothing but its digest says which model it holds"
            )
    result.notes += [
        f"{entry.name}: the original {original.url} is checked only by the first "
        f"{len(original.digest.value)} hex digits of its sha256, all its publisher gave: weaker than a full digest"
        for entry in manifest.models.values()
        for original in entry.originals
        if original.digest is not None and original.digest.algorithm == "sha256_prefix"
    ]
    # The embedded digits zoo: a real baseline-vs-DSD table with no network.
    try:
        result.local_evaluations.extend(_embedded_zoo(manifest, {m.entry.name: m.weights for m in result.models}))
    except Exception as exc:  # a broken evaluation must not hide the rest of the report
        label = _embedded_zoo.__name__
        result.local_evaluations.append(LocalEvaluation(label, "-", failure=f"{type(exc).__name__}: {exc}"))
    return result
