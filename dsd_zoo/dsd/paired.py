"""DSD against an equally trained dense baseline, seed by seed: the engine of the demonstrations.

For each seed, two runs of one :class:`Task` from the same initialisation and the same batch
order: DSD (dense -> sparse -> re-dense, :class:`~dsd_zoo.dsd.DSD` pruning the model through
:func:`~dsd_zoo.dsd.loop.train_phases`) and the dense baseline of the same schedule
(:meth:`~dsd_zoo.dsd.DSDSchedule.baseline`: same epochs, same learning-rate drops). The two
runs differ only by the mask during the sparse phase. :func:`summarize` reports every stage's
test error over seeds and the paired difference DSD - baseline with its 95 % interval and a
sign test. The digits demonstration and the MNIST-1D study both run through here.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from dsd_zoo._markdown import markdown_table
from dsd_zoo.dsd.loop import PhaseResult, evaluate, train_epoch, train_phases
from dsd_zoo.dsd.masks import DSD
from dsd_zoo.dsd.schedule import DSDSchedule
from dsd_zoo.dsd.stats import paired_difference

__all__ = ["DemoConfig", "Run", "Task", "environment", "format_table", "run_seeds", "summarize", "train_run"]


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

    def to_dict(self) -> dict[str, Any]:
        """The fields, JSON-ready, with the schedule they make."""
        return {**self.__dict__, "epochs": list(self.epochs), "schedule": self.schedule().to_list()}


@dataclass(frozen=True)
class Task:
    """A fixed train/test split and the model DSD trains on it.

    ``train_inputs``/``test_inputs`` are model-ready float tensors (one row per example);
    ``dsd_options`` go to :class:`~dsd_zoo.dsd.DSD` (e.g. ``include`` for ``Conv1d`` layers).
    """

    train_inputs: Tensor
    train_labels: Tensor
    test_inputs: Tensor
    test_labels: Tensor
    build_model: Callable[[], nn.Module]
    dsd_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """One training run: per-phase results, the model after each phase, the sparse phase's masks.

    ``curve`` holds one ``{"epoch", "phase", "train_loss", "test_top1_err"}`` per epoch: the phase
    it belonged to, its mean training loss, the test error after it.
    """

    seed: int
    results: list[PhaseResult]
    states: dict[str, dict[str, Tensor]] = field(repr=False)
    masks: dict[str, Tensor] = field(repr=False)
    curve: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def top1(self, phase: str) -> float:
        """Test top-1 error after ``phase``."""
        return next(r.errors.top1_err for r in self.results if r.phase.name == phase)


def train_run(task: Task, seed: int, config: DemoConfig, use_dsd: bool) -> Run:
    """Train ``task``'s model through the DSD schedule (``use_dsd``) or its dense baseline.

    The test error is measured after every epoch (for the training curves); evaluation draws
    no random numbers, so it does not change what is trained.
    """
    torch.manual_seed(seed)
    model = task.build_model()
    schedule = config.schedule() if use_dsd else config.schedule().baseline()
    dsd = DSD(model, sparsity=config.sparsity, **task.dsd_options) if use_dsd else None
    test = [(task.test_inputs, task.test_labels)]
    # Its own generator, seeded like the model: both runs of a seed see the same batches.
    order = torch.Generator().manual_seed(seed)
    curve: list[dict[str, Any]] = []

    def run_epoch(optimizer: torch.optim.Optimizer, phase: Any, epoch: int) -> float:
        perm = torch.randperm(task.train_labels.numel(), generator=order)
        batches = ((task.train_inputs[i], task.train_labels[i]) for i in perm.split(config.batch_size))
        loss = train_epoch(model, batches, optimizer)
        curve.append(
            {"epoch": epoch, "phase": phase.name, "train_loss": loss, "test_top1_err": evaluate(model, test).top1_err}
        )
        return loss

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
    return Run(seed, results, states, masks, curve)


def run_seeds(
    task: Task, config: DemoConfig, log: Callable[[str], None], label: str = ""
) -> tuple[list[Run], list[Run]]:
    """DSD and baseline runs of seeds ``0 .. config.seeds - 1``, logging one line per seed."""
    dsd_runs, baseline_runs = [], []
    for seed in range(config.seeds):
        t0 = time.perf_counter()
        dsd_runs.append(train_run(task, seed, config, use_dsd=True))
        baseline_runs.append(train_run(task, seed, config, use_dsd=False))
        d, b = dsd_runs[-1], baseline_runs[-1]
        log(
            f"{label}seed {seed}: dense {d.top1('dense'):.2%}  sparse {d.top1('sparse'):.2%}  "
            f"DSD {d.top1('redense'):.2%}  | baseline {b.top1('redense'):.2%}  ({time.perf_counter() - t0:.1f} s)"
        )
    return dsd_runs, baseline_runs


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def environment() -> dict[str, Any]:
    """What a demonstration's summary records about the machine it ran on (its numbers depend on it)."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def summarize(dsd_runs: Sequence[Run], baseline_runs: Sequence[Run]) -> dict[str, Any]:
    """Mean/std of the test top-1 error of every stage over seeds, and the paired DSD - baseline.

    ``dsd_minus_baseline`` also holds its 95 % Student-t interval (``ci_low``, ``ci_high``) and
    the exact two-sided sign test's ``sign_test_p`` (ties dropped); see :mod:`dsd_zoo.dsd.stats`.
    """
    stages = {
        "dense": [r.top1("dense") for r in dsd_runs],
        "sparse": [r.top1("sparse") for r in dsd_runs],
        "dsd": [r.top1("redense") for r in dsd_runs],
        "baseline": [r.top1("redense") for r in baseline_runs],
    }
    diff = [d - b for d, b in zip(stages["dsd"], stages["baseline"])]
    sparse_report = next(r.sparsity for r in dsd_runs[0].results if r.phase.name == "sparse")
    test = paired_difference(diff)
    return {
        "seeds": [r.seed for r in dsd_runs],
        "top1_err": {name: _stats(values) for name, values in stages.items()},
        "dsd_minus_baseline": {
            **_stats(diff),
            "dsd_better": sum(d < 0 for d in diff),
            "equal": sum(d == 0 for d in diff),
            "dsd_worse": sum(d > 0 for d in diff),
            **{k: test[k] for k in ("level", "t", "ci_low", "ci_high", "sign_test_p")},
        },
        # Same seed, same data order, same first phase: the dense stage of DSD *is* the baseline
        # after its first phase. A difference here would mean the comparison is not paired.
        "dense_stage_identical": all(
            torch.equal(x, y)
            for d, b in zip(dsd_runs, baseline_runs)
            for x, y in zip(d.states["dense"].values(), b.states["dense"].values())
        ),
        "sparse_stage_sparsity": sparse_report.to_dict()["total"] if sparse_report is not None else None,
    }


