"""Training recipes for ``python -m dsd_zoo.train``: a small JSON or TOML file, strictly validated.

A recipe (``model``, ``data`` and either ``epochs`` + ``lr`` or ``phases`` are required; every
other key is optional)::

    model = "resnet18"          # a dsd-zoo model or architecture name, or a torchvision model name
    pretrained = false          # dsd-zoo models only: start from the released weights
    num_classes = 10            # default: the number of classes of the training data
    seed = 0
    output = "runs/resnet18"    # relative paths are relative to the recipe file
    batch_size = 64             # per process
    workers = 4                 # DataLoader workers per process
    device = "auto"             # "auto" (CUDA if available), "cpu", "cuda"
    threads = 1                 # torch CPU threads per process (default: torch's choice)
    sparsity = 0.3              # per-layer fraction pruned in sparse phases
    skip_first = true           # leave the first conv dense, as the paper does
    exclude = []                # module names left dense

    epochs = [10, 5, 5]         # dense, sparse, re-dense (or one int for every phase) ...
    lr = 0.1                    # ... with the first phase's rate, x lr_decay per phase
    lr_decay = 0.1
    rounds = 1                  # sparse/re-dense rounds
    # ... or explicit phases instead of epochs/lr/lr_decay/rounds:
    # [[phases]]
    # kind = "dense"; epochs = 10; lr = 0.1

    [data]
    root = "/data/imagenette"   # an ImageFolder root with train/ and val/ (or: builtin = "digits")
    image_size = 224            # crop size; resize = image_size * 256 / 224 unless given
    channels = 3                # 1 converts images to grayscale
    augment = true              # random-resized crop + flip for training

    [optimizer]
    name = "sgd"                # "sgd", "adam" or "adamw"
    momentum = 0.9
    weight_decay = 1e-4

Unknown keys are errors (a typo would otherwise silently train with a default).
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, cast

from dsd_zoo._fields import unknown_fields
from dsd_zoo.dsd.schedule import DSDSchedule
from dsd_zoo.errors import RecipeError

__all__ = ["DataSpec", "OptimizerSpec", "Recipe", "RecipeError", "load_recipe", "parse_recipe"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MISSING = object()
_SCHEDULE_KEYS = ("epochs", "lr", "lr_decay", "rounds", "phases")


class _Table:
    """Typed access to one table of a recipe, remembering which keys were read."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise RecipeError(f"{where} must be a table/object, got {type(raw).__name__}")
        self.raw, self.where = raw, where
        self.read: set[str] = set()

    def get(
        self,
        key: str,
        kinds: type | tuple[type, ...],
        default: Any = _MISSING,
        choices: tuple[Any, ...] = (),
        low: float | None = None,
    ) -> Any:
        """The value of ``key``, checked to be of one of ``kinds``, among ``choices`` and ``>= low`` when given."""
        self.read.add(key)
        if key not in self.raw:
            if default is _MISSING:
                raise RecipeError(f"{self.where}: missing required key {key!r}")
            return default
        value = self.raw[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        # bool is an int in Python; a recipe's `epochs = true` is still a mistake.
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise RecipeError(f"{self.where}: {key!r} must be {names}, got {value!r}")
        if choices and value not in choices:
            raise RecipeError(f"{self.where}: {key!r} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if low is not None and not low <= cast(float, value) < math.inf:  # a number by now; NaN fails too
            raise RecipeError(f"{self.where}: {key!r} must be a finite number >= {low:g}, got {value}")
        return value

    def finish(self) -> None:
        problem = unknown_fields(self.raw, self.read)
        if problem:
            raise RecipeError(f"{self.where}: {problem}")


@dataclass(frozen=True)
class DataSpec:
    """Where the images come from and how they become tensors."""

    root: Optional[Path] = None
    builtin: Optional[str] = None
    train_dir: str = "train"
    val_dir: str = "val"
    image_size: int = 224
    resize: Optional[int] = None
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    augment: bool = True


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer built afresh for every phase, at that phase's learning rate."""

    name: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)

    def build(self, params: Iterable[Any], lr: float) -> Any:
        """A new ``torch.optim`` optimizer over ``params``."""
        import torch

        if self.name == "sgd":
            return torch.optim.SGD(
                params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay, nesterov=self.nesterov
            )
        cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=self.betas, weight_decay=self.weight_decay)


