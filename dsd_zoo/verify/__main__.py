"""Command line of ``python -m dsd_zoo.verify`` (see ``--help``)."""

from __future__ import annotations

import argparse
import gc
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import DSDZooError, IntegrityError, OfflineError, UnverifiedSourceError
from . import COMPILE_MIN_IMAGES, DEFAULT_TOLERANCE, EXIT_BAD_INPUT, EXIT_FAILED, FULL_VAL_SIZE

DESCRIPTION = """\
Check dsd-zoo's weight files, and reproduce the published single-crop ILSVRC-2012 errors.

Without --imagenet: an offline self-check that works on any machine and never touches the
network. The manifest must be valid; every architecture must build with its reference
parameter count; every weight file on this machine (shipped with the package or in the cache)
is hashed again against the manifest and its logit fingerprint checked; local evaluations
(data shipped with the package) run. A table lists every model: on this machine? verified?
the paper's top-1/top-5 errors. A missing weight file is reported, not a failure, unless the
model is named on the command line.

With --imagenet DIR: evaluate the models on ILSVRC-2012 validation images, each with the exact
preprocessing of its original evaluation (Caffe warp 256x256 + centre crop 227/224 on the 0-255
scale; fb.resnet.torch shorter side 256 with Torch7 bicubic + centre crop 224), and print top-1
and top-5 errors next to the paper's, the difference, and pass/FAIL within --tolerance. The
tolerance is meaningful only on the full 50,000 images; runs on fewer images (--limit, a partial
folder) are marked PARTIAL and not judged. Each image is decoded once and resampled once per
distinct pipeline (13 models need 3), so evaluating many models costs little more than one.
"""

