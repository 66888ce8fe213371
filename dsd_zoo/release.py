"""``python -m dsd_zoo.release``: turn original releases into published, checksummed dsd-zoo weights.

For each model (default: every model of the manifest that has an original release) the tool

1. fetches the original release and converts it with
   :func:`dsd_zoo.convert.original.convert_original`, the conversion ``get_model`` runs on a
   user's machine (provenance in the safetensors metadata); the original is checked against its
   publisher's digest, and one without a digest is refused unless ``--trust-unverified`` is given
   (the ``DSD_ZOO_TRUST_UNVERIFIED`` variable does not count here: a release must opt in on its
   own command line);
2. hashes the result, loads it strictly and records its logit fingerprint (:mod:`dsd_zoo.fingerprint`);
3. writes ``OUT/NAME/`` with the weights and a Hugging Face model card (``README.md``, see
   :mod:`dsd_zoo.model_card`) -- the folder is what ``HfApi.upload_folder`` publishes -- and
   records the new manifest ``weights`` record and ``fingerprint`` in ``OUT/manifest_entries.json``;
4. with ``--upload``, creates the Hub repository if needed, uploads the folder, and pins the
   commit it made as ``weights.hf.revision``.

``--write-manifest PATH`` merges the new entries into a manifest file, validated with
:func:`dsd_zoo.manifest.parse_manifest` before it replaces the file atomically.

A model's folder appears only once everything for it succeeded (it is assembled under a
temporary name and renamed into place), so a failure leaves no partial release. Models are
independent: one failing does not stop the others; the exit status is 1 if any failed, 2 for
a wrong command line, 0 otherwise. A summary table ends the output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from ._names import url_problem
from ._project import GITHUB_REPO, HF_REPO_ID
from .api import get_entry
from .atomic import PathLike, write_text
from .cache import find_local
from .convert.mapping import extension
from .convert.original import convert_original
from .errors import (
    ConversionError,
    DSDZooError,
    IntegrityError,
    ManifestError,
    NotAvailableError,
    UploadError,
    first_line,
)
from .fingerprint import compute_fingerprint
from .loading import build_with_weights, load_tensors
from .manifest import Manifest, ModelEntry, decode_json, load_manifest, parse_manifest
from .model_card import DEFAULT_TORCH_HUB_REPO, ReleaseFacts, render_model_card
from .models import ARCHITECTURES
from .records import COMMIT

__all__ = [
    "ENTRIES_FILE",
    "UploadError",
    "main",
    "merge_into_manifest",
    "release_model",
    "update_entries_file",
    "upload_to_hub",
]

#: The file in the output directory that maps model name -> {"weights": ..., "fingerprint": ...}.
ENTRIES_FILE = "manifest_entries.json"
CARD_FILE = "README.md"


def hub_location(repo_id: str, name: str, file: str) -> Tuple[str, str, str]:
    """``(repo_id, path_in_repo, filename)`` of the weights ``file`` of model ``name`` when ``--upload`` publishes to ``repo_id``.

    With ``{name}`` in ``repo_id`` each model has its own repository and its folder goes to the
    repository root (the card is the repository's card); otherwise each model goes to the folder
    ``NAME/`` of the one shared repository.
    """
    if "{name}" in repo_id:
        return repo_id.replace("{name}", name), "", file
    return repo_id, name, f"{name}/{file}"


def release_model(
    name: str,
    out_dir: PathLike,
    *,
    manifest: Optional[Manifest] = None,
    trust_unverified: bool = False,
    mirrors: Sequence[str] = (),
    repo_id: Optional[str] = None,
    force: bool = False,
    progress: bool = True,
    torch_hub_repo: str = DEFAULT_TORCH_HUB_REPO,
    say: Callable[[str], None] = lambda message: None,
) -> Dict[str, Any]:
    """Fetch, convert, fingerprint and (optionally) upload one model into ``out_dir/name/``.

    Args:
        name: a model of the manifest.
        out_dir: the release directory; the model's folder is ``out_dir/name``.
        manifest: the manifest to release from (default: the active one, ``$DSD_ZOO_MANIFEST``).
        trust_unverified: accept an original that has no published digest.
        mirrors: URL templates of the mirrors the file will be uploaded to; ``{name}`` and
            ``{file}`` are replaced. They become the record's ``urls``.
        repo_id: upload the folder to this Hub repository (see :func:`hub_location`) and pin
            the commit as ``weights.hf``.
        force: replace an existing ``out_dir/name``.
        progress: show download progress bars.
        torch_hub_repo: the ``owner/repo`` the card's torch.hub example loads from.
        say: receives one line per step, for progress output.

    Returns:
        The model's new manifest fields: ``weights`` (file, sha256, size, hf, urls) and
        ``fingerprint``, and for an original its authors published without a digest the sha256
        and size this release accepted, which the manifest then pins for every later user
        (``original``: ``{"digest", "size", "pinned"}``).

    Raises:
        UnverifiedSourceError: the original has no published digest and ``trust_unverified`` is off.
        DownloadError / IntegrityError: the original could not be had with the right bytes.
        ConversionError / FormatError: it does not convert.
        UploadError: the Hub upload failed (nothing is left in ``out_dir``).
        FileExistsError: ``out_dir/name`` exists and ``force`` is off.
    """
    manifest = manifest or load_manifest()
    entry = get_entry(name, manifest)
    if entry.original is None:
        raise NotAvailableError(f"{name}: the manifest names no original release to convert")
    out_dir = Path(out_dir)
    folder = out_dir / name
    if folder.exists() and not force:
        raise FileExistsError(f"{folder} exists; pass --force (force=True) to replace it")

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".{name}.{uuid.uuid4().hex[:8]}.part"
    staging.mkdir(mode=0o777)  # the umask applies, as for any new folder
    try:
        fields = _assemble(
            entry,
            manifest,
            staging,
            repo_id=repo_id,
            mirrors=mirrors,
            torch_hub_repo=torch_hub_repo,
            trust_unverified=trust_unverified,
            progress=progress,
            say=say,
        )
        _publish_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # KeyboardInterrupt too: no partial release
        raise
    say(f"wrote {folder}")
    return fields


def _assemble(
    entry: ModelEntry,
    manifest: Manifest,
    staging: Path,
    *,
    repo_id: Optional[str],
    mirrors: Sequence[str],
    torch_hub_repo: str,
    trust_unverified: bool,
    progress: bool,
    say: Callable[[str], None],
) -> Dict[str, Any]:
    """Fetch and convert the original into ``staging``, fingerprint it, write its card, upload; its manifest fields.

    The conversion is get_model's own (:func:`~dsd_zoo.convert.original.convert_original`), so that
    converting the same original on a user's machine reproduces the published sha256.
    """
    file = entry.weights.file
    # DSD_ZOO_TRUST_UNVERIFIED does not count here: a release opts in on its own command line.
    saved = convert_original(
        entry, manifest, staging / file, progress=progress, trust_unverified=trust_unverified, say=say
    )
    for warning in saved.report.get("warnings", []):
        say(f"conversion warning: {warning}")
    same = entry.weights.sha256 == saved.sha256  # then the manifest's Hub file and mirrors serve these bytes
    if entry.weights.sha256 is not None and not same:
        say(
            f"note: the manifest pins sha256 {entry.weights.sha256}; this conversion gives {saved.sha256} "
            "(a different original or converter version)"
        )
    _compare_alternates(entry, manifest, saved.path, staging, say)
    say(f"fingerprinting {saved.path.name} (sha256 {saved.sha256}, {saved.size:,} bytes)")
    fingerprint, nonzero = _fingerprint(entry, saved.path)
    repo_id, path_in_repo, filename = (
        hub_location(repo_id, entry.name, file) if repo_id is not None else (None, "", None)
    )
    facts = ReleaseFacts(
        weights_file=file,
        sha256=saved.sha256,
        size=saved.size,
        metadata=saved.metadata,
        fingerprint=fingerprint,
        nonzero_weights=nonzero,
        hf_repo_id=repo_id,
        hf_filename=filename,
        torch_hub_repo=torch_hub_repo,
    )
    write_text(staging / CARD_FILE, render_model_card(entry, manifest, facts))
    hf = dataclasses.asdict(entry.weights.hf) if same and entry.weights.hf is not None else None
    if repo_id is not None:
        say(f"uploading to the Hugging Face Hub repository {repo_id}" + (f" ({path_in_repo}/)" if path_in_repo else ""))
        commit = upload_to_hub(
            staging,
            repo_id,
            path_in_repo=path_in_repo,
            message=f"Release {entry.name} ({file}, sha256 {saved.sha256[:12]})",
            files=(file, CARD_FILE),
        )
        hf = {"repo_id": repo_id, "revision": commit, "filename": filename}
        say(f"uploaded: commit {commit}")
    urls = [template.format(name=entry.name, file=file) for template in mirrors]
    urls += [url for url in entry.weights.urls if same and url not in urls]
    fields: Dict[str, Any] = {
        "weights": {"file": file, "sha256": saved.sha256, "size": saved.size, "hf": hf, "urls": urls},
        "fingerprint": fingerprint,
    }
    original = entry.originals[0]  # release_model made sure there is one
    stamp = find_local(original.record).stamp if original.digest is None else None
    if stamp is not None:  # the sha256 the cache pinned when this release fetched the original
        fields["original"] = {"digest": {"sha256": stamp.sha256}, "size": stamp.size, "pinned": True}
    return fields


def _compare_alternates(
    entry: ModelEntry, manifest: Manifest, converted: Path, staging: Path, say: Callable[[str], None]
) -> None:
    """Check that every other original of ``entry`` already on this machine gives the very same tensors.

    A second source (a third-party port) is only worth offering if it is the same model: when
    both files are here, the release proves it or fails. One that is not here is not fetched.
    """
    import torch

    ours, _ = load_tensors(converted)
    for alternate in entry.alternates:
        if not find_local(alternate.record).verified:
            say(
                f"not compared with {alternate.url}: not on this machine (python -m dsd_zoo.convert FILE "
                f"--model {entry.name} --install takes a copy in)"
            )
            continue
        other = staging / f".alternate{extension(alternate)}.safetensors"
        try:
            convert_original(entry, manifest, other, original=alternate, offline=True, progress=False)
            theirs, _ = load_tensors(other)
        finally:
            other.unlink(missing_ok=True)
        differing = sorted(
            key
            for key in ours.keys() | theirs.keys()
            if key not in ours or key not in theirs or not torch.equal(ours[key], theirs[key])
        )
        if differing:
            raise IntegrityError(
                f"{entry.name}: its originals disagree: {alternate.url} gives other tensors than "
                f"{entry.originals[0].url} ({len(differing)} of {len(ours)}, e.g. {differing[0]})"
            )
        say(f"the second original {alternate.url} gives the very same {len(ours)} tensors")


def _fingerprint(entry: ModelEntry, path: Path) -> Tuple[Dict[str, Any], Tuple[int, int]]:
    """The fingerprint of the file at ``path`` loaded strictly, and its (non-zero, total) weights."""
    import torch

    model = build_with_weights(ARCHITECTURES[entry.arch], path)
    fingerprint = compute_fingerprint(model, entry)
    if not all(math.isfinite(v) for v in fingerprint["values"]):
        raise ConversionError(
            f"{entry.name}: the converted model gives non-finite logits on the probe input; "
            "the original is damaged or the mapping is wrong"
        )
    weights = [p for p in model.parameters() if p.dim() >= 2]  # conv and linear weights, not biases or BN
    nonzero = sum(int(torch.count_nonzero(p)) for p in weights)
    return fingerprint, (nonzero, sum(p.numel() for p in weights))


def upload_to_hub(
    folder: PathLike, repo_id: str, *, path_in_repo: str = "", message: str, files: Optional[Sequence[str]] = None
) -> str:
    """Publish ``folder`` with ``huggingface_hub`` and return the 40-hex id of the commit it made.

    Creates the model repository if it does not exist (``HfApi.create_repo(exist_ok=True)``),
    then ``HfApi.upload_folder`` (only ``files`` when given). The token is huggingface_hub's
    (``HF_TOKEN`` or ``hf auth login``); ``HF_ENDPOINT`` is read on every call.

    Raises:
        UploadError: any failure of the Hub or the connection, naming the repository.
    """
    from huggingface_hub import HfApi

    http_errors = tuple(sys.modules[m].HTTPError for m in ("httpx2", "httpx") if m in sys.modules)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=os.fspath(folder),
            path_in_repo=path_in_repo or None,
            repo_type="model",
            commit_message=message,
            allow_patterns=list(files) if files is not None else None,
        )
    except (OSError, ValueError, *http_errors) as exc:  # HfHubHTTPError is an OSError
        raise UploadError(
            f"uploading {folder} to the Hub repository {repo_id} ({api.endpoint}) failed: "
            f"{type(exc).__name__}: {first_line(exc)}"
        ) from exc
    commit = getattr(info, "oid", None)
    if not isinstance(commit, str) or not COMMIT.fullmatch(commit):
        raise UploadError(
            f"the Hub answered the upload to {repo_id} with commit id {commit!r}, not a 40-hex commit; "
            "cannot pin the revision"
        )
    return commit


def update_entries_file(out_dir: PathLike, entries: Mapping[str, Mapping[str, Any]]) -> Path:
    """Add ``entries`` (model name -> manifest fields) to ``out_dir/manifest_entries.json`` (created if absent), atomically."""
    path = Path(out_dir) / ENTRIES_FILE
    _write_json(path, {**(_read_json_object(path) if path.exists() else {}), **entries})
    return path


def merge_into_manifest(
    path: PathLike, entries: Mapping[str, Mapping[str, Any]], base: Optional[PathLike] = None
) -> Manifest:
    """Set ``weights`` and ``fingerprint`` of each model in ``entries`` in the manifest file ``path``.

    An entry's ``original`` (the digest a release pinned for an original published without one)
    is merged into the model's ``original``, so that every later user checks the same bytes.

    ``path`` is read if it exists, else the manifest ``base`` (default: the active manifest's
    file) is the starting point. The result is validated with
    :func:`~dsd_zoo.manifest.parse_manifest` and then replaces the file atomically; a symbolic
    link is followed, so the file it points to is updated. Nothing is written when validation fails.

    Raises:
        ManifestError: a model is not in the manifest, or the result does not validate.
    """
    target = Path(path).resolve()
    source = str(target if target.exists() else base if base is not None else load_manifest().origin)
    if re.match(r"^https?://", source):
        raise ManifestError(
            f"the active manifest is a URL ({source}); --write-manifest needs a manifest file to update"
        )
    document = _read_json_object(Path(source))
    models = document.get("models")
    if not isinstance(models, dict):
        raise ManifestError(f"{source}: has no 'models' object")
    for name, fields in entries.items():
        if not isinstance(models.get(name), dict):
            raise ManifestError(f"{source}: has no model {name!r} to update; add its entry first")
        models[name].update(weights=fields["weights"], fingerprint=fields["fingerprint"])
        if "original" in fields:  # the sha256 this release pinned for an original without a published digest
            models[name]["original"].update(fields["original"])
    manifest = parse_manifest(document, origin=str(path))
    _write_json(target, document)
    return manifest


def _read_json_object(path: Path) -> Dict[str, Any]:
    try:
        document = decode_json(path.read_bytes(), str(path))
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(document, dict):
        raise ManifestError(f"{path}: must hold a JSON object")
    return document


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    """The entries file and the manifest: indented, UTF-8, a final newline."""
    write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _publish_folder(staging: Path, folder: Path) -> None:
    """Make the complete ``staging`` folder appear as ``folder``, replacing an older one."""
    old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
    if folder.exists():
        os.rename(folder, old)
    try:
        os.rename(staging, folder)
    except BaseException:
        if old.exists():
            os.rename(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


# -- command line ---------------------------------------------------------------------------------

EXAMPLE = """\
examples:
  python -m dsd_zoo.release squeezenet_sparse
  python -m dsd_zoo.release 'squeezenet*' --out release --write-manifest weights_manifest.json \\
      --mirror 'https://example.org/dsd-zoo/{file}'
  HF_TOKEN=hf_... python -m dsd_zoo.release '*_dsd' --trust-unverified --upload --repo-id 'my-org/{name}'

Each model gets OUT/NAME/ (NAME.safetensors and the model card README.md, ready for
upload_folder) and its manifest fields in OUT/manifest_entries.json. A model's folder appears only
when every step for it succeeded. Exit status: 0 all released, 1 some failed, 2 bad command line.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m dsd_zoo.release``."""
    parser = argparse.ArgumentParser(
        prog="python -m dsd_zoo.release",
        description="Fetch original releases (checked against their published digests), convert them to "
        "safetensors, fingerprint them, and write model cards and manifest entries; optionally "
        "upload them to the Hugging Face Hub.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="models to release, or shell patterns such as 'resnet*' (default: every model that has an original release)",
    )
    parser.add_argument("--out", default="release", metavar="DIR", help="release directory (default: ./release)")
    parser.add_argument("--upload", action="store_true", help="publish each model folder on the Hugging Face Hub")
    parser.add_argument(
        "--repo-id",
        metavar="ID",
        help="Hub repository for --upload; '{name}' makes one repository per model "
        f"(the project's: {HF_REPO_ID!r}), otherwise each model goes to the folder NAME/ of ID",
    )
    parser.add_argument(
        "--trust-unverified",
        action="store_true",
        help="accept originals without a published digest (the DSD release's OneDrive files); the model card says so",
    )
    parser.add_argument(
        "--write-manifest",
        metavar="PATH",
        help="merge the new entries into this manifest file (created from the active manifest "
        "if absent), validated before it is replaced",
    )
    parser.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL",
        help="URL template of a mirror the files will be served from, with {name} and {file}; "
        "repeatable; recorded in the entries' urls",
    )
    parser.add_argument(
        "--torch-hub-repo",
        default=GITHUB_REPO,
        metavar="OWNER/REPO",
        help=f"GitHub repository the cards' torch.hub example names (default {GITHUB_REPO!r})",
    )
    parser.add_argument("--force", action="store_true", help="replace existing OUT/NAME folders")
    parser.add_argument("--no-progress", action="store_true", help="no download progress bars")
    return parser


def _summary(names: Sequence[str], released: Mapping[str, Mapping[str, Any]], failed: Mapping[str, str]) -> str:
    rows = [("model", "status", "size", "sha256", "hf revision / error")]
    for name in names:
        if name in released:
            weights = released[name]["weights"]
            hf = weights["hf"]["revision"][:12] if weights["hf"] else "-"
            rows.append((name, "ok", f"{weights['size']:,}", weights["sha256"][:12], hf))
        else:
            rows.append((name, "FAILED", "-", "-", failed[name]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4] for row in rows
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the release CLI; returns the exit status (0 all released, 1 some failed, 2 usage error)."""
    from .api import expand_names  # names or shell patterns, as every dsd-zoo CLI takes them

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.upload != (args.repo_id is not None):
        parser.error("--upload and --repo-id go together: --upload --repo-id OWNER/NAME")
    for template in args.mirror:
        try:
            url = template.format(name="NAME", file="NAME.safetensors")
        except (KeyError, IndexError, ValueError) as exc:
            parser.error(f"--mirror {template!r}: only {{name}} and {{file}} may be replaced ({exc!r})")
        if url_problem(url):  # the rule every manifest URL obeys
            parser.error(f"--mirror {template!r}: must be an http(s) URL template")
    try:
        if args.upload:
            from huggingface_hub.utils import validate_repo_id

            validate_repo_id(args.repo_id.replace("{name}", "model"))  # HFValidationError (a ValueError)
        manifest = load_manifest()
        # By default every model that has an original release (the embedded zoo has none).
        names = (
            expand_names(args.names, manifest)
            if args.names
            else [name for name, entry in manifest.models.items() if entry.original is not None]
        )
    except (DSDZooError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    released: Dict[str, Dict[str, Any]] = {}
    failed: Dict[str, str] = {}
    for index, name in enumerate(names, 1):

        def say(message: str, prefix: str = f"[{index}/{len(names)}] {name}") -> None:
            print(f"{prefix}: {message}", file=sys.stderr, flush=True)

        try:
            fields = release_model(
                name,
                out_dir,
                manifest=manifest,
                trust_unverified=args.trust_unverified,
                mirrors=args.mirror,
                repo_id=args.repo_id,
                force=args.force,
                progress=not args.no_progress,
                torch_hub_repo=args.torch_hub_repo,
                say=say,
            )
            update_entries_file(out_dir, {name: fields})
            released[name] = fields
        except (DSDZooError, OSError, ValueError) as exc:
            failed[name] = f"{type(exc).__name__}: {first_line(exc)}"
            say(f"FAILED: {type(exc).__name__}: {exc}")
    status = 1 if failed else 0
    if args.write_manifest and released:
        try:
            merge_into_manifest(args.write_manifest, released)
            print(f"updated {args.write_manifest} ({len(released)} model(s))", file=sys.stderr)
        except (DSDZooError, OSError) as exc:
            print(f"error: --write-manifest {args.write_manifest}: {exc}", file=sys.stderr)
            status = 1
    print(_summary(names, released, failed))
    if released:
        print(
            f"\nreleased {len(released)} of {len(names)} model(s) into {out_dir}/ "
            f"(manifest fields: {out_dir / ENTRIES_FILE})"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
