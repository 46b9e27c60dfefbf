"""pytest hooks, and nothing else: the work happens in the modules they call."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import _xdist, backends, fixtures, hookspecs, quality, suite
from ._load_call import declared_load_skip, planned_load_comparisons
from .backends import BackendRegistry
from .environment import KNOWN_APIS, api_credentials, cuda_device_count
from .errors import LLMPerfError
from .finish import finish_run
from .models import is_base_model
from .options import WORKLOAD_OPTIONS
from .progress import Progress
from .session import SESSION_KEY, LLMPerfSession, get_session
from .settings import Settings, add_options
from .spec import LLMSpec
from .terminal import write_summary

_MARKERS = (
    "llm_perf(runs=None, warmup=None, max_tokens=None, tolerance=None): defaults for llm_bench "
    "in this test; tolerance like 'tpot_s=3%,ttft_s=20%'",
    "llm_backends(*kinds): run this test only for backends of these kinds, e.g. 'llamacpp'",
    "llm_instruction_tuned: the test grades answers to instructions; skipped on models known "
    "to be base models (the embedded gemma3-270m)",
    "gpu: needs a CUDA device; skipped with a reason where none is visible",
    f"api(name): needs that API's credentials ({', '.join(KNOWN_APIS)}); skipped without them",
    quality.MARKER,
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)
    # Built-in backends register through the same hook as everyone else's.
    pluginmanager.register(backends, "llmperf-builtin-backends")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _registry(config: pytest.Config) -> BackendRegistry:
    registry = BackendRegistry()
    config.hook.pytest_llmperf_register_backends(register=registry.register)
    return registry


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("llm_list_backends"):
        return None
    registry = _registry(config)
    for kind in registry.kinds:
        cls = registry.by_kind(kind)
        print(f"{kind}  ({cls.__module__}.{cls.__qualname__}; {cls.install_hint})")
        for option in cls.options:
            print(f"    {option.describe()}")
    print("every kind  (the workload: defaults of the llm_bench/llm_load keywords)")
    for option in WORKLOAD_OPTIONS:
        print(f"    {option.describe()}")
    return 0


def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    if config.getoption("help", False):
        return  # --help must work whatever the llm settings say
    session = LLMPerfSession(config, Settings.from_config(config), _registry(config))
    session.plan()
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(fixtures, "llmperf-fixtures")
    config.pluginmanager.register(quality, "llmperf-quality")
    config.pluginmanager.register(_RunHooks(config), "llmperf-run-hooks")
    session.progress = Progress(config, session.settings.progress, worker=session.is_worker)
    config.pluginmanager.register(session.progress, "llmperf-progress")
    _xdist.check_device_groups(config, session.settings.device_groups)
    suite.use_packaged_suites(config, session.settings.suites)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    return suite.collect_file(file_path, parent)  # *.llmsuite.yaml / *.llmsuite.yml only


def pytest_report_header(config: pytest.Config) -> str:
    s = get_session(config).settings
    specs = ", ".join(spec.short_id for spec in s.specs)
    runs = s.runs if s.runs is not None else "auto " + ",".join(map(str, s.looks))
    compare = f"; relative to {s.compare_to.short_id}" if s.compare_to else ""
    return f"llmperf: {specs} (runs={runs}, warmup={s.warmup}{compare})"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "llm_backend" not in metafunc.fixturenames:
        return
    specs = get_session(metafunc.config).settings.specs
    marker = metafunc.definition.get_closest_marker("llm_backends")
    kinds = set(marker.args) if marker else None
    tuned = metafunc.definition.get_closest_marker("llm_instruction_tuned") is not None

    def skip_reason(spec: LLMSpec) -> str | None:
        # Decided here, before any model loads (an hf load takes a minute).
        if kinds is not None and spec.kind not in kinds:
            return f"llm_backends({', '.join(sorted(kinds))}): not {spec.kind}"
        if tuned and is_base_model(spec.kind, spec.model):
            return (
                "grades answers to instructions (llm_instruction_tuned; in a suite, models: "
                f"instruction-tuned), and {spec.short_id} is a base model that continues text; "
                "run it on an instruction-tuned model, e.g. --llm=openai:gpt-4o-mini"
            )
        return None

    params = [
        pytest.param(
            spec,
            id=spec.short_id,
            marks=() if (reason := skip_reason(spec)) is None else pytest.mark.skip(reason=reason),
        )
        for spec in specs
    ]
    metafunc.parametrize("llm_backend", params, indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)  # xdist's worker reads xdist_group marks in this hook too
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if get_session(config).settings.device_groups:
        _xdist.add_device_groups(config, items)
    # Skips are added as marks (not raised from a hook) so reports point at the test itself.
    api_reasons: dict[str, str | None] = {}
    for item in items:
        if item.get_closest_marker("gpu") and cuda_device_count() == 0:
            reason = "needs a CUDA GPU (@pytest.mark.gpu); none is visible to this process"
            item.add_marker(pytest.mark.skip(reason=reason))
        if (unserved := declared_load_skip(item)) is not None:  # before its backend loads
            item.add_marker(pytest.mark.skip(reason=unserved))
        for marker in item.iter_markers("api"):
            for api in marker.args:
                if api not in api_reasons:
                    try:
                        api_reasons[api] = api_credentials(api)
                    except ValueError as exc:
                        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.api: {exc}") from None
                if api_reasons[api]:
                    reason = f"needs {api} credentials (@pytest.mark.api): {api_reasons[api]}"
                    item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, LLMPerfError):
        # Our errors carry a complete message; a traceback through the harness adds nothing.
        exc = call.excinfo.value
        report.longrepr = get_session(item.config).describe_error(exc)
    results = item.stash.get(fixtures.RESULTS_KEY, None)
    if report.when == "call" and results:
        # A JSON-safe attribute: it crosses from xdist workers to the controller intact.
        worker = get_session(item.config).worker_id
        report.llmperf = [  # type: ignore[attr-defined]
            {**r.to_json(), "worker": worker} for r in results
        ]
    quality.annotate_report(item, call, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    yield  # a body that raised has failed already: no quality check on top
    quality.check_quality(item)


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    return quality.report_status(report)


class _RunHooks:
    """Hooks whose hookspec passes no config: registered per run, holding it."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        results = getattr(report, "llmperf", None)
        session = get_session(self.config)
        if session.is_worker:
            return
        quality.collect(session, report)
        for result in results or ():
            session.results.append(result)
            self.config.hook.pytest_llmperf_result(config=self.config, result=result)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        records = node.workeroutput.get("llmperf_backends", [])
        errors = node.workeroutput.get("llmperf_load_errors", {})
        session = get_session(self.config)
        session.backend_records.extend(records)
        session.load_errors.update(errors)


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own choice
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    s = get_session(config).settings
    return _xdist.make_scheduler(config, log, s.device_groups, s.specs)


@pytest.hookimpl(trylast=True)  # after xdist's worker has sent the ids it schedules by
def pytest_collection_finish(session: pytest.Session) -> None:
    _xdist.restore_nodeids(session.config, session.items)
    # Each benchmark gates two metrics, each load sweep point three; the in-test threshold
    # divides alpha by all of them.
    benches = sum(1 for item in session.items if "llm_bench" in getattr(item, "fixturenames", ()))
    loads = sum(planned_load_comparisons(item) for item in session.items)
    get_session(session.config).planned_comparisons = 2 * benches + loads


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = get_session(session.config)
    if run.is_worker:
        run.close()
        workeroutput = session.config.workeroutput  # type: ignore[attr-defined]
        workeroutput["llmperf_backends"] = run.backend_records
        workeroutput["llmperf_load_errors"] = run.load_errors
        return
    try:
        finish_run(run, session)  # --llm-rejudge-baseline may still need the judge
    finally:
        run.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = get_session(config)
    if not run.is_worker:
        write_summary(terminalreporter, run, width=max(config.get_terminal_writer().fullwidth, 100))
