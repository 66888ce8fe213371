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
from pathlib import Path, PurePosixPath
from typing import Any, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ._names import file_name_problem
from .errors import ManifestError

MANIFEST_ENV = "DSD_ZOO_MANIFEST"
FORMAT_VERSION = 1
# A manifest is tens of kilobytes; a path or URL to anything far larger is a mistake (or /dev/zero).
MAX_MANIFEST_BYTES = 16 * 2**20
KINDS = ("dsd", "baseline", "sparse")
ORIGINAL_FORMATS = ("caffemodel", "torch7", "deep-compression", "safetensors")
PIPELINES = ("caffe", "fb_resnet", "digits")
# Files shipped inside the package (the embedded zoo) are named relative to this directory, so
# the same manifest works from a checkout and from an installed wheel.
PACKAGE_DIR = Path(__file__).resolve().parent
# Length of the hex string of each digest the publishers of the originals used.
DIGEST_HEX_LENGTHS = {"sha256": (64, 64), "sha1": (40, 40), "git_blob_sha1": (40, 40), "sha256_prefix": (8, 64)}
# Patterns are applied with fullmatch: "$" would also accept a trailing newline.
_HEX = re.compile(r"[0-9a-f]+")
# A cache file name must never escape the cache directory.
_MODEL_NAME = re.compile(r"[a-z][a-z0-9_]*")
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HFLocation:
    """A file in a Hugging Face Hub repository at a pinned revision."""

    repo_id: str
    revision: str
    filename: str


@dataclass(frozen=True)
class WeightsRecord:
    """A converted safetensors weight file and every place it can be fetched from."""

    file: str
    sha256: Optional[str]
    size: Optional[int]
    hf: Optional[HFLocation]
    urls: Tuple[str, ...]
    local: Optional[str] = None  # path relative to the package directory, for files shipped with it


@dataclass(frozen=True)
class OriginalRecord:
    """The file as its authors released it (Caffe, Torch7 or Deep Compression format)."""

    url: str
    format: str
    digest: Optional[Tuple[str, str]]  # (algorithm, lower-case hex) as published, or None
    size: Optional[int]
    mirrors: Tuple[str, ...] = ()


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
    weights: WeightsRecord
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


