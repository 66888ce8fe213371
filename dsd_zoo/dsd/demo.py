"""DSD against an equally trained dense baseline, on real data, offline: the command line.

``--dataset digits`` (the default) runs the digits demonstration of docs/dsd-demo.md, about a
minute: scikit-learn's bundled 8x8 digits (no download), one fixed stratified split of 1,197
training and 600 test images, :func:`dsd_zoo.models.digits.digits_net`. ``--dataset mnist1d``
runs the pre-registered MNIST-1D study of docs/dsd-mnist1d.md
(:mod:`dsd_zoo.dsd.mnist1d_study`). Both go through :mod:`dsd_zoo.dsd.paired`: for each seed,
two runs from the same initialisation and the same batch order:

* DSD: dense -> sparse (``--sparsity`` of every layer but the first, mask fixed) -> re-dense,
  each phase at a tenth of the previous learning rate (the paper's recipe);
* baseline: dense for the same epochs, with the learning-rate drops at the same epochs.

So the two runs differ only by the mask during the middle phase. The test error of every stage
is reported as mean +- std over seeds, with the paired difference DSD - baseline, its 95 %
interval and a sign test.

::

    python -m dsd_zoo.dsd.demo --seeds 10 --out runs/dsd-demo
    python -m dsd_zoo.dsd.demo --seeds 10 --out runs/dsd-demo --export-embedded dsd_zoo/data/embedded
    python -m dsd_zoo.dsd.demo --dataset mnist1d --out runs/dsd-mnist1d --plot

``--export-embedded`` also writes the first seed's three models, the test split and a
``results.json`` with their digests and test errors (what ``dsd_zoo/data/embedded`` holds).
Needs ``pip install 'dsd-zoo[demo]'`` (scikit-learn and mnist1d; ``[plot]`` for ``--plot``).
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dsd_zoo.atomic import write_text
from dsd_zoo.dsd.checkpoint import file_record, load_checkpoint, save_checkpoint
from dsd_zoo.dsd.embedded import (
    DIGITS_SOURCE,
    DigitsSplit,
    digits_input,
    evaluate_digits,
    load_digits_split_sklearn,
    save_digits_split,
)
from dsd_zoo.dsd.loop import torch_settings
from dsd_zoo.dsd.mnist1d_study import PREREGISTERED_SEEDS, PROTOCOL, run_study
from dsd_zoo.dsd.paired import DemoConfig, Run, Task, environment, format_table, run_seeds, summarize
from dsd_zoo.models.digits import digits_net

__all__ = ["DemoConfig", "Run", "main", "run_demo"]


def export_embedded(
    out: Path, split: DigitsSplit, dsd_run: Run, baseline_run: Run, config: DemoConfig, command: str
) -> dict[str, Any]:
    """Write one seed's baseline, sparse and DSD models, the test split and ``results.json`` to ``out``.

    The recorded errors come from reading the written files back through
    :func:`dsd_zoo.dsd.embedded.evaluate_digits`, the path every later evaluation takes.
    """
    test_path = save_digits_split(  # creates ``out``
        out / "digits_test.safetensors",
        split.test_images,
        split.test_labels,
        {"source": DIGITS_SOURCE, "split": split.description, "preprocessing": "float(pixel) / 16, shape [N, 1, 8, 8]"},
    )
    picks = {
        "baseline": (baseline_run.states["redense"], None),
        "sparse": (dsd_run.states["sparse"], dsd_run.masks),
        "dsd": (dsd_run.states["redense"], None),
    }
    common = {
        "arch": "digits_net",
        "num_classes": "10",
        "seed": str(dsd_run.seed),
        "dataset": DIGITS_SOURCE,
        # What trained these models, and nothing else: not the number of seeds run next to them, so
        # that the same seed and settings always give byte-identical files.
        "config": json.dumps({k: v for k, v in config.to_dict().items() if k != "seeds"}, sort_keys=True),
    }
    models = {}
    for stage, (state, masks) in picks.items():
        model = digits_net()
        model.load_state_dict(state)
        # digits_baseline, digits_sparse, digits_dsd: the manifest's models, named by their files.
        path = save_checkpoint(
            out / f"digits_{stage}.safetensors", model, masks=masks, metadata={**common, "stage": stage}
        )
        load_checkpoint(path, model)  # every tensor read back from the file just written
        top1, top5, n = evaluate_digits(model, test_path)
        models[f"digits_{stage}"] = {
            **file_record(path),
            "stage": stage,
            "top1_err": top1,
            "top5_err": top5,
            "n": n,
            "top1_errors": round(top1 * n),
        }
    results = {
        "generated_by": command,
        "seed": dsd_run.seed,
        "config": config.to_dict(),
        "torch": torch.__version__,
        "test_split": {
            **file_record(test_path),
            "n": split.test_labels.numel(),
            "source": DIGITS_SOURCE,
            "split": split.description,
        },
        "models": models,
    }
    write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def run_demo(
    config: DemoConfig,
    out: Path,
    export: Path | None = None,
    command: str = "python -m dsd_zoo.dsd.demo",
    log: Callable[[str], None] = functools.partial(print, flush=True),
) -> dict[str, Any]:
    """Run every seed, write ``summary.json`` and ``table.md`` to ``out``; returns the summary.

    ``command`` is recorded in the outputs as the way to reproduce them.
    """
    # Same seed, same numbers: CPU kernels are deterministic at a fixed thread count.
    with torch_settings(threads=config.threads, deterministic=True):
        start = time.perf_counter()
        split = load_digits_split_sklearn()
        log(f"data: {DIGITS_SOURCE}; {split.description}")
        log(f"schedule: {config.schedule()}, sparsity {config.sparsity}, {config.threads} threads")
        task = Task(
            digits_input(split.train_images),
            split.train_labels,
            digits_input(split.test_images),
            split.test_labels,
            digits_net,
        )
        dsd_runs, baseline_runs = run_seeds(task, config, log)
        summary = {
            **summarize(dsd_runs, baseline_runs),
            "config": config.to_dict(),
            "data": {"source": DIGITS_SOURCE, "split": split.description},
            "environment": environment(),
            "command": command,
        }
        if export is not None:
            summary["embedded"] = export_embedded(export, split, dsd_runs[0], baseline_runs[0], config, command)
        summary["wall_seconds"] = time.perf_counter() - start
        table = format_table(summary, config)
        write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        write_text(out / "table.md", table + "\n")
        log(table)
        log(f"total wall time {summary['wall_seconds']:.1f} s; written to {out}")
    return summary


def _parser() -> argparse.ArgumentParser:
    defaults = DemoConfig()
    p = argparse.ArgumentParser(
        prog="python -m dsd_zoo.dsd.demo",
        description="DSD vs an equally trained dense baseline, paired by seed, offline. "
        "--dataset digits (default): scikit-learn's bundled 8x8 digits (docs/dsd-demo.md). "
        "--dataset mnist1d: the pre-registered MNIST-1D study, an MLP and a 1-D CNN (docs/dsd-mnist1d.md); "
        "its defaults are the protocol's, and any change of seeds, models or training settings is "
        "recorded as exploratory. Needs pip install 'dsd-zoo[demo]' (scikit-learn, mnist1d).",
    )
    p.add_argument(
        "--dataset",
        choices=("digits", "mnist1d"),
        default="digits",
        help="which demonstration to run (default %(default)s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        help=f"number of seeds, 0..N-1 (default: digits {defaults.seeds}, mnist1d {PREREGISTERED_SEEDS})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("dsd-demo"),
        help="directory for summary.json and table.md (mnist1d also: timing.json, figures)",
    )
    p.add_argument(
        "--export-embedded",
        type=Path,
        metavar="DIR",
        help="digits only: also write seed 0's baseline/sparse/DSD models, the test split and results.json to DIR",
    )
    p.add_argument(
        "--model",
        action="append",
        choices=tuple(PROTOCOL),
        help="mnist1d only: a model of the study (repeat for several; default: all)",
    )
    p.add_argument(
        "--plot",
        action="store_true",
        help="mnist1d only: also write paired_errors.png and curves_seed0.png (needs matplotlib)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        metavar=("DENSE", "SPARSE", "REDENSE"),
        help=f"epochs of each phase (default: digits {' '.join(map(str, defaults.epochs))}, "
        "mnist1d the protocol's per model)",
    )
    p.add_argument(
        "--lr", type=float, help=f"first-phase learning rate, x0.1 per phase (default: digits {defaults.lr})"
    )
    p.add_argument("--sparsity", type=float, help=f"per-layer sparsity (default: digits {defaults.sparsity})")
    p.add_argument("--batch-size", type=int, help=f"batch size (default: digits {defaults.batch_size})")
    p.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="torch CPU threads (default %(default)s; results are reproducible for a fixed count)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1, e.g. python -m dsd_zoo.dsd.demo --seeds 2")
    if args.dataset == "digits" and (args.model or args.plot):
        parser.error(
            "--model and --plot belong to the MNIST-1D study: python -m dsd_zoo.dsd.demo --dataset mnist1d"
            + (" --model " + " --model ".join(args.model) if args.model else "")
            + " --plot"
        )
    if args.dataset == "mnist1d" and args.export_embedded is not None:
        parser.error(
            "--export-embedded writes the digits zoo: python -m dsd_zoo.dsd.demo --dataset digits --export-embedded DIR"
        )
    changed = {
        key: value
        for key, value in (
            ("epochs", tuple(args.epochs) if args.epochs else None),
            ("lr", args.lr),
            ("sparsity", args.sparsity),
            ("batch_size", args.batch_size),
            # The study records a thread count other than the default as a deviation.
            ("threads", args.threads if args.threads != DemoConfig().threads else None),
        )
        if value is not None
    }
    command = ("python -m dsd_zoo.dsd.demo " + shlex.join(sys.argv[1:] if argv is None else argv)).strip()
    log = functools.partial(print, flush=True)
    try:
        if args.dataset == "mnist1d":
            run_study(
                args.out,
                models=args.model or tuple(PROTOCOL),
                seeds=args.seeds,
                overrides=changed,
                plot=args.plot,
                command=command,
                log=log,
            )
        else:
            config = DemoConfig(**{**changed, "seeds": args.seeds or DemoConfig().seeds, "threads": args.threads})
            run_demo(config, args.out, args.export_embedded, command, log)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
