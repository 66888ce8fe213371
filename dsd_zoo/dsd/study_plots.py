"""Figures of a paired DSD-vs-baseline study, drawn from its ``summary.json`` (MNIST-1D study layout).

* :func:`plot_paired_errors`: each seed's final test error, baseline (x) against DSD (y), one
  panel per model, with the line of equal error: a point below it is a seed where DSD won.
* :func:`plot_training_curves`: one seed's test error and training loss per epoch, DSD and
  baseline, with the phase boundaries marked and the sparse phase shaded.

matplotlib is the optional extra ``dsd-zoo[plot]``; only this module imports it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dsd_zoo.atomic import atomic_write

__all__ = ["plot_paired_errors", "plot_training_curves", "require_matplotlib"]

# Each run's curves: its key in the summary, colour and legend label.
CURVES = (("baseline", "tab:blue", "baseline (dense, same lr drops)"), ("dsd", "tab:red", "DSD"))
# No matplotlib version in the file: the same numbers give the same bytes.
PNG_METADATA = {"Software": None}


def require_matplotlib() -> None:
    """Raise ``ImportError`` naming the ``plot`` extra when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "the figures need matplotlib: pip install 'dsd-zoo[plot]' (or matplotlib), or run again without --plot"
        ) from None


def _figure(size: tuple[float, float]) -> Any:
    require_matplotlib()
    from matplotlib.figure import Figure

    # Figure, not pyplot: no GUI backend, no global state.
    return Figure(figsize=size, dpi=100, layout="constrained")


def plot_paired_errors(summary: Mapping[str, Any], path: Path) -> Path:
    """Final test error per seed, DSD against baseline, one panel per model; writes ``path``."""
    models = summary["models"]
    fig = _figure((4.6 * len(models), 5.4))
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, (name, result) in zip(axes, models.items()):
        base = [100 * row["top1_err"]["baseline"] for row in result["per_seed"]]
        dsd = [100 * row["top1_err"]["dsd"] for row in result["per_seed"]]
        low, high = min(base + dsd), max(base + dsd)
        pad = max(0.5, 0.08 * (high - low))
        lims = (low - pad, high + pad)
        ax.plot(lims, lims, color="0.5", linewidth=1, zorder=1, label="equal error")
        ax.scatter(base, dsd, s=28, color="black", alpha=0.5, zorder=2, label="one seed (darker: seeds on one spot)")
        ax.set(xlim=lims, ylim=lims, aspect="equal", xlabel="baseline test error (%)", ylabel="DSD test error (%)")
        d = result["summary"]["dsd_minus_baseline"]
        interval = "" if d["ci_low"] is None else f" [{100 * d['ci_low']:+.2f}, {100 * d['ci_high']:+.2f}]"
        ax.set_title(
            f"{name}: n = {len(base)} seeds\nDSD − baseline {100 * d['mean']:+.2f}{interval} points\n"
            f"DSD better {d['dsd_better']}, equal {d['equal']}, worse {d['dsd_worse']}",
            fontsize=10,
        )
        _corner_note(ax, "below the line: DSD better", "right")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.suptitle(f"MNIST-1D, final test error per seed ({summary['protocol'].split(' (')[0]})", fontsize=11)
    atomic_write(path, lambda file: fig.savefig(file, format="png", metadata=PNG_METADATA))
    return path


def plot_training_curves(summary: Mapping[str, Any], seed: int, path: Path) -> Path:
    """Test error and training loss per epoch of ``seed``, DSD and baseline, per model; writes ``path``."""
    models = summary["models"]
    fig = _figure((5.2 * len(models), 6.4))
    from matplotlib.ticker import FormatStrFormatter

    grid = fig.subplots(2, len(models), squeeze=False, sharex="col")
    for col, (name, result) in enumerate(models.items()):
        row = next(r for r in result["per_seed"] if r["seed"] == seed)
        schedule = result["config"]["schedule"]
        # Epochs are counted 1..N on the x axis, at the end of each: a phase spans (its start, its end].
        ends = list(itertools.accumulate(p["epochs"] for p in schedule))
        spans = [(p["name"], end - p["epochs"], end, p["lr"]) for p, end in zip(schedule, ends)]
        top, bottom = grid[0][col], grid[1][col]
        for ax, key, scale, label in (
            (top, "test_top1_err", 100, "test error (%)"),
            (bottom, "train_loss", 1, "training loss (cross-entropy, log scale)"),
        ):
            for kind, color, curve_label in CURVES:
                curve = row["curves"][kind]
                ax.plot(
                    [r["epoch"] + 1 for r in curve],
                    [scale * r[key] for r in curve],
                    color=color,
                    linewidth=1.2,
                    label=curve_label,
                )
            for phase, first, last, _ in spans:
                if phase == "sparse":
                    ax.axvspan(first, last, color="0.9", zorder=0)
                if first > 0:
                    ax.axvline(first, color="0.4", linestyle="--", linewidth=0.8)
            ax.set_ylabel(label)
        # The first epochs fall from chance (90 %) and would flatten the phases that matter into a
        # line: the axis covers the second half of the dense phase onwards, and says what it cuts.
        later = [
            100 * r["test_top1_err"]
            for curve in row["curves"].values()
            for r in curve
            if r["epoch"] >= spans[0][2] // 2
        ]
        pad = max(0.5, 0.1 * (max(later) - min(later)))
        top.set_ylim(min(later) - pad, max(later) + pad)
        _corner_note(top, "axis cut: the first epochs run off the top", "left")
        bottom.set(yscale="log", xlabel="epoch")
        bottom.yaxis.set_major_formatter(FormatStrFormatter("%g"))  # 0.01, 0.1, 1 rather than 10^-2
        for phase, first, last, lr in spans:
            top.annotate(
                f"{phase}\nlr {lr:g}",
                xy=((first + last) / 2, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        top.set_title(
            f"{name}, seed {seed} (sparsity {result['config']['sparsity']:g} in the shaded phase)", fontsize=10, pad=30
        )
    # Test error falls from the upper left: the upper right of the first panel is free of data.
    # (A figure legend outside the axes needs matplotlib 3.7; the floor is 3.6.)
    grid[0][0].legend(loc="upper right", fontsize=8, framealpha=0.9)
    fig.suptitle("MNIST-1D: one seed through dense → sparse → re-dense", fontsize=11)
    atomic_write(path, lambda file: fig.savefig(file, format="png", metadata=PNG_METADATA))
    return path


def _corner_note(ax: Any, text: str, side: str) -> None:
    """A small grey note in a bottom corner of ``ax`` (``side``: "left" or "right")."""
    ax.text(
        0.02 if side == "left" else 0.97,
        0.03,
        text,
        transform=ax.transAxes,
        ha=side,
        va="bottom",
        fontsize=8,
        color="0.35",
    )
