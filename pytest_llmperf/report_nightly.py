"""``llmperf report DIR``: the nightly page over a run history.

One chart per benchmark + backend (a panel per metric: per-night medians, the levels between
steps, a vertical line and a date / commit label at each step, a cross on nights the gate said
REGRESSION), the last nights' regressions with the commit of the night they appeared, every
detected step, and the nights themselves. Rendered by jinja2 with autoescaping; charts are
matplotlib SVG inlined; a Content-Security-Policy forbids scripts and fetches, so the page is
self-contained and works offline. Steps come from :mod:`pytest_llmperf.steps`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._charts import new_figure, to_svg
from ._nightly import TITLES, Finding, Group, Series, analyse, findings
from .history import HistoryRun
from .merge import machine_label
from .steps import MIN_CHANGE, MIN_SEGMENT

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["DEFAULT_MAX_CHARTS", "DEFAULT_RECENT", "render_nightly"]

#: Nights whose regressions the table lists by default.
DEFAULT_RECENT = 7
#: Charts drawn for unchanged benchmarks, at most (changed ones are always drawn).
DEFAULT_MAX_CHARTS = 100
_COLUMNS = 3
_WORSE, _BETTER, _LINE = "#c62828", "#2e7d32", "#1f5fa8"


def _scale(metric: str) -> tuple[float, str]:
    if metric == "quality":
        return 1.0, "0-100"
    if metric == "sec_per_token":
        return 1.0, "s"
    if metric == "throughput_rps":
        return 1.0, "req/s"
    return (1e3, "ms") if metric.endswith("_s") else (1.0, "tok/s")


def _ticks(runs: Sequence[HistoryRun]) -> tuple[list[int], list[str]]:
    every = max(1, len(runs) // 6)
    at = list(range(0, len(runs), every))
    return at, [f"{runs[i].created:%m-%d}" for i in at]


def _panel(ax: Axes, s: Series, runs: Sequence[HistoryRun]) -> None:
    scale, unit = _scale(s.metric)
    ys = [v * scale for v in s.values]
    ax.plot(s.nights, ys, marker="o", markersize=3, linewidth=1, color=_LINE)
    if s.steps:
        edges = [0, *(step.index for step in s.steps), len(s.values)]
        levels = [s.steps[0].before, *(step.after for step in s.steps)]
        for (a, b), level in zip(itertools.pairwise(edges), levels, strict=True):
            x0, x1 = s.nights[a] - 0.4, s.nights[b - 1] + 0.4
            ax.hlines(level * scale, x0, x1, colors="#777777", linestyles="dashed", linewidth=1)
    for step in s.steps:
        night = s.nights[step.index]
        color = _WORSE if s.worse(step) else _BETTER
        ax.axvline(night - 0.5, color=color, linewidth=1.5)
        change = f"{step.change:+.1f}" if s.metric == "quality" else f"{step.change:+.0%}"
        label = f"{runs[night].created:%m-%d} {runs[night].commit[:7]} {change}"
        ax.annotate(
            label,
            (night - 0.5, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            fontsize=7,
            color=color,
            parse_math=False,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )
    marked = [(n, y) for n, y in zip(s.nights, ys, strict=True) if n in s.gate_regressions]
    if marked:
        xs, ms = zip(*marked, strict=True)
        ax.plot(xs, ms, linestyle="none", marker="x", markersize=7, color=_WORSE)
    ax.set_title(f"{TITLES[s.metric]} ({unit})", fontsize=9, parse_math=False)
    ax.tick_params(labelsize=7)
    ax.set_xlim(-0.5, len(runs) - 0.5)
    at, labels = _ticks(runs)
    ax.set_xticks(at, labels)
    ax.grid(alpha=0.3)


def _panels(group: Group) -> list[Series]:
    """The primary latency, TTFT, load throughput and quality, plus any metric with a step or
    a gate REGRESSION (decode tok/s and seconds per token mostly mirror TPOT and e2e: they are
    drawn when they say more)."""
    primary = "tpot_s" if "tpot_s" in group.series else "e2e_s"
    return [
        s
        for metric, s in group.series.items()
        if metric in (primary, "ttft_s", "throughput_rps", "quality")
        or s.steps
        or s.gate_regressions
    ]


def _chart(group: Group, runs: Sequence[HistoryRun]) -> str:
    panels = _panels(group)
    rows = -(-len(panels) // _COLUMNS)
    cols = min(len(panels), _COLUMNS)
    figure = new_figure(3.2 * cols, 2.3 * rows)
    # Placed by hand: constrained layout measures every tick label and would take most of the
    # time of a report with dozens of charts.
    figure.set_layout_engine("none")
    width, height = 1 / cols, 1 / rows
    for index, series in enumerate(panels):
        row, col = divmod(index, cols)
        rect = (
            (col + 0.16) * width,
            1 - (row + 1) * height + 0.14 * height,
            0.78 * width,
            0.7 * height,
        )
        _panel(figure.add_axes(rect), series, runs)
    return to_svg(figure, title=group.title)


def _changed(group: Group) -> bool:
    return any(s.steps or s.gate_regressions for s in group.series.values())


def _nights(runs: Sequence[HistoryRun]) -> list[dict[str, Any]]:
    out = []
    for run in reversed(runs):
        verdicts = Counter(
            (r.get("gate") or {}).get("verdict") for r in run.document.get("results", [])
        )
        verdicts.pop(None, None)
        sources = run.document.get("sources") or [{"environment": run.document.get("environment")}]
        out.append(
            {
                "created": f"{run.created:%Y-%m-%d %H:%M}",
                "commit": run.commit,
                "file": run.path.name,
                "results": len(run.document.get("results", [])),
                "machines": ", ".join(
                    sorted({machine_label(s.get("environment")) for s in sources})
                ),
                "verdicts": ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())),
            }
        )
    return out


def render_nightly(
    runs: Sequence[HistoryRun],
    problems: Sequence[str] = (),
    *,
    recent: int = DEFAULT_RECENT,
    min_change: float = MIN_CHANGE,
    min_segment: int = MIN_SEGMENT,
    title: str = "pytest-llmperf nightly",
    max_charts: int = DEFAULT_MAX_CHARTS,
) -> str:
    """The nightly page for ``runs`` (oldest first); ``problems`` are the files skipped.

    Every benchmark + backend with a step or a gate REGRESSION gets a chart; the others do
    until there are ``max_charts`` (each takes a fifth of a second to draw), and the page
    lists the ones left out.
    """
    import jinja2
    from markupsafe import Markup

    groups = analyse(runs, min_change=min_change, min_segment=min_segment)
    gates, steps = findings(runs, groups)
    first_recent = max(0, len(runs) - recent)
    regressions: list[Finding] = [
        f for f in [*gates, *steps] if f.worse and f.night >= first_recent
    ]
    regressions.sort(key=lambda f: (-f.night, f.bench, f.backend_id, f.metric, f.kind))
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_llmperf", "templates"),
        autoescape=True,  # on whatever the template's file name
        undefined=jinja2.StrictUndefined,
    )
    # What changed comes first (sorted() is stable: the rest stay in name order) and is always
    # drawn; unchanged benchmarks fill up to max_charts.
    drawn = sorted((g for g in groups if g.series), key=lambda g: not _changed(g))
    left_out = drawn[max(max_charts, sum(map(_changed, drawn))) :]
    drawn = drawn[: len(drawn) - len(left_out)]
    charts = [
        {
            "bench": group.bench,
            "backend_id": group.backend_id,
            "svg": Markup(_chart(group, runs)),
            "steps": sum(len(s.steps) for s in group.series.values()),
            "regressions": len({n for s in group.series.values() for n in s.gate_regressions}),
            "wide": len(_panels(group)) > 2,
            "notes": [f"{TITLES[m]}: {s.note}" for m, s in group.series.items() if s.note],
        }
        for group in drawn
    ]
    return env.get_template("nightly.html.j2").render(
        title=title,
        runs=len(runs),
        first=f"{runs[0].created:%Y-%m-%d}" if runs else "-",
        last=f"{runs[-1].created:%Y-%m-%d}" if runs else "-",
        recent=min(recent, len(runs)),
        regressions=regressions,
        steps=steps,
        charts=charts,
        left_out=[group.title for group in left_out],
        nights=_nights(runs),
        problems=list(problems),
        min_change=min_change,
        min_segment=min_segment,
    )
