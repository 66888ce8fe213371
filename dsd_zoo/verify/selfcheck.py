"""The offline self-check: ``python -m dsd_zoo.verify`` with no ``--imagenet``.

It needs no network and no dataset, and never touches the network (``DSD_ZOO_OFFLINE=1`` or not):

1. the manifest loads and validates; each entry's architecture exists and its crop is the
   architecture's input size;
2. every architecture builds on the meta device with its reference parameter count;
3. every weight file present locally (shipped with the package, or in the cache) is hashed
   again and compared with the manifest's sha256 (or, for a file the manifest has no digest for,
   with the sha256 pinned when it was first fetched), and its logit fingerprint is checked when
   the manifest records one;
4. the registered local evaluations run (:data:`LOCAL_EVALUATIONS`, e.g. the embedded digits
   zoo), each on data that ships with the package.

A missing weight file is reported, not a failure, unless the model was named on the command line.

:func:`find_local_weights` is the one place that answers "is this model's weight file here, and
is it the right one?"; the ImageNet evaluation uses it too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from ..errors import DSDZooError
from ..manifest import Manifest, ModelEntry, shipped_file

__all__ = [
    "LocalWeights",
    "LocalEvaluation",
    "LOCAL_EVALUATIONS",
    "register_local_evaluation",
    "ArchCheck",
    "ModelCheck",
    "SelfCheckResult",
    "find_local_weights",
    "check_weight_file",
    "run_selfcheck",
]

VERIFIED_STATES = ("verified", "pinned")


@dataclass(frozen=True)
class LocalWeights:
    """A model's weight file on this machine and what was proven about it.

    ``state`` is one of ``missing``, ``verified`` (sha256 equals the manifest's), ``pinned``
    (equals the sha256 pinned on first use; the manifest has none), ``mismatch`` (differs) or
    ``unverifiable`` (no digest to compare with).
    """

    name: str
    path: Optional[Path]
    state: str
    detail: str = ""

    @property
    def present(self) -> bool:
        return self.path is not None

    @property
    def verified(self) -> bool:
        return self.state in VERIFIED_STATES


def check_weight_file(entry: ModelEntry, path: Path, *, rehash: bool = True) -> LocalWeights:
    """Compare the file at ``path`` with what the manifest says ``entry``'s weights are.

    With ``rehash=False`` a cache stamp that still describes the file (same size, mtime and
    inode) and records the expected sha256 is accepted without reading the file again. Nothing
    is ever deleted or rewritten here: a checker reports, the cache layer repairs. A file that
    cannot be read is a mismatch naming the reason, so the rest of the report still comes out.
    """
    try:
        return _check_weight_file(entry, path, rehash)
    except OSError as exc:
        return LocalWeights(entry.name, path, "mismatch", f"cannot be read: {exc.strerror or exc}")


def _check_weight_file(entry: ModelEntry, path: Path, rehash: bool) -> LocalWeights:
    from ..cache import read_stamp
    from ..digests import Digest, hash_file

    expected, size = entry.weights.sha256, entry.weights.size
    pinned = False
    if expected is None:
        stamp = read_stamp(path)
        if stamp is None or not stamp.pinned:
            return LocalWeights(entry.name, path, "unverifiable",
                                "the manifest records no sha256 for this file and no sha256 was pinned when it was "
                                "fetched; it cannot be checked (use a manifest with published digests)")
        expected, size, pinned = stamp.sha256, stamp.size, True
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return LocalWeights(entry.name, path, "mismatch", f"{actual_size} bytes, expected {size}")
    digest = Digest("sha256", expected)
    if not rehash:
        stamp = read_stamp(path)
        if stamp is not None and stamp.describes(path.stat()) and stamp.satisfies(digest, size):
            return LocalWeights(entry.name, path, "pinned" if pinned else "verified", "cache stamp")
    actual = hash_file(path, ("sha256",))["sha256"]
    if actual != expected:
        source = "pinned on first use" if pinned else "in the manifest"
        return LocalWeights(entry.name, path, "mismatch", f"sha256 {actual}, expected {expected} ({source})")
    return LocalWeights(entry.name, path, "pinned" if pinned else "verified", "sha256 " + actual[:16] + "...")


def _candidate_paths(entry: ModelEntry, manifest: Manifest) -> List[Path]:
    from ..cache import resolve_cache_dir

    paths = []
    if entry.weights.local is not None:
        paths.append(shipped_file(entry.weights.local))
    paths.append(resolve_cache_dir() / entry.weights.file)
    return paths


def find_local_weights(entry: ModelEntry, manifest: Manifest, *, override: Optional[os.PathLike] = None,
                       rehash: bool = True) -> LocalWeights:
    """Where ``entry``'s weight file is on this machine, and whether it is the right one.

    Looks at ``override`` (a ``--weights NAME=PATH`` file) if given, else the file shipped with
    the manifest (``weights.local``), else the cache (``$DSD_ZOO_CACHE`` or the torch hub
    folder). Never downloads anything.
    """
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            return LocalWeights(entry.name, None, "missing", f"--weights file {str(path)!r} does not exist")
        return check_weight_file(entry, path, rehash=rehash)
    for path in _candidate_paths(entry, manifest):
        if path.is_file():
            return check_weight_file(entry, path, rehash=rehash)
    return LocalWeights(entry.name, None, "missing", "not in the cache")


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


# A provider gets the manifest and every model's LocalWeights and returns its evaluations;
# it should evaluate only weights whose state is verified, through get_model(name, weights=path).
LocalEvaluationProvider = Callable[[Manifest, Mapping[str, LocalWeights]], Iterable[LocalEvaluation]]
def _embedded_zoo(manifest: Manifest, local: Mapping[str, "LocalWeights"]) -> List["LocalEvaluation"]:
    from ..dsd.embedded import selfcheck_evaluations

    return selfcheck_evaluations(manifest, local)


# The embedded digits zoo is evaluated by default: a real baseline-vs-DSD table with no network.
LOCAL_EVALUATIONS: List[LocalEvaluationProvider] = [_embedded_zoo]


def register_local_evaluation(provider: LocalEvaluationProvider) -> LocalEvaluationProvider:
    """Add an offline evaluation to the self-check (usable as a decorator)."""
    if provider not in LOCAL_EVALUATIONS:
        LOCAL_EVALUATIONS.append(provider)
    return provider


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
    weights: LocalWeights
    named: bool
    fingerprint: str = "-"
    fingerprint_ok: Optional[bool] = None
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        if self.problems or self.fingerprint_ok is False:
            return False
        if not self.weights.present:
            return not self.named
        return self.weights.verified


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
        return (not self.manifest_error and all(a.ok for a in self.architectures) and all(m.ok for m in self.models)
                and all(e.ok for e in self.local_evaluations))


def check_architectures(names: Optional[Iterable[str]] = None) -> List[ArchCheck]:
    """Build each architecture on the meta device (no memory, no init) and count its parameters."""
    import torch

    from ..models import ARCHITECTURES

    checks = []
    for name in names if names is not None else ARCHITECTURES:
        arch = ARCHITECTURES[name]
        try:
            with torch.device("meta"):
                model = arch.build()
            checks.append(ArchCheck(name, sum(p.numel() for p in model.parameters()), arch.num_params))
        except Exception as exc:  # a broken builder is exactly what this check is for
            checks.append(ArchCheck(name, None, arch.num_params, f"{type(exc).__name__}: {exc}"))
    return checks


def _entry_problems(entry: ModelEntry) -> List[str]:
    from ..models import ARCHITECTURES

    arch = ARCHITECTURES.get(entry.arch)
    if arch is None:
        return [f"architecture {entry.arch!r} is not in this dsd-zoo version"]
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
        outcome = check_fingerprint(get_model(entry.name, weights=path, progress=False), entry.fingerprint)
    except DSDZooError as exc:
        return False, f"FAIL: {exc}"
    if outcome is False:
        return False, "FAIL: the logits differ from the recorded fingerprint"
    return True, "ok"


def run_selfcheck(names: Sequence[str] = (), weights: Optional[Mapping[str, os.PathLike]] = None,
                  manifest: Optional[Manifest] = None) -> SelfCheckResult:
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
        return SelfCheckResult(manifest_origin=os.environ.get("DSD_ZOO_MANIFEST", "bundled manifest"),
                               manifest_error=str(exc))
    result = SelfCheckResult(manifest_origin=manifest.origin, architectures=check_architectures())
    local: Dict[str, LocalWeights] = {}
    for entry in manifest.models.values():
        check = ModelCheck(entry, find_local_weights(entry, manifest, override=weights.get(entry.name)),
                           named=entry.name in names, problems=_entry_problems(entry))
        local[entry.name] = check.weights
        if check.weights.verified and not check.problems:
            check.fingerprint_ok, check.fingerprint = _check_fingerprint(entry, check.weights.path)
        result.models.append(check)
    for provider in LOCAL_EVALUATIONS:
        try:
            result.local_evaluations.extend(provider(manifest, local))
        except Exception as exc:  # one broken evaluation must not hide the rest of the report
            label = getattr(provider, "__name__", repr(provider))
            result.local_evaluations.append(LocalEvaluation(label, "-", failure=f"{type(exc).__name__}: {exc}"))
    if not LOCAL_EVALUATIONS:
        result.notes.append("no local evaluation is registered in this version")
    return result
