"""Command-line options, their ini mirrors, and resolution in one place.

Every ``--llm-x`` option has an ``llm_x`` ini key (on/off flags take true/false there).
Precedence: command line > environment (only ``LLMPERF_LLM``) > ini > built-in default. A bad
value raises ``pytest.UsageError`` that names the value, where it came from and what is valid.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from .bench import DEFAULT_MAX_ERROR_RATE
from .errors import SpecError
from .gate import DEFAULT_TOLERANCES, parse_tolerances
from .judge import DEFAULT_JUDGE
from .options import parse_bool
from .prices import PriceTable, load_prices
from .quality_gate import DEFAULT_MARGIN
from .spec import DEFAULT_SPEC, LLMSpec, parse_spec
from .suite import packaged_suites, parse_suite_names

__all__ = ["ENV_LLM", "Settings", "add_options"]

ENV_LLM = "LLMPERF_LLM"

DEFAULT_LOOKS = (10, 20, 40)
DEFAULT_WARMUP = 1
FAIL_ON = ("both", "latency", "quality", "none")


@dataclass(frozen=True)
class _Setting:
    name: str  # ini key; the CLI flag is the same with dashes
    help: str
    default: Any
    parse: Callable[[str], Any]
    metavar: str = ""  # empty: an on/off flag (store_true; ini true/false)
    repeat: bool = False  # the flag may be given again; its values join with commas

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number >= {minimum}") from None
        if value < minimum:
            raise ValueError(f"expected a whole number >= {minimum}")
        return value

    return parse


def _runs(text: str) -> int | None:
    """``auto`` (sequential looks) is ``None``; otherwise a fixed count."""
    return None if text.lower() == "auto" else _count(1)(text)


def _looks(text: str) -> tuple[int, ...]:
    try:
        looks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("expected increasing sample counts, e.g. 10,20,40") from None
    if not looks or looks[0] < 3 or any(b <= a for a, b in pairwise(looks)):
        raise ValueError("expected increasing sample counts >= 3, e.g. 10,20,40")
    return looks


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number between 0 and 0.5") from None
    if not 0 < value <= 0.5:
        raise ValueError("expected a number between 0 and 0.5")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a fraction from 0 up to (not including) 1") from None
    if not 0 <= value < 1:
        raise ValueError("expected a fraction from 0 up to (not including) 1")
    return value


def _margin(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number of points from 0 to 100") from None
    if not 0 <= value <= 100:
        raise ValueError("expected a number of points from 0 to 100")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


_SETTINGS = (
    _Setting(
        "llm_runs",
        "timed generations per benchmark: a number, or 'auto' (default) to sample in looks "
        "(--llm-looks) and stop as soon as the comparison is clear; "
        "@pytest.mark.llm_perf(runs=N) overrides per test",
        None,
        _runs,
        "N|auto",
    ),
    _Setting(
        "llm_looks",
        "sample counts at which --llm-runs=auto looks at the comparison (default 10,20,40); "
        "without a comparison the first is used, and the last when saving a baseline",
        DEFAULT_LOOKS,
        _looks,
        "N,N,...",
    ),
    _Setting(
        "llm_warmup",
        f"untimed warm-up generations before each benchmark (default {DEFAULT_WARMUP})",
        DEFAULT_WARMUP,
        _count(0),
        "N",
    ),
    _Setting(
        "llm_json",
        "write every result, with raw samples and the environment, to this JSON file",
        None,
        Path,
        "PATH",
    ),
    _Setting(
        "llm_baseline_dir",
        "where baselines are stored (default: baselines/ in the rootdir)",
        None,
        Path,
        "DIR",
    ),
    _Setting(
        "llm_save_baseline",
        "store this run's samples as the baseline of every benchmark that ran",
        False,
        parse_bool,
    ),
    _Setting(
        "llm_baseline_keep",
        "stored runs kept per benchmark and pooled as its baseline (default 3)",
        3,
        _count(1),
        "K",
    ),
    _Setting(
        "llm_no_compare",
        "do not compare with stored baselines even where they exist",
        False,
        parse_bool,
    ),
    _Setting(
        "llm_compare_to",
        "relative mode: run this reference backend in the same job, interleaved with each "
        "benchmarked backend, and gate on the difference (recommended on shared CI runners)",
        None,
        str,
        "SPEC",
    ),
    _Setting(
        "llm_compare_across_machines",
        "compare with a baseline stored on a different machine or software stack (loudly)",
        False,
        parse_bool,
    ),
    _Setting(
        "llm_tolerance",
        # argparse %-formats help text, hence the doubled percent signs.
        "allowed slowdown per metric, e.g. 'ttft_s=15%%,tpot_s=5%%' (defaults: tpot_s and "
        "e2e_s 5%%, ttft_s 10%%)",
        {},
        parse_tolerances,
        "METRIC=PCT,...",
    ),
    _Setting(
        "llm_alpha",
        "family-wise error rate across all gated comparisons of the session (default 0.05)",
        0.05,
        _alpha,
        "ALPHA",
    ),
    _Setting(
        "llm_no_confirm",
        "fail on the first REGRESSION instead of re-running the benchmark once to confirm it",
        False,
        parse_bool,
    ),
    _Setting(
        "llm_max_error_rate",
        "share of requests per benchmark that may fail transiently (429, 5xx, timeouts, cut "
        f"streams) before the test errors; failures are counted, never sampled (default "
        f"{DEFAULT_MAX_ERROR_RATE:g}, at least 2 allowed)",
        DEFAULT_MAX_ERROR_RATE,
        _rate,
        "RATE",
    ),
    _Setting(
        "llm_prices",
        "JSON price table (USD per 1M input/output tokens) whose entries override the "
        "built-in one, for cost per request of API backends",
        None,
        Path,
        "PATH",
    ),
    _Setting(
        "llm_fail_on",
        "which regressions fail the run: both (default: latency and quality against the "
        "baseline), latency, quality, or none (report only)",
        "both",
        _choice(FAIL_ON),
        "WHAT",
    ),
    _Setting(
        "llm_quality_margin",
        "points (0-100 score) the mean judge score may drop against the quality baseline "
        f"before it counts as a regression (default {DEFAULT_MARGIN:g})",
        DEFAULT_MARGIN,
        _margin,
        "POINTS",
    ),
    _Setting(
        "llm_rejudge_baseline",
        "grade the stored baseline answers again with this run's judge, so both sides of the "
        "quality comparison come from the same judge (also allows a judge change)",
        False,
        parse_bool,
    ),
    _Setting(
        "llm_judge",
        f"backend spec of the LLM judge behind llm_judge and @pytest.mark.llm_quality (default "
        f"{DEFAULT_JUDGE}); 'none' turns judging off. Tests that need a judge that cannot start "
        "are skipped with the reason",
        DEFAULT_JUDGE,
        str,
        "SPEC",
    ),
    _Setting(
        "llm_judge_repeats",
        "judge each answer N times and report the mean score and its spread (default 1)",
        1,
        _count(1),
        "N",
    ),
    _Setting(
        "llm_judge_no_cache",
        "ask the judge every time instead of reusing verdicts cached on disk",
        False,
        parse_bool,
    ),
    _Setting(
        "llm_suite",
        "also run this YAML suite shipped with the plugin (repeat, or NAME,NAME; shipped: "
        f"{', '.join(packaged_suites())}); with no path arguments, only the suites run",
        (),
        parse_suite_names,
        "NAME",
        repeat=True,
    ),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmperf", "LLM latency benchmarks (pytest-llmperf)")
    group.addoption(
        "--llm",
        action="append",
        dest="llm",
        metavar="SPEC",
        default=None,
        help="backend to benchmark, KIND:MODEL[@BASE_URL][?key=value&...]; repeat for side by "
        f"side runs. Also ini 'llm' (one per line) and ${ENV_LLM}. Default: {DEFAULT_SPEC}",
    )
    parser.addini("llm", "backend specs, one per line (see --llm)", type="linelist", default=[])
    for s in _SETTINGS:
        if s.metavar:
            action = "append" if s.repeat else "store"
            group.addoption(
                s.flag, dest=s.name, metavar=s.metavar, default=None, help=s.help, action=action
            )
        else:
            group.addoption(s.flag, dest=s.name, action="store_true", default=None, help=s.help)
        parser.addini(s.name, f"default for {s.flag}", default=None)
    group.addoption(
        "--llm-list-backends",
        action="store_true",
        default=False,
        help="list the backend kinds and their spec options, then exit",
    )


@dataclass(frozen=True)
class Settings:
    specs: tuple[LLMSpec, ...]
    runs: int | None  # None: auto (sequential looks)
    looks: tuple[int, ...]
    warmup: int
    json_path: Path | None
    baseline_dir: Path
    save_baseline: bool
    baseline_keep: int
    compare: bool
    compare_to: LLMSpec | None
    across_machines: bool
    tolerances: Mapping[str, float]
    alpha: float
    confirm: bool
    max_error_rate: float
    prices: PriceTable
    fail_on: str  # both | latency | quality | none
    quality_margin: float
    rejudge_baseline: bool
    judge: LLMSpec | None  # None: judging turned off
    judge_repeats: int
    judge_cache: bool
    suites: tuple[str, ...]  # --llm-suite: packaged suites to collect

    @property
    def fail_on_latency(self) -> bool:
        return self.fail_on in ("both", "latency")

    @property
    def fail_on_quality(self) -> bool:
        return self.fail_on in ("both", "quality")

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        v = {s.name: _resolve(config, s) for s in _SETTINGS}
        json_path = v["llm_json"]
        if json_path is not None:
            json_path = Path(config.invocation_params.dir, json_path)
            if json_path.is_dir():
                raise pytest.UsageError(f"--llm-json={json_path}: is a directory, not a file")
        prices_path = v["llm_prices"]
        try:
            prices = load_prices(
                None if prices_path is None else Path(config.invocation_params.dir, prices_path)
            )
        except SpecError as exc:
            raise pytest.UsageError(f"--llm-prices / ini llm_prices: {exc}") from None
        compare_to = None
        if v["llm_compare_to"]:
            try:
                compare_to = parse_spec(v["llm_compare_to"], "--llm-compare-to")
            except SpecError as exc:
                raise pytest.UsageError(str(exc)) from None
        return cls(
            specs=_resolve_specs(config),
            runs=v["llm_runs"],
            looks=v["llm_looks"],
            warmup=v["llm_warmup"],
            json_path=json_path,
            baseline_dir=Path(config.rootpath, v["llm_baseline_dir"] or "baselines"),
            save_baseline=v["llm_save_baseline"],
            baseline_keep=v["llm_baseline_keep"],
            compare=not v["llm_no_compare"],
            compare_to=compare_to,
            across_machines=v["llm_compare_across_machines"],
            tolerances={**DEFAULT_TOLERANCES, **v["llm_tolerance"]},
            alpha=v["llm_alpha"],
            confirm=not v["llm_no_confirm"],
            max_error_rate=v["llm_max_error_rate"],
            prices=prices,
            fail_on=v["llm_fail_on"],
            quality_margin=v["llm_quality_margin"],
            rejudge_baseline=v["llm_rejudge_baseline"],
            judge=_judge_spec(config, v["llm_judge"]),
            judge_repeats=v["llm_judge_repeats"],
            judge_cache=not v["llm_judge_no_cache"],
            suites=v["llm_suite"],
        )


def _judge_spec(config: pytest.Config, text: str) -> LLMSpec | None:
    if config.getoption("llm_judge") is not None:
        source = "--llm-judge"
    elif config.getini("llm_judge"):
        source = "ini option 'llm_judge'"
    else:
        source = "default"
    if text.strip().lower() == "none":
        return None
    try:
        return parse_spec(text, source)
    except SpecError as exc:
        raise pytest.UsageError(str(exc)) from None


def _resolve(config: pytest.Config, setting: _Setting) -> Any:
    cli = config.getoption(setting.name)
    if cli is True:  # an on/off flag given on the command line
        return True
    if cli is not None:
        text, source = ",".join(cli) if isinstance(cli, list) else cli, setting.flag
    else:
        ini = config.getini(setting.name)
        if ini is None or ini == "":
            return setting.default
        text, source = ini, f"ini option {setting.name!r}"
    try:
        return setting.parse(str(text).strip())
    except ValueError as exc:
        raise pytest.UsageError(f"{source}: invalid value {text!r}: {exc}") from None


def _resolve_specs(config: pytest.Config) -> tuple[LLMSpec, ...]:
    """--llm, else $LLMPERF_LLM (whitespace-separated, shell quoting), else ini, else default."""
    cli: list[str] | None = config.getoption("llm")
    env = os.environ.get(ENV_LLM, "").strip()
    if cli:
        raw, source = cli, "--llm"
    elif env:
        raw, source = shlex.split(env), f"${ENV_LLM}"
    elif ini := [line for line in config.getini("llm") if line.strip()]:
        raw, source = ini, "ini option 'llm'"
    else:
        raw, source = [DEFAULT_SPEC], "default"
    specs: list[LLMSpec] = []
    for text in raw:
        try:
            spec = parse_spec(text, source)
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None
        if spec in specs:
            raise pytest.UsageError(f"{source}={text!r}: the same backend is given twice")
        specs.append(spec)
    return tuple(specs)
