"""The table of ``--llm-x`` options: each one's ini key, help text, default and parser.

:mod:`.settings` turns this table into pytest options and resolves values (CLI > ini > default).
A parser raises ``ValueError`` with what is valid; the resolver adds where the value came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from .bench import DEFAULT_MAX_ERROR_RATE
from .gate import parse_tolerances
from .judge import DEFAULT_JUDGE
from .limits import (
    MAX_BASELINE_KEEP,
    MAX_JUDGE_REPEATS,
    MAX_RUNS,
    MAX_SECONDS,
    MAX_WARMUP,
    check_seconds,
)
from .numeric import parse_number
from .options import parse_bool
from .quality_gate import DEFAULT_MARGIN
from .suite import packaged_suites, parse_suite_names

__all__ = [
    "ALPHA_RANGE",
    "DEFAULT_LOOKS",
    "DEFAULT_WARMUP",
    "FAIL_ON",
    "PROGRESS",
    "SETTINGS",
    "SLO_METRICS",
    "Setting",
    "parse_slo",
]

DEFAULT_LOOKS = (10, 20, 40)
DEFAULT_WARMUP = 1
FAIL_ON = ("both", "latency", "quality", "none")
PROGRESS = ("auto", "on", "off")
SLO_METRICS = ("ttft_s", "tpot_s", "e2e_s")
#: ``--llm-alpha``'s range. Below 1e-6, the per-test level (alpha split across the session's
#: comparisons and looks) reaches where 1 - level rounds to 1 in a float and no feasible number
#: of samples can ever be significant; above 0.5 a "regression" is a coin toss.
ALPHA_RANGE = (1e-6, 0.5)


@dataclass(frozen=True)
class Setting:
    name: str  # ini key; the CLI flag is the same with dashes
    help: str
    default: Any
    parse: Callable[[str], Any]
    metavar: str = ""  # empty: an on/off flag (store_true; ini true/false)
    repeat: bool = False  # the flag may be given again; its values join with commas

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _count(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        valid = f"expected a whole number >= {minimum} and <= {maximum}"
        try:
            value = int(text)
        except ValueError:
            raise ValueError(valid) from None
        if not minimum <= value <= maximum:
            raise ValueError(valid)
        return value

    return parse


def _runs(text: str) -> int | None:
    """``auto`` (sequential looks) is ``None``; otherwise a fixed count."""
    return None if text.lower() == "auto" else _count(1, MAX_RUNS)(text)


def _looks(text: str) -> tuple[int, ...]:
    try:
        looks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("expected increasing sample counts, e.g. 10,20,40") from None
    if not looks or looks[0] < 3 or any(b <= a for a, b in pairwise(looks)):
        raise ValueError("expected increasing sample counts >= 3, e.g. 10,20,40")
    if looks[-1] > MAX_RUNS:
        raise ValueError(f"expected sample counts <= {MAX_RUNS}")
    return looks


def _ranged(low: float, high: float, valid: str) -> Callable[[str], float]:
    """A number from ``low`` to ``high``; anything else (``nan`` and ``inf`` too) is refused
    with ``valid``."""

    def parse(text: str) -> float:
        try:
            return parse_number(text, what="value", low=low, high=high)
        except ValueError:
            raise ValueError(f"expected {valid}") from None

    return parse


_alpha = _ranged(*ALPHA_RANGE, f"a number from {ALPHA_RANGE[0]:g} to {ALPHA_RANGE[1]:g}")
_RATE_VALID = "a fraction from 0 up to (not including) 1"


def _rate(text: str) -> float:
    value = _ranged(0.0, 1.0, _RATE_VALID)(text)
    if value == 1.0:  # a rate of 1 would let every request fail
        raise ValueError(f"expected {_RATE_VALID}")
    return value


_margin = _ranged(0.0, 100.0, "a number of points from 0 to 100")


def parse_slo(text: str) -> dict[str, float]:
    """``ttft_s=0.5,tpot_s=0.05``: per-request limits in seconds, all of which a request must
    meet to count towards goodput."""
    slo: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in SLO_METRICS:
            raise ValueError(f"expected METRIC=SECONDS with METRIC one of {', '.join(SLO_METRICS)}")
        try:
            seconds = check_seconds(float(value), what=name)
        except ValueError:
            raise ValueError(
                f"{name}: expected a number of seconds > 0 and <= {MAX_SECONDS:g}"
            ) from None
        slo[name] = seconds
    return slo


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


SETTINGS = (
    Setting(
        "llm_runs",
        "timed generations per benchmark: a number, or 'auto' (default) to sample in looks "
        "(--llm-looks) and stop as soon as the comparison is clear; "
        "@pytest.mark.llm_perf(runs=N) overrides per test",
        None,
        _runs,
        "N|auto",
    ),
    Setting(
        "llm_looks",
        "sample counts at which --llm-runs=auto looks at the comparison (default 10,20,40); "
        "without a comparison the first is used, and the last when saving a baseline",
        DEFAULT_LOOKS,
        _looks,
        "N,N,...",
    ),
    Setting(
        "llm_warmup",
        f"untimed warm-up generations before each benchmark (default {DEFAULT_WARMUP})",
        DEFAULT_WARMUP,
        _count(0, MAX_WARMUP),
        "N",
    ),
    Setting(
        "llm_json",
        "write every result, with raw samples and the environment, to this JSON file",
        None,
        Path,
        "PATH",
    ),
    Setting(
        "llm_baseline_dir",
        "where baselines are stored (default: baselines/ in the rootdir)",
        None,
        Path,
        "DIR",
    ),
    Setting(
        "llm_save_baseline",
        "store this run's samples as the baseline of every benchmark that ran",
        False,
        parse_bool,
    ),
    Setting(
        "llm_baseline_keep",
        "stored runs kept per benchmark and pooled as its baseline (default 3)",
        3,
        _count(1, MAX_BASELINE_KEEP),
        "K",
    ),
    Setting(
        "llm_no_compare",
        "do not compare with stored baselines even where they exist",
        False,
        parse_bool,
    ),
    Setting(
        "llm_compare_to",
        "relative mode: run this reference backend in the same job, interleaved with each "
        "benchmarked backend, and gate on the difference (recommended on shared CI runners)",
        None,
        str,
        "SPEC",
    ),
    Setting(
        "llm_compare_across_machines",
        "compare with a baseline stored on a different machine or software stack (loudly)",
        False,
        parse_bool,
    ),
    Setting(
        "llm_tolerance",
        # argparse %-formats help text, hence the doubled percent signs.
        "allowed slowdown per metric, e.g. 'ttft_s=15%%,tpot_s=5%%' (defaults: tpot_s and "
        "e2e_s 5%%, ttft_s 10%%)",
        {},
        parse_tolerances,
        "METRIC=PCT,...",
    ),
    Setting(
        "llm_alpha",
        "family-wise error rate across all gated comparisons of the session (default 0.05)",
        0.05,
        _alpha,
        "ALPHA",
    ),
    Setting(
        "llm_no_confirm",
        "fail on the first REGRESSION instead of re-running the benchmark once to confirm it",
        False,
        parse_bool,
    ),
    Setting(
        "llm_max_error_rate",
        "share of requests per benchmark that may fail transiently (429, 5xx, timeouts, cut "
        f"streams) before the test errors; failures are counted, never sampled (default "
        f"{DEFAULT_MAX_ERROR_RATE:g}, at least 2 allowed)",
        DEFAULT_MAX_ERROR_RATE,
        _rate,
        "RATE",
    ),
    Setting(
        "llm_prices",
        "JSON price table (USD per 1M input/output tokens) whose entries override the "
        "built-in one, for cost per request of API backends",
        None,
        Path,
        "PATH",
    ),
    Setting(
        "llm_fail_on",
        "which regressions fail the run: both (default: latency and quality against the "
        "baseline), latency, quality, or none (report only)",
        "both",
        _choice(FAIL_ON),
        "WHAT",
    ),
    Setting(
        "llm_quality_margin",
        "points (0-100 score) the mean judge score may drop against the quality baseline "
        f"before it counts as a regression (default {DEFAULT_MARGIN:g})",
        DEFAULT_MARGIN,
        _margin,
        "POINTS",
    ),
    Setting(
        "llm_rejudge_baseline",
        "grade the stored baseline answers again with this run's judge, so both sides of the "
        "quality comparison come from the same judge (also allows a judge change)",
        False,
        parse_bool,
    ),
    Setting(
        "llm_judge",
        f"backend spec of the LLM judge behind llm_judge and @pytest.mark.llm_quality (default "
        f"{DEFAULT_JUDGE}); 'none' turns judging off. Tests that need a judge that cannot start "
        "are skipped with the reason",
        DEFAULT_JUDGE,
        str,
        "SPEC",
    ),
    Setting(
        "llm_judge_repeats",
        "judge each answer N times and report the mean score and its spread (default 1)",
        1,
        _count(1, MAX_JUDGE_REPEATS),
        "N",
    ),
    Setting(
        "llm_judge_no_cache",
        "ask the judge every time instead of reusing verdicts cached on disk",
        False,
        parse_bool,
    ),
    Setting(
        "llm_suite",
        "also run this YAML suite shipped with the plugin (repeat, or NAME,NAME; shipped: "
        f"{', '.join(packaged_suites())}); with no path arguments, only the suites run",
        (),
        parse_suite_names,
        "NAME",
        repeat=True,
    ),
    Setting(
        "llm_html",
        "write a self-contained HTML report (regressions first, tables with baseline deltas, "
        "charts, distributions, environment) to this file",
        None,
        Path,
        "PATH",
    ),
    Setting(
        "llm_markdown",
        "write a compact Markdown summary (verdict counts, regressions, a small table) to this "
        "file, e.g. $GITHUB_STEP_SUMMARY",
        None,
        Path,
        "PATH",
    ),
    Setting(
        "llm_benchmark_json",
        "also write the results in pytest-benchmark's JSON format (for pytest-benchmark "
        "compare, github-action-benchmark)",
        None,
        Path,
        "PATH",
    ),
    Setting(
        "llm_history",
        "append this run's results to a history directory, one new file per run (read by "
        "'llmperf report DIR')",
        None,
        Path,
        "DIR",
    ),
    Setting(
        "llm_progress",
        "show which benchmark and sample is running: auto (default: on an interactive "
        "terminal, not under -q nor in CI), on, off",
        "auto",
        _choice(PROGRESS),
        "WHEN",
    ),
    Setting(
        "llm_slo",
        "service-level objectives for load benchmarks' goodput, e.g. 'ttft_s=0.5,tpot_s=0.05' "
        f"(metrics: {', '.join(SLO_METRICS)})",
        {},
        parse_slo,
        "METRIC=S,...",
    ),
    Setting(
        "llm_device_groups",
        "pin each backend to one xdist worker (an xdist_group per backend; run with "
        "-n N --dist loadgroup), so backends sharing a device never run at once",
        False,
        parse_bool,
    ),
)
