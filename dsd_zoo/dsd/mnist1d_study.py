"""The pre-registered MNIST-1D study: DSD against an equally trained baseline where there is room to help.

Protocol (docs/dsd-mnist1d.md, fixed before any result was seen): MNIST-1D as its generator
makes it (4,000 train / 1,000 test), two models (an over-parameterised MLP and a small 1-D
CNN), :data:`PREREGISTERED_SEEDS` paired seeds each. Per seed and model the DSD run and its
dense baseline share initialisation and batch order (:mod:`dsd_zoo.dsd.paired`, the code path
of the digits demonstration). The decision for each model is the 95 % interval of the mean
paired difference in final test error, DSD - baseline; the sign test is reported beside it.

Any change to the models, seeds, epochs, learning rate, sparsity or batch size makes the run
*exploratory*, and ``summary.json`` says so. ``summary.json`` and ``table.md`` hold no timings,
so a rerun gives the same bytes; timings go to ``timing.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from dsd_zoo._markdown import markdown_table
from dsd_zoo.atomic import write_text
from dsd_zoo.dsd.loop import torch_settings
from dsd_zoo.dsd.mnist1d_data import MNIST1D_SOURCE, make_mnist1d_split
from dsd_zoo.dsd.paired import DemoConfig, Run, Task, environment, format_table, run_seeds, summarize
from dsd_zoo.dsd.study_plots import plot_paired_errors, plot_training_curves, require_matplotlib
from dsd_zoo.models.mnist1d import mnist1d_cnn, mnist1d_mlp

__all__ = [
    "PREREGISTERED_SEEDS",
    "PROTOCOL",
    "StudyModel",
    "format_decision_table",
    "format_per_seed_table",
    "run_study",
    "verdict",
]

PREREGISTERED_SEEDS = 24


@dataclass(frozen=True)
class StudyModel:
    """One model of the study and its pre-registered training settings."""

    description: str
    build: Callable[[], nn.Module]
    # The CNN reads [N, 1, 40]; the MLP [N, 40].
    channel_dim: bool
    config: DemoConfig
    dsd_options: Mapping[str, Any] = field(default_factory=dict)


PROTOCOL: Mapping[str, StudyModel] = {
    "mlp": StudyModel(
        "MLP 40-512-512-10, ReLU (288,778 parameters)",
        mnist1d_mlp,
        False,
        DemoConfig(seeds=PREREGISTERED_SEEDS, epochs=(40, 20, 20), lr=0.05, sparsity=0.5, batch_size=100),
    ),
    "cnn": StudyModel(
        "1-D CNN, 3 x Conv1d(25 channels, stride 2) + linear (5,210 parameters)",
        mnist1d_cnn,
        True,
        DemoConfig(seeds=PREREGISTERED_SEEDS, epochs=(60, 20, 20), lr=0.05, sparsity=0.3, batch_size=100),
        # The library prunes Conv2d and Linear by default; this model's convolutions are 1-D.
        {"include": (nn.Conv1d, nn.Linear)},
    ),
}


def verdict(difference: Mapping[str, Any]) -> str:
    """The pre-registered reading of a ``dsd_minus_baseline`` summary: where its 95 % interval lies."""
    low, high = difference["ci_low"], difference["ci_high"]
    if low is None:
        return "undecided (one seed: no interval)"
    if high < 0:
        return "DSD better (95 % interval of DSD - baseline entirely below 0)"
    if low > 0:
        return "DSD worse (95 % interval of DSD - baseline entirely above 0)"
    return "no difference detected (95 % interval of DSD - baseline contains 0)"


def _per_seed(dsd_runs: Sequence[Run], baseline_runs: Sequence[Run]) -> list[dict[str, Any]]:
    return [
        {
            "seed": d.seed,
            "top1_err": {
                "dense": d.top1("dense"),
                "sparse": d.top1("sparse"),
                "dsd": d.top1("redense"),
                "baseline": b.top1("redense"),
            },
            "dsd_minus_baseline": d.top1("redense") - b.top1("redense"),
            "curves": {"dsd": d.curve, "baseline": b.curve},
        }
        for d, b in zip(dsd_runs, baseline_runs)
    ]


def _deviations(models: Sequence[str], seeds: int | None, overrides: Mapping[str, Any]) -> list[str]:
    changed = [f"{k}={v}" for k, v in overrides.items()]
    if seeds is not None and seeds != PREREGISTERED_SEEDS:
        changed.append(f"seeds={seeds}")
    if list(models) != list(PROTOCOL):
        changed.append(f"models={','.join(models)}")
    return changed


def format_decision_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per model: the primary comparison and its pre-registered reading (errors in %)."""
    headers = ["model", "n seeds", "baseline", "DSD", "DSD − baseline, mean [95 % interval]"]
    headers += ["DSD better / equal / worse", "sign test p", "reading"]
    rows = []
    for name, result in results.items():
        d, e = result["summary"]["dsd_minus_baseline"], result["summary"]["top1_err"]
        interval = "n/a" if d["ci_low"] is None else f"[{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]"
        rows.append(
            (
                name,
                f"{len(result['summary']['seeds'])}",
                f"{100 * e['baseline']['mean']:.2f} %",
                f"{100 * e['dsd']['mean']:.2f} %",
                f"{100 * d['mean']:+.2f} {interval} points",
                f"{d['dsd_better']} / {d['equal']} / {d['dsd_worse']}",
                f"{d['sign_test_p']:.3g}",
                result["verdict"],
            )
        )
    return "\n".join(markdown_table(headers, rows))