@dataclass(frozen=True)
class AssetRecord:
    """A released file that is not a model but is needed to use one (the AlexNet mean image)."""

    name: str
    file: str
    url: Optional[str]
    digest: Optional[Tuple[str, str]]
    size: Optional[int]
    description: str
    local: Optional[str] = None  # relative to the package directory, for files shipped with it


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: models in file order, assets and citations."""

    models: Mapping[str, ModelEntry]
    assets: Mapping[str, AssetRecord]
    citations: Mapping[str, str]
    origin: str  # where it was read from, for error messages

    def citation_text(self, entry: ModelEntry) -> str:
        """The BibTeX entries an entry cites, joined."""
        return "\n\n".join(self.citations[key] for key in entry.citation)


class _Tracked(dict):
    """A JSON object that remembers which of its keys parsing read (iterating it reads them all)."""

    def __init__(self, value: Mapping[str, Any], where: str) -> None:
        super().__init__(value)
        self.where = where
        self.read: set = set()
        self.read_all = False

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(key)
        return super().__contains__(key)

    def items(self):  # a map of names (models, assets, citations): every key is data
        self.read_all = True
        return super().items()

    def keys(self):
        self.read_all = True
        return super().keys()

    def values(self):
        self.read_all = True
        return super().values()

    def __iter__(self):
        self.read_all = True
        return super().__iter__()


class _Checker:
    """Reads typed fields out of JSON objects, raising errors that say where the problem is."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._tracked: List[_Tracked] = []

    def fail(self, where: str, message: str) -> "ManifestError":
        return ManifestError(f"{self.origin}: {where}: {message}")

    def obj(self, value: Any, where: str) -> Mapping[str, Any]:
        if value is None:
            raise self.fail(where, "missing (or null); it must be a JSON object")
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a JSON object, got {type(value).__name__}")
        return self._track(value, where)

    def _track(self, value: dict, where: str) -> "_Tracked":
        tracked = value if isinstance(value, _Tracked) else _Tracked(value, where)
        self._tracked.append(tracked)
        return tracked

    def unknown_keys(self) -> None:
        """Fail on a key that parsing never looked at: a misspelt "sha265" must not silently mean "no digest"."""
        for tracked in self._tracked:
            # dict.keys: this listing is not a read by the parser (iterating a _Tracked would mark it so).
            unknown = [] if tracked.read_all else sorted(set(dict.keys(tracked)) - tracked.read)
            if unknown:
                hints = [f"{key!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
                    key, sorted(tracked.read), n=1)) else "") for key in unknown]
                raise self.fail(tracked.where, f"unknown field(s) {', '.join(hints)}; known here: {sorted(tracked.read)}")

    def get(self, obj: Mapping[str, Any], key: str, where: str, kinds: tuple, optional: bool = False) -> Any:
        if key not in obj:
            if optional:
                return None
            raise self.fail(where, f"missing field {key!r}")
        value = obj[key]
        if value is None and optional:
            return None
        if isinstance(value, dict) and dict in kinds:
            value = self._track(value, f"{where}.{key}")
        # bool is an int in Python; a size of `true` is still a mistake.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise self.fail(f"{where}.{key}", f"must be {names}{' or null' if optional else ''}, got {value!r}")
        return value

    def size(self, obj: Mapping[str, Any], where: str) -> Optional[int]:
        value = self.get(obj, "size", where, (int,), optional=True)
        if value is not None and value < 0:
            raise self.fail(f"{where}.size", f"must be >= 0, got {value}")
        return value

    def hex_digest(self, algorithm: str, value: Any, where: str) -> Tuple[str, str]:
        if algorithm not in DIGEST_HEX_LENGTHS:
            raise self.fail(where, f"unknown digest algorithm {algorithm!r}; expected one of {sorted(DIGEST_HEX_LENGTHS)}")
        low, high = DIGEST_HEX_LENGTHS[algorithm]
        if not isinstance(value, str) or not _HEX.fullmatch(value) or not low <= len(value) <= high:
            length = str(low) if low == high else f"{low}-{high}"
            raise self.fail(f"{where}.{algorithm}", f"must be {length} lower-case hex digits, got {value!r}")
        return algorithm, value

    def digest(self, obj: Mapping[str, Any], where: str) -> Optional[Tuple[str, str]]:
        value = self.get(obj, "digest", where, (dict,), optional=True)
        if value is None:
            return None
        if len(value) != 1:
            raise self.fail(f"{where}.digest", f"must hold exactly one algorithm, got {sorted(value)}")
        ((algorithm, hexvalue),) = value.items()
        return self.hex_digest(algorithm, hexvalue, f"{where}.digest")

    def urls(self, obj: Mapping[str, Any], key: str, where: str) -> Tuple[str, ...]:
        value = self.get(obj, key, where, (list,), optional=True) or []
        for i, url in enumerate(value):
            # The downloader fetches http(s) only; a file:// mirror would fail at every download.
            try:
                parts = urlsplit(url) if isinstance(url, str) else None
                _ = parts.port if parts is not None else None  # raises for a port out of range
            except ValueError:  # e.g. "https://[mirror" (an unclosed IPv6 bracket)
                parts = None
            if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
                    or any(c.isspace() for c in url)):
                raise self.fail(f"{where}.{key}[{i}]", f"must be an http(s):// URL, got {url!r}")
        return tuple(value)

    def file_name(self, obj: Mapping[str, Any], where: str) -> str:
        from .cache import RESERVED_SUFFIXES  # the downloader's rule, so that no name fails only at download

        value = self.get(obj, "file", where, (str,))
        problem = file_name_problem(value, RESERVED_SUFFIXES)
        if problem:
            raise self.fail(f"{where}.file", f"{problem}, got {value!r}")
        return value


def parse_manifest(document: Any, origin: str = "<manifest>") -> Manifest:
    """Validate a decoded manifest document and return it as typed records.

    Raises :class:`ManifestError` naming the model and field of the first problem found.
    """
    check = _Checker(origin)
    root = check.obj(document, "top level")
    version = root.get("format")
    if type(version) is not int or version != FORMAT_VERSION:  # not true, not 1.0
        raise check.fail("format", f"this dsd-zoo reads manifest format {FORMAT_VERSION}, got {version!r}; upgrade dsd-zoo")
    citations = check.obj(root.get("citations", {}), "citations")
    for key, text in citations.items():
        if not isinstance(text, str):
            raise check.fail(f"citations.{key}", "must be a string (BibTeX)")
    assets = {name: _parse_asset(check, name, check.obj(value, f"assets.{name}"))
              for name, value in check.obj(root.get("assets", {}), "assets").items()}
    models_json = check.obj(root.get("models"), "models")
    models = {}
    for name, value in models_json.items():
        if not _MODEL_NAME.fullmatch(name):
            raise check.fail(f"models.{name}", "model names are lower-case identifiers")
        models[name] = _parse_model(check, name, check.obj(value, f"model {name!r}"), citations, assets)
    check.unknown_keys()
    owners: dict = {}
    for kind, records in (("asset", assets), ("model", models)):
        for name, record in records.items():
            file = record.file if kind == "asset" else record.weights.file
            if file in owners:  # one cache file for two records: each would remove the other's as corrupt
                raise check.fail(f"{kind} {name!r}", f"its file {file!r} is also the file of {owners[file]}")
            owners[file] = f"{kind} {name!r}"
    return Manifest(models=models, assets=assets, citations=citations, origin=origin)