EPILOG = f"""\
dataset layouts:
  ImageFolder   DIR/n01440764/ILSVRC2012_val_00000293.JPEG ...  one folder per class, named by
                its WNID; class index = position among the 1000 sorted WNIDs. Any other folder
                name is an error.
  flat          DIR/ILSVRC2012_val_00000001.JPEG ... with --labels val.txt ("filename index"
                lines, index in sorted-WNID order, as in Caffe's caffe_ilsvrc12.tar.gz). Files
                listed but absent, duplicate or malformed lines, out-of-range indices, and images
                the file does not list are errors.
  Grayscale images are replicated to RGB (as OpenCV IMREAD_COLOR and Torch7 image.load did);
  CMYK and palette images are converted by PIL. Corrupt, truncated or non-image files are
  listed by name and, by default, counted as wrong answers for every model (--bad-images skip
  leaves them out of the denominator instead); either way the exit status is 3.

examples:
  python -m dsd_zoo.verify                              offline self-check of everything
  python -m dsd_zoo.verify resnet50_dsd                 ... and require resnet50_dsd to be present
  python -m dsd_zoo.verify --imagenet ~/data/imagenet/val
        evaluate every model whose weights are on this machine (ImageFolder layout)
  python -m dsd_zoo.verify '*_dsd' --imagenet val/ --labels val.txt --limit 1000
        the DSD models on 1,000 images of a flat folder (a quick, partial run)
  python -m dsd_zoo.verify squeezenet_sparse --weights squeezenet_sparse=sparse.safetensors \\
        --imagenet val/ --json result.json --markdown result.md --plot errors.png
        a locally converted file (python -m dsd_zoo.convert), all three outputs
  torchrun --nproc_per_node 8 -m dsd_zoo.verify --imagenet val/ --device cuda
        8 GPUs: each image evaluated by exactly one rank, counts all-reduced (same totals)

exit status:
  0  every check passed (for an evaluation: all {FULL_VAL_SIZE:,} images read, every model within
     the tolerance; a partial run that read every image also exits 0)
  1  a check failed: a weight file differs from the manifest, a fingerprint or architecture
     mismatch, a model named but absent (self-check), an error outside the tolerance
  2  bad usage or input: missing or empty folder, label file not matching the images, unknown
     WNIDs or model names, a model not on this machine in offline mode (--imagenet), the plot
     extra missing
  3  evaluated, but some images could not be decoded (see the notes)
  Under torchrun, torchrun itself exits 1 whenever a rank exits non-zero; the ranks' own
  statuses are in its failure summary.

environment:
  DSD_ZOO_OFFLINE=1    never use the network (named models must already be on this machine);
                       HF_HUB_OFFLINE=1 too
  DSD_ZOO_CACHE        the weight cache (default: <torch hub dir>/dsd_zoo)
  DSD_ZOO_MANIFEST     another weights manifest (file or URL)
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its ``--help`` is the CLI's documentation)."""
    parser = argparse.ArgumentParser(
        prog="python -m dsd_zoo.verify",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="models or shell patterns ('*_dsd'); default: all models (self-check), all whose "
        "weights are on this machine (--imagenet). A named model must be present.",
    )
    data = parser.add_argument_group("ImageNet evaluation")
    data.add_argument(
        "--imagenet",
        metavar="DIR",
        type=Path,
        help="ILSVRC-2012 validation images (ImageFolder layout, or flat with --labels)",
    )
    data.add_argument(
        "--labels", metavar="FILE", type=Path, help="Caffe-style val.txt for a flat folder: 'filename index' lines"
    )
    data.add_argument(
        "--limit",
        metavar="N",
        type=int,
        help="evaluate N images spread evenly over the set (a quick, PARTIAL run; not judged)",
    )
    data.add_argument(
        "--tolerance",
        metavar="PT",
        type=float,
        help=f"allowed |error - paper| in points, top-1 and top-5 (default {DEFAULT_TOLERANCE}; meaningful "
        f"only on all {FULL_VAL_SIZE:,} images)",
    )
    data.add_argument(
        "--bad-images",
        choices=("count", "skip"),
        help="undecodable images: 'count' them as wrong answers (default) or 'skip' them from the "
        "denominator; always listed",
    )
    run = parser.add_argument_group("how to run")
    run.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:1 ... (default: cuda when available, else cpu)")
    run.add_argument(
        "--batch-size", metavar="N", type=int, help="images per batch and rank (default 128 on cuda, 32 on cpu)"
    )
    run.add_argument(
        "--workers",
        metavar="N",
        type=int,
        help="DataLoader worker processes per rank (default: most cores on cuda, a quarter on cpu)",
    )
    run.add_argument(
        "--fast",
        action="store_true",
        help="bfloat16 autocast: faster on GPUs, but results may differ from the exact run",
    )
    run.add_argument(
        "--gpu-decode",
        action="store_true",
        help="decode the JPEGs on the GPU with nvJPEG (TorchCodec's decoder if installed, "
        "pip install 'dsd-zoo[gpu]'; else torchvision's) and resample them there, which takes the "
        "decoding that limits a GPU run off the CPU; nvJPEG's pixels differ slightly from "
        "libjpeg's, so results may differ from the exact run; needs a CUDA --device",
    )
    run.add_argument(
        "--engine",
        choices=("torch", "compile", "onnxruntime"),
        help="how the models run, all in float32 with the same results up to float rounding: 'torch' "
        "(eager PyTorch), 'compile' (torch.compile: a one-off compilation of 3-20 s per model), "
        "'onnxruntime' (CPU only, pip install 'dsd-zoo[onnx]': each model exported to ONNX once, "
        "checked against PyTorch, kept in the cache; 1.1-1.8x eager on a CPU). Default on a CPU: "
        "onnxruntime when installed, else compile from %d images per process, else torch; on "
        "cuda: torch. A model whose export or compilation fails runs eagerly, with a warning" % COMPILE_MIN_IMAGES,
    )
    run.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the older spelling of --engine compile (--no-compile: --engine torch)",
    )
    run.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        default=None,
        help="feed contiguous NCHW tensors instead of channels-last ones",
    )
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    sources = parser.add_argument_group("weights and outputs")
    sources.add_argument(
        "--weights",
        metavar="NAME=PATH",
        action="append",
        default=[],
        help="use a local safetensors file for NAME (e.g. the output of python -m dsd_zoo.convert); "
        "repeatable. The self-check reports a file it has no published digest to compare "
        "with as UNVERIFIABLE, which is no failure (a recorded logit fingerprint is still "
        "compared); --imagenet evaluates it. A file whose metadata says it holds another "
        "model is refused",
    )
    sources.add_argument(
        "--load-despite-recorded-identity",
        action="store_true",
        help="evaluate a --weights file as NAME even though its metadata says it holds another model "
        "(a deliberate experiment: the report marks the row)",
    )
    sources.add_argument(
        "--trust-unverified",
        action="store_true",
        help="accept an original release that has no published digest when a named model must be "
        "fetched and converted (trust on first use: its sha256 is pinned in the cache)",
    )
    sources.add_argument("--json", metavar="FILE", type=Path, help="write the full result as JSON")
    sources.add_argument("--markdown", metavar="FILE", type=Path, help="write the tables as Markdown")
    sources.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        help="write a PNG chart of baseline vs DSD errors per architecture (needs dsd-zoo[plot])",
    )
    return parser


