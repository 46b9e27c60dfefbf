"""Hooks that plugins and ``conftest.py`` files can implement."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy
import pytest

if TYPE_CHECKING:
    from .backends import Backend

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_llmperf_register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register backend classes, one ``register(cls)`` call each.

    Called once per run, before any spec is validated. The built-in backends use this hook
    too. Implement it in a plugin or in the rootdir ``conftest.py``::

        def pytest_llmperf_register_backends(register):
            from mypkg.llmperf import MyServerBackend  # kind = "myserver"

            register(MyServerBackend)

    after which ``pytest --llm=myserver:some-model`` works like any built-in kind.
    """


@hookspec
def pytest_llmperf_result(config: pytest.Config, result: dict[str, Any]) -> None:
    """Called on the controller for every finished benchmark, with its JSON-safe result.

    Use it to export results elsewhere as they arrive::

        def pytest_llmperf_result(config, result):
            print(result["backend"], result["stats"]["tpot_s"]["median"])
    """
