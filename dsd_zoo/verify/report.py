"""Reports of ``verify``: the terminal table, JSON, Markdown and the baseline-vs-DSD chart.

Both modes (ImageNet evaluation and offline self-check) build a :class:`Report`: tables, notes
and a JSON-ready ``data`` dict, plus the exit status. Rendering is separate from building, so the
terminal, ``--json`` and ``--markdown`` always say the same thing. matplotlib is imported only
by :func:`write_plot` (the ``plot`` extra).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from .._markdown import markdown_table
from ..atomic import atomic_write, write_text
from ..errors import DSDZooError
from . import DEFAULT_TOLERANCE, EXIT_FAILED, EXIT_OK, EXIT_UNREADABLE, FULL_VAL_SIZE

if TYPE_CHECKING:  # only for annotations: building a report needs no torch
    from .datasets import ValSamples
    from .engine import EvalResult
    from .selfcheck import ArchCheck, LocalEvaluation, ModelCheck, SelfCheckResult

__all__ = [
    "Table",
    "Report",
    "judge",
    "eval_report",
    "selfcheck_report",
    "check_plot_path",
    "write_plot",
]

#: The kinds of model in the plot's order (baseline, sparse stage, DSD), with their bar colours.
KIND_COLOURS = {"baseline": "#8c8c8c", "sparse": "#e39c3c", "dsd": "#2a7ab9"}


@dataclass
class Table:
    """A titled table of strings; ``align`` has a ``"<"`` or ``">"`` per column."""

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    align: str

    def to_text(self) -> str:
        widths = [max([len(h)] + [len(r[i]) for r in self.rows]) for i, h in enumerate(self.headers)]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if a == ">" else c.ljust(w) for c, w, a in zip(cells, widths, self.align)
            ).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([self.title, line(self.headers), rule] + [line(r) for r in self.rows])

    def to_markdown(self) -> str:
        return "\n".join([f"### {self.title}", "", *markdown_table(self.headers, self.rows, self.align)])


@dataclass
class Report:
    """What ``verify`` prints and writes, and the exit status it ends with."""

    title: str
    tables: List[Table]
    notes: List[str]
    data: Dict[str, Any]
    exit_code: int
    plot_rows: List[Dict[str, Any]] = field(default_factory=list)
    plot_note: str = ""  # said in the plot's title (a partial run says PARTIAL)

    def to_text(self) -> str:
        parts = [self.title, "=" * len(self.title)] + ["\n" + t.to_text() for t in self.tables]
        if self.notes:
            parts.append("\nNotes:")
            parts += [f"  - {note}" for note in self.notes]
        return "\n".join(parts)

    def to_markdown(self) -> str:
        parts = [f"## {self.title}"] + [t.to_markdown() for t in self.tables]
        if self.notes:
            parts.append("\n".join(f"- {note}" for note in self.notes))
        return "\n\n".join(parts) + "\n"

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, allow_nan=False, default=str) + "\n"

    def write(
        self,
        json_path: Optional[os.PathLike] = None,
        markdown_path: Optional[os.PathLike] = None,
        plot_path: Optional[os.PathLike] = None,
    ) -> None:
        """Write the requested files (each one complete or not at all)."""
        for path, text in ((json_path, self.to_json), (markdown_path, self.to_markdown)):
            if path is not None:
                _write_text(Path(path), text())
        if plot_path is not None:
            write_plot(self.plot_rows, plot_path, title=self.title, note=self.plot_note)


def _write_text(path: Path, text: str) -> None:
    try:
        write_text(path, text)
    except OSError as exc:
        raise DSDZooError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _pct(value: Optional[float]) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _delta(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:+.2f}"


def _nan_to_none(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


def judge(
    top1: float, top5: float, paper_top1: Optional[float], paper_top5: Optional[float], tolerance: float, full: bool
) -> str:
    """``pass``/``FAIL`` when both errors are within ``tolerance`` points of the paper's on a full run.

    ``partial`` when the run did not cover the 50,000 images, ``no paper number`` when there is
    nothing to compare with, ``no image counted`` when the errors are undefined (every image
    unreadable and left out with ``--bad-images skip``).
    """
    if math.isnan(top1) or math.isnan(top5):
        return "no image counted"
    if paper_top1 is None or paper_top5 is None:
        return "no paper number"
    if not full:
        return "partial"
    # A hair of slack so that 0.3 printed as a delta of 0.30 is not failed by float rounding.
    within = abs(top1 - paper_top1) <= tolerance + 1e-9 and abs(top5 - paper_top5) <= tolerance + 1e-9
    return "pass" if within else "FAIL"


def eval_report(
    result: EvalResult,
    samples: ValSamples,
    entries: Mapping[str, Any],
    weights: Mapping[str, str],
    tolerance: float = DEFAULT_TOLERANCE,
    limit: Optional[int] = None,
    command: str = "",
) -> Report:
    """The ImageNet evaluation report.

    Args:
        result: the engine's counts.
        samples: the images evaluated (after ``--limit``).
        entries: ``{name: ModelEntry}`` of the evaluated models (paper numbers, arch, kind).
        weights: ``{name: description of the weight file used}``.
        tolerance: allowed distance, in points, from the paper's errors on a full run.
        limit: the ``--limit`` asked for, if any.
        command: the command line, recorded in the JSON.
    """
    full = samples.is_full
    rows = [_model_row(name, counts, entries, weights, tolerance, full) for name, counts in result.counts.items()]
    table = Table(
        f"Single-crop ILSVRC-2012 validation error (%), {len(samples):,} images",
        ["model", "kind", "images", "top-1 err", "paper", "delta", "top-5 err", "paper", "delta", "verdict"],
        [_table_row(row) for row in rows],
        "<<>>>>>>><",
    )
    notes = _eval_notes(result, samples, tolerance, limit, rows)
    failed = any(r["verdict"] == "FAIL" for r in rows)
    exit_code = EXIT_FAILED if failed else EXIT_UNREADABLE if result.unreadable else EXIT_OK
    data = {
        "mode": "imagenet",
        "command": command,
        "dataset": {
            "root": str(samples.root),
            "layout": samples.layout,
            "labels_file": str(samples.labels_file) if samples.labels_file else None,
            "images_found": samples.found,
            "images_evaluated": len(samples),
            "limit": limit,
            "full": full,
        },
        "tolerance": tolerance,
        "bad_images": result.bad_images,
        "unreadable": [{"file": f, "reason": r} for f, r in result.unreadable],
        "pipelines": result.pipelines,
        "run": _run_data(result),
        "models": rows,
        "notes": notes,
        "exit_code": exit_code,
        **_versions(),
    }
    plot_note = (
        "" if full else f"PARTIAL RUN, {len(samples):,} of {FULL_VAL_SIZE:,} images: not comparable with the paper"
    )
    return Report(
        "dsd-zoo verify: ImageNet evaluation",
        [table],
        notes,
        data,
        exit_code,
        plot_rows=[r for r in rows if not r["head"]],
        plot_note=plot_note,
    )


def _model_row(
    name: str, counts: Any, entries: Mapping[str, Any], weights: Mapping[str, str], tolerance: float, full: bool
) -> Dict[str, Any]:
    """The JSON row of one model or auxiliary head: its counts and errors next to the paper's, and the verdict."""
    model, _, head = name.partition("/")  # "googlenet_dsd/loss1": an auxiliary head of googlenet_dsd
    entry = entries[model]
    top1, top5 = counts.top1_err, counts.top5_err
    if head:
        paper1, paper5 = entry.heads[head]["top1_err"], entry.heads[head]["top5_err"]
    else:
        paper1, paper5 = entry.paper_top1_err, entry.paper_top5_err
    return {
        "name": name,
        "model": model,
        "head": head or None,
        "arch": entry.arch,
        "kind": entry.kind,
        "weights": weights.get(model, ""),
        "images": counts.images,
        "top1_correct": counts.top1_correct,
        "top5_correct": counts.top5_correct,
        "top1_err": _nan_to_none(top1),
        "top5_err": _nan_to_none(top5),
        "paper_top1_err": paper1,
        "paper_top5_err": paper5,
        "delta_top1": None if paper1 is None or math.isnan(top1) else top1 - paper1,
        "delta_top5": None if paper5 is None or math.isnan(top5) else top5 - paper5,
        "verdict": judge(top1, top5, paper1, paper5, tolerance, full),
    }


