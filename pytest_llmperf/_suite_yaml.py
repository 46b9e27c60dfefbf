"""Reading a suite file's YAML: PyYAML's safe loader, configured to be bounded.

A suite file comes from anyone who can open a pull request, and is read at collection (even
under ``--collect-only``), so the loader refuses what would crash or exhaust the process:
nesting deeper than :data:`MAX_DEPTH` (PyYAML's composer recurses per level), a recursive alias,
more than :data:`MAX_ALIASES` aliases or aliases expanding to more than :data:`MAX_ALIAS_NODES`
values (a "billion laughs" file is a few aliases that each repeat the one before), numbers no
field can mean (NaN, infinity, integers beyond 2**53) and text that no results or baseline file
could hold (a lone surrogate). Each refusal is a :class:`SuiteError` with the line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from .numeric import MAX_COUNT

__all__ = ["MAX_ALIASES", "MAX_ALIAS_NODES", "MAX_DEPTH", "SuiteError", "read_yaml"]

#: The loader's limits. A suite nests ~6 levels (a json_schema a few more): deeper is refused
#: before PyYAML's recursive composer overflows the stack.
MAX_DEPTH = 32
#: Aliases are for sharing a few defaults; a "billion laughs" file uses a handful of aliases
#: that each repeat the one before, so what they expand to is bounded too (in YAML nodes).
MAX_ALIASES = 100
MAX_ALIAS_NODES = 10_000


class SuiteError(ValueError):
    """A suite file is malformed; ``line`` is 1-based, 0 when unknown."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class _Map(dict[str, Any]):
    """A YAML mapping that remembers its line and the line of each key."""

    def __init__(
        self, items: Mapping[str, Any] = {}, line: int = 0, key_lines: Mapping[str, int] = {}
    ) -> None:
        super().__init__(items)
        self.line = line
        self.key_lines = dict(key_lines)


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load`` plus line numbers on mappings, an error on duplicate keys, and
    bounds: nesting depth, alias uses and what they expand to, no recursive alias, finite
    numbers only, text that can be written back as UTF-8."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._alias_nodes = 0
        #: Anchors whose node is being composed: an alias to one of them is a cycle.
        self._open: set[str] = set()
        #: Nodes each composed node stands for once its aliases are expanded, by id.
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # Any: the stubs make every mark optional; events from the parser always have one.
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise SuiteError(
                    line,
                    f"invalid YAML: alias *{event.anchor} is inside its own anchor "
                    "(a recursive alias)",
                )
            node = super().compose_node(parent, index)
            self._aliases += 1
            self._alias_nodes += self._sizes.get(id(node), 1)
            if self._aliases > MAX_ALIASES or self._alias_nodes > MAX_ALIAS_NODES:
                raise SuiteError(
                    line,
                    f"invalid YAML: too many aliases (at most {MAX_ALIASES} uses, expanding to "
                    f"at most {MAX_ALIAS_NODES} values in all)",
                )
            return node
        if self._depth >= MAX_DEPTH:
            raise SuiteError(line, f"invalid YAML: nested deeper than {MAX_DEPTH} levels")
        anchor = event.anchor
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)
        return node


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    line = node.start_mark.line + 1
    try:
        value: int | None = loader.construct_yaml_int(node)
    except ValueError:  # int() refuses strings of more than 4300 digits
        value = None
    if value is None or abs(value) > MAX_COUNT:
        raise SuiteError(line, f"the number {_cut(node.value)} is too large (at most 2**53)")
    return int(value)


def _construct_float(loader: _Loader, node: yaml.ScalarNode) -> float:
    value: float = loader.construct_yaml_float(node)
    if not math.isfinite(value):
        raise SuiteError(
            node.start_mark.line + 1,
            f"{_cut(node.value)} is {value}: no key of a suite takes NaN or infinity",
        )
    return value


def _construct_str(loader: _Loader, node: yaml.ScalarNode) -> str:
    value: str = loader.construct_yaml_str(node)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A "\udcff" escape: a lone surrogate, which no results or baseline file can hold.
        raise SuiteError(
            node.start_mark.line + 1,
            f"{_cut(value)} holds {value[exc.start]!r}, a lone surrogate, not a character",
        ) from None
    return value


def _cut(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[_Map]:
    data = _Map(line=node.start_mark.line + 1)
    yield data
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
            if key_node.value in data.key_lines:
                raise SuiteError(key_node.start_mark.line + 1, f"duplicate key {key_node.value!r}")
            data.key_lines[key_node.value] = key_node.start_mark.line + 1
    data.update({str(k): v for k, v in loader.construct_mapping(node).items()})


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)


def read_yaml(path: Path) -> Any:
    """The document in ``path``, or :class:`SuiteError` with the line and the problem."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        if exc.problem and exc.context and exc.context_mark:
            problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise SuiteError(mark.line + 1 if mark else 0, f"invalid YAML: {problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SuiteError(0, f"cannot read the suite: {exc}") from None
