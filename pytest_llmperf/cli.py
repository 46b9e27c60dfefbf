"""The ``llmperf`` command: read, compare, merge and chart pytest-llmperf result files.

    llmperf show FILE                      a result file as the terminal summary's table
    llmperf compare A.json B.json          the gate's statistics, B (candidate) against A
    llmperf merge A.json B.json -o M.json  several machines' / CI jobs' results as one file
    llmperf report DIR -o nightly.html     the nightly page over an --llm-history directory

Exit status: 0 done, 1 ``compare`` found a regression, 2 a usage or input error (a missing,
corrupt or wrongly shaped file, an empty history), always with a one-line message naming the
file, never a traceback. Output files are written atomically. What is printed comes from the
files, so it is printed defanged: control characters (a terminal's escape sequences) and text
the terminal cannot encode are shown escaped, never sent raw.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from ._compare_files import FileComparison, compare_documents
from ._table import render
from .errors import ResultsFileError
from .gate import DIRECTIONS, Verdict, parse_tolerances
from .history import load_history, read_document, read_json
from .merge import machine_label, merge_documents
from .numeric import parse_number
from .results import write_json_atomic, write_text_atomic

__all__ = ["main"]


class _Exit(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so :func:`main` returns a status when called in-process."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _Exit(status, message or "")

    def error(self, message: str) -> NoReturn:
        raise _Exit(2, f"{self.format_usage()}{self.prog}: error: {message}\n")


# Option values go through numeric.parse_number, as the plugin's do: finite, in range, one
# message; argparse puts the option's name in front of it.


def _fraction(text: str) -> float:
    try:
        return parse_number(text, what="value", low=0.0, high=9.99, percent=True)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a percentage from 0% to 999% like 5% or 0.05, not {text!r}"
        ) from None


#: Counts and widths beyond this are typing mistakes, not settings.
_MAX_OPTION_COUNT = 1_000_000


def _positive(text: str) -> int:
    try:
        value = parse_number(text, what="value", low=1, high=_MAX_OPTION_COUNT, integer=True)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {_MAX_OPTION_COUNT}, not {text!r}"
        ) from None
    return int(value)


def _alpha(text: str) -> float:
    try:
        return parse_number(text, what="value", low=0.0, low_open=True, high=0.5)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 0.5], not {text!r}") from None


def _tolerances(text: str) -> dict[str, float]:
    try:
        return parse_tolerances(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> _Parser:
    parser = _Parser(
        prog="llmperf",
        description="Read, compare, merge and chart pytest-llmperf result files.",
        epilog="Exit status: 0 ok, 1 regression found (compare), 2 usage or input error.",
    )
    parser.add_argument("--version", action="version", version=version("pytest-llmperf"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    show = sub.add_parser("show", help="print a result file as a table")
    show.add_argument("file", type=Path, help="a --llm-json, history or merged file")
    show.add_argument("--width", type=_positive, help="table width (default: the terminal's)")

    cmp = sub.add_parser(
        "compare",
        help="B against A with the gate's statistics",
        description="Compare each benchmark + backend of CURRENT against BASELINE with the "
        "gate's one-sided U tests on shifted samples, Holm-adjusted over all comparisons. "
        "Exit 1 if any metric regressed.",
    )
    cmp.add_argument("baseline", type=Path, help="A: the baseline result file")
    cmp.add_argument("current", type=Path, help="B: the candidate result file")
    cmp.add_argument(
        "--tolerance",
        type=_tolerances,
        default={},
        metavar="METRIC=PCT,...",
        help="allowed slowdown per metric (defaults: tpot_s, e2e_s 5%%, ttft_s 10%%)",
    )
    cmp.add_argument(
        "--alpha", type=_alpha, default=0.05, help="family-wise error rate (default 0.05)"
    )
    cmp.add_argument(
        "--drift",
        type=_fraction,
        default=None,
        metavar="PCT",
        help="widen tolerances to this between-run drift (default: the gate's allowance for "
        "a one-run stored baseline, 30%%; 0 for files measured side by side)",
    )
    cmp.add_argument(
        "--metric",
        action="append",
        choices=sorted(DIRECTIONS),
        default=[],
        metavar="METRIC",
        help="metric to compare, repeatable: " + ", ".join(sorted(DIRECTIONS)) + " (default: "
        "what the gate compared in B, else its TPOT or e2e, and TTFT)",
    )
    cmp.add_argument(
        "--force", action="store_true", help="compare even where the backends' strict keys differ"
    )
    cmp.add_argument("--width", type=_positive, help="table width (default: the terminal's)")

    merge = sub.add_parser("merge", help="merge result files from several machines or jobs")
    merge.add_argument("files", type=Path, nargs="+", help="two or more result files")
    merge.add_argument("-o", "--output", type=Path, required=True, help="the merged file")

    report = sub.add_parser("report", help="the nightly HTML page over an --llm-history DIR")
    report.add_argument("directory", type=Path, help="the --llm-history directory")
    report.add_argument(
        "-o", "--output", type=Path, default=Path("nightly.html"), help="default: nightly.html"
    )
    report.add_argument(
        "--recent", type=_positive, default=7, help="nights whose regressions are listed (7)"
    )
    report.add_argument("--last", type=_positive, help="only the last N nights (default: all)")
    report.add_argument(
        "--min-change",
        type=_fraction,
        default=0.05,
        metavar="PCT",
        help="smallest step reported (default 5%%; quality: 5 points)",
    )
    report.add_argument(
        "--min-nights",
        type=_positive,
        default=3,
        help="nights a new level must hold to count as a step (default 3)",
    )
    report.add_argument(
        "--max-charts",
        type=_positive,
        default=100,
        help="charts drawn at most for unchanged benchmarks; changed ones are always drawn "
        "(default 100)",
    )
    report.add_argument("--title", default="pytest-llmperf nightly", help="page title")
    return parser


#: What a reader may trip over in a file's content that the document checks did not foresee.
#: ArithmeticError and RecursionError too: a number or a nesting the checks let through must
#: still end as one line naming the files, not a traceback.
_CONTENT_ERRORS = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    ArithmeticError,
    RecursionError,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``llmperf`` command; returns the exit status."""
    parser = _parser()
    args = None
    try:
        args = parser.parse_args(argv)
        handler = {"show": _show, "compare": _compare, "merge": _merge, "report": _report}
        return handler[args.command](args)
    except _Exit as exc:
        (sys.stderr if exc.status else sys.stdout).write(exc.message)
        return exc.status
    except ResultsFileError as exc:
        _error(str(exc))
        return 2
    except _CONTENT_ERRORS as exc:
        # The document checks should have refused the file already; still one line naming
        # the inputs, no traceback, for a shape they do not know of.
        text = str(exc) if len(str(exc)) <= 300 else str(exc)[:297] + "..."
        _error(
            f"{_inputs(args)}: content this version cannot read ({type(exc).__name__}: "
            f"{text}); is it a pytest-llmperf results file?"
        )
        return 2