def _parse_asset(check: _Checker, name: str, obj: Mapping[str, Any]) -> AssetRecord:
    where = f"asset {name!r}"
    url = check.get(obj, "url", where, (str,), optional=True)
    local = _local_path(check, obj, where)
    if url is None and local is None:
        raise check.fail(where, "needs a 'url' or a 'local' file")
    if url is not None:
        check.urls({"url": [url]}, "url", where)
    digest = check.digest(obj, where)
    if local is not None and (digest is None or digest[0] != "sha256"):
        raise check.fail(f"{where}.digest", "a file shipped with the package must have its sha256 pinned")
    return AssetRecord(name=name, file=check.file_name(obj, where), url=url, digest=digest, size=check.size(obj, where),
                       description=check.get(obj, "description", where, (str,), optional=True) or "", local=local)


def _local_path(check: _Checker, obj: Mapping[str, Any], where: str) -> Optional[str]:
    local = check.get(obj, "local", where, (str,), optional=True)
    # Judged the same on every OS: no drive ("C:"), no backslash (a separator on Windows), no "..".
    if local is not None and (PurePosixPath(local).is_absolute() or ".." in PurePosixPath(local).parts
                              or "\\" in local or ":" in local):
        raise check.fail(f"{where}.local", f"must be a relative path inside the package, with '/' separators, got {local!r}")
    return local


def shipped_file(relative: str) -> Path:
    """The path of a file shipped inside the package (a manifest ``local`` path)."""
    return PACKAGE_DIR / relative


def _parse_model(check: _Checker, name: str, obj: Mapping[str, Any], citations: Mapping[str, str],
                 assets: Mapping[str, AssetRecord]) -> ModelEntry:
    where = f"model {name!r}"
    kind = check.get(obj, "kind", where, (str,))
    if kind not in KINDS:
        raise check.fail(f"{where}.kind", f"must be one of {KINDS}, got {kind!r}")
    weights = _parse_weights(check, check.obj(obj.get("weights"), f"{where}.weights"), f"{where}.weights")
    original = obj.get("original")
    original = None if original is None else _parse_original(check, check.obj(original, f"{where}.original"), f"{where}.original")
    transforms = _parse_transforms(check, check.obj(obj.get("transforms"), f"{where}.transforms"), f"{where}.transforms", assets)
    metrics = check.obj(obj.get("metrics", {}), f"{where}.metrics")
    paper = check.obj(metrics.get("paper", {}), f"{where}.metrics.paper")
    errs = [check.get(paper, key, f"{where}.metrics.paper", (int, float), optional=True) for key in ("top1_err", "top5_err")]
    for key, value in zip(("top1_err", "top5_err"), errs):
        if value is not None and not 0 <= value <= 100:
            raise check.fail(f"{where}.metrics.paper.{key}", f"is a percentage in [0, 100], got {value}")
    cites = tuple(check.get(obj, "citation", where, (list,), optional=True) or ())
    for key in cites:
        if not isinstance(key, str) or key not in citations:
            raise check.fail(f"{where}.citation", f"cites {key!r}, which is not in the top-level 'citations'")
    fingerprint = obj.get("fingerprint")
    categories = check.get(obj, "categories", where, (list,), optional=True)
    if categories is not None and not all(isinstance(c, str) for c in categories):
        raise check.fail(f"{where}.categories", "must be a list of class names")
    evaluation = check.get(obj, "evaluation", where, (dict,), optional=True)
    if evaluation is not None:
        if check.get(evaluation, "data", f"{where}.evaluation", (str,)) not in assets:
            raise check.fail(f"{where}.evaluation.data", f"names asset {evaluation['data']!r}, which is not in 'assets'")
        check.get(evaluation, "dataset", f"{where}.evaluation", (str,))
    recorded = check.get(metrics, "recorded", f"{where}.metrics", (dict,), optional=True)
    if recorded is not None:
        _check_errors(check, recorded, f"{where}.metrics.recorded")
    heads = check.get(metrics, "heads", f"{where}.metrics", (dict,), optional=True) or {}
    for head, logged in heads.items():
        _check_errors(check, check.obj(logged, f"{where}.metrics.heads.{head}"), f"{where}.metrics.heads.{head}")
        check.get(logged, "source", f"{where}.metrics.heads.{head}", (str,))
    return ModelEntry(
        name=name, arch=check.get(obj, "arch", where, (str,)), kind=kind, weights=weights, original=original,
        transforms=transforms, paper_top1_err=errs[0], paper_top5_err=errs[1],
        paper_source=check.get(paper, "source", f"{where}.metrics.paper", (str,), optional=True) or "",
        source=check.get(obj, "source", where, (str,), optional=True) or "",
        license=check.get(obj, "license", where, (str,), optional=True) or "unknown",
        citation=cites,
        fingerprint=None if fingerprint is None else _parse_fingerprint(check, check.obj(fingerprint, f"{where}.fingerprint"), f"{where}.fingerprint"),
        description=check.get(obj, "description", where, (str,), optional=True) or "",
        categories=None if categories is None else tuple(categories),
        evaluation=evaluation, recorded=recorded, heads=heads,
    )


