"""Shared output of the ratio benchmarks: the command that ran, and each ratio against its goal."""

from __future__ import annotations

import sys


def print_command() -> None:
    """Print the command line, so that a result in docs/benchmarks.md can be reproduced."""
    print("command: python " + " ".join(sys.argv))


def print_ratio(label: str, ratio: float, goal: float, lower_is_better: bool) -> None:
    """Print ``label = ratio`` and whether it meets ``goal`` (at most, or at least, the goal)."""
    met = ratio <= goal if lower_is_better else ratio >= goal
    sign = "<=" if lower_is_better else ">="
    print(f"ratio {label} = {ratio:.3f}  (goal {sign} {goal}: {'met' if met else 'NOT met'})")