def _table_row(row: Mapping[str, Any]) -> List[str]:
    """The terminal and Markdown row of a :func:`_model_row`."""
    return [
        row["name"],
        f"{row['kind']} ({row['head']} head)" if row["head"] else row["kind"],
        f"{row['images']:,}",
        _pct(row["top1_err"]),
        _pct(row["paper_top1_err"]),
        _delta(row["delta_top1"]),
        _pct(row["top5_err"]),
        _pct(row["paper_top5_err"]),
        _delta(row["delta_top5"]),
        row["verdict"],
    ]


def _run_data(result: EvalResult) -> Dict[str, Any]:
    """How the evaluation ran, for the JSON."""
    return {
        "device": result.device,
        "world_size": result.world_size,
        "fast_bf16": result.fast,
        "channels_last": result.channels_last,
        "compiled": result.compiled,
        "decode_on_device": result.decode_on_device,
        "jpeg_decoder": result.extra.get("jpeg_decoder"),
        "compile_seconds": result.extra.get("compile_seconds", 0.0),
        "engines": result.engines,
        "export_seconds": result.extra.get("export_seconds", 0.0),
        "workers": result.workers,
        "batch_size": result.batch_size,
        "seconds": round(result.seconds, 3),
        "images_per_second": _nan_to_none(round(result.images_per_second, 2)),
    }


