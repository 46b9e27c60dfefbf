"""Command-line options, their ini mirrors, and resolution in one place.

Every ``--llm-x`` option has an ``llm_x`` ini key. Precedence: command line > environment (only
``LLMPERF_LLM``) > ini > built-in default. A bad value raises ``pytest.UsageError`` that names
the value, where it came from and what would be valid.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .errors import SpecError
from .spec import DEFAULT_SPEC, LLMSpec, parse_spec

__all__ = ["ENV_LLM", "Settings", "add_options"]

ENV_LLM = "LLMPERF_LLM"

DEFAULT_RUNS = 10
DEFAULT_WARMUP = 1


@dataclass(frozen=True)
class _Setting:
    name: str  # ini key; the CLI flag is the same with dashes
    help: str
    default: Any
    metavar: str
    parse: Callable[[str], Any]

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


_SETTINGS = (
    _Setting(
        "llm_runs",
        f"timed generations per benchmark (default {DEFAULT_RUNS}); "
        "@pytest.mark.llm_perf(runs=N) overrides per test",
        DEFAULT_RUNS,
        "N",
        _count(1),
    ),
    _Setting(
        "llm_warmup",
        f"untimed warm-up generations before each benchmark (default {DEFAULT_WARMUP})",
        DEFAULT_WARMUP,
        "N",
        _count(0),
    ),
    _Setting(
        "llm_json",
        "write every result, with raw samples and the environment, to this JSON file",
        None,
        "PATH",
        Path,
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
        group.addoption(s.flag, dest=s.name, metavar=s.metavar, default=None, help=s.help)
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
    runs: int
    warmup: int
    json_path: Path | None

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        values = {s.name: _resolve(config, s) for s in _SETTINGS}
        json_path = values["llm_json"]
        if json_path is not None:
            json_path = Path(config.invocation_params.dir, json_path)
            if json_path.is_dir():
                raise pytest.UsageError(f"--llm-json={json_path}: is a directory, not a file")
        return cls(
            specs=_resolve_specs(config),
            runs=values["llm_runs"],
            warmup=values["llm_warmup"],
            json_path=json_path,
        )


def _resolve(config: pytest.Config, setting: _Setting) -> Any:
    cli = config.getoption(setting.name)
    if cli is not None:
        text, source = cli, setting.flag
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
