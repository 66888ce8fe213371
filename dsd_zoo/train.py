"""Dense-Sparse-Dense training from a recipe file: ``python -m dsd_zoo.train --recipe FILE``.

Trains a dsd-zoo or torchvision model on an ImageFolder dataset (or the built-in digits) through
the recipe's phases (default: dense -> sparse -> re-dense, learning rate x0.1 per phase) and
writes, for each phase, ``<output>/<phase>.safetensors`` (the plain state dict; the sparse stage
declares its pruned weights in the metadata), ``<output>/<phase>.masks.safetensors`` for sparse
phases, and ``<output>/results.json`` (top-1/top-5 validation error, per-layer sparsity, digests;
``"complete": false`` until the last phase is done).

Distributed: ``torchrun --nproc_per_node N -m dsd_zoo.train --recipe FILE`` runs DDP (NCCL on
GPUs, gloo on CPU). Masks are computed on rank 0 and broadcast; every rank's digest of its masks
and of its model after each phase is recorded in ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsd_zoo.atomic import file_in_the_way, write_text
from dsd_zoo._signals import exit_on_termination
from dsd_zoo.errors import DatasetError, DSDZooError, RecipeError, TrainingError, UnverifiedSourceError

if TYPE_CHECKING:  # torch is imported when training starts, not when the CLI parses its arguments
    from dsd_zoo._process_group import Rank

# The exit status of a run stopped by Ctrl-C, as a shell reports a SIGINT.
EXIT_INTERRUPTED = 130

__all__ = ["build_model", "main", "train"]

_DESCRIPTION = __doc__.split("\n\n", 1)[1].replace("``", "")
_EPILOG = """recipe (JSON, or TOML on Python 3.11+), for example:
  {"model": "resnet18", "data": {"root": "/data/imagenette", "image_size": 224},
   "epochs": [10, 5, 5], "lr": 0.1, "sparsity": 0.3, "batch_size": 64,
   "optimizer": {"name": "sgd", "momentum": 0.9, "weight_decay": 1e-4},
   "seed": 0, "output": "runs/resnet18-dsd"}
data: data.root is an ImageFolder root holding train/ and val/ (data.train / data.val rename them),
each with one folder of images per class, the same class folders in both.
model names: a dsd-zoo model or architecture (dsd_zoo.list_models()), else a torchvision model;
prefix "torchvision:" or "dsd_zoo:" to choose. Relative paths are relative to the recipe file.
Full key list: the docstring of dsd_zoo.dsd.recipe.
exit status: 0 done; 1 the training failed (e.g. diverged to NaN); 2 a bad recipe or data;
130 interrupted (Ctrl-C): the finished phases stay, marked "complete": false in results.json."""


def build_model(name: str, num_classes: int, pretrained: bool = False, trust_unverified: bool | None = None) -> Any:
    """A model by name: a dsd-zoo model or architecture first, then torchvision (no download there).

    ``"torchvision:NAME"`` or ``"dsd_zoo:NAME"`` picks the source explicitly (``alexnet`` is the
    Caffe AlexNet in dsd-zoo and the "one weird trick" variant in torchvision).
    """
    from dsd_zoo import api
    from dsd_zoo.models import ARCHITECTURES

    source, _, bare = name.rpartition(":")
    if source not in ("", "dsd_zoo", "torchvision"):
        raise RecipeError(f"model {name!r}: the prefix must be 'dsd_zoo:' or 'torchvision:'")
    if source != "torchvision":
        if bare in api.list_models():
            kwargs: dict[str, Any] = {} if pretrained else {"num_classes": num_classes}
            return api.get_model(bare, pretrained=pretrained, trust_unverified=trust_unverified, **kwargs)
        if bare in ARCHITECTURES and not pretrained:
            return ARCHITECTURES[bare].build(num_classes=num_classes)
        if source == "dsd_zoo":
            raise RecipeError(f"model {bare!r} is neither a dsd-zoo model nor architecture (see dsd_zoo.list_models())")
    if pretrained:
        raise RecipeError(f"pretrained=true is for dsd-zoo models (checksummed delivery); {bare!r} is not one")
    import torchvision

    try:
        return torchvision.models.get_model(bare, weights=None, num_classes=num_classes)
    except ValueError as exc:
        raise RecipeError(
            f"unknown model {bare!r}: not a dsd-zoo model or architecture, and torchvision says: {exc}"
        ) from exc


def _load_image(path: str) -> Any:
    """ImageFolder's loader, with a file that cannot be read named in a :class:`DatasetError`."""
    from PIL import Image

    from dsd_zoo._decode import decode_failure_types

    try:
        with open(path, "rb") as file:
            return Image.open(file).convert("RGB")
    except decode_failure_types() as exc:  # the errors PIL reports a damaged file with, as verify counts them
        raise DatasetError(
            f"data: cannot read the image {path} ({type(exc).__name__}: {exc}); remove or replace it"
        ) from exc