def _eval_notes(
    result: EvalResult, samples: ValSamples, tolerance: float, limit: Optional[int], rows: Sequence[Mapping[str, Any]]
) -> List[str]:
    notes = [_coverage_note(samples, tolerance, limit)]
    if result.unreadable:
        notes.append(_unreadable_note(result.unreadable, result.bad_images))
    notes += _engine_notes(result)
    notes += samples.notes
    notes += [
        f"pipeline {pipeline}: {', '.join(names)} (each image decoded once, resampled once per pipeline)"
        for pipeline, names in result.pipelines.items()
    ]
    notes.append(
        f"{len(samples):,} images in {result.seconds:.1f} s ({result.images_per_second:.1f} img/s through "
        f"{sum('/' not in name for name in result.counts)} model(s)) on "
        f"{result.device}, {result.world_size} process(es), "
        f"{result.workers} worker(s) each, batch {result.batch_size}."
    )
    notes.append("weights: " + "; ".join(f"{r['name']} = {r['weights']}" for r in rows if not r["head"]))
    heads = [r["name"] for r in rows if r["head"]]
    if heads:
        notes.append(
            f"auxiliary heads ({', '.join(heads)}): their paper columns are the errors of the release's "
            "Caffe accuracy log, not of the paper's table; they are judged the same way."
        )
    return notes


def _coverage_note(samples: ValSamples, tolerance: float, limit: Optional[int]) -> str:
    """Whether the verdicts mean anything: only a run over the whole validation set is judged."""
    if samples.is_full:
        return (
            f"Verdict: pass when both top-1 and top-5 errors are within {tolerance} pt of the paper's. "
            f"This run covers all {FULL_VAL_SIZE:,} validation images, so the verdict is meaningful."
        )
    # --limit is the reason only when it left images out (subset() keeps a smaller set whole).
    why = f"--limit {limit}" if len(samples) < samples.found else f"the folder holds {samples.found:,} images"
    # The sampling noise: one standard error of a 30 % error rate.
    noise = 100 * math.sqrt(0.3 * 0.7 / len(samples)) if len(samples) else float("nan")
    return (
        f"PARTIAL RUN ({len(samples):,} of {FULL_VAL_SIZE:,} images; {why}): the {tolerance} pt tolerance "
        f"is meaningful only on the full {FULL_VAL_SIZE:,} images, so no model is judged. Sampling noise "
        f"alone is about +-{noise:.2f} pt (one standard error at 30% error)."
    )


def _unreadable_note(unreadable: Sequence[Tuple[str, str]], bad_images: str) -> str:
    how = (
        "counted as wrong answers (top-1 and top-5) for every model, so they raise every error"
        if bad_images == "count"
        else "left out of the denominator (--bad-images skip)"
    )
    shown = "; ".join(f"{f} ({r})" for f, r in unreadable[:10])
    more = f"; ... and {len(unreadable) - 10} more (all in --json)" if len(unreadable) > 10 else ""
    return f"{len(unreadable)} image(s) could not be decoded and were {how}: {shown}{more}"


