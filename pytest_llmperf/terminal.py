"""The end-of-run table: one row per benchmark and backend, readable at 100 columns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["format_table"]

_COLUMNS = (
    # header, metric, statistic, scale, format
    ("TTFT p50 ms", "ttft_s", "median", 1e3, "{:.1f}"),
    ("TPOT p50 ms", "tpot_s", "median", 1e3, "{:.2f}"),
    ("decode tok/s", "decode_tps", "median", 1.0, "{:.1f}"),
    ("s/token", "sec_per_token", "median", 1.0, "{:.4f}"),
    ("out tok", "output_tokens", "median", 1.0, "{:.0f}"),
)


def _cell(stats: dict[str, Any], metric: str, stat: str, scale: float, fmt: str) -> str:
    value = stats.get(metric, {}).get(stat)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return str(fmt.format(float(value) * scale))


def _label(result: dict[str, Any]) -> str:
    test = result["nodeid"].split("::", 1)[-1]
    test = test.split("[", 1)[0]  # the backend has its own column
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
    fixed = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(2, len(header))]
    room = max(20, width - sum(fixed) - 2 * (len(header) - 1))
    test_w = min(max(len(header[0]), *(len(r[0]) for r in rows)), room * 3 // 5)
    backend_w = min(max(len(header[1]), *(len(r[1]) for r in rows)), room - test_w)
    widths = [test_w, backend_w, *fixed]

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
