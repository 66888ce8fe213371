"""``python -m dsd_zoo.convert``: convert an original release file to a dsd-zoo safetensors file.

Exit status: 0 on success, 2 when the input does not convert (wrong model, layout or shape,
malformed file, existing output) or the command line is wrong, 1 when a file cannot be read
or written or a package the format needs is not installed. Errors are one message on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .._signals import exit_on_termination
from ..errors import ConversionError, DSDZooError, FormatError

EXAMPLE = """\
examples:
  python -m dsd_zoo.convert compressed_SqueezeNet.net --model squeezenet_sparse -o squeezenet_sparse.safetensors
  python -m dsd_zoo.convert bvlc_alexnet.caffemodel --model alexnet_caffe -o alexnet_caffe.safetensors
  python -m dsd_zoo.convert ~/Downloads/resnet50_dsd.t7 --model resnet50_dsd --install

--install takes an original you downloaded by hand (e.g. from the OneDrive link in a browser)
into the dsd-zoo cache, checked against its published digest or pinned on first use as a
download would be, and converts it there: then dsd_zoo.get_model(NAME) and
torch.hub.load(..., NAME) use it with no argument, offline too.

The reader is chosen by the model's original format in the manifest (caffemodel, torch7 or
deep-compression) and the mapping by its architecture. Caffe models get conv1 flipped from BGR
to RGB. The output's metadata records the model, the source file and its sha256, the converter
version and the conversion options; load it with
dsd_zoo.get_model(NAME, weights="OUT.safetensors").
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m dsd_zoo.convert",
        description="Convert a model file as its authors released it (Caffe .caffemodel, Torch7 .t7 or Deep "
        "Compression .net) into a checked dsd-zoo safetensors file.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="the original file (.caffemodel, .t7 or .net)")
    parser.add_argument(
        "--model",
        "-m",
        required=True,
        metavar="NAME",
        help="the dsd-zoo model the file holds, e.g. squeezenet_sparse (see dsd_zoo.list_models())",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "-o", "--output", metavar="OUT.safetensors", help="where to write the converted weights (written atomically)"
    )
    target.add_argument(
        "--install",
        action="store_true",
        help="take SRC into the dsd-zoo cache as the model's original (pinned on first use) and "
        "convert it there, so that get_model(NAME) uses it with no argument, offline too",
    )
    parser.add_argument("--force", action="store_true", help="replace OUT.safetensors if it exists")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    from .mapping import save_conversion

    if args.install:
        return _install(args)
    try:
        with exit_on_termination():  # a killed conversion removes its part file like an interrupted one
            saved = save_conversion(args.src, args.model, args.output, force=args.force)
    except KeyboardInterrupt:
        print(f"interrupted: nothing was written to {args.output}", file=sys.stderr)
        return 130
    except DSDZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: converting {args.src} to {args.output}: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except ImportError as exc:  # the Caffe reader's protobuf is an optional extra
        print(f"error: converting {args.src}: {exc}", file=sys.stderr)
        return 1
    for warning in saved.report.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {saved.path}")
    print(
        f"  model   {saved.metadata['model']} ({saved.metadata['arch']}) from {saved.metadata['source_file']} "
        f"(sha256 {saved.metadata['source_sha256']})"
    )
    print(f"  options {json.loads(saved.metadata['conversion_options'])}")
    print(f"  sha256  {saved.sha256}")
    print(f"  size    {saved.size} bytes")
    return 0


def _install(args: argparse.Namespace) -> int:
    from ..api import get_entry
    from ..manifest import load_manifest
    from ..resolve import install_original

    try:
        manifest = load_manifest()
        entry = get_entry(args.model, manifest)
        with exit_on_termination():
            path = install_original(entry, manifest, args.src)
    except KeyboardInterrupt:
        print("interrupted: the cache holds what it held before, nothing half-written", file=sys.stderr)
        return 130
    except (ConversionError, FormatError) as exc:
        # The cache's copy of SRC is named in the reader's message; SRC is what the user knows.
        print(
            f"error: {args.src} does not convert as {args.model} (read from its copy in the cache): {exc}",
            file=sys.stderr,
        )
        return 2
    except DSDZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"installed {entry.name}: {path}")
    print(f"  dsd_zoo.get_model({entry.name!r}) and torch.hub.load(..., {entry.name!r}) now use it, offline too;")
    print(f"  python -m dsd_zoo.verify {entry.name} checks it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