def _engine_notes(result: EvalResult) -> List[str]:
    """What ran the models, and how that may move the numbers from the exact eager float32 run."""
    notes = []
    if result.fast:
        notes.append("--fast: models ran under bfloat16 autocast; results may differ from the exact float32 run.")
    if result.decode_on_device:
        notes.append(
            f"--gpu-decode: JPEGs decoded on {result.device} ({result.extra.get('jpeg_decoder')}); nvJPEG's "
            "pixels differ slightly from libjpeg's, so results may differ from the exact run."
        )
    if result.compiled:
        notes.append(
            f"torch.compile: {', '.join(result.compiled)} ran compiled "
            f"({result.extra.get('compile_seconds', 0.0):.1f} s of compilation, included in the time below); "
            "the same functions as the eager models, up to float rounding."
        )
    onnx = [name for name, engine in result.engines.items() if engine == "onnxruntime"]
    if onnx:
        notes.append(
            f"ONNX Runtime: {', '.join(onnx)} ran as ONNX graphs on onnxruntime's CPU provider, float32 "
            f"({result.extra.get('export_seconds', 0.0):.1f} s exporting or loading them from the cache, "
            "included in the time below); each export was checked against PyTorch on the fingerprint probe."
        )
    eager = [name for name, engine in result.engines.items() if engine == "torch"]
    if eager:
        notes.append(f"eager PyTorch: {', '.join(eager)}.")
    return notes


def _versions() -> Dict[str, str]:
    import torch

    import dsd_zoo

    return {"dsd_zoo_version": dsd_zoo.__version__, "torch_version": torch.__version__}


_STATE_TEXT = {
    "verified": "verified",
    "pinned": "verified (pinned)",
    "mismatch": "MISMATCH",
    "unverifiable": "UNVERIFIABLE",
    "missing": "-",
}


def selfcheck_report(result: SelfCheckResult, command: str = "") -> Report:
    """The offline self-check report: architectures, models, local evaluations."""
    notes = ([f"MANIFEST INVALID: {result.manifest_error}"] if result.manifest_error else []) + result.notes
    notes += [_failure_note(check) for check in result.models if not check.ok]
    present = sum(m.weights.present for m in result.models)
    notes.append(
        f"{present} of {len(result.models)} weight files are on this machine; a missing file is not a failure "
        "unless the model is named on the command line. Nothing was downloaded."
    )
    tables = [
        _architecture_table(result.architectures),
        _model_table(result.models),
        _local_evaluation_table(result.local_evaluations),
    ]
    models = [_model_check_data(check) for check in result.models]
    exit_code = EXIT_OK if result.ok else EXIT_FAILED
    data = {
        "mode": "selfcheck",
        "command": command,
        "manifest": result.manifest_origin,
        "manifest_error": result.manifest_error or None,
        "architectures": [
            {"name": a.name, "params": a.params, "reference": a.reference, "ok": a.ok, "failure": a.failure or None}
            for a in result.architectures
        ],
        "models": models,
        "local_evaluations": [{**asdict(e), "ok": e.ok} for e in result.local_evaluations],
        "notes": notes,
        "ok": result.ok,
        "exit_code": exit_code,
        **_versions(),
    }
    # The plot reads a model's name, arch, kind and paper errors from its row; nothing was measured.
    return Report(
        "dsd-zoo verify: offline self-check",
        [table for table in tables if table.rows],
        notes,
        data,
        exit_code,
        plot_rows=models,
    )


def _failure_note(check: ModelCheck) -> str:
    name = check.entry.name
    reasons = check.problems + ([check.fingerprint] if check.fingerprint_ok is False else [])
    note = f"{name}: {'; '.join(reasons) or check.weights.detail or check.weights.state}"
    if check.named and not check.weights.present:  # the self-check never downloads: say what does
        install = (
            f", take in an original you downloaded with python -m dsd_zoo.convert FILE --model {name} --install"
            if check.entry.originals
            else ""
        )
        note += (
            f"; fetch it with python -c \"import dsd_zoo; dsd_zoo.get_model('{name}')\"{install}, or check a "
            f"file you have with --weights {name}=PATH"
        )
    return note


