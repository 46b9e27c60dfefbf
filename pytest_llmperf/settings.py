"""Command-line options, their ini mirrors, and resolution in one place.

Every ``--llm-x`` option has an ``llm_x`` ini key (on/off flags take true/false there).
Precedence: command line > environment (only ``LLMPERF_LLM``) > ini > built-in default. A bad
value raises ``pytest.UsageError`` that names the value, where it came from and what is valid.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ._settings_table import SETTINGS, Setting
from .errors import SpecError
from .gate import DEFAULT_TOLERANCES
from .prices import PriceTable, load_prices
from .spec import DEFAULT_SPEC, LLMSpec, parse_spec

__all__ = ["ENV_LLM", "Settings", "add_options"]

ENV_LLM = "LLMPERF_LLM"


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
    for s in SETTINGS:
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
    html_path: Path | None
    markdown_path: Path | None
    benchmark_json_path: Path | None
    history_dir: Path | None
    progress: str  # auto | on | off
    slo: Mapping[str, float]  # --llm-slo: per-request limits in seconds, for goodput
    device_groups: bool
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
        v = {s.name: _resolve(config, s) for s in SETTINGS}
        files = {
            name: _output_file(config, name, v[name])
            for name in ("llm_json", "llm_html", "llm_markdown", "llm_benchmark_json")
        }
        history = v["llm_history"]
        if history is not None:
            history = Path(config.invocation_params.dir, history)
            if history.exists() and not history.is_dir():
                raise pytest.UsageError(f"--llm-history={history}: exists and is not a directory")
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
            json_path=files["llm_json"],
            html_path=files["llm_html"],
            markdown_path=files["llm_markdown"],
            benchmark_json_path=files["llm_benchmark_json"],
            history_dir=history,
            progress=v["llm_progress"],
            slo=v["llm_slo"],
            device_groups=v["llm_device_groups"],
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


def _output_file(config: pytest.Config, name: str, value: Path | None) -> Path | None:
    if value is None:
        return None
    path = Path(config.invocation_params.dir, value)
    if path.is_dir():
        flag = "--" + name.replace("_", "-")
        raise pytest.UsageError(f"{flag}={path}: is a directory, not a file")
    return path


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


def _resolve(config: pytest.Config, setting: Setting) -> Any:
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
