"""matplotlib figures rendered to inline SVG for the HTML reports.

Figures are built with :class:`matplotlib.figure.Figure` directly, never ``pyplot``: no global
figure registry, no GUI backend, safe to call from any thread. matplotlib is imported only when a
report is drawn, so runs that write no HTML do not pay for it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["new_figure", "to_svg"]


def new_figure(width_in: float = 6.4, height_in: float = 3.2) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), layout="constrained")


def to_svg(figure: Figure, *, title: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog) with an accessible title."""
    import matplotlib

    buffer = io.StringIO()
    # A fixed salt keeps element ids stable between runs; text stays text (searchable, smaller).
    with matplotlib.rc_context({"svg.hashsalt": "pytest-llmperf", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Title": title})
    text = buffer.getvalue()
    return text[text.index("<svg") :]
