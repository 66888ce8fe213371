"""``python -m dsd_zoo.export``: write a dsd-zoo model as an ONNX file, checked against PyTorch (see ``--help``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..atomic import atomic_write, file_in_the_way
from ..errors import DSDZooError, ExportError, UnknownModelError, UnverifiedSourceError

DESCRIPTION = """\
Export a dsd-zoo model with its weights to an ONNX file that ONNX Runtime (or any ONNX runtime)
can run: float32, input "input" of shape (batch, channels, size, size) with a dynamic batch,
output "logits" (batch, classes). The input is the model's preprocessed crop, as dsd_zoo's
transforms produce it (the preprocessing is recorded in the file's metadata; see
docs/preprocessing.md): Caffe models take 0-255 RGB minus the mean, fb.resnet.torch models
mean/std-normalised RGB.

Before anything is written the graph is run by ONNX Runtime on the model's fingerprint probe and
every logit compared with PyTorch's; the file is written atomically only when they agree, so a
failed export leaves nothing behind. This is the export that python -m dsd_zoo.verify uses for
its onnxruntime engine.
"""

EPILOG = """\
metadata (onnx.ModelProto.metadata_props, or onnxruntime's get_modelmeta().custom_metadata_map):
  dsd_zoo.model            the model name          dsd_zoo.arch        its architecture
  dsd_zoo.weights_sha256   sha256 of the weights   dsd_zoo.preprocessing   the manifest's transforms (JSON)
  dsd_zoo.probe            the fingerprint probe   dsd_zoo.check_rel_diff  largest logit difference found
  dsd_zoo.version, dsd_zoo.torch                   the versions that exported it

examples:
  python -m dsd_zoo.export resnet50_dsd -o resnet50_dsd.onnx
        the released weights (fetched and checked if they are not on this machine yet)
  python -m dsd_zoo.export squeezenet_sparse --weights sparse.safetensors -o squeezenet_sparse.onnx
        a locally converted file (python -m dsd_zoo.convert)

exit status: 0 written; 1 the export or its check failed, or the file could not be written;
2 bad usage (unknown model, missing weights, output in a folder that does not exist).
Needs the onnx extra: pip install 'dsd-zoo[onnx]'.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its ``--help`` is the CLI's documentation)."""
    parser = argparse.ArgumentParser(
        prog="python -m dsd_zoo.export",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "name",
        metavar="NAME",
        help='the model, e.g. resnet50_dsd (all: python -c "import dsd_zoo; print(dsd_zoo.list_models())")',
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE.onnx",
        type=Path,
        required=True,
        help="where to write the ONNX file (atomically; an existing file is replaced only with --force)",
    )
    parser.add_argument(
        "--weights",
        metavar="PATH",
        type=Path,
        help="a local safetensors file of NAME (e.g. from python -m dsd_zoo.convert) instead of the released weights",
    )
    parser.add_argument(
        "--trust-unverified",
        action="store_true",
        help="accept an original release that has no published digest when NAME's weights must be "
        "fetched and converted (trust on first use)",
    )
    parser.add_argument("--force", action="store_true", help="replace FILE.onnx if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def export_model(
    name: str,
    output: Path,
    weights: Optional[Path] = None,
    *,
    force: bool = False,
    trust_unverified: bool = False,
    progress: bool = True,
) -> dict:
    """Export ``name`` (with ``weights``, default the released file) to ``output``; returns what was written.

    ``output`` is checked first (an existing file is replaced only with ``force``), before anything
    is fetched or exported. The graph is checked against PyTorch on the model's fingerprint probe
    before ``output`` is written (atomically), so on any error nothing is written.

    Returns:
        ``{"path", "bytes", "metadata", "difference"}``.

    Raises:
        DSDZooError: an unknown model, a weight file that does not fit, or
            :class:`~dsd_zoo.errors.ExportError` when the export or its check fails.
    """
    from ..api import get_entry, get_model, get_weights
    from ..fingerprint import probe_for
    from .onnx_export import export_checked, model_metadata, weights_sha256

    blocker = file_in_the_way(output)
    if output.is_dir():
        raise DSDZooError(f"-o {output}: that is a folder; give a file name such as {output / 'model.onnx'}")
    if blocker is not None:
        raise DSDZooError(f"-o {output}: {blocker} is a file, not a folder")
    if not output.parent.is_dir():
        raise DSDZooError(
            f"-o {output}: folder {str(output.parent)!r} does not exist; create it (mkdir -p "
            f"{output.parent}) or give another path"
        )
    if output.exists() and not force:
        raise DSDZooError(f"-o {output}: the file exists; add --force to replace it, or give another path")
    entry = get_entry(name)
    if weights is None:
        try:
            weights = Path(get_weights(name).resolve(progress=progress, trust_unverified=trust_unverified or None))
        except UnverifiedSourceError as exc:
            raise UnverifiedSourceError(f"{exc}\nIn this command: add --trust-unverified.") from exc
    elif not weights.is_file():
        raise DSDZooError(
            f"--weights {weights}: no such file; give a safetensors file of {name} (python -m "
            f"dsd_zoo.convert writes one), or leave --weights out to use the released weights"
        )
    model = get_model(name, weights=weights, progress=progress)
    metadata = model_metadata(name, weights_sha256(weights), entry.transforms, entry.arch)
    data, difference = export_checked(model, name=name, probe=probe_for(entry), metadata=metadata, progress=progress)
    atomic_write(output, lambda file: file.write(data))
    return {"path": output, "bytes": len(data), "metadata": metadata, "difference": difference}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit status (see ``--help``)."""
    args = build_parser().parse_args(argv)
    try:
        written = export_model(
            args.name,
            args.output,
            args.weights,
            force=args.force,
            trust_unverified=args.trust_unverified,
            progress=not args.quiet,
        )
    except ExportError as exc:
        print(f"dsd_zoo.export: error: {exc}; nothing was written to {args.output}", file=sys.stderr)
        return 1
    except DSDZooError as exc:
        hint = "; python -m dsd_zoo.verify lists every model" if isinstance(exc, UnknownModelError) else ""
        print(f"dsd_zoo.export: error: {exc}{hint}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"dsd_zoo.export: error: writing {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dsd_zoo.export: interrupted: nothing was written to {args.output}", file=sys.stderr)
        return 130
    metadata = written["metadata"]
    print(f"wrote {written['path']} ({written['bytes'] / 1e6:.1f} MB)")
    print(
        f"  model          {args.name} ({metadata['dsd_zoo.arch']}), weights sha256 "
        f"{metadata['dsd_zoo.weights_sha256']}"
    )
    print(f"  preprocessing  {json.loads(metadata['dsd_zoo.preprocessing'])}")
    print(
        f"  checked        ONNX Runtime vs PyTorch on the fingerprint probe: largest logit difference "
        f"{written['difference']:.2g} of the largest logit"
    )
    print(f"  run it         onnxruntime.InferenceSession({str(written['path'])!r}).run(None, {{'input': batch}})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