def _inputs(args: argparse.Namespace | None) -> str:
    """The input files (or history directory) of the command, for the backstop's line."""
    if args is None:
        return "input"
    names = {"show": ("file",), "compare": ("baseline", "current"), "report": ("directory",)}
    paths: list[Path] = (
        args.files if args.command == "merge" else [getattr(args, n) for n in names[args.command]]
    )
    return ", ".join(map(str, paths))


# C0 and C1 controls but newline and tab (the output's own layout), as \xNN: a file's names
# must not move the cursor, clear the screen or retitle the terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (9, 10)}
_ONE_LINE = {**_CONTROLS, 10: "\\n", 9: "\\t"}


def _safe(text: str, stream: Any, table: dict[int, str]) -> str:
    """``text`` without control characters, and encodable by ``stream`` (a lone surrogate, or
    a name a non-UTF-8 console cannot show, becomes a backslash escape, not a crash)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.translate(table).encode(encoding, "backslashreplace").decode(encoding)


def _say(lines: Sequence[str]) -> None:
    sys.stdout.write(_safe("\n".join(lines), sys.stdout, _CONTROLS) + "\n")


def _error(message: str, kind: str = "error") -> None:
    """One line on stderr, whatever the message holds (a file name with a newline in it)."""
    sys.stderr.write(f"llmperf: {kind}: {_safe(message, sys.stderr, _ONE_LINE)}\n")


def _width(args: argparse.Namespace) -> int:
    return int(args.width or shutil.get_terminal_size((100, 24)).columns)


def _write(path: Path, write: Any, what: Any) -> None:
    try:
        write(path, what)
    except (OSError, ValueError) as exc:
        raise ResultsFileError(f"cannot write {path}: {exc}") from None


def _show(args: argparse.Namespace) -> int:
    from ._show import show_lines

    document = read_document(args.file)
    _say(show_lines(document, args.file, _width(args)))
    return 0


def _compare(args: argparse.Namespace) -> int:
    baseline, current = read_document(args.baseline), read_document(args.current)
    result = compare_documents(
        baseline,
        current,
        alpha=args.alpha,
        tolerances=args.tolerance,
        drift=args.drift,
        metrics=args.metric,
        force=args.force,
    )
    _say(_comparison_lines(result, args, _width(args)))
    return 1 if result.regressions else 0


def _level_cell(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if not metric.endswith("_s"):
        return f"{value:.4g}"
    # In seconds where milliseconds would overflow (a median near 1e308 s), not "inf ms".
    ms = value * 1e3
    return f"{ms:.4g} ms" if math.isfinite(ms) else f"{value:.4g} s"


def _comparison_lines(result: FileComparison, args: argparse.Namespace, width: int) -> list[str]:
    lines = [f"baseline (A): {args.baseline}", f"current  (B): {args.current}"]
    if not result.rows:
        lines.append("no benchmark + backend is in both files: nothing to compare")
    table = []
    for row in result.rows:
        a, b = (_level_cell(row.metric, v) for v in (row.baseline_median, row.current_median))
        v = row.verdict
        if v is None:
            cells = ["-", "-", "-", "-", row.reason.split(",")[0].split(" (")[0]]
        elif v.verdict == Verdict.REFUSED or not math.isfinite(v.ratio):
            # No test ran (a baseline of zeros): its reason follows the table, not a NaN.
            cells = ["-", "-", "-", "-", v.verdict]
        else:
            ci = f"{(v.ci_low - 1) * 100:+.0f}%..{(v.ci_high - 1) * 100:+.0f}%"
            p_cell = "-" if row.p_holm is None else f"{row.p_holm:.2g}"
            tol = f"{v.effective_tolerance:.0%}"
            cells = [f"{(v.ratio - 1) * 100:+.1f}%", ci, p_cell, tol, v.verdict]
        test = row.bench.split("::", 1)[-1]  # the file path makes the column too wide
        table.append([test, row.backend_id, row.metric, a, b, *cells])
    if table:
        header = ["test", "backend", "metric", "A median", "B median", "change", "90% CI"]
        header += ["p slower", "tolerance", "verdict"]
        lines += render(header, table, width, left=(0, 1, 2, 9))
    for row in result.rows:
        where = f"{row.bench} [{row.backend_id}] {row.metric}"
        if row.reason:
            lines.append(f"{where}: {row.reason}")
        elif row.verdict and row.verdict.verdict == Verdict.REFUSED:
            lines.append(f"REFUSED {where}: {row.verdict.note or 'no test could run'}")
        elif row.verdict and row.verdict.verdict == Verdict.REGRESSION:
            holm = row.p_holm if row.p_holm is not None else row.verdict.p_slowdown
            lines.append(f"REGRESSION {where}: {row.verdict.describe(holm, 'Holm')}")
        elif row.verdict and row.verdict.verdict == Verdict.IMPROVEMENT:
            count = result.comparisons
            adjusted = min(1.0, row.verdict.p_improvement * count)
            how = f"Bonferroni over {count} comparison(s)"
            lines.append(f"IMPROVEMENT {where}: {row.verdict.describe(adjusted, how)}")
    notes = sorted({row.drift_note for row in result.rows if row.drift_note})
    lines += [f"note: {n}; --drift 0 if A and B ran side by side" for n in notes]
    lines += [f"only in A: {x}" for x in result.only_baseline]
    lines += [f"only in B: {x}" for x in result.only_current]
    counts: dict[str, int] = {}
    for row in result.rows:
        verdict = row.verdict.verdict if row.verdict else "NOT COMPARED"
        counts[verdict] = counts.get(verdict, 0) + 1
    lines.append(
        "llmperf compare: "
        + (", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "nothing compared")
    )
    return lines


def _merge(args: argparse.Namespace) -> int:
    if len(args.files) < 2:
        raise _Exit(2, "llmperf merge: error: give at least two result files to merge\n")
    inputs = [(str(path), read_json(path)) for path in args.files]
    merged = merge_documents(inputs)
    _write(args.output, write_json_atomic, merged)
    machines = sorted({machine_label(s["environment"]) for s in merged["sources"]})
    _say(
        [
            f"llmperf: merged {len(merged['sources'])} run(s) from {len(args.files)} file(s), "
            f"{len(merged['results'])} result(s), machines {', '.join(machines)}, "
            f"into {args.output}"
        ]
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report_nightly import render_nightly

    history = load_history(args.directory)
    for line in history.problems:
        _error(line, "warning")
    if not history.runs:
        skipped = f" ({len(history.problems)} unreadable, listed above)" if history.problems else ""
        raise ResultsFileError(
            f"no readable result files in {args.directory}{skipped}; "
            "run pytest with --llm-history=DIR to add some"
        )
    runs = history.runs[-args.last :] if args.last else history.runs
    html = render_nightly(
        runs,
        history.problems,
        recent=args.recent,
        min_change=args.min_change,
        min_segment=args.min_nights,
        title=args.title,
        max_charts=args.max_charts,
    )
    _write(args.output, write_text_atomic, html)
    _say([f"llmperf: wrote {args.output} ({len(runs)} night(s), {args.directory})"])
    return 0