def _datasets(recipe: Any) -> tuple[Any, Any, list[str]]:
    """(train set, validation set, class names) of the recipe's data.

    Raises:
        DatasetError: a missing split directory, no class folders, or splits with other classes.
    """
    spec = recipe.data
    if spec.builtin == "digits":
        from torch.utils.data import TensorDataset

        from dsd_zoo.dsd.embedded import digits_input, load_digits_split_sklearn

        split = load_digits_split_sklearn()
        return (
            TensorDataset(digits_input(split.train_images), split.train_labels),
            TensorDataset(digits_input(split.test_images), split.test_labels),
            [str(i) for i in range(10)],
        )
    from torchvision import datasets, transforms as T

    dirs = {"train": spec.root / spec.train_dir, "val": spec.root / spec.val_dir}
    for role, directory in dirs.items():
        if not directory.is_dir():
            raise DatasetError(
                f"data {role} directory {directory} does not exist; an ImageFolder root needs "
                f"{spec.train_dir}/ and {spec.val_dir}/ with one sub-directory per class"
            )
    resize = spec.resize or round(spec.image_size * 256 / 224)
    head = [T.Grayscale(1)] if spec.channels == 1 else []
    tail = [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    val_tf = T.Compose(head + [T.Resize(resize), T.CenterCrop(spec.image_size)] + tail)
    train_tf = (
        T.Compose(head + [T.RandomResizedCrop(spec.image_size), T.RandomHorizontalFlip()] + tail)
        if spec.augment
        else val_tf
    )
    try:
        train_set = datasets.ImageFolder(str(dirs["train"]), transform=train_tf, loader=_load_image)
        val_set = datasets.ImageFolder(str(dirs["val"]), transform=val_tf, loader=_load_image)
    except (FileNotFoundError, RuntimeError) as exc:  # ImageFolder: "Couldn't find any class folder" etc.
        raise DatasetError(f"data: {exc}") from exc
    if train_set.classes != val_set.classes:
        missing = sorted(set(train_set.classes) ^ set(val_set.classes))
        raise DatasetError(f"data: train and val have different classes (only in one of them: {missing[:10]})")
    return train_set, val_set, list(train_set.classes)


def train(
    recipe: Any,
    output: Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    trust_unverified: bool | None = None,
) -> dict[str, Any]:
    """Run a :class:`~dsd_zoo.dsd.recipe.Recipe`; returns what ``results.json`` holds (on every rank).

    Under ``torchrun`` it starts the process group and ends it before returning; a group the
    caller has already initialized is used and left running (import
    ``torch.distributed.nn.functional`` before initializing it, or ``destroy_process_group`` will
    not end it: see ``dsd_zoo._process_group``).

    ``trust_unverified`` is passed to :func:`dsd_zoo.get_model` for a pretrained dsd-zoo model.

    Raises:
        RecipeError: a recipe that cannot run (unknown model, bad exclude, output in use, ...).
        DatasetError: the ImageFolder data is missing or inconsistent.
    """
    import torch

    from dsd_zoo._process_group import barrier, process_group
    from dsd_zoo.dsd.loop import torch_settings

    output = Path(output) if output is not None else recipe.output
    # Refuse, before any work, an output that is a file or that holds a run not to be overwritten.
    results_path = output / "results.json"
    blocking = file_in_the_way(results_path)  # the output itself or a folder above it
    if blocking is not None:
        raise RecipeError(f"output {output}: {blocking} is a file, not a directory; choose another output")
    if results_path.exists() and not overwrite:
        try:
            complete = json.loads(results_path.read_text()).get("complete", True)
        except (OSError, ValueError, AttributeError):
            complete = True
        what = "a run" if complete else "an unfinished run (interrupted or failed)"
        raise RecipeError(f"{output} already holds {what} (results.json); pass --overwrite or choose another output")
    if recipe.device == "cuda" and not torch.cuda.is_available():
        raise RecipeError("the recipe asks for device 'cuda' but torch.cuda.is_available() is False")
    use_cuda = torch.cuda.is_available() if recipe.device == "auto" else recipe.device == "cuda"
    with process_group("cuda" if use_cuda else "cpu") as here:
        with torch_settings(recipe.threads, recipe.deterministic):
            results = _train(recipe, output, here, use_cuda, progress, overwrite, trust_unverified)
        # Every rank is done (and rank 0 has written its files) before any rank tears the group
        # down: a gloo peer that disappears mid-teardown can abort the other ("terminate called").
        barrier()
    return results


def _remove_earlier_run(output: Path) -> None:
    """Delete the checkpoints, masks and results.json an earlier run wrote into ``output`` (--overwrite)."""
    results = output / "results.json"
    try:
        phases = json.loads(results.read_text()).get("phases", [])
        names = [entry[key]["file"] for entry in phases for key in ("checkpoint", "masks") if entry.get(key)]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        names = []  # no readable record of its files: leave the directory's other files alone
    for name in names:
        if Path(name).name == name:  # a plain file name of this directory, never a path elsewhere
            (output / name).unlink(missing_ok=True)
    results.unlink(missing_ok=True)


def _train(
    recipe: Any,
    output: Path,
    here: Rank,
    use_cuda: bool,
    progress: bool,
    overwrite: bool,
    trust_unverified: bool | None = None,
) -> dict[str, Any]:
    """:func:`train` once the process group and global flags are set up."""
    import torch
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, Subset
    from tqdm.auto import tqdm

    from dsd_zoo.dsd.checkpoint import file_record, save_checkpoint, save_masks
    from dsd_zoo._process_group import all_gather_json, all_reduce_sum, barrier
    from dsd_zoo.dsd.distributed import broadcast_buffers, broadcast_masks, tensors_digest
    from dsd_zoo.dsd.loop import PhaseResult, evaluate, train_epoch, train_phases
    from dsd_zoo.dsd.masks import DSD

    start = time.perf_counter()
    torch.manual_seed(recipe.seed)

    train_set, val_set, classes = _datasets(recipe)
    num_classes = recipe.num_classes or len(classes)
    if num_classes < len(classes):
        raise RecipeError(f"num_classes={num_classes} but the data has {len(classes)} classes")
    model = build_model(recipe.model, num_classes, recipe.pretrained, trust_unverified).to(here.device)
    try:  # a dense-only schedule prunes nothing
        dsd = (
            DSD(model, sparsity=recipe.sparsity, skip_first=recipe.skip_first, exclude=recipe.exclude)
            if any(p.sparse for p in recipe.schedule)
            else None
        )
    except ValueError as exc:  # e.g. an 'exclude' name that is not a module of this model
        raise RecipeError(f"recipe: {exc}") from exc
    net = (
        DistributedDataParallel(model, device_ids=[here.device.index] if use_cuda else None)
        if here.world_size > 1
        else model
    )

    sampler: DistributedSampler[int] = DistributedSampler(
        train_set, num_replicas=here.world_size, rank=here.rank, shuffle=True, seed=recipe.seed
    )
    loader_args = {"num_workers": recipe.workers, "pin_memory": use_cuda, "persistent_workers": recipe.workers > 0}
    # Drop a last partial batch when there is a full one: a batch of 1 breaks BatchNorm in training.
    train_loader = DataLoader(
        train_set,
        batch_size=recipe.batch_size,
        sampler=sampler,
        drop_last=len(sampler) >= recipe.batch_size,
        **loader_args,
    )
    # Disjoint shards without padding (DistributedSampler would repeat images): exact counts once summed.
    val_loader = DataLoader(
        Subset(val_set, range(here.rank, len(val_set), here.world_size)),
        batch_size=recipe.batch_size,
        shuffle=False,
        **loader_args,
    )

    def run_epoch(optimizer: torch.optim.Optimizer, phase: Any, epoch: int) -> float:
        sampler.set_epoch(epoch)
        if not (progress and here.is_main):
            # No disabled bar either: a Ctrl-C or SIGTERM that lands inside tqdm's __init__ leaves a
            # half-built bar whose __del__ prints a traceback (tqdm/tqdm#1668; the floor, 4.62, has it).
            return train_epoch(net, train_loader, optimizer, here.device)
        desc = f"{phase.name}, epoch {epoch + 1}/{recipe.schedule.total_epochs}"
        batches = tqdm(train_loader, desc=desc, unit="batch", leave=False)
        return train_epoch(net, batches, optimizer, here.device)

    def evaluate_fn() -> Any:
        broadcast_buffers(model, here)
        return evaluate(model, val_loader, here.device, reduce=lambda counts: all_reduce_sum(counts, here.device))

    results: dict[str, Any] = {
        "recipe": recipe.to_dict(),
        "model": recipe.model,
        "num_classes": num_classes,
        "classes": classes,
        "world_size": here.world_size,
        "device": str(here.device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "complete": False,  # true once every phase is done; a stopped run stays marked unfinished
        "phases": [],
    }

    def on_phase_end(result: PhaseResult, masks: dict[str, torch.Tensor]) -> None:
        entry = result.to_dict()
        entry["state_sha256_per_rank"] = all_gather_json(tensors_digest(model.state_dict()), here.device)
        entry["mask_sha256_per_rank"] = all_gather_json(tensors_digest(masks), here.device) if masks else None
        results["phases"].append(entry)
        if here.is_main:
            e, phase = result.errors, result.phase
            meta = {
                "model": recipe.model,
                "num_classes": str(num_classes),
                "recipe": json.dumps(results["recipe"]),
                "phase": phase.name,
                "kind": phase.kind,
            }
            entry["checkpoint"] = file_record(
                save_checkpoint(output / f"{phase.name}.safetensors", model, masks or None, meta)
            )
            if masks:
                entry["masks"] = file_record(
                    save_masks(output / f"{phase.name}.masks.safetensors", masks, metadata=meta)
                )
            results["complete"] = len(results["phases"]) == len(recipe.schedule)
            results["wall_seconds"] = time.perf_counter() - start
            # Atomic: a crash must not leave a half file that later marks the output as "holding a run".
            write_text(output / "results.json", json.dumps(results, indent=2) + "\n")
            sparsity = f", weight sparsity {result.sparsity.sparsity:.2%}" if result.sparsity else ""
            print(
                f"[{phase.name}] {phase.kind}, {phase.epochs} epochs at lr {phase.lr:g}: val top-1 error "
                f"{e.top1_err:.2%}, top-5 {e.top5_err:.2%} (n={e.n}){sparsity}",
                flush=True,
            )
        barrier()

    if here.is_main:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecipeError(f"cannot create the output directory {output}: {exc.strerror or exc}") from exc
        if overwrite:
            _remove_earlier_run(output)
        print(
            f"training {recipe.model} ({num_classes} classes, {len(train_set)} train / {len(val_set)} val images) "
            f"on {here.world_size} x {here.device}: {recipe.schedule}",
            flush=True,
        )
    train_phases(
        recipe.schedule,
        dsd,
        make_optimizer=lambda phase: recipe.optimizer.build(net.parameters(), phase.lr),
        run_epoch=run_epoch,
        evaluate_fn=evaluate_fn,
        sync_masks=lambda masks: broadcast_masks(masks, here),
        on_phase_end=on_phase_end,
    )
    return results


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dsd_zoo.train",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", required=True, type=Path, metavar="FILE", help="recipe file (.json or .toml)")
    p.add_argument("--output", type=Path, metavar="DIR", help="output directory (overrides the recipe's 'output')")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in the output: its checkpoints, masks and results.json are "
        "deleted first (other files are kept)",
    )
    p.add_argument(
        "--trust-unverified",
        action="store_true",
        help="with pretrained=true: accept an original release without a published digest when the "
        "model's weights must be fetched and converted (its sha256 is pinned on first use)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (rank 0 shows them by default)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a bad recipe or data)."""
    args = _parser().parse_args(argv)
    from dsd_zoo.dsd.recipe import load_recipe

    try:
        recipe = load_recipe(args.recipe)
        with exit_on_termination():  # killed (SIGTERM, SIGHUP): checkpoints being written are removed
            train(
                recipe,
                output=args.output,
                overwrite=args.overwrite,
                progress=not args.no_progress,
                trust_unverified=args.trust_unverified or None,
            )
    except KeyboardInterrupt:
        print(
            "interrupted: the phases finished so far are in the output, marked unfinished in results.json",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except (DSDZooError, ImportError) as exc:
        hint = "\nIn this command: add --trust-unverified." if isinstance(exc, UnverifiedSourceError) else ""
        print(f"error: {_worker_message(exc)}{hint}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingError) else 2
    return 0


def _worker_message(exc: BaseException) -> str:
    """``exc``'s message; for one re-raised from a DataLoader worker, without the worker's traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:  # torch's ExceptionWrapper puts the worker's traceback in the message
        last = text.splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


if __name__ == "__main__":
    sys.exit(main())
