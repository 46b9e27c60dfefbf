"""The HTML report's charts: matplotlib figures (see :mod:`._charts`) as inline SVG.

Labels come from test names and backend specs, which anyone can choose: matplotlib escapes them
for XML, and ``$`` is escaped so a name is never parsed as mathtext. Element ids are prefixed
per chart, so several SVGs in one page never share an id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ._charts import new_figure, to_svg
from ._report_data import Point

__all__ = ["Panel", "distribution_chart", "tradeoff_chart"]

CURRENT = "#2563eb"
BASELINE = "#9ca3af"
_ID = re.compile(r'\bid="([^"]+)"')


@dataclass(frozen=True)
class Panel:
    title: str  # "TPOT (ms)"
    current: Sequence[float]
    baseline: Sequence[float]
    baseline_label: str = "baseline"


def _plain(text: str) -> str:
    return text.replace("$", r"\$")


def _scoped(svg: str, prefix: str) -> str:
    for name in dict.fromkeys(_ID.findall(svg)):
        scoped = f"{prefix}-{name}"
        svg = svg.replace(f'id="{name}"', f'id="{scoped}"')
        svg = svg.replace(f"url(#{name})", f"url(#{scoped})")
        svg = svg.replace(f'href="#{name}"', f'href="#{scoped}"')
    return svg


def _style(ax: object) -> None:
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    ax.grid(True, color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)


def tradeoff_chart(points: Sequence[Point], *, chart_id: str) -> str | None:
    """Seconds per token (x) against quality % (y), one labelled point per backend; ``None``
    when no backend has both."""
    both = [p for p in points if p.sec_per_token is not None and p.quality is not None]
    if not both:
        return None
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    for p in both:
        assert p.sec_per_token is not None and p.quality is not None
        ax.scatter([p.sec_per_token], [p.quality], s=48, color=CURRENT, zorder=3)
        ax.annotate(
            _plain(p.backend_id),
            (p.sec_per_token, p.quality),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=8,
        )
    ax.set_xlabel("seconds per token (median; lower is faster)", fontsize=9)
    ax.set_ylabel("quality % (mean judge score)", fontsize=9)
    ax.set_ylim(-5, 105)
    ax.set_xlim(left=0, right=max(p.sec_per_token or 0.0 for p in both) * 1.35 or 1.0)
    title = "Seconds per token against quality, per backend"
    return _scoped(to_svg(fig, title=title), chart_id)


def _horizontal() -> dict[str, object]:
    import matplotlib

    major, minor = (int(part) for part in matplotlib.__version__.split(".")[:2])
    # ``vert`` is deprecated from 3.10, which added ``orientation``.
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def distribution_chart(panels: Sequence[Panel], *, title: str, chart_id: str) -> str | None:
    """One panel per metric: box and points of the current samples and the baseline's."""
    import numpy as np

    shown = [p for p in panels if p.current or p.baseline]
    if not shown:
        return None
    fig = new_figure(3.3 * len(shown), 1.9)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    rng = np.random.default_rng(0)  # the same jitter on every run
    for ax, panel in zip(axes, shown, strict=True):
        _style(ax)
        groups = [
            (_plain(panel.baseline_label), panel.baseline, BASELINE),
            ("current", panel.current, CURRENT),
        ]
        groups = [g for g in groups if g[1]]
        for y, (_, values, colour) in enumerate(groups, start=1):
            ax.boxplot(
                [list(values)],
                positions=[y],
                **_horizontal(),
                widths=0.55,
                showfliers=False,
                medianprops={"color": colour, "linewidth": 2},
                boxprops={"color": "#4b5563"},
                whiskerprops={"color": "#4b5563"},
                capprops={"color": "#4b5563"},
            )
            jitter = rng.uniform(-0.16, 0.16, len(values))
            ax.scatter(list(values), y + jitter, s=9, color=colour, alpha=0.6, zorder=3)
        ax.set_yticks(range(1, len(groups) + 1), [g[0] for g in groups])
        ax.set_ylim(0.4, len(groups) + 0.6)
        ax.set_title(_plain(panel.title), fontsize=9)
    return _scoped(to_svg(fig, title=title), chart_id)
