"""DSD against an equally trained dense baseline, on real data, offline, in about a minute.

Data: scikit-learn's bundled 8x8 digits (no download), one fixed stratified split of 1,197
training and 600 test images. Model: :func:`dsd_zoo.models.digits.digits_net`. For each seed,
two runs from the same initialisation and the same batch order:

* DSD: dense -> sparse (``--sparsity`` of every layer but the first conv, mask fixed) -> re-dense,
  each phase at a tenth of the previous learning rate (the paper's recipe);
* baseline: dense for the same epochs, with the learning-rate drops at the same epochs.

So the two runs differ only by the mask during the middle phase. The test error of every stage
is reported as mean +- std over seeds, with the paired difference DSD - baseline.

::

    python -m dsd_zoo.dsd.demo --seeds 10 --out runs/dsd-demo
    python -m dsd_zoo.dsd.demo --seeds 10 --out runs/dsd-demo --export-embedded dsd_zoo/data/embedded

``--export-embedded`` also writes the first seed's three models, the test split and a
``results.json`` with their digests and test errors (what ``dsd_zoo/data/embedded`` holds).
Needs ``pip install 'dsd-zoo[demo]'`` (scikit-learn).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dsd_zoo.digests import hash_file
from dsd_zoo.dsd.checkpoint import load_checkpoint, save_checkpoint
from dsd_zoo.dsd.digits_data import DIGITS_SOURCE, DigitsSplit, load_digits_split_sklearn
from dsd_zoo.dsd.embedded import digits_input, evaluate_digits, save_digits_split
from dsd_zoo.dsd.loop import PhaseResult, evaluate, torch_settings, train_epoch, train_phases
from dsd_zoo.dsd.masks import DSD
from dsd_zoo.dsd.schedule import DSDSchedule
from dsd_zoo.models.digits import digits_net

__all__ = ["DemoConfig", "Run", "main", "run_demo", "train_digits"]

# File names of the embedded zoo, by stage; the verify manifest refers to them.
EMBEDDED_FILES = {
    "baseline": "digits_baseline.safetensors",
    "sparse": "digits_sparse.safetensors",
    "dsd": "digits_dsd.safetensors",
}
TEST_FILE = "digits_test.safetensors"
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class DemoConfig:
    """Everything that defines a demonstration run (written next to its results)."""

    seeds: int = 10
    epochs: tuple[int, int, int] = (20, 10, 10)
    lr: float = 0.05
    sparsity: float = 0.3
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # One thread: for a model this small per-op overhead dominates, and on a shared 2-core
    # machine a second thread waits on a busy core (measured: 1.3 ms vs 15 ms per step).
    threads: int = 1

    def schedule(self) -> DSDSchedule:
        """dense -> sparse -> re-dense, learning rate x0.1 per phase."""
        return DSDSchedule.standard(lr=self.lr, epochs=self.epochs)


@dataclass
class Run:
    """One training run: per-phase results, the model after each phase, the sparse phase's masks."""

    seed: int
    kind: str  # "dsd" or "baseline"
    results: list[PhaseResult]
    states: dict[str, dict[str, Tensor]] = field(repr=False)
    masks: dict[str, Tensor] = field(repr=False)

    def top1(self, phase: str) -> float:
        """Test top-1 error after ``phase``."""
        return next(r.errors.top1_err for r in self.results if r.phase.name == phase)