def parse_weights(items: Sequence[str], manifest, despite_identity: bool = False) -> Dict[str, Path]:
    """``{name: path}`` from ``NAME=PATH`` arguments; the name must be a model, the file exist and be that model's."""
    from ..api import get_entry
    from ..loading import identity_conflict

    weights: Dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise DSDZooError(f"--weights takes NAME=PATH, got {item!r}")
        get_entry(name, manifest)
        if name in weights:
            raise DSDZooError(f"--weights names {name} twice ({weights[name]} and {path}); give one file per model")
        file = Path(path).expanduser()
        if not file.is_file():
            raise DSDZooError(f"--weights {name}: {str(file)!r} is not a file")
        weights[name] = file
    for name, file in weights.items():  # once the command line is known to be well-formed
        conflict = None if despite_identity else identity_conflict(file, name, manifest.models[name].arch)
        if conflict is not None:
            right = (
                f"give it as --weights {conflict.recorded_model}={file}, or "
                if conflict.recorded_model in manifest.models
                else ""
            )
            raise DSDZooError(
                f"--weights {name}={file}: {conflict.message}; {right}add "
                f"--load-despite-recorded-identity to evaluate it as {name} anyway"
            )
    return weights


def _check_evaluation_options(args: argparse.Namespace) -> None:
    """Options that only mean something with --imagenet, and the two spellings of the engine."""
    if args.imagenet is None:
        given = (
            ("--labels", args.labels),
            ("--limit", args.limit),
            ("--tolerance", args.tolerance),
            ("--bad-images", args.bad_images),
            ("--no-channels-last", args.channels_last),
            ("--device", args.device),
            ("--batch-size", args.batch_size),
            ("--workers", args.workers),
            ("--compile" if args.compile else "--no-compile", args.compile),
            ("--engine", args.engine),
            ("--fast", args.fast or None),
            ("--gpu-decode", args.gpu_decode or None),
            ("--trust-unverified", args.trust_unverified or None),
        )
        used = [flag for flag, value in given if value is not None]
        if used:
            raise DSDZooError(f"{', '.join(used)} only apply to an evaluation: add --imagenet DIR")
    if args.engine is not None and args.compile is not None:
        raise DSDZooError(
            f"--engine {args.engine} and {'--compile' if args.compile else '--no-compile'} both say how "
            "the models run; give --engine alone (--compile is --engine compile, --no-compile is "
            "--engine torch)"
        )


def _check_numbers(args: argparse.Namespace) -> None:
    """The numeric options, with their defaults filled in."""
    if args.limit is not None and args.limit <= 0:
        raise DSDZooError(f"--limit must be a positive number of images, got {args.limit}")
    if args.tolerance is None:
        args.tolerance = DEFAULT_TOLERANCE
    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        raise DSDZooError(f"--tolerance must be a number of points >= 0, got {args.tolerance}")
    args.bad_images = args.bad_images or "count"
    for flag, value in (("--batch-size", args.batch_size), ("--workers", args.workers)):
        if value is not None and value < (1 if flag == "--batch-size" else 0):
            raise DSDZooError(f"{flag} must be {'positive' if flag == '--batch-size' else '>= 0'}, got {value}")


def _check_outputs(args: argparse.Namespace) -> None:
    """--json, --markdown and --plot: writable, distinct files; checked before an hour of evaluation, not after."""
    outputs = [
        (flag, path)
        for flag, path in (("--json", args.json), ("--markdown", args.markdown), ("--plot", args.plot))
        if path is not None
    ]
    for flag, path in outputs:
        if path.is_dir() or not path.parent.is_dir():
            where = f"{str(path)!r} is a folder" if path.is_dir() else f"folder {str(path.parent)!r} does not exist"
            raise DSDZooError(f"{flag} {path}: {where}; give a file in an existing folder")
    for k, (flag, path) in enumerate(outputs):
        for other_flag, other in outputs[k + 1 :]:
            if path.resolve() == other.resolve():
                raise DSDZooError(f"{flag} and {other_flag} name the same file {path}; give each its own")
    if args.plot is not None:
        from .report import check_plot_path

        check_plot_path(args.plot)