def _architecture_table(architectures: Sequence[ArchCheck]) -> Table:
    rows = [
        [
            a.name,
            "-" if a.params is None else f"{a.params:,}",
            f"{a.reference:,}",
            "ok" if a.ok else f"FAIL {a.failure}".strip(),
        ]
        for a in architectures
    ]
    headers = ["architecture", "parameters", "reference", "check"]
    return Table("Architectures (built on the meta device)", headers, rows, "<>><")


def _model_table(checks: Sequence[ModelCheck]) -> Table:
    rows = [
        [
            check.entry.name,
            check.entry.kind,
            check.entry.arch,
            "yes" if check.weights.present else ("MISSING (named)" if check.named else "no"),
            "; ".join(check.problems) if check.problems else _STATE_TEXT[check.weights.state],
            check.fingerprint,
            _pct(check.entry.paper_top1_err),
            _pct(check.entry.paper_top5_err),
            ("ok" if check.weights.present else "-") if check.ok else "FAIL",
        ]
        for check in checks
    ]
    headers = ["model", "kind", "arch", "cached", "weights", "fingerprint", "paper top-1", "paper top-5", "check"]
    return Table("Models", headers, rows, "<<<<<<>><")


def _model_check_data(check: ModelCheck) -> Dict[str, Any]:
    entry, weights = check.entry, check.weights
    return {
        "name": entry.name,
        "kind": entry.kind,
        "arch": entry.arch,
        "named": check.named,
        "path": str(weights.path) if weights.path else None,
        "state": weights.state,
        "detail": weights.detail,
        "fingerprint": check.fingerprint,
        "problems": check.problems,
        "paper_top1_err": entry.paper_top1_err,
        "paper_top5_err": entry.paper_top5_err,
        "ok": check.ok,
    }


def _local_evaluation_table(evaluations: Sequence[LocalEvaluation]) -> Table:
    rows = [
        [
            e.model,
            e.dataset,
            f"{e.images:,}",
            _pct(e.top1_err),
            _pct(e.expected_top1_err),
            _pct(e.top5_err),
            _pct(e.expected_top5_err),
            "ok" if e.ok else f"FAIL {e.failure}".strip(),
        ]
        for e in evaluations
    ]
    headers = ["model", "dataset", "images", "top-1 err", "expected", "top-5 err", "expected", "check"]
    return Table("Local evaluations (data shipped with the package)", headers, rows, "<<>>>>><")


def check_plot_path(path: os.PathLike) -> None:
    """Raise a clear error unless matplotlib is installed and can write ``path``'s format (its suffix)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DSDZooError(
            "--plot needs matplotlib, which is not installed: pip install 'dsd-zoo[plot]' (or pip install matplotlib)"
        ) from None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        what = f"'.{suffix}' files" if suffix else "a file without a suffix"
        raise DSDZooError(
            f"--plot {path}: matplotlib cannot write {what}; end the name in .png, .svg or .pdf "
            f"(or any of {', '.join('.' + f for f in sorted(formats))})"
        )


def error_interval(errors: int, n: int, z: float = 1.96) -> Tuple[float, float]:
    """The Wilson score interval of an error rate, in percent (95 % for ``z`` 1.96).

    Unlike the normal approximation it stays inside [0, 100] and is not empty at 0 or n errors,
    which is where a few-image run sits.
    """
    if n <= 0:
        return 0.0, 100.0
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def plot_figure(rows: Sequence[Mapping[str, Any]], title: str = "", note: str = ""):
    """The matplotlib figure of :func:`write_plot` (tests read its text: title, labels, annotations)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    archs = list(
        dict.fromkeys(r["arch"] for r in rows if r.get("paper_top1_err") is not None or r.get("top1_err") is not None)
    )
    if not archs:
        raise DSDZooError("nothing to plot: no model has a measured or published error")
    kinds = [k for k in KIND_COLOURS if any(r["kind"] == k for r in rows)]
    figure, axes = plt.subplots(2, 1, figsize=(max(8.0, 1.6 * len(archs) + 2.5), 8.5))
    for ax, metric in zip(axes, ("top1", "top5")):
        _plot_panel(ax, metric, rows, archs, kinds)
    measured_any = any(r.get("top1_err") is not None for r in rows)
    what = "measured (bars, 95 % Wilson interval) vs paper (black ticks)" if measured_any else "paper errors"
    heading = (title + ": " if title else "") + what
    figure.suptitle(heading + (f"\n{note}" if note else ""), fontsize=10, color="black")
    figure.tight_layout()
    return figure