def _check_errors(check: _Checker, obj: Mapping[str, Any], where: str) -> None:
    for key in ("top1_err", "top5_err"):
        value = check.get(obj, key, where, (int, float))
        if not 0 <= value <= 100:
            raise check.fail(f"{where}.{key}", f"is a percentage in [0, 100], got {value}")
    check.get(obj, "source", where, (str,), optional=True)  # where the numbers come from
    images = check.get(obj, "images", where, (int,), optional=True)
    if images is not None and images < 1:
        raise check.fail(f"{where}.images", f"must be >= 1, got {images}")


def _parse_weights(check: _Checker, obj: Mapping[str, Any], where: str) -> WeightsRecord:
    sha256 = check.get(obj, "sha256", where, (str,), optional=True)
    if sha256 is not None:
        check.hex_digest("sha256", sha256, where)
    hf = check.get(obj, "hf", where, (dict,), optional=True)
    hf_location = None
    if hf is not None:
        for key in ("repo_id", "revision", "filename"):
            value = check.get(hf, key, f"{where}.hf", (str,))
            if not value or value != value.strip():
                raise check.fail(f"{where}.hf.{key}", f"must be a non-empty string without surrounding spaces, got {value!r}")
        hf_location = HFLocation(hf["repo_id"], hf["revision"], hf["filename"])
        if not _COMMIT.fullmatch(hf_location.revision):
            # A branch name would let the bytes change under a fixed manifest.
            raise check.fail(f"{where}.hf.revision", f"must be a 40-hex commit id (pinned), got {hf_location.revision!r}")
    local = _local_path(check, obj, where)
    if local is not None and sha256 is None:
        raise check.fail(f"{where}.sha256", "a file shipped with the package must have its sha256 pinned")
    return WeightsRecord(file=check.file_name(obj, where), sha256=sha256, size=check.size(obj, where), hf=hf_location,
                         urls=check.urls(obj, "urls", where), local=local)


def _parse_original(check: _Checker, obj: Mapping[str, Any], where: str) -> OriginalRecord:
    fmt = check.get(obj, "format", where, (str,))
    if fmt not in ORIGINAL_FORMATS:
        raise check.fail(f"{where}.format", f"must be one of {ORIGINAL_FORMATS}, got {fmt!r}")
    url = check.get(obj, "url", where, (str,))
    check.urls({"url": [url]}, "url", where)
    return OriginalRecord(url=url, format=fmt, digest=check.digest(obj, where), size=check.size(obj, where),
                          mirrors=check.urls(obj, "mirrors", where))