def _pick_device(requested: Optional[str]) -> str:
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise DSDZooError(f"--device {requested!r} is not a device name (cpu, cuda, cuda:1 ...): {exc}") from None
    if device.type not in ("cpu", "cuda"):
        raise DSDZooError(f"--device {requested}: verify runs on cpu or cuda (cuda:1 ...), not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DSDZooError(f"--device {requested}: CUDA is not available on this machine; use --device cpu")
    return requested


def _weights_for(
    name: str, manifest, override: Optional[Path], named: bool, trust_unverified: bool = False
) -> Optional[Tuple[Path, str]]:
    """(path, description) of the weights to evaluate ``name`` with, or None to leave it out."""
    from ..api import get_weights
    from ..cache import find_local
    from ..loading import identity_conflict

    entry = manifest.models[name]
    if override is not None:
        found = find_local(entry.weights, path=override, rehash=True)
        how = {
            "verified": "matches the manifest",
            "pinned": "matches the pinned sha256",
            "missing": "does not exist",
            "mismatch": "differs from the manifest's sha256",
            "unverifiable": "no digest to compare",
        }[found.state]
        conflict = identity_conflict(override, name, entry.arch)
        if conflict is not None:  # only here with --load-despite-recorded-identity
            how += f"; LOADED DESPITE ITS RECORDED IDENTITY: {conflict.message}"
        return override, f"{override} (local file, {how})"
    found = find_local(entry.weights, rehash=False)
    if found.state == "mismatch":
        raise IntegrityError(
            f"{name}: the weight file {found.path} is not the released one ({found.detail}); delete it "
            "so that it is fetched again, or pass --weights to evaluate it anyway"
        )
    if found.path is not None:
        return found.path, f"{found.path} ({found.state})"
    if not named:
        return None
    from ..download import offline_mode

    if offline_mode():
        raise OfflineError(
            f"{name}: its weight file {entry.weights.file} is not on this machine and DSD_ZOO_OFFLINE is "
            "set; fetch it once online (dsd_zoo.get_model), or pass --weights NAME=PATH"
        )
    try:
        path = Path(get_weights(name).resolve(progress=True, trust_unverified=trust_unverified or None))
    except UnverifiedSourceError as exc:
        raise UnverifiedSourceError(f"{exc}\nIn this command: add --trust-unverified.") from exc
    return path, f"{path} (fetched)"


def _imagenet_names(patterns: List[str], manifest) -> List[str]:
    """The models to evaluate on ImageNet: a pattern ('*_dsd') keeps only ImageNet models; a
    model named outright is kept, so that naming a non-ImageNet one is an error, not a no-op."""
    from ..api import expand_names
    from ..pipelines import IMAGENET_PIPELINES

    explicit = {p for p in patterns if not any(ch in p for ch in "*?[")}
    names = [
        name
        for name in expand_names(patterns, manifest)
        if name in explicit or manifest.models[name].transforms.get("pipeline") in IMAGENET_PIPELINES
    ]
    if patterns and not names:
        raise DSDZooError(f"{' '.join(patterns)} matches no ImageNet model (see dsd_zoo.list_models())")
    return names


def _select_models(
    named: List[str], manifest, weights: Dict[str, Path], trust_unverified: bool = False
) -> Dict[str, Tuple[Path, str]]:
    from ..pipelines import IMAGENET_PIPELINES

    for name in named:
        pipeline = manifest.models[name].transforms.get("pipeline")
        if pipeline not in IMAGENET_PIPELINES:
            raise DSDZooError(
                f"{name} is not an ImageNet model (its preprocessing pipeline is {pipeline!r}); the "
                "self-check (no --imagenet) evaluates it on its own data"
            )
    candidates = named or [
        name for name, entry in manifest.models.items() if entry.transforms.get("pipeline") in IMAGENET_PIPELINES
    ]
    unused = [name for name in weights if name not in candidates]
    if unused:  # it would be ignored, and the model named instead fetched
        raise DSDZooError(
            f"--weights names {', '.join(unused)}, which this run does not evaluate (it evaluates "
            f"{', '.join(candidates)}); add {' '.join(unused)} to the models to evaluate, or leave its "
            "--weights out"
        )
    picked = {
        name: _weights_for(name, manifest, weights.get(name), bool(named) or name in weights, trust_unverified)
        for name in candidates
    }
    chosen = {name: found for name, found in picked.items() if found is not None}
    if not chosen:
        raise DSDZooError(
            "no ImageNet model has its weights on this machine: name the models to fetch "
            "(e.g. resnet50_dsd), or pass --weights NAME=PATH; the self-check (no --imagenet) lists them"
        )
    return chosen


def _emit(report, args: argparse.Namespace) -> None:
    print(report.to_text())
    report.write(args.json, args.markdown, args.plot)
    for path in (args.json, args.markdown, args.plot):
        if path is not None:
            print(f"wrote {path}")


def _run_imagenet(args: argparse.Namespace, command: str, rank: int) -> int:
    from ..api import imagenet_classes
    from ..manifest import load_manifest
    from .datasets import scan_imagenet
    from .._process_group import barrier, process_group
    from .engine import evaluate, load_target
    from .report import eval_report

    device = _pick_device(args.device)
    if args.gpu_decode and not device.startswith("cuda"):
        raise DSDZooError(
            f"--gpu-decode decodes on a GPU, but the device is {device}; give --device cuda, or leave "
            "--gpu-decode out (on a CPU the default decoding in worker processes is the fastest)"
        )
    manifest = load_manifest()
    named = _imagenet_names(args.names, manifest)
    weights = parse_weights(args.weights, manifest, args.load_despite_recorded_identity)
    wnids = [wnid for wnid, _ in imagenet_classes()]
    samples = scan_imagenet(args.imagenet, wnids, args.labels).subset(args.limit)
    chosen = _select_models(named, manifest, weights, args.trust_unverified)
    if args.fast and rank == 0:
        print(
            "warning: --fast runs the models under bfloat16 autocast; the errors may differ from the exact float32 "
            "run that the paper's numbers are compared with",
            file=sys.stderr,
        )
    if args.gpu_decode and rank == 0:
        print(
            "warning: --gpu-decode decodes the JPEGs with nvJPEG, whose pixels differ slightly from libjpeg's; the "
            "errors may differ from the exact run that the paper's numbers are compared with",
            file=sys.stderr,
        )
    batch_size = args.batch_size or (128 if device.startswith("cuda") else 32)
    with process_group(device) as here:
        targets = [
            load_target(name, path, load_despite_recorded_identity=args.load_despite_recorded_identity)
            for name, (path, _) in chosen.items()
        ]
        result = evaluate(
            targets,
            samples,
            batch_size=batch_size,
            workers=args.workers,
            device=str(here.device),
            fast=args.fast,
            channels_last=args.channels_last,
            compile_models=args.compile,
            engine=args.engine,
            decode_on_device=args.gpu_decode,
            bad_images=args.bad_images,
            progress=args.progress,
        )
        report = eval_report(
            result,
            samples,
            {name: manifest.models[name] for name in chosen},
            {name: text for name, (_, text) in chosen.items()},
            args.tolerance,
            args.limit,
            command,
        )
        if rank == 0:
            _emit(report, args)
        barrier()  # every rank ends when the report is out, so a launcher never cuts rank 0 short
    return report.exit_code


def _run_selfcheck(args: argparse.Namespace, command: str) -> int:
    from ..api import expand_names
    from ..manifest import load_manifest
    from .report import selfcheck_report
    from .selfcheck import run_selfcheck

    manifest = load_manifest()
    names = expand_names(args.names, manifest)
    weights = parse_weights(args.weights, manifest, args.load_despite_recorded_identity)
    report = selfcheck_report(run_selfcheck(names, weights, manifest), command)
    _emit(report, args)
    return report.exit_code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status (see ``--help``)."""
    args = build_parser().parse_args(argv)
    command = "python -m dsd_zoo.verify " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    rank = int(os.environ.get("RANK", "0"))
    try:
        _check_evaluation_options(args)
        _check_numbers(args)
        _check_outputs(args)
        if args.imagenet is not None:
            return _run_imagenet(args, command, rank)
        return _run_selfcheck(args, command)
    except DSDZooError as exc:
        prefix = "" if int(os.environ.get("WORLD_SIZE", "1")) <= 1 else f"[rank {rank}] "
        print(f"{prefix}dsd_zoo.verify: error: {exc}", file=sys.stderr)
        return EXIT_FAILED if isinstance(exc, IntegrityError) else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("dsd_zoo.verify: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    status = main()
    # The interpreter's last collections would walk every object of torch, torchvision and the
    # models once more, about 0.5 s on 2 cores; frozen, they are left to the process's end.
    gc.freeze()
    sys.exit(status)
