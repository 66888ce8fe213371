"""Per-layer and total sparsity of a model's weights, as data and as a printable table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["LayerSparsity", "SparsityReport"]


@dataclass(frozen=True)
class LayerSparsity:
    """The zeros of one weight tensor.

    ``status`` is ``"pruned"`` (DSD manages it), ``"first layer"`` (left dense by
    ``skip_first``) or ``"excluded"``.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    zeros: int
    status: str

    @property
    def sparsity(self) -> float:
        """Fraction of the weights that are exactly zero."""
        return self.zeros / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class SparsityReport:
    """Sparsity of every weight a :class:`~dsd_zoo.dsd.DSD` considers, and of all of them together.

    ``str(report)`` is a table; :meth:`to_dict` a JSON-ready dict.
    """

    layers: tuple[LayerSparsity, ...]
    target: float

    @property
    def numel(self) -> int:
        """Weights counted, over all layers."""
        return sum(layer.numel for layer in self.layers)

    @property
    def zeros(self) -> int:
        """Weights that are exactly zero, over all layers."""
        return sum(layer.zeros for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights over all layers, including those left dense."""
        return self.zeros / self.numel if self.numel else 0.0

    def __getitem__(self, name: str) -> LayerSparsity:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers are {[layer.name for layer in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        """``{"target", "total": {...}, "layers": {name: {...}}}``, every value JSON-serialisable."""
        return {
            "target": self.target,
            "total": {"numel": self.numel, "zeros": self.zeros, "sparsity": self.sparsity},
            "layers": {
                layer.name: {
                    "shape": list(layer.shape),
                    "numel": layer.numel,
                    "zeros": layer.zeros,
                    "sparsity": layer.sparsity,
                    "status": layer.status,
                }
                for layer in self.layers
            },
        }

    def __str__(self) -> str:
        rows = [
            ("layer", "shape", "weights", "zeros", "sparsity", "status"),
            *(
                (
                    layer.name,
                    "x".join(map(str, layer.shape)),
                    f"{layer.numel:,}",
                    f"{layer.zeros:,}",
                    f"{layer.sparsity:.2%}",
                    layer.status,
                )
                for layer in self.layers
            ),
            ("total", "", f"{self.numel:,}", f"{self.zeros:,}", f"{self.sparsity:.2%}", ""),
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        # The counts and the sparsity (columns 2 to 4) are right-aligned.
        lines = [
            "  ".join(
                cell.rjust(w) if 2 <= i <= 4 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in rows
        ]
        rule = "-" * max(len(line) for line in lines)
        return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])