def train_digits(split: DigitsSplit, seed: int, config: DemoConfig, use_dsd: bool) -> Run:
    """Train ``digits_net`` through the DSD schedule (``use_dsd``) or its dense baseline."""
    torch.manual_seed(seed)
    model = digits_net()
    schedule = config.schedule() if use_dsd else config.schedule().baseline()
    dsd = DSD(model, sparsity=config.sparsity) if use_dsd else None
    images, labels = digits_input(split.train_images), split.train_labels
    test = [(digits_input(split.test_images), split.test_labels)]
    # Its own generator, seeded like the model: both runs of a seed see the same batches.
    order = torch.Generator().manual_seed(seed)

    def run_epoch(optimizer: torch.optim.Optimizer, phase: object, epoch: int) -> float:
        perm = torch.randperm(labels.numel(), generator=order)
        return train_epoch(model, ((images[i], labels[i]) for i in perm.split(config.batch_size)), optimizer)

    states: dict[str, dict[str, Tensor]] = {}
    masks: dict[str, Tensor] = {}

    def keep(result: PhaseResult, phase_masks: dict[str, Tensor]) -> None:
        states[result.phase.name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        masks.update(phase_masks)

    results = train_phases(
        schedule,
        dsd,
        make_optimizer=lambda phase: torch.optim.SGD(
            model.parameters(), lr=phase.lr, momentum=config.momentum, weight_decay=config.weight_decay
        ),
        run_epoch=run_epoch,
        evaluate_fn=lambda: evaluate(model, test),
        on_phase_end=keep,
    )
    return Run(seed, "dsd" if use_dsd else "baseline", results, states, masks)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def summarize(dsd_runs: Sequence[Run], baseline_runs: Sequence[Run], config: DemoConfig) -> dict[str, Any]:
    """Mean/std of the test top-1 error of every stage over seeds, and the paired DSD - baseline."""
    last = config.schedule()[-1].name
    stages = {
        "dense": [r.top1("dense") for r in dsd_runs],
        "sparse": [r.top1("sparse") for r in dsd_runs],
        "dsd": [r.top1(last) for r in dsd_runs],
        "baseline": [r.top1(last) for r in baseline_runs],
    }
    diff = [d - b for d, b in zip(stages["dsd"], stages["baseline"])]
    sparse_report = next(r.sparsity for r in dsd_runs[0].results if r.phase.name == "sparse")
    return {
        "top1_err": {name: _stats(values) for name, values in stages.items()},
        "dsd_minus_baseline": {
            **_stats(diff),
            "dsd_better": sum(d < 0 for d in diff),
            "equal": sum(d == 0 for d in diff),
            "dsd_worse": sum(d > 0 for d in diff),
        },
        # Same seed, same data order, same first phase: the dense stage of DSD *is* the baseline
        # after its first phase. A difference here would mean the comparison is not paired.
        "dense_stage_identical": all(
            torch.equal(torch.cat([t.flatten() for t in d.states["dense"].values()]),
                        torch.cat([t.flatten() for t in b.states["dense"].values()]))
            for d, b in zip(dsd_runs, baseline_runs)
        ),
        "sparse_stage_sparsity": sparse_report.to_dict()["total"] if sparse_report is not None else None,
    }


def format_table(summary: dict[str, Any], config: DemoConfig) -> str:
    """The summary as a Markdown table (errors in %)."""
    e_dense, e_sparse, e_redense = config.epochs
    rows = [
        ("dense (DSD stage 1)", f"{e_dense}", "top1_err", "dense"),
        ("sparse (DSD stage 2)", f"{e_dense} + {e_sparse}", "top1_err", "sparse"),
        ("**DSD** (re-dense, stage 3)", f"{e_dense} + {e_sparse} + {e_redense}", "top1_err", "dsd"),
        ("**baseline** (dense throughout)", f"{sum(config.epochs)}", "top1_err", "baseline"),
    ]
    n = len(summary["top1_err"]["dsd"]["values"])
    lines = [
        f"| model | epochs | test top-1 error, mean ± std over {n} seeds | min – max |",
        "|---|---|---|---|",
    ]
    for label, epochs, key, stage in rows:
        s = summary[key][stage]
        lines.append(
            f"| {label} | {epochs} | {100 * s['mean']:.2f} % ± {100 * s['std']:.2f} | "
            f"{100 * s['min']:.2f} – {100 * s['max']:.2f} % |"
        )
    d = summary["dsd_minus_baseline"]
    lines.append(
        f"| DSD − baseline (paired by seed) | | {100 * d['mean']:+.2f} points ± {100 * d['std']:.2f} | "
        f"DSD better in {d['dsd_better']}, equal in {d['equal']}, worse in {d['dsd_worse']} of {n} |"
    )
    return "\n".join(lines)


def export_embedded(
    out: Path, split: DigitsSplit, dsd_run: Run, baseline_run: Run, config: DemoConfig, command: str
) -> dict[str, Any]:
    """Write one seed's baseline, sparse and DSD models, the test split and ``results.json`` to ``out``.

    The recorded errors come from reading the written files back through
    :func:`dsd_zoo.dsd.embedded.evaluate_digits`, the path every later evaluation takes.
    """
    out.mkdir(parents=True, exist_ok=True)
    test_path = save_digits_split(
        out / TEST_FILE,
        split.test_images,
        split.test_labels,
        {"source": DIGITS_SOURCE, "split": split.description, "preprocessing": "float(pixel) / 16, shape [N, 1, 8, 8]"},
    )
    last = config.schedule()[-1].name
    picks = {
        "baseline": (baseline_run.states[last], None),
        "sparse": (dsd_run.states["sparse"], dsd_run.masks),
        "dsd": (dsd_run.states[last], None),
    }
    # What trained these models, and nothing else: not the number of seeds run next to them, so
    # that the same seed and settings always give byte-identical files.
    training = {k: v for k, v in _config_dict(config).items() if k != "seeds"}
    common = {"arch": "digits_net", "num_classes": "10", "seed": str(dsd_run.seed), "dataset": DIGITS_SOURCE,
              "config": json.dumps(training, sort_keys=True)}
    models = {}
    for stage, (state, masks) in picks.items():
        model = digits_net()
        model.load_state_dict(state)
        path = save_checkpoint(out / EMBEDDED_FILES[stage], model, masks=masks, metadata={**common, "stage": stage})
        reloaded = digits_net()
        load_checkpoint(path, reloaded)
        top1, top5, n = evaluate_digits(reloaded, test_path)
        models[f"digits_{stage}"] = {
            "file": path.name, "stage": stage, "sha256": hash_file(path)["sha256"],
            "size": path.stat().st_size, "top1_err": top1, "top5_err": top5, "n": n, "top1_errors": round(top1 * n),
        }
    results = {
        "generated_by": command,
        "seed": dsd_run.seed,
        "config": _config_dict(config),
        "torch": torch.__version__,
        "test_split": {"file": test_path.name, "sha256": hash_file(test_path)["sha256"],
                       "size": test_path.stat().st_size, "n": split.test_labels.numel(), "source": DIGITS_SOURCE, "split": split.description},
        "models": models,
    }
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return results


def _config_dict(config: DemoConfig) -> dict[str, Any]:
    return {**config.__dict__, "epochs": list(config.epochs), "schedule": config.schedule().to_list()}


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
        return _run_demo(config, out, export, command, log)


def _run_demo(
    config: DemoConfig, out: Path, export: Path | None, command: str, log: Callable[[str], None]
) -> dict[str, Any]:
    start = time.perf_counter()
    split = load_digits_split_sklearn()
    log(f"data: {DIGITS_SOURCE}; {split.description}")
    log(f"schedule: {config.schedule()}, sparsity {config.sparsity}, {config.threads} threads")
    dsd_runs, baseline_runs = [], []
    for seed in range(config.seeds):
        t0 = time.perf_counter()
        dsd_runs.append(train_digits(split, seed, config, use_dsd=True))
        baseline_runs.append(train_digits(split, seed, config, use_dsd=False))
        d, b = dsd_runs[-1], baseline_runs[-1]
        last = config.schedule()[-1].name
        log(
            f"seed {seed}: dense {d.top1('dense'):.2%}  sparse {d.top1('sparse'):.2%}  "
            f"DSD {d.top1(last):.2%}  | baseline {b.top1(last):.2%}  ({time.perf_counter() - t0:.1f} s)"
        )
    summary = summarize(dsd_runs, baseline_runs, config)
    summary["config"] = _config_dict(config)
    summary["data"] = {"source": DIGITS_SOURCE, "split": split.description}
    summary["environment"] = {"torch": torch.__version__, "python": platform.python_version(),
                              "machine": platform.machine(), "cpu_count": os.cpu_count()}
    if export is not None:
        summary["embedded"] = export_embedded(export, split, dsd_runs[0], baseline_runs[0], config, command)
    summary["command"] = command
    summary["wall_seconds"] = time.perf_counter() - start
    table = format_table(summary, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")
    log(table)
    log(f"total wall time {summary['wall_seconds']:.1f} s; written to {out}")
    return summary


def _parser() -> argparse.ArgumentParser:
    defaults = DemoConfig()
    p = argparse.ArgumentParser(
        prog="python -m dsd_zoo.dsd.demo",
        description="DSD vs an equally trained dense baseline on scikit-learn's bundled 8x8 digits "
        "(offline; needs scikit-learn: pip install 'dsd-zoo[demo]').",
    )
    p.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds, 0..N-1 (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("dsd-demo"), help="directory for summary.json and table.md")
    p.add_argument("--export-embedded", type=Path, metavar="DIR",
                   help="also write seed 0's baseline/sparse/DSD models, the test split and results.json to DIR")
    p.add_argument("--epochs", type=int, nargs=3, default=defaults.epochs, metavar=("DENSE", "SPARSE", "REDENSE"),
                   help="epochs of each phase (default %(default)s)")
    p.add_argument("--lr", type=float, default=defaults.lr, help="first-phase learning rate, x0.1 per phase")
    p.add_argument("--sparsity", type=float, default=defaults.sparsity, help="per-layer sparsity (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--threads", type=int, default=defaults.threads,
                   help="torch CPU threads (default %(default)s; results are reproducible for a fixed count)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.seeds < 1:
        _parser().error("--seeds must be at least 1")
    config = DemoConfig(
        seeds=args.seeds, epochs=tuple(args.epochs), lr=args.lr, sparsity=args.sparsity,
        batch_size=args.batch_size, threads=args.threads,
    )
    try:
        command = "python -m dsd_zoo.dsd.demo " + shlex.join(sys.argv[1:] if argv is None else argv)
        run_demo(config, args.out, args.export_embedded, command.strip())
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
