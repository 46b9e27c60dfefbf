"""Plain-text tables for the terminal summary, fitted to the terminal's width."""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["render"]


def render(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    left: Collection[int] = (0, 1),
) -> list[str]:
    """Header, rule and rows; columns in ``left`` are left-aligned, the rest right-aligned.

    When a row would not fit in ``width``, the test column (0) is shortened first, down to 24
    characters, then the backend column (1), down to 20; cut names end in "…".
    """
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for col, floor in ((0, 24), (1, 20)):
        cut = min(max(excess, 0), max(widths[col] - floor, 0))
        widths[col] -= cut
        excess -= cut

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
            cell = cell if len(cell) <= w else cell[: w - 1] + "…"
            out.append(cell.ljust(w) if i in left else cell.rjust(w))
        return "  ".join(out).rstrip()

    head = line(header)
    return [head, "-" * len(head), *(line(r) for r in rows)]
