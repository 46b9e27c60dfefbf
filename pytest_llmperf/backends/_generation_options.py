"""One check for the generation options a request carries, the same on every backend.

A keyword a backend does not know must never reach an engine or a server unnoticed: a server
ignores ``temprature=0.7`` and the benchmark runs at temperature 0 while the test says 0.7.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from ..errors import InvalidRequest

__all__ = ["CALL_KEYWORDS", "check_generation_options"]

#: Keywords ``llm_bench``/``llm_load``/``generate`` take themselves: a typo of one of them
#: arrives among the options, and the closest match should say so.
CALL_KEYWORDS = (
    "max_tokens",
    "temperature",
    "seed",
    "ignore_eos",
    "prefix_cache",
    "runs",
    "warmup",
    "name",
    "concurrency",
    "rate",
    "requests",
    "duration",
)


#: Other engines' names for what the call's own keywords set: difflib would offer
#: ``min_new_tokens`` for ``max_new_tokens``.
_ALIASES = {
    "max_new_tokens": "max_tokens",
    "max_length": "max_tokens",
    "n_predict": "max_tokens",
    "num_predict": "max_tokens",
    "temp": "temperature",
    "random_seed": "seed",
}


def check_generation_options(
    kind: str, options: Mapping[str, Any], valid: Collection[str], *, hint: str = ""
) -> None:
    """Raise :class:`InvalidRequest` for the first option not in ``valid``, naming the valid
    ones and the closest match (among them and the call's own keywords). ``hint`` says where
    other fields go (the openai backend's ``extra_body``)."""
    unknown = sorted(set(options) - set(valid))
    if not unknown:
        return
    name = unknown[0]
    close = (
        [_ALIASES[name]]
        if name in _ALIASES
        else difflib.get_close_matches(name, [*valid, *CALL_KEYWORDS], n=1, cutoff=0.75)
    )
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    more = f", and {', '.join(map(repr, unknown[1:]))}" if len(unknown) > 1 else ""
    shown = ", ".join(sorted(valid)) or "none"
    raise InvalidRequest(
        f"unknown generation option {name!r}{suggestion}{more} for {kind}; "
        f"valid options: {shown}{hint}"
    )
