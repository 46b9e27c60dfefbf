"""YAML suites: ``*.llmsuite.yaml`` files collected as tests, one per case and backend.

Each case becomes an ordinary ``pytest.Function`` whose body calls ``llm_bench`` exactly as a
Python test would, so sampling, baselines, the regression gate, reports and the JSON file are the
same for both; the checks a case declares (``expect``, ``budgets``, ``min_quality``) run after it.
A case with a ``load`` section calls ``llm_load`` instead (see :mod:`._suite_serving`).
The suite file is presented to pytest as a module holding one function per case: pytest's own
machinery then parametrizes ``llm_backend`` over every ``--llm``, as it does for Python tests.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._suite_load import Budget, Case, Expect, Pattern, SuiteError, load_suite
from .errors import LLMPerfError

if TYPE_CHECKING:
    from ._load_call import Load
    from .bench import BenchResult
    from .fixtures import Bench

__all__ = [
    "LOAD_POINTS_ATTR",
    "REGEX_TIMEOUT_S",
    "SUFFIXES",
    "SuiteFile",
    "budget_failures",
    "collect_file",
    "expect_failures",
    "packaged_suites",
    "parse_suite_names",
    "schema_problem",
    "use_packaged_suites",
]

#: The naming rule: only these are suites, so no unrelated YAML file is ever collected.
SUFFIXES = (".llmsuite.yaml", ".llmsuite.yml")
_PACKAGED_DIR = Path(__file__).with_name("suites")
_CASE_ATTR = "_llmperf_case"
#: On a load case's function: its sweep points, known at collection (see ``_load_call``).
LOAD_POINTS_ATTR = "_llmperf_load_points"
_EXCERPT = 160
#: Seconds one ``expect: regex`` search may take on one generation: a pattern that backtracks
#: catastrophically (``(a|a)+$`` on "aaa...!") would otherwise hang the test for ever.
REGEX_TIMEOUT_S = 1.0


def packaged_suites() -> dict[str, Path]:
    """The suites shipped inside the package, by name (``latency``, ``reasoning``, ...)."""
    return {
        path.name.removesuffix(SUFFIXES[0]): path
        for path in sorted(_PACKAGED_DIR.glob("*" + SUFFIXES[0]))
    }


def parse_suite_names(text: str) -> tuple[str, ...]:
    """``"latency, reasoning"`` -> ``("latency", "reasoning")``; unknown names are refused."""
    shipped = packaged_suites()
    names = tuple(dict.fromkeys(n for n in re.split(r"[,\s]+", text) if n))
    unknown = [n for n in names if n not in shipped]
    if unknown or not names:
        raise ValueError(f"expected shipped suite names: {', '.join(shipped)}")
    return names


def use_packaged_suites(config: pytest.Config, names: Sequence[str]) -> None:
    """Add the ``--llm-suite`` files to what pytest collects.

    Given path arguments, the suites run beside them; given none, only the suites run (not
    ``testpaths`` or the current directory, which are pytest's fallbacks for "no paths").
    """
    if not names:
        return
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args[:] = []
        config.args_source = pytest.Config.ArgsSource.ARGS
    shipped = packaged_suites()
    for name in names:
        # xdist workers inherit the controller's arguments, suites included.
        if str(shipped[name]) not in config.args:
            config.args.append(str(shipped[name]))


def collect_file(file_path: Path, parent: pytest.Collector) -> SuiteFile | None:
    if not file_path.name.endswith(SUFFIXES):
        return None
    nodeid = None
    if file_path.parent == _PACKAGED_DIR and not file_path.is_relative_to(parent.config.rootpath):
        # pytest names a file outside the rootdir after nothing at all ("::case"); a packaged
        # suite gets the name it has in the source tree, the same on every machine, so its
        # baselines and --deselect ids carry over.
        nodeid = f"{__package__}/suites/{file_path.name}"
    suite: SuiteFile = SuiteFile.from_parent(parent, path=file_path, nodeid=nodeid)
    return suite


class SuiteFile(pytest.Module):
    """A suite file, seen by pytest as a module with one test function per case."""

    def _getobj(self) -> types.ModuleType:
        try:
            cases = load_suite(self.path)
        except SuiteError as exc:
            shown = self.path
            if shown.is_relative_to(self.config.invocation_params.dir):
                shown = shown.relative_to(self.config.invocation_params.dir)
            where = f"{shown}:{exc.line}" if exc.line else str(shown)
            raise self.CollectError(f"{where}: {exc}") from None
        module = types.ModuleType(f"llmsuite {self.path.name}")
        module.__file__ = str(self.path)
        for case in cases:
            setattr(module, case.id, _case_function(case, module.__name__, self.path))
        return module

    def istestfunction(self, obj: object, name: str) -> bool:
        return hasattr(obj, _CASE_ATTR)

    def istestclass(self, obj: object, name: str) -> bool:
        return False


def _bench_body(case: Case) -> Callable[..., None]:
    def case_function(llm_bench: Bench, request: pytest.FixtureRequest) -> None:
        run_case(case, llm_bench, request)

    return case_function


def _load_body(case: Case) -> Callable[..., None]:
    def case_function(llm_load: Load) -> None:
        run_load_case(case, llm_load)

    assert case.load is not None
    setattr(case_function, LOAD_POINTS_ATTR, case.load.points)
    return case_function


def _case_function(case: Case, module: str, path: Path) -> Callable[..., None]:
    case_function = _bench_body(case) if case.load is None else _load_body(case)

    # pytest takes an item's location (-v lines, failure headers, tracebacks) from its
    # function's code: point it at the case in the YAML file rather than at this module.
    case_function.__code__ = case_function.__code__.replace(
        co_filename=str(path), co_firstlineno=case.line, co_name=case.id
    )
    case_function.__name__ = case_function.__qualname__ = case.id
    case_function.__module__ = module
    marks = []
    if case.tolerance is not None:
        marks.append(pytest.mark.llm_perf(tolerance=case.tolerance))
    if case.backends is not None:
        marks.append(pytest.mark.llm_backends(*case.backends))
    if case.instruction_tuned:
        marks.append(pytest.mark.llm_instruction_tuned)
    if case.min_quality is not None:
        marks.append(pytest.mark.llm_quality(min_score=case.min_quality))
    case_function.pytestmark = marks  # type: ignore[attr-defined]
    setattr(case_function, _CASE_ATTR, case)
    return case_function


def run_load_case(case: Case, load: Load) -> None:
    """What a load case's test does: one ``llm_load`` call, as a Python test would write it."""
    spec = case.load
    assert spec is not None
    kwargs = spec.arguments()
    max_tokens = spec.max_tokens if spec.max_tokens is not None else case.max_tokens
    if max_tokens is not None:  # else llm_load's own default, as in Python
        kwargs["max_tokens"] = max_tokens
    for key in ("ignore_eos", "prefix_cache"):
        if getattr(case, key) is not None:  # else the spec's, as in Python
            kwargs[key] = getattr(case, key)
    load(
        list(spec.prompts) or [case.prompt], temperature=case.temperature, **kwargs, **case.options
    )


def run_case(case: Case, bench: Bench, request: pytest.FixtureRequest) -> None:
    """What a case's test does: the benchmark, then every check, all failures reported at once."""
    result = bench(
        case.prompt,
        max_tokens=case.max_tokens,
        runs=case.runs,
        warmup=case.warmup,
        temperature=case.temperature,
        seed=case.seed,
        ignore_eos=case.ignore_eos,
        prefix_cache=case.prefix_cache,
        **case.options,
    )
    texts = [g.text for g in result.generations]
    failures = expect_failures(case.expect, texts) if case.expect else []
    failures += budget_failures(case.budgets, result)
    if case.min_quality is not None or case.rubric is not None or case.reference is not None:
        failures += _grade(case, texts[0] if texts else "", request, must=not failures)
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)