def format_table(summary: dict[str, Any], config: DemoConfig) -> str:
    """The summary as a Markdown table (errors in %)."""
    e_dense, e_sparse, e_redense = config.epochs
    errors, d = summary["top1_err"], summary["dsd_minus_baseline"]
    stages = [
        ("dense (DSD stage 1)", f"{e_dense}", errors["dense"]),
        ("sparse (DSD stage 2)", f"{e_dense} + {e_sparse}", errors["sparse"]),
        ("**DSD** (re-dense, stage 3)", f"{e_dense} + {e_sparse} + {e_redense}", errors["dsd"]),
        ("**baseline** (dense throughout)", f"{sum(config.epochs)}", errors["baseline"]),
    ]
    n = len(errors["dsd"]["values"])
    interval = (
        "n/a (one seed)" if d["ci_low"] is None else f"{100 * d['ci_low']:+.2f} to {100 * d['ci_high']:+.2f} points"
    )
    rows = [
        *(
            (
                label,
                epochs,
                f"{100 * s['mean']:.2f} % ± {100 * s['std']:.2f}",
                f"{100 * s['min']:.2f} – {100 * s['max']:.2f} %",
            )
            for label, epochs, s in stages
        ),
        (
            "DSD − baseline (paired by seed)",
            "",
            f"{100 * d['mean']:+.2f} points ± {100 * d['std']:.2f}",
            f"DSD better in {d['dsd_better']}, equal in {d['equal']}, worse in {d['dsd_worse']} of {n}",
        ),
        ("95 % interval of the mean difference", "", interval, f"sign test, two-sided: p = {d['sign_test_p']:.3g}"),
    ]
    headers = ("model", "epochs", f"test top-1 error, mean ± std over {n} seeds", "min – max")
    return "\n".join(markdown_table(headers, rows))
