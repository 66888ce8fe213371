"""The weights manifest: the single source of truth for every model dsd-zoo knows.

``weights_manifest.json`` (format 1, documented in ``docs/manifest.md``) lists each model's
architecture, kind, weight file and where to get it, the original release it was converted
from, its preprocessing and its published errors. Entry points, ``list_models``, docstrings,
model cards and the verify table are all generated from it.

The bundled manifest is replaced by the file or URL in ``DSD_ZOO_MANIFEST`` (mirrors,
air-gapped clusters, tests). Validation happens once, on load, and every error names the
model and the field so that a broken manifest is fixed in one go.
"""

from __future__ import annotations

import collections
import difflib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Tuple
from ._fields import unknown_fields
from .digests import Digest
from .errors import ManifestError, RecordError, UnknownModelError
from .models import ARCHITECTURES
from .records import FileRecord, HFLocation
from .pipelines import PIPELINES

MANIFEST_ENV = "DSD_ZOO_MANIFEST"
FORMAT_VERSION = 1
# A manifest is tens of kilobytes; a path or URL to anything far larger is a mistake (or /dev/zero).
MAX_MANIFEST_BYTES = 16 * 2**20
KINDS = ("dsd", "baseline", "sparse")
ORIGINAL_FORMATS = ("caffemodel", "torch7", "deep-compression", "safetensors", "pytorch")
# An asset is derived from its publisher's file by code in the test suite, not by a converter.
ASSET_ORIGINAL_FORMATS = ("npy",)
# Patterns are applied with fullmatch: "$" would also accept a trailing newline.
# A cache file name must never escape the cache directory.
_MODEL_NAME = re.compile(r"[a-z][a-z0-9_]*")
# The fields each kind of object may have: anything else is an error (see dsd_zoo._fields).
_FIELDS = {
    "top": {"format", "citations", "assets", "models"},
    "asset": {"file", "url", "local", "digest", "size", "description", "original"},
    "model": {
        "arch",
        "kind",
        "weights",
        "original",
        "alternates",
        "transforms",
        "metrics",
        "citation",
        "fingerprint",
        "categories",
        "evaluation",
        "source",
        "license",
        "description",
    },
    "weights": {"file", "sha256", "size", "hf", "urls", "local"},
    "hf": ("repo_id", "revision", "filename"),
    "original": {"format", "url", "digest", "size", "mirrors", "description", "pinned"},
    "metrics": {"paper", "recorded", "heads"},
    "paper": {"top1_err", "top5_err", "source"},
    "errors": {"top1_err", "top5_err", "source", "images"},
    "evaluation": {"data", "dataset"},
    "fingerprint": {"input", "indices", "values", "argmax", "atol"},
}


@dataclass(frozen=True)
class OriginalRecord:
    """The file as its authors released it (Caffe, Torch7 or Deep Compression format).

    ``record.urls`` holds the publisher's URL first, then the mirrors.
    """

    format: str
    record: FileRecord
    # The digest was pinned by dsd-zoo's release from the copy it converted, not given by the authors.
    pinned: bool = False

    @property
    def url(self) -> str:
        """Where the authors published it."""
        return self.record.urls[0]

    @property
    def digest(self) -> Optional[Digest]:
        """The digest the authors published, if any."""
        return self.record.digest

    @property
    def file_name(self) -> str:
        """The name a converted file records as its source: the last segment of the original's URL.

        The release tool and local conversion both use it, so that both write the same bytes.
        """
        return _last_segment(self.url)


