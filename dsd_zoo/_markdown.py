"""Markdown tables, written one way for verify's reports, the model cards and the DSD studies."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["markdown_table"]

_MARKS = {"<": ":---", ">": "---:"}


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    """The lines of a Markdown table; ``align`` has a ``"<"`` or ``">"`` per column, or is empty.

    A cell is one line without bars, so a ``|`` in it is escaped and a line break becomes a space.
    """

    def line(cells: Sequence[str]) -> str:
        texts = (cell.replace("|", "\\|").replace("\n", " ") for cell in cells)
        return "|" + "|".join(f" {text} " if text else " " for text in texts) + "|"

    marks = [_MARKS[a] for a in align] if align else ["---"] * len(headers)
    return [line(headers), "|" + "|".join(marks) + "|", *(line(row) for row in rows)]
