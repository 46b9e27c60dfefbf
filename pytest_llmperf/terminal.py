"""The end-of-run table: one row per benchmark and backend, readable at 100 columns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["format_table"]

_COLUMNS = (
    # header, metric, statistic, scale, format
    ("TTFT ms", "ttft_s", "median", 1e3, "{:.1f}"),
    ("TPOT ms", "tpot_s", "median", 1e3, "{:.2f}"),
    ("tok/s", "decode_tps", "median", 1.0, "{:.1f}"),
    ("s/token", "sec_per_token", "median", 1.0, "{:.4f}"),
    ("tokens", "output_tokens", "median", 1.0, "{:.0f}"),
)


def _cell(stats: dict[str, Any], metric: str, stat: str, scale: float, fmt: str) -> str:
    value = stats.get(metric, {}).get(stat)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(float(value) * scale)


def _label(result: dict[str, Any]) -> str:
    nodeid: str = result["nodeid"]
    test = nodeid.split("::", 1)[-1].split("[", 1)[0]  # the backend has its own column
    if result["name"] and result["name"] != test:
        test = f"{test}:{result['name']}"
    return test


def format_table(results: Sequence[dict[str, Any]], width: int = 100) -> list[str]:
    """Rows sorted by test then backend; long test and backend names are shortened."""
    if not results:
        return []
    rows = [
        [_label(r), r["backend_id"], str(r["runs"])]
        + [_cell(r["stats"], m, s, k, f) for _, m, s, k, f in _COLUMNS]
        for r in sorted(results, key=lambda r: (r["nodeid"], r["name"], r["backend"]))
    ]
    header = ["test", "backend", "runs"] + [c[0] for c in _COLUMNS]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    # Shorten names only when the row would not fit: the test column first, down to 24.
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for col, floor in ((0, 24), (1, 20)):
        cut = min(max(excess, 0), max(widths[col] - floor, 0))
        widths[col] -= cut
        excess -= cut

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: w - 1] + "…"

    def line(cells: Sequence[str]) -> str:
        out = [
            fit(c, w).ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    lines = [line(header), "-" * len(line(header))]
    lines.extend(line(r) for r in rows)
    return lines