def _grade(case: Case, text: str, request: pytest.FixtureRequest, *, must: bool) -> list[str]:
    """Grade the first timed generation with ``llm_judge``, as a Python test would; the
    ``llm_quality`` mark (from ``min_quality``) then fails a low score after the test body.

    Without a judge, a case with ``min_quality`` is skipped with the judge's reason. When its
    deterministic checks failed already (``must`` false), that failure is the result: a missing
    or failing judge only adds a line to it. A case with only a rubric or reference passes
    ungraded.
    """
    try:
        judge = request.getfixturevalue("llm_judge")
    except pytest.skip.Exception:
        if case.min_quality is not None and must:
            raise
        return []
    try:
        judge(case.prompt, text, rubric=case.rubric, reference=case.reference)
    except LLMPerfError as exc:
        if must:
            raise
        return [f"judge: no grade ({exc})"]
    return []


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= _EXCERPT else text[: _EXCERPT - 3] + "...")


def _json_text(text: str) -> str:
    """The text to parse as JSON: stripped, and unwrapped from one Markdown code fence,
    which chat models add around JSON even when asked not to."""
    text = text.strip()
    fenced = re.fullmatch(r"```[\w-]*\n(.*?)\n?```", text, re.DOTALL)
    return fenced.group(1) if fenced else text


_Check = Callable[[str], "str | None"]


def _substring(needle: str, fold: Callable[[str], str], wanted: bool) -> _Check:
    def check(text: str) -> str | None:
        found = fold(needle) in fold(text)
        return None if found == wanted else ("present" if found else "absent")

    return check