def _last_segment(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")  # "x.pth?dl=1" names x.pth
    return path.rsplit("/", 1)[-1] or url


@dataclass(frozen=True)
class Fingerprint:
    """Logits of the deterministic probe input, recorded when a weight file is released."""

    input: str
    indices: Tuple[int, ...]
    values: Tuple[float, ...]
    argmax: int
    atol: float


@dataclass(frozen=True)
class ModelEntry:
    """Everything the manifest says about one model."""

    name: str
    arch: str
    kind: str
    weights: FileRecord
    original: Optional[OriginalRecord]
    transforms: Mapping[str, Any]
    paper_top1_err: Optional[float]
    paper_top5_err: Optional[float]
    paper_source: str
    source: str
    license: str
    citation: Tuple[str, ...]
    fingerprint: Optional[Fingerprint] = None
    description: str = ""
    categories: Optional[Tuple[str, ...]] = None  # None: the 1000 ILSVRC-2012 classes
    evaluation: Optional[Mapping[str, str]] = None  # {"dataset", "data": asset} for data shipped with the package
    recorded: Optional[Mapping[str, Any]] = None  # errors measured when the file was made, with their source
    # Logged errors of auxiliary classifiers ({"loss1": {"top1_err", "top5_err", "source"}}), checked by verify.
    heads: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Other files the same weights were published as (a third-party port), tried after ``original``.
    alternates: Tuple[OriginalRecord, ...] = ()

    @property
    def originals(self) -> Tuple[OriginalRecord, ...]:
        """Every original release of the model, the authors' own first."""
        return ((self.original,) if self.original is not None else ()) + self.alternates


@dataclass(frozen=True)
class AssetRecord:
    """A released file that is not a model but is needed to use one (the AlexNet mean image)."""

    name: str
    record: FileRecord
    # The publisher's file it was derived from (the mean image: Caffe's .npy), with that file's digest.
    original: Optional[OriginalRecord] = None


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: models in file order, assets and citations."""

    models: Mapping[str, ModelEntry]
    assets: Mapping[str, AssetRecord]
    citations: Mapping[str, str]
    origin: str  # where it was read from, for error messages

    def entry(self, name: str) -> ModelEntry:
        """The entry of ``name``; an unknown name raises :class:`UnknownModelError` listing the closest ones."""
        if not isinstance(name, str):
            raise UnknownModelError(f"a model name is a string such as 'resnet50_dsd', got {name!r}")
        entry = self.models.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(self.models), n=5, cutoff=0.3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownModelError(f"unknown model {name!r}{hint} (all models: dsd_zoo.list_models())")
        return entry

    def citation_text(self, entry: ModelEntry) -> str:
        """The BibTeX entries an entry cites, joined."""
        return "\n\n".join(self.citations[key] for key in entry.citation)


class _Checker:
    """Reads typed fields out of JSON objects, raising errors that say where the problem is."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, where: str, message: str) -> "ManifestError":
        return ManifestError(f"{self.origin}: {where}: {message}")

    def obj(self, value: Any, where: str, fields: Optional[Collection[str]] = None) -> Mapping[str, Any]:
        """``value`` as a JSON object whose keys are all in ``fields`` (``None``: a map whose keys are data)."""
        if value is None:
            raise self.fail(where, "missing (or null); it must be a JSON object")
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a JSON object, got {type(value).__name__}")
        problem = None if fields is None else unknown_fields(value, fields)
        if problem:
            raise self.fail(where, problem)
        return value

    def get(self, obj: Mapping[str, Any], key: str, where: str, kinds: tuple, optional: bool = False) -> Any:
        value = obj.get(key)
        if value is None and optional:
            return None
        if key not in obj:
            raise self.fail(where, f"missing field {key!r}")
        # bool is an int in Python; a size of `true` is still a mistake.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise self.fail(f"{where}.{key}", f"must be {names}{' or null' if optional else ''}, got {value!r}")
        return value

    def percent(self, obj: Mapping[str, Any], key: str, where: str, optional: bool = False) -> Optional[float]:
        value = self.get(obj, key, where, (int, float), optional)
        if value is not None and not 0 <= value <= 100:
            raise self.fail(f"{where}.{key}", f"is a percentage in [0, 100], got {value}")
        return value

    def digest(self, algorithm: str, value: Any, where: str) -> Digest:
        try:
            return Digest(algorithm, value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def published_digest(self, obj: Mapping[str, Any], where: str) -> Optional[Digest]:
        """An original's or asset's ``"digest": {"ALGORITHM": "HEX"}``, as its publisher gave it."""
        value = self.get(obj, "digest", where, (dict,), optional=True)
        if value is None:
            return None
        if len(value) != 1:
            raise self.fail(f"{where}.digest", f"must hold exactly one algorithm, got {sorted(value)}")
        ((algorithm, hexvalue),) = value.items()
        return self.digest(algorithm, hexvalue, f"{where}.digest.{algorithm}")

    def record(
        self, where: str, json_field: Callable[[str], str], make: Callable[..., Any] = FileRecord, **values: Any
    ):
        """``make(**values)`` (a :class:`FileRecord`); its errors name the JSON field ``json_field`` gives for a record field.

        The record checks its own fields (file name, size, URLs); they are not checked twice here.
        """
        try:
            return make(**values)
        except RecordError as exc:
            raise self.fail(f"{where}.{json_field(exc.field)}", exc.problem) from None


def parse_manifest(document: Any, origin: str = "<manifest>") -> Manifest:
    """Validate a decoded manifest document and return it as typed records.

    Raises :class:`ManifestError` naming the model and field of the first problem found.
    """
    check = _Checker(origin)
    root = check.obj(document, "top level", _FIELDS["top"])
    version = root.get("format")
    if type(version) is not int or version != FORMAT_VERSION:  # not true, not 1.0
        raise check.fail(
            "format", f"this dsd-zoo reads manifest format {FORMAT_VERSION}, got {version!r}; upgrade dsd-zoo"
        )
    citations = check.obj(root.get("citations", {}), "citations")
    for key, text in citations.items():
        if not isinstance(text, str):
            raise check.fail(f"citations.{key}", "must be a string (BibTeX)")
    assets = {
        name: _parse_asset(check, name, check.obj(value, f"asset {name!r}", _FIELDS["asset"]))
        for name, value in check.obj(root.get("assets", {}), "assets").items()
    }
    models = {}
    for name, value in check.obj(root.get("models"), "models").items():
        if not _MODEL_NAME.fullmatch(name):
            raise check.fail(f"models.{name}", "model names are lower-case identifiers")
        models[name] = _parse_model(
            check, name, check.obj(value, f"model {name!r}", _FIELDS["model"]), citations, assets
        )
    owners: dict = {}
    files = [("asset", name, asset.record.file) for name, asset in assets.items()]
    files += [("model", name, entry.weights.file) for name, entry in models.items()]
    for kind, name, file in files:
        if file in owners:  # one cache file for two records: each would remove the other's as corrupt
            raise check.fail(f"{kind} {name!r}", f"its file {file!r} is also the file of {owners[file]}")
        owners[file] = f"{kind} {name!r}"
    return Manifest(models=models, assets=assets, citations=citations, origin=origin)


def _parse_asset(check: _Checker, name: str, obj: Mapping[str, Any]) -> AssetRecord:
    where = f"asset {name!r}"
    url = check.get(obj, "url", where, (str,), optional=True)
    local = check.get(obj, "local", where, (str,), optional=True)
    if url is None and local is None:
        raise check.fail(where, "needs a 'url' or a 'local' file")
    record = check.record(
        where,
        _original_field,  # its one URL is "url", as an original's first
        file=check.get(obj, "file", where, (str,)),
        digest=check.published_digest(obj, where),
        size=obj.get("size"),
        urls=() if url is None else (url,),
        local=local,
    )
    check.get(obj, "description", where, (str,), optional=True)  # for the reader of the manifest
    original = obj.get("original")
    return AssetRecord(
        name=name,
        record=record,
        original=None
        if original is None
        else _parse_original(check, name, original, f"{where}.original", ASSET_ORIGINAL_FORMATS),
    )


def _parse_model(
    check: _Checker, name: str, obj: Mapping[str, Any], citations: Mapping[str, str], assets: Mapping[str, AssetRecord]
) -> ModelEntry:
    where = f"model {name!r}"
    kind = check.get(obj, "kind", where, (str,))
    if kind not in KINDS:
        raise check.fail(f"{where}.kind", f"must be one of {KINDS}, got {kind!r}")
    arch = check.get(obj, "arch", where, (str,))
    if arch not in ARCHITECTURES:  # a newer manifest than this code
        raise check.fail(
            f"{where}.arch",
            f"{arch!r} is not an architecture of this dsd-zoo version (known: {', '.join(ARCHITECTURES)}); upgrade dsd-zoo",
        )
    paper, recorded, heads = _parse_metrics(check, obj.get("metrics", {}), f"{where}.metrics")
    cites = tuple(check.get(obj, "citation", where, (list,), optional=True) or ())
    for key in cites:
        if not isinstance(key, str) or key not in citations:
            raise check.fail(f"{where}.citation", f"cites {key!r}, which is not in the top-level 'citations'")
    categories = check.get(obj, "categories", where, (list,), optional=True)
    if categories is not None and not all(isinstance(c, str) for c in categories):
        raise check.fail(f"{where}.categories", "must be a list of class names")
    originals = _parse_originals(check, name, obj, where)
    fingerprint = obj.get("fingerprint")
    return ModelEntry(
        name=name,
        arch=arch,
        kind=kind,
        weights=_parse_weights(
            check, check.obj(obj.get("weights"), f"{where}.weights", _FIELDS["weights"]), f"{where}.weights"
        ),
        original=originals[0] if originals else None,
        transforms=_parse_transforms(
            check, check.obj(obj.get("transforms"), f"{where}.transforms"), f"{where}.transforms", assets
        ),
        paper_top1_err=check.percent(paper, "top1_err", f"{where}.metrics.paper", optional=True),
        paper_top5_err=check.percent(paper, "top5_err", f"{where}.metrics.paper", optional=True),
        paper_source=check.get(paper, "source", f"{where}.metrics.paper", (str,), optional=True) or "",
        source=check.get(obj, "source", where, (str,), optional=True) or "",
        license=check.get(obj, "license", where, (str,), optional=True) or "unknown",
        citation=cites,
        fingerprint=None if fingerprint is None else _parse_fingerprint(check, fingerprint, f"{where}.fingerprint"),
        description=check.get(obj, "description", where, (str,), optional=True) or "",
        categories=None if categories is None else tuple(categories),
        evaluation=_parse_evaluation(check, obj, where, assets),
        recorded=recorded,
        heads=heads,
        alternates=originals[1:],
    )


def _parse_originals(check: _Checker, name: str, obj: Mapping[str, Any], where: str) -> Tuple[OriginalRecord, ...]:
    """The authors' original release of a model, then the other files the same weights were published as."""
    original = obj.get("original")
    alternates = check.get(obj, "alternates", where, (list,), optional=True) or ()
    if original is None:
        if alternates:
            raise check.fail(f"{where}.alternates", "alternates need an 'original' (the authors' own file) first")
        return ()
    parsed = [_parse_original(check, name, original, f"{where}.original")]
    parsed += [_parse_original(check, name, value, f"{where}.alternates[{i}]") for i, value in enumerate(alternates)]
    return tuple(parsed)


def _parse_metrics(check: _Checker, value: Any, where: str) -> Tuple[Mapping[str, Any], Any, Mapping[str, Any]]:
    """The published errors (``paper``), those measured when the file was made and those logged for auxiliary heads."""
    metrics = check.obj(value, where, _FIELDS["metrics"])
    recorded = metrics.get("recorded")
    if recorded is not None:
        _check_errors(check, recorded, f"{where}.recorded")
    heads = check.get(metrics, "heads", where, (dict,), optional=True) or {}
    for head, logged in heads.items():
        _check_errors(check, logged, f"{where}.heads.{head}")
        check.get(logged, "source", f"{where}.heads.{head}", (str,))
    return check.obj(metrics.get("paper", {}), f"{where}.paper", _FIELDS["paper"]), recorded, heads


def _parse_evaluation(
    check: _Checker, obj: Mapping[str, Any], where: str, assets: Mapping[str, AssetRecord]
) -> Optional[Mapping[str, str]]:
    """The data shipped with the package that a model is evaluated on, if any."""
    evaluation = check.get(obj, "evaluation", where, (dict,), optional=True)
    if evaluation is not None:
        check.obj(evaluation, f"{where}.evaluation", _FIELDS["evaluation"])
        check.get(evaluation, "dataset", f"{where}.evaluation", (str,))
        if check.get(evaluation, "data", f"{where}.evaluation", (str,)) not in assets:
            raise check.fail(
                f"{where}.evaluation.data", f"names asset {evaluation['data']!r}, which is not in 'assets'"
            )
    return evaluation


def _check_errors(check: _Checker, value: Any, where: str) -> None:
    """Errors logged or measured for a model or one of its heads: ``{top1_err, top5_err, source, images}``."""
    obj = check.obj(value, where, _FIELDS["errors"])
    for key in ("top1_err", "top5_err"):
        check.percent(obj, key, where)
    check.get(obj, "source", where, (str,), optional=True)  # where the numbers come from
    images = check.get(obj, "images", where, (int,), optional=True)
    if images is not None and images < 1:
        raise check.fail(f"{where}.images", f"must be >= 1, got {images}")


def _parse_weights(check: _Checker, obj: Mapping[str, Any], where: str) -> FileRecord:
    sha256 = check.get(obj, "sha256", where, (str,), optional=True)
    hf = check.get(obj, "hf", where, (dict,), optional=True)
    if hf is not None:  # HFLocation checks its own fields
        check.obj(hf, f"{where}.hf", _FIELDS["hf"])
        hf = check.record(f"{where}.hf", str, HFLocation, **{key: hf.get(key) for key in _FIELDS["hf"]})
    return check.record(
        where,
        lambda field: "sha256" if field == "digest" else field,
        file=check.get(obj, "file", where, (str,)),
        digest=None if sha256 is None else check.digest("sha256", sha256, f"{where}.sha256"),
        size=obj.get("size"),
        hf=hf,
        urls=check.get(obj, "urls", where, (list,), optional=True) or (),
        local=check.get(obj, "local", where, (str,), optional=True),
    )


def _original_field(field: str) -> str:
    """The JSON field of an original's record field: its ``urls`` are the manifest's ``url`` and ``mirrors``."""
    if field == "urls[0]":
        return "url"
    if field.startswith("urls["):
        return f"mirrors[{int(field[5:-1]) - 1}]"
    return field


def _parse_original(
    check: _Checker, model: str, value: Any, where: str, formats: Tuple[str, ...] = ORIGINAL_FORMATS
) -> OriginalRecord:
    obj = check.obj(value, where, _FIELDS["original"])
    fmt = check.get(obj, "format", where, (str,))
    if fmt not in formats:
        raise check.fail(f"{where}.format", f"must be one of {formats}, got {fmt!r}")
    url = check.get(obj, "url", where, (str,))
    # Cached as "original-MODEL-NAME": NAME made safe, and never ending like a cache sidecar
    # (.lock, .part, .stamp.json) or in a dot, which Windows drops (the rule of dsd_zoo._names).
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in _last_segment(url))[:80].replace("..", "_.")
    safe += "_" if safe.endswith((".lock", ".part", ".json", ".")) else ""
    record = check.record(
        where,
        _original_field,
        file=f"original-{model}-{safe}",
        digest=check.published_digest(obj, where),
        size=obj.get("size"),
        urls=(url, *(check.get(obj, "mirrors", where, (list,), optional=True) or ())),
    )
    pinned = bool(check.get(obj, "pinned", where, (bool,), optional=True))
    if pinned and (record.digest is None or record.digest.algorithm != "sha256"):
        raise check.fail(f"{where}.pinned", "a pinned original needs the sha256 that was pinned as its digest")
    check.get(obj, "description", where, (str,), optional=True)  # who made it and how, for the reader
    return OriginalRecord(format=fmt, record=record, pinned=pinned)


def _parse_transforms(
    check: _Checker, obj: Mapping[str, Any], where: str, assets: Mapping[str, AssetRecord]
) -> Mapping[str, Any]:
    name = check.get(obj, "pipeline", where, (str,))
    if name not in PIPELINES:
        raise check.fail(f"{where}.pipeline", f"must be one of {tuple(PIPELINES)}, got {name!r}")
    check.obj(obj, where, PIPELINES[name].fields)
    PIPELINES[name].validate(obj, check, where, assets)
    return dict(obj)


def _parse_fingerprint(check: _Checker, value: Any, where: str) -> Fingerprint:
    obj = check.obj(value, where, _FIELDS["fingerprint"])
    indices = tuple(check.get(obj, "indices", where, (list,)))
    values = tuple(check.get(obj, "values", where, (list,)))
    if (
        not indices
        or len(indices) != len(values)
        or not all(type(i) is int and i >= 0 for i in indices)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    ):
        raise check.fail(
            where, "'indices' (class indices) and 'values' (numbers) must be non-empty lists of equal length"
        )
    argmax, atol = check.get(obj, "argmax", where, (int,)), float(check.get(obj, "atol", where, (int, float)))
    if argmax < 0:
        raise check.fail(f"{where}.argmax", f"must be a class index >= 0, got {argmax}")
    if not atol > 0:  # a tolerance of 0 fails float noise; a negative one fails everything
        raise check.fail(f"{where}.atol", f"must be > 0, got {atol}")
    return Fingerprint(
        input=check.get(obj, "input", where, (str,)),
        indices=indices,
        values=tuple(float(v) for v in values),
        argmax=argmax,
        atol=atol,
    )


def bundled_manifest_path() -> Path:
    """The manifest shipped with this copy of dsd-zoo.

    In a source checkout (torch.hub, ``pip install -e``) that is ``weights_manifest.json`` at the
    repository root, the only copy in git; an installed wheel carries it inside the package.
    """
    package_dir = Path(__file__).resolve().parent
    checkout_copy = package_dir.parent / "weights_manifest.json"
    if checkout_copy.is_file() and (package_dir.parent / "hubconf.py").is_file():
        return checkout_copy
    return package_dir / "weights_manifest.json"


_cache: Dict[Any, Manifest] = {}


def load_manifest(source: Optional[str] = None) -> Manifest:
    """Load and validate the manifest.

    ``source`` is a path or an http(s) URL; by default ``$DSD_ZOO_MANIFEST`` or the bundled
    manifest. Parsed manifests are cached per source (and file modification time).
    """
    source = source or os.environ.get(MANIFEST_ENV) or str(bundled_manifest_path())
    if re.match(r"^https?://", source):
        if source not in _cache:
            from .download import fetch_url_bytes  # network code only when a URL is configured

            _cache[source] = parse_manifest(
                decode_json(fetch_url_bytes(source, max_bytes=MAX_MANIFEST_BYTES), source), source
            )
        return _cache[source]
    path = Path(source).expanduser()
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key not in _cache:
            if not path.is_file() or stat.st_size > MAX_MANIFEST_BYTES:
                what = (
                    "not a regular file" if not path.is_file() else f"{stat.st_size} bytes, over {MAX_MANIFEST_BYTES}"
                )
                raise ManifestError(f"the weights manifest {str(path)!r} is {what}")
            _cache[key] = parse_manifest(decode_json(path.read_bytes(), str(path)), str(path))
    except OSError as exc:
        hint = f" (set by ${MANIFEST_ENV})" if os.environ.get(MANIFEST_ENV) == source else ""
        raise ManifestError(f"cannot read the weights manifest {str(path)!r}{hint}: {exc.strerror or exc}") from exc
    return _cache[key]


def _unique_keys(pairs: List[Tuple[str, Any]]) -> dict:
    repeated = sorted(key for key, count in collections.Counter(key for key, _ in pairs).items() if count > 1)
    if repeated:  # json.loads would keep the last silently: a second "digits_dsd" replaced the first
        raise ValueError(f"a JSON object repeats the key(s) {repeated}")
    return dict(pairs)


def _finite(text: str) -> float:
    """A JSON number; ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e999``) are refused."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def decode_json(raw: bytes, origin: str) -> Any:
    """Decode a JSON document strictly: a repeated key or a non-finite number is a :class:`ManifestError`."""
    try:
        return json.loads(
            raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_float=_finite, parse_constant=_finite
        )
    # ValueError also covers integers longer than Python's digit limit; RecursionError, deep nesting.
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"{origin}: not valid JSON: {exc}") from exc