def _parse_transforms(check: _Checker, obj: Mapping[str, Any], where: str,
                      assets: Mapping[str, AssetRecord]) -> Mapping[str, Any]:
    pipeline = check.get(obj, "pipeline", where, (str,))
    if pipeline not in PIPELINES:
        raise check.fail(f"{where}.pipeline", f"must be one of {PIPELINES}, got {pipeline!r}")
    crop = check.get(obj, "crop", where, (int,))
    if crop <= 0:
        raise check.fail(f"{where}.crop", f"must be a positive number of pixels, got {crop}")
    if pipeline == "caffe":
        resize = check.get(obj, "resize", where, (list,))
        if len(resize) != 2 or not all(isinstance(v, int) and v >= crop for v in resize):
            raise check.fail(f"{where}.resize", f"must be [height, width], each >= crop {crop}, got {resize!r}")
        has_image, has_values = "mean_image" in obj, "mean_bgr" in obj
        if has_image == has_values:
            raise check.fail(where, "a caffe pipeline needs exactly one of 'mean_image' (an asset name) or 'mean_bgr'")
        if has_image and (not isinstance(obj["mean_image"], str) or obj["mean_image"] not in assets):
            raise check.fail(f"{where}.mean_image", f"names asset {obj['mean_image']!r}, which is not in 'assets'")
        if has_values:
            _numbers(check, obj, "mean_bgr", 3, where)
    elif pipeline == "digits":
        if check.get(obj, "max_value", where, (int,)) <= 0:
            raise check.fail(f"{where}.max_value", "must be positive")
    elif pipeline == "fb_resnet":
        resize = check.get(obj, "resize", where, (int,))
        if resize < crop:
            raise check.fail(f"{where}.resize", f"must be >= crop {crop}, got {resize}")
        _numbers(check, obj, "mean", 3, where)
        if any(v <= 0 for v in _numbers(check, obj, "std", 3, where)):
            raise check.fail(f"{where}.std", "must be positive")
    return {key: dict.__getitem__(obj, key) for key in dict.keys(obj)}  # a plain copy, not a read of every key


def _numbers(check: _Checker, obj: Mapping[str, Any], key: str, count: int, where: str) -> Sequence[float]:
    value = check.get(obj, key, where, (list,))
    if len(value) != count or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise check.fail(f"{where}.{key}", f"must be a list of {count} numbers, got {value!r}")
    return value


def _parse_fingerprint(check: _Checker, obj: Mapping[str, Any], where: str) -> Fingerprint:
    indices = tuple(check.get(obj, "indices", where, (list,)))
    values = tuple(check.get(obj, "values", where, (list,)))
    if (not indices or len(indices) != len(values) or not all(type(i) is int and i >= 0 for i in indices)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise check.fail(where, "'indices' (class indices) and 'values' (numbers) must be non-empty lists of equal "
                                "length")
    argmax, atol = check.get(obj, "argmax", where, (int,)), float(check.get(obj, "atol", where, (int, float)))
    if argmax < 0:
        raise check.fail(f"{where}.argmax", f"must be a class index >= 0, got {argmax}")
    if not atol > 0:  # a tolerance of 0 fails float noise; a negative one fails everything
        raise check.fail(f"{where}.atol", f"must be > 0, got {atol}")
    return Fingerprint(input=check.get(obj, "input", where, (str,)), indices=indices, values=tuple(float(v) for v in values),
                       argmax=argmax, atol=atol)


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


_cache: dict = {}


def load_manifest(source: Optional[str] = None) -> Manifest:
    """Load and validate the manifest.

    ``source`` is a path or an http(s) URL; by default ``$DSD_ZOO_MANIFEST`` or the bundled
    manifest. Parsed manifests are cached per source (and file modification time).
    """
    source = source or os.environ.get(MANIFEST_ENV) or str(bundled_manifest_path())
    if re.match(r"^https?://", source):
        key = (source, None)
        if key not in _cache:
            from .download import fetch_url_bytes  # network code only when a URL is configured

            raw = fetch_url_bytes(source, max_bytes=MAX_MANIFEST_BYTES)
            _cache[key] = parse_manifest(_decode(raw, source), origin=source)
        return _cache[key]
    path = Path(source).expanduser()
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key not in _cache:
            if not path.is_file() or stat.st_size > MAX_MANIFEST_BYTES:
                what = "not a regular file" if not path.is_file() else f"{stat.st_size} bytes, over {MAX_MANIFEST_BYTES}"
                raise ManifestError(f"the weights manifest {str(path)!r} is {what}")
            _cache[key] = parse_manifest(_decode(path.read_bytes(), str(path)), origin=str(path))
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
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to inf
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _decode(raw: bytes, origin: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_float=_finite,
                          parse_constant=_no_constant)
    # ValueError also covers integers longer than Python's digit limit; RecursionError, deep nesting.
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"{origin}: not valid JSON: {exc}") from exc
