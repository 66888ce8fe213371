"""The phases of a DSD run: dense -> sparse -> re-dense, each at a tenth of the previous learning rate."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from dsd_zoo._fields import unknown_fields

__all__ = ["DSDSchedule", "Phase"]

KINDS = ("dense", "sparse")


@dataclass(frozen=True)
class Phase:
    """One phase: ``epochs`` epochs at a constant learning rate ``lr``, with or without the mask.

    ``name`` labels the phase's checkpoint and results (``"dense"``, ``"sparse"``, ``"redense"``).
    """

    name: str
    kind: str
    epochs: int
    lr: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"phase {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"phase {self.name!r}: epochs must be an integer >= 0, got {self.epochs!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ValueError(f"phase {self.name!r}: lr must be a finite number > 0, got {self.lr!r}")
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            # The name becomes a file name: keep it to letters, digits, '-' and '_'.
            raise ValueError(f"phase name must be letters, digits, '-' or '_', got {self.name!r}")

    @property
    def sparse(self) -> bool:
        """Whether the mask is in force during this phase."""
        return self.kind == "sparse"


def _default_names(kinds: Sequence[str]) -> list[str]:
    """dense, sparse, redense, sparse2, redense2, ...: a dense phase after a sparse one is a re-dense."""
    counts: dict[str, int] = {}
    names = []
    for i, kind in enumerate(kinds):
        base = "redense" if kind == "dense" and i and kinds[i - 1] == "sparse" else kind
        counts[base] = counts.get(base, 0) + 1
        names.append(base if counts[base] == 1 else f"{base}{counts[base]}")
    return names


class DSDSchedule(tuple[Phase, ...]):
    """An ordered, validated tuple of :class:`Phase`; iterate it to run the phases.

    >>> s = DSDSchedule.standard(lr=0.1, epochs=(4, 2, 2))
    >>> [(p.name, p.kind, p.epochs, round(p.lr, 6)) for p in s]
    [('dense', 'dense', 4, 0.1), ('sparse', 'sparse', 2, 0.01), ('redense', 'dense', 2, 0.001)]
    >>> s.total_epochs
    8
    """

    def __new__(cls, phases: Iterable[Phase | Mapping[str, Any]]) -> DSDSchedule:
        phases = list(phases)
        if not phases:
            raise ValueError("a schedule needs at least one phase")
        if not all(isinstance(p, (Phase, Mapping)) for p in phases):
            raise ValueError("each phase must be a table/object with kind, epochs and lr (and an optional name)")
        kinds = [p.kind if isinstance(p, Phase) else p.get("kind") for p in phases]
        defaults = _default_names([k if k in KINDS else "dense" for k in kinds])
        built = []
        for i, (p, default) in enumerate(zip(phases, defaults)):
            if isinstance(p, Phase):
                built.append(p)
                continue
            if p.get("kind") not in KINDS:  # named by position: the default name depends on the kind
                raise ValueError(f"phase {i}: kind must be one of {KINDS}, got {p.get('kind')!r}")
            problem = unknown_fields(p, ("name", "kind", "epochs", "lr"))
            if problem:
                raise ValueError(f"phase {i}: {problem}")
            missing = {"kind", "epochs", "lr"} - set(p)
            if missing:
                raise ValueError(f"phase {i}: missing keys {sorted(missing)}")
            built.append(Phase(name=p.get("name", default), kind=p["kind"], epochs=p["epochs"], lr=p["lr"]))
        names = [p.name for p in built]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"phase names must be unique (they name the checkpoints), repeated: {duplicated}")
        return super().__new__(cls, built)

    @classmethod
    def standard(
        cls,
        lr: float,
        epochs: int | Sequence[int],
        lr_decay: float = 0.1,
        rounds: int = 1,
    ) -> DSDSchedule:
        """The paper's schedule: dense, then ``rounds`` times (sparse, re-dense).

        Args:
            lr: learning rate of the first (dense) phase.
            epochs: epochs of every phase (an int), or one count per phase (``1 + 2 * rounds``).
            lr_decay: each phase starts at ``lr_decay`` times the previous phase's rate
                (0.1 in the paper).
            rounds: sparse/re-dense rounds after the first dense phase.
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if isinstance(lr_decay, bool) or not isinstance(lr_decay, (int, float)) or not 0 < lr_decay <= 1:
            raise ValueError(f"lr_decay must be a number in (0, 1], got {lr_decay!r}")
        kinds = ["dense"] + ["sparse", "dense"] * rounds
        if isinstance(epochs, int) and not isinstance(epochs, bool):
            counts = [epochs] * len(kinds)
        elif isinstance(epochs, Sequence) and not isinstance(epochs, str):
            counts = list(epochs)
        else:
            raise ValueError(f"epochs must be an integer or a list of {len(kinds)} integers, got {epochs!r}")
        if len(counts) != len(kinds):
            raise ValueError(f"epochs needs {len(kinds)} counts for {rounds} round(s) ({kinds}), got {len(counts)}")
        # 12 significant digits: 0.05 * 0.1 is 0.005, not 0.005000000000000001, in logs and recipes.
        rates = [float(f"{lr * lr_decay**i:.12g}") for i in range(len(kinds))]
        return cls([Phase(n, k, e, r) for n, k, e, r in zip(_default_names(kinds), kinds, counts, rates)])

    def baseline(self) -> DSDSchedule:
        """The same phases, epochs and learning rates, all dense: the fair baseline of a DSD run."""
        return DSDSchedule([Phase(p.name, "dense", p.epochs, p.lr) for p in self])

    @property
    def total_epochs(self) -> int:
        """Epochs over all phases."""
        return sum(p.epochs for p in self)

    def to_list(self) -> list[dict[str, Any]]:
        """The phases as plain dicts (what a recipe's ``phases`` holds)."""
        return [asdict(p) for p in self]

    def __repr__(self) -> str:
        inner = ", ".join(f"{p.name}:{p.kind}x{p.epochs}@{p.lr:g}" for p in self)
        return f"DSDSchedule([{inner}])"