def _plot_panel(ax: Any, metric: str, rows: Sequence[Mapping[str, Any]], archs: List[str], kinds: List[str]) -> None:
    """One panel (``metric`` top1 or top5): per architecture a group of bars, one per kind, and its axes."""
    width = 0.8 / max(1, len(kinds))
    labelled: Set[str] = set()  # legend entries already given
    ticks, names = [], []
    for k, kind in enumerate(kinds):
        for x, arch in enumerate(archs):
            row = next((r for r in rows if r["arch"] == arch and r["kind"] == kind), None)
            if row is None or (row.get(f"{metric}_err") is None and row.get(f"paper_{metric}_err") is None):
                continue
            position = x - 0.4 + width * (k + 0.5)
            _plot_bar(ax, row, metric, position, width, labelled)
            ticks.append(position)
            names.append(row.get("name", arch))
    # At least three groups' room, so that one or two models are bars, not a filled panel.
    spare = max(0.0, (3 - len(archs)) / 2)
    ax.set_xlim(-0.5 - spare, len(archs) - 0.5 + spare)
    ax.set_xticks(ticks)
    ax.set_xticklabels(names, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(f"{'top-1' if metric == 'top1' else 'top-5'} error (%)")
    ax.set_ylim(0, max(5.0, ax.get_ylim()[1] * 1.15))  # room for the annotations
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside the data
    ax.grid(axis="y", alpha=0.3)


def _plot_bar(ax: Any, row: Mapping[str, Any], metric: str, position: float, width: float, labelled: Set[str]) -> None:
    """One model's bar: the measured error (with n and its interval) or else the paper's, and the paper's tick."""
    value, paper = row.get(f"{metric}_err"), row.get(f"paper_{metric}_err")
    bar = value if value is not None else paper
    kind = row["kind"]
    # An outline keeps a 0 % bar visible as a line.
    ax.bar(
        position,
        bar,
        width * 0.9,
        color=KIND_COLOURS.get(kind, "#555555"),
        edgecolor="black",
        linewidth=0.6,
        label=None if kind in labelled else kind,
    )
    labelled.add(kind)
    n = row.get("images")
    if value is None or not n:
        text, top = f"{bar:.1f}%", bar
    else:
        low, high = error_interval(n - row[f"{metric}_correct"], n)
        ax.errorbar(position, value, yerr=[[value - low], [high - value]], color="black", capsize=3, lw=1)
        text, top = f"{value:.1f}%\nn={n:,}", high
    ax.annotate(text, (position, top), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    if paper is not None:
        ax.plot(
            [position - width * 0.45, position + width * 0.45],
            [paper, paper],
            color="black",
            lw=1.5,
            label=None if "paper" in labelled else "paper",
        )
        labelled.add("paper")


def write_plot(rows: Sequence[Mapping[str, Any]], path: os.PathLike, title: str = "", note: str = "") -> Path:
    """Bar chart of top-1 and top-5 errors: baseline, sparse stage and DSD side by side per architecture.

    Bars are the measured errors where there are any, else the paper's; each measured bar carries
    its n and a 95 % interval, a black tick marks the paper's number, and ``note`` (a partial
    run says PARTIAL) goes into the title.
    """
    check_plot_path(path)
    import matplotlib.pyplot as plt

    figure = plot_figure(rows, title, note)
    path = Path(path)
    try:  # complete or not at all, like the other outputs
        atomic_write(path, lambda file: figure.savefig(file, dpi=120, format=path.suffix.lower().lstrip(".")))
    except OSError as exc:
        raise DSDZooError(f"cannot write the plot {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(figure)
    return path
