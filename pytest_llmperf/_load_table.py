"""The terminal's load table: one row per ``llm_load`` sweep point."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._table import render

__all__ = ["format_load_table"]

_HEADER = [
    "test",
    "backend",
    "ok/sent",
    "req/s",
    "tok/s",
    "TTFT50",
    "TTFT95",
    "TPOT50",
    "good",
    "conc",
    "verdict",
]


def _num(value: Any, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(float(value) * scale)


def _stat(result: dict[str, Any], metric: str, stat: str) -> str:
    return _num(result["stats"].get(metric, {}).get(stat), 1e3)


def _row(r: dict[str, Any]) -> list[str]:
    load = r["load"]
    test = r["nodeid"].split("::", 1)[-1].split("[", 1)[0] + ":" + r["name"]
    share = load["goodput"]["share"]
    gate = r.get("gate")
    return [
        test,
        r["backend_id"],
        f"{load['succeeded']}/{load['requests']}",
        _num(load["throughput_rps"], fmt="{:.2f}"),
        _num(load["output_tps"]),
        _stat(r, "ttft_s", "median"),
        _stat(r, "ttft_s", "p95"),
        _stat(r, "tpot_s", "median"),
        "-" if share is None else f"{share:.0%}",
        _num(load["achieved_concurrency"]),
        gate["verdict"] if gate else "-",
    ]


#: Counts of generations that came back empty or (under ignore_eos) short: columns only where
#: some row has one, so the usual table stays as narrow as before. Files written before the
#: counts existed have neither key.
_COUNTS = ("empty", "short")


def format_load_table(results: Sequence[dict[str, Any]], width: int = 100) -> list[str]:
    """Times in ms; goodput under ``--llm-slo``; conc is the concurrency actually achieved;
    empty and short generations where there are any."""
    loads = [r for r in results if r.get("load")]
    if not loads:
        return []
    rows = [_row(r) for r in loads]
    header = list(_HEADER)
    for key in _COUNTS:
        counts = [r["load"].get(key) or 0 for r in loads]
        if any(counts):
            at = len(header) - 1  # before the verdict
            header.insert(at, key)
            for row, count in zip(rows, counts, strict=True):
                row.insert(at, str(count))
    return render(header, rows, width, {0, 1, len(header) - 1})