def format_per_seed_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per seed: each model's final test error, baseline and DSD, and their difference (in %)."""
    names = list(results)
    headers = ["seed", *(f"{n} {column}" for n in names for column in ("baseline", "DSD", "DSD − baseline"))]
    rows = [
        [
            f"{per_model[0]['seed']}",
            *(
                cell
                for row in per_model
                for cell in (
                    f"{100 * row['top1_err']['baseline']:.1f}",
                    f"{100 * row['top1_err']['dsd']:.1f}",
                    f"{100 * row['dsd_minus_baseline']:+.1f}",
                )
            ),
        ]
        for per_model in zip(*(results[n]["per_seed"] for n in names))
    ]
    return "\n".join(markdown_table(headers, rows))


def run_study(
    out: Path,
    models: Sequence[str] = tuple(PROTOCOL),
    seeds: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    plot: bool = False,
    command: str = "python -m dsd_zoo.dsd.demo --dataset mnist1d",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the study, write ``summary.json``, ``table.md``, ``timing.json`` (and figures) to ``out``.

    Args:
        out: output directory.
        models: names from :data:`PROTOCOL`.
        seeds: seeds per model (default: the pre-registered :data:`PREREGISTERED_SEEDS`).
        overrides: :class:`~dsd_zoo.dsd.paired.DemoConfig` fields to change for every model
            (``epochs``, ``lr``, ``sparsity``, ``batch_size``); any makes the run exploratory.
        plot: also write ``paired_errors.png`` and ``curves_seed0.png`` (needs matplotlib).
        command: recorded as the way to reproduce the outputs.
        log: receives progress lines.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(models) - set(PROTOCOL))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; the study has {sorted(PROTOCOL)}")
    models = [name for name in PROTOCOL if name in models]  # the protocol's order, each once
    if plot:
        require_matplotlib()  # before the training, not after it
    deviations = _deviations(models, seeds, overrides)
    start = time.perf_counter()
    split = make_mnist1d_split()
    log(f"data: {MNIST1D_SOURCE}; {split.description}")
    summary: dict[str, Any] = {
        "study": "DSD vs dense baseline on MNIST-1D (docs/dsd-mnist1d.md)",
        "protocol": "pre-registered"
        if not deviations
        else "exploratory (differs from the pre-registered protocol in: " + ", ".join(deviations) + ")",
        "command": command,
        "data": {
            "source": MNIST1D_SOURCE,
            "split": split.description,
            "generator_args": split.args,
            "sha256": split.sha256(),
        },
        "environment": environment(),
        "models": {},
    }
    timing: dict[str, Any] = {"models": {}}
    tables = []
    for name in models:
        spec = PROTOCOL[name]
        changes: dict[str, Any] = {**overrides, **({"seeds": seeds} if seeds is not None else {})}
        config = replace(spec.config, **changes)
        log(
            f"{name}: {spec.description}; schedule {config.schedule()}, sparsity {config.sparsity}, "
            f"{config.seeds} seeds"
        )
        train_x, test_x = (x.unsqueeze(1) if spec.channel_dim else x for x in (split.train_x, split.test_x))
        task = Task(train_x, split.train_y, test_x, split.test_y, spec.build, spec.dsd_options)
        t0 = time.perf_counter()
        # Same seed, same numbers: CPU kernels are deterministic at a fixed thread count.
        with torch_settings(threads=config.threads, deterministic=True):
            dsd_runs, baseline_runs = run_seeds(task, config, log, label=f"{name} ")
        timing["models"][name] = time.perf_counter() - t0
        result = summarize(dsd_runs, baseline_runs)
        summary["models"][name] = {
            "description": spec.description,
            "config": config.to_dict(),
            "dsd_options": {k: [t.__name__ for t in v] if k == "include" else v for k, v in spec.dsd_options.items()},
            "summary": result,
            "verdict": verdict(result["dsd_minus_baseline"]),
            "per_seed": _per_seed(dsd_runs, baseline_runs),
        }
        tables.append(f"### {name}: {spec.description}\n\n{format_table(result, config)}")
    table = "\n\n".join(
        [
            f"Protocol: {summary['protocol']}.",
            format_decision_table(summary["models"]),
            *tables,
            "### final test error per seed (%)",
            format_per_seed_table(summary["models"]),
        ]
    )
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text(out / "table.md", table + "\n")
    if plot:
        plot_paired_errors(summary, out / "paired_errors.png")
        plot_training_curves(summary, 0, out / "curves_seed0.png")
    timing["wall_seconds"] = time.perf_counter() - start
    write_text(out / "timing.json", json.dumps(timing, indent=2) + "\n")
    log(table)
    log(f"total wall time {timing['wall_seconds']:.1f} s; written to {out}")
    return summary