def _regex(pattern: Pattern) -> _Check:
    def check(text: str) -> str | None:
        try:
            found = pattern.search(text, timeout=REGEX_TIMEOUT_S)
        except TimeoutError:
            return (
                f"no answer within {REGEX_TIMEOUT_S:g} s: the pattern backtracks "
                "catastrophically on this text; simplify it (nested repeats such as (a+)+)"
            )
        return None if found else "no match"

    return check


def _text_checks(expect: Expect) -> list[tuple[str, _Check]]:
    """(label, check) pairs; a check returns what is wrong with one text, or None."""
    fold: Callable[[str], str] = str.casefold if expect.ignore_case else str
    checks = [(f"contains {n!r}", _substring(n, fold, True)) for n in expect.contains]
    checks += [(f"not_contains {n!r}", _substring(n, fold, False)) for n in expect.not_contains]
    checks += [(f"regex {p.pattern!r}", _regex(p)) for p in expect.regex]
    if expect.max_chars is not None:
        limit = expect.max_chars
        checks.append(
            (f"max_chars {limit}", lambda t: f"{len(t)} chars" if len(t) > limit else None)
        )
    if expect.json or expect.json_schema is not None:
        checks.append(("json", _json_problem))
    if expect.json_schema is not None:
        schema = expect.json_schema
        checks.append(("json_schema", lambda t: _schema_text_problem(t, schema)))
    return checks


def expect_failures(expect: Expect, texts: Sequence[str]) -> list[str]:
    """One line per failed check: in how many of the timed generations, and the first one."""
    failures = []
    for label, check in _text_checks(expect):
        bad = [(text, problem) for text in texts if (problem := check(text)) is not None]
        if bad:
            text, problem = bad[0]
            failures.append(
                f"expect {label}: failed in {len(bad)} of {len(texts)} generation(s) "
                f"({problem}); first: {_excerpt(text)}"
            )
    return failures


def _parse_json(text: str) -> tuple[Any, str | None]:
    """The generated text as JSON, or why it is not: a generation is untrusted input, and
    json.loads raises more than JSONDecodeError on it (deep nesting, 5000-digit numbers)."""
    try:
        return json.loads(_json_text(text)), None
    except json.JSONDecodeError as exc:
        return None, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return None, "not JSON this check can read: nested too deeply"
    except ValueError as exc:  # int() of too many digits
        return None, f"not JSON this check can read: {exc}"


def _json_problem(text: str) -> str | None:
    return _parse_json(text)[1]


def _schema_text_problem(text: str, schema: dict[str, Any]) -> str | None:
    value, problem = _parse_json(text)
    if problem is not None:
        return "not JSON"  # already reported by the json check
    return schema_problem(value, schema)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_problem(value: Any, schema: dict[str, Any], where: str = "$") -> str | None:
    """The first way ``value`` breaks ``schema`` (a JSON Schema subset: type, properties,
    required, enum, items, additionalProperties), or None if it conforms."""
    types_ = schema.get("type")
    if types_ is not None:
        allowed = types_ if isinstance(types_, list) else [types_]
        if not any(_TYPES[t](value) for t in allowed):
            return f"{where}: expected {' or '.join(allowed)}, got {json.dumps(value)[:60]}"
    if "enum" in schema and not any(
        value == e and isinstance(value, bool) == isinstance(e, bool) for e in schema["enum"]
    ):
        return f"{where}: {json.dumps(value)[:60]} is not one of {json.dumps(schema['enum'])}"
    if isinstance(value, dict):
        required = schema.get("required", [])
        for key in [required] if isinstance(required, str) else required:
            if key not in value:
                return f"{where}: missing required property {key!r}"
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            if key in value and (problem := schema_problem(value[key], sub, f"{where}.{key}")):
                return problem
        extra = sorted(set(value) - set(properties))
        if schema.get("additionalProperties", True) is False and extra:
            return f"{where}: unexpected properties {extra}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            if problem := schema_problem(item, schema["items"], f"{where}[{i}]"):
                return problem
    return None


def budget_failures(budgets: Sequence[Budget], result: BenchResult) -> list[str]:
    """Absolute budgets: upper bounds, except floors on throughput (higher is better)."""
    failures = []
    for b in budgets:
        summary = result.stats.get(b.metric)
        label = f"budget {b.metric} {b.statistic}"
        if summary is None or summary.n == 0:
            failures.append(
                f"{label} {'>=' if b.is_floor else '<='} {b.limit:g}: no {b.metric} samples "
                "(this backend does not report it here), so the budget cannot be checked"
            )
            continue
        value = float(getattr(summary, b.statistic))
        if b.is_floor and value < b.limit:
            failures.append(
                f"{label} = {value:.4g}, below its floor of {b.limit:g} (n={summary.n})"
            )
        elif not b.is_floor and value > b.limit:
            failures.append(
                f"{label} = {value:.4g}, over its budget of {b.limit:g} (n={summary.n})"
            )
    return failures