@dataclass(frozen=True)
class Recipe:
    """A validated training recipe; see the module docstring for the file format."""

    model: str
    data: DataSpec
    schedule: DSDSchedule
    output: Path
    pretrained: bool = False
    num_classes: Optional[int] = None
    sparsity: float = 0.3
    skip_first: bool = True
    exclude: tuple[str, ...] = ()
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    batch_size: int = 32
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    deterministic: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings, the schedule as explicit phases)."""
        out = asdict(self)
        out["schedule"] = self.schedule.to_list()
        out["output"] = str(self.output)
        out["data"]["root"] = str(self.data.root) if self.data.root is not None else None
        return out


def _numbers(table: _Table, key: str, default: list[float]) -> tuple[float, ...]:
    values = table.get(key, list, default)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise RecipeError(f"{table.where}: {key!r} must be a list of finite numbers, got {values!r}")
    return tuple(float(v) for v in values)


def _parse_data(raw: Any, base: Path) -> DataSpec:
    t = _Table(raw, "recipe [data]")
    root, builtin = t.get("root", str, None), t.get("builtin", str, None, choices=("digits",))
    if (root is None) == (builtin is None):
        raise RecipeError("recipe [data]: give exactly one of 'root' (an ImageFolder directory) or 'builtin'")
    spec = DataSpec(
        root=(base / root) if root is not None else None,
        builtin=builtin,
        train_dir=t.get("train", str, "train"),
        val_dir=t.get("val", str, "val"),
        image_size=t.get("image_size", int, 224, low=1),
        resize=t.get("resize", int, None, low=1),
        channels=t.get("channels", int, 3, choices=(1, 3)),
        mean=_numbers(t, "mean", list(IMAGENET_MEAN)),
        std=_numbers(t, "std", list(IMAGENET_STD)),
        augment=t.get("augment", bool, True),
    )
    t.finish()
    if len(spec.mean) != spec.channels or len(spec.std) != spec.channels:
        raise RecipeError(f"recipe [data]: mean and std need {spec.channels} values each (channels={spec.channels})")
    if not all(v > 0 for v in spec.std):
        raise RecipeError(f"recipe [data]: std values must be > 0 (inputs are divided by them), got {list(spec.std)}")
    return spec


def _parse_optimizer(raw: Any) -> OptimizerSpec:
    t = _Table(raw, "recipe [optimizer]")
    betas = _numbers(t, "betas", [0.9, 0.999])
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise RecipeError(f"recipe [optimizer]: betas must be two numbers in [0, 1), got {list(betas)}")
    spec = OptimizerSpec(
        name=t.get("name", str, "sgd", choices=("sgd", "adam", "adamw")),
        momentum=float(t.get("momentum", (int, float), 0.9, low=0)),
        weight_decay=float(t.get("weight_decay", (int, float), 1e-4, low=0)),
        nesterov=t.get("nesterov", bool, False),
        betas=(betas[0], betas[1]),
    )
    t.finish()
    if spec.name == "sgd" and spec.nesterov and spec.momentum == 0:
        raise RecipeError("recipe [optimizer]: nesterov needs momentum > 0")
    return spec


def _parse_schedule(t: _Table) -> DSDSchedule:
    phases = t.get("phases", list, None)
    shorthand = {k: t.raw[k] for k in ("epochs", "lr", "lr_decay", "rounds") if k in t.raw}
    t.read.update({"epochs", "lr", "lr_decay", "rounds"})
    if phases is not None and shorthand:
        raise RecipeError(f"recipe: give either 'phases' or {sorted(shorthand)}, not both")
    if phases is None and ("epochs" not in shorthand or "lr" not in shorthand):
        # A misspelt "epoch" would otherwise only be named after this error.
        near = [key for key in t.raw if key not in t.read and difflib.get_close_matches(key, _SCHEDULE_KEYS, n=1)]
        hint = f"; {unknown_fields(near, _SCHEDULE_KEYS)}" if near else ""
        raise RecipeError(
            f"recipe: give 'epochs' and 'lr' (the standard dense/sparse/re-dense schedule) or 'phases'{hint}"
        )
    try:
        return DSDSchedule(phases) if phases is not None else DSDSchedule.standard(**shorthand)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"recipe: bad schedule: {exc}") from exc


def parse_recipe(raw: Mapping[str, Any], base: Path = Path(".")) -> Recipe:
    """Validate a recipe already parsed from JSON/TOML; relative paths are taken from ``base``."""
    t = _Table(raw, "recipe")
    sparsity = t.get("sparsity", (int, float), 0.3)
    if not 0 <= sparsity <= 1:
        raise RecipeError(f"recipe: 'sparsity' must be in [0, 1], got {sparsity}")
    model = t.get("model", str)
    exclude = t.get("exclude", list, [])
    if not all(isinstance(name, str) for name in exclude):
        raise RecipeError(f"recipe: 'exclude' must be a list of module names, got {exclude!r}")
    seed = t.get("seed", int, 0)
    if not 0 <= seed < 2**63:  # what torch.manual_seed takes
        raise RecipeError(f"recipe: 'seed' must be in [0, 2**63), got {seed}")
    recipe = Recipe(
        model=model,
        data=_parse_data(t.get("data", dict), base),
        schedule=_parse_schedule(t),
        output=base / t.get("output", str, f"runs/{model}-dsd"),
        pretrained=t.get("pretrained", bool, False),
        num_classes=t.get("num_classes", int, None, low=1),
        sparsity=float(sparsity),
        skip_first=t.get("skip_first", bool, True),
        exclude=tuple(exclude),
        optimizer=_parse_optimizer(t.get("optimizer", dict, {})),
        batch_size=t.get("batch_size", int, 32, low=1),
        workers=t.get("workers", int, 2, low=0),
        seed=seed,
        device=t.get("device", str, "auto", choices=("auto", "cpu", "cuda")),
        threads=t.get("threads", int, None, low=1),
        deterministic=t.get("deterministic", bool, True),
    )
    t.finish()
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a ``.json`` or ``.toml`` recipe file.

    Raises:
        RecipeError: the file is missing, unparsable, or has a wrong key or value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not JSON
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror or exc}") from exc
    toml = path.suffix.lower() == ".toml"
    try:
        raw = _toml_loads(text) if toml else json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise RecipeError(f"recipe {path} is not valid {'TOML' if toml else 'JSON'}: {exc}") from exc
    return parse_recipe(raw, base=path.resolve().parent)


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise RecipeError(
                "TOML recipes need Python 3.11+ or `pip install tomli`; or write the recipe as JSON"
            ) from exc
    return tomllib.loads(text)
