"""pytest-xdist: one worker per backend (``--llm-device-groups``), with unchanged test ids.

With ``-n N --dist loadgroup``, xdist sends every test carrying the same ``xdist_group`` mark to
the same worker. ``--llm-device-groups`` marks each test with its backend's short id, so two
backends never run at once on a device they share, and each backend loads in one process.

xdist passes a test's group to its scheduler as an ``@group`` suffix it writes into the test's
id on the worker. Under pytest 9.2 that write no longer takes effect (pytest-xdist issue #1386,
open as of xdist 3.8), and loadgroup silently spreads grouped tests over all workers. So under
``--llm-device-groups`` the controller schedules with :func:`make_scheduler`, which finds each
test's backend in its id (the ``llm_backend`` parameter's id is the spec's short id) and falls
back to xdist's own suffix where there is one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from .spec import LLMSpec

__all__ = [
    "add_device_groups",
    "backend_group",
    "check_device_groups",
    "make_scheduler",
    "restore_nodeids",
]

#: Tests whose ids end up in results, baselines and quality pairs.
_LLM_FIXTURES = frozenset({"llm_backend", "llm_judge"})


def check_device_groups(config: pytest.Config, enabled: bool) -> None:
    """Refuse ``--llm-device-groups`` under an xdist mode that ignores groups."""
    # On workers xdist resets --dist to "no": only the controller checks.
    dist = config.getoption("dist", "no")
    if not enabled or dist in ("no", "loadgroup") or not config.getoption("tx", None):
        return
    source = (
        "--llm-device-groups"
        if config.getoption("llm_device_groups")
        else "ini option 'llm_device_groups'"
    )
    raise pytest.UsageError(
        f"{source} pins each backend to one xdist worker through xdist_group marks, which "
        f"only --dist loadgroup honours (this run has --dist {dist}): add --dist loadgroup"
    )


def group_name(spec: LLMSpec) -> str:
    # xdist appends "@<group>" to test ids and splits on the last "@": keep it out of names.
    return spec.short_id.replace("@", "_")


def add_device_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """An ``xdist_group`` mark per backend on every test parametrized with ``llm_backend``
    (YAML suite cases included: they are functions parametrized like any other)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return  # without xdist the mark is unknown (--strict-markers) and would do nothing
    for item in items:
        callspec = getattr(item, "callspec", None)
        spec = callspec.params.get("llm_backend") if callspec is not None else None
        if isinstance(spec, LLMSpec):
            item.add_marker(pytest.mark.xdist_group(name=group_name(spec)))


def restore_nodeids(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the ``@<group>`` suffix xdist added to LLM tests' ids on a loadgroup worker.

    xdist needs it only in the ids a worker reports at the end of collection (the controller
    schedules by it); tests then report under their usual id, so results, baselines and judge
    verdicts have the same ids with and without groups, and a baseline saved either way is
    found by the other.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if not _LLM_FIXTURES & set(getattr(item, "fixturenames", ())):
            continue
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and item.nodeid.endswith(suffix):
            item._nodeid = item.nodeid[: -len(suffix)]  # type: ignore[attr-defined]  # as xdist


def backend_group(nodeid: str, groups: Mapping[str, str]) -> str | None:
    """The group of the backend whose short id (a key of ``groups``) is in ``nodeid``'s
    parameters: a whole ``-``-separated part of them first, else any part, the longest."""
    params = nodeid.partition("::")[2].partition("[")[2].removesuffix("]")
    if not params:
        return None
    padded = f"-{params}-"
    found = [sid for sid in groups if f"-{sid}-" in padded] or [s for s in groups if s in params]
    return groups[max(found, key=len)] if found else None


def make_scheduler(
    config: pytest.Config, log: Any, enabled: bool, specs: Sequence[LLMSpec]
) -> Any | None:
    """Under ``--llm-device-groups``: xdist's loadgroup scheduler, grouping LLM tests by backend
    whatever the pytest version. ``None`` (xdist's own choice) otherwise."""
    if not enabled or config.getoption("dist", "no") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    groups = {spec.short_id: group_name(spec) for spec in specs}

    class BackendGroups(LoadGroupScheduling):  # type: ignore[misc]  # xdist is untyped
        def _split_scope(self, nodeid: str) -> str:
            scope = str(super()._split_scope(nodeid))
            if scope != nodeid:
                return scope  # xdist's "@group" suffix, where it reaches the id
            return backend_group(nodeid, groups) or nodeid

    return BackendGroups(config, log)
