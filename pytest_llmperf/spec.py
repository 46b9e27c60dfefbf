"""The ``--llm`` spec grammar: ``KIND:MODEL[@BASE_URL][?key=value&...]``.

Parsing is purely syntactic here; each backend then types and validates its own options
(:mod:`pytest_llmperf.options`).

>>> s = parse_spec("llamacpp:models/tiny.gguf?n_ctx=512")
>>> (s.kind, s.model, s.base_url, dict(s.options))
('llamacpp', 'models/tiny.gguf', None, {'n_ctx': '512'})
>>> parse_spec("openai:gemma3@http://127.0.0.1:8080/v1").base_url
'http://127.0.0.1:8080/v1'
>>> parse_spec(r"llamacpp:C:\\models\\x.gguf").model  # KIND splits on the first ':' only
'C:\\\\models\\\\x.gguf'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from urllib.parse import parse_qsl, quote

from .errors import SpecError

__all__ = ["DEFAULT_SPEC", "LLMSpec", "parse_spec"]

DEFAULT_SPEC = "llamacpp:gemma3-270m"

_KIND = re.compile(r"[a-z][a-z0-9_-]*\Z")
# A base URL is recognised by its scheme, so a model path may itself contain '@'.
_AT_URL = re.compile(r"@(?=[A-Za-z][A-Za-z0-9+.-]*://)")


@dataclass(frozen=True)
class LLMSpec:
    """One parsed ``--llm`` value. ``options`` are raw strings until a backend types them."""

    kind: str
    model: str
    base_url: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    source: str = "--llm"
    raw: str = field(default="", compare=False)

    @property
    def text(self) -> str:
        """Canonical spec text: same spec, same text (used as the key of results)."""
        out = f"{self.kind}:{self.model}"
        if self.base_url:
            out += f"@{self.base_url}"
        if self.options:
            out += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in self.options)
        return out

    @property
    def short_id(self) -> str:
        """A readable test id: the file name instead of a full path, options kept."""
        model = self.model
        if "/" in model or "\\" in model:
            model = PurePath(model.replace("\\", "/")).name or model
        out = f"{self.kind}:{model}"
        if self.options:
            out += "?" + "&".join(f"{k}={v}" for k, v in self.options)
        return out


def parse_spec(text: str, source: str = "--llm") -> LLMSpec:
    """Parse one spec; ``source`` says where it came from, for error messages."""
    raw = text
    text = text.strip()
    where = f"{source}={raw!r}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Undecodable bytes in argv or the environment arrive as lone surrogates ("\udcff");
        # no baseline file name or results file can hold them, so they stop here.
        raise SpecError(
            f"{where}: {text[exc.start]!r} at position {exc.start + 1} is not text "
            "(undecodable bytes, not UTF-8); give the spec as UTF-8 text"
        ) from None
    kind, sep, rest = text.partition(":")
    kind = kind.strip().lower()
    if not sep:
        raise SpecError(
            f"{where}: expected KIND:MODEL[@BASE_URL][?key=value&...], "
            f"e.g. {DEFAULT_SPEC!r} or 'llamacpp:path/to/model.gguf'"
        )
    if not _KIND.match(kind):
        raise SpecError(f"{where}: {kind!r} is not a valid backend kind name")
    rest, _, query = rest.partition("?")
    model, base_url = rest, None
    parts = _AT_URL.split(rest, maxsplit=1)
    if len(parts) == 2:
        model, base_url = parts
        if not re.match(r"https?://[^/\s]+", base_url):
            raise SpecError(f"{where}: base URL {base_url!r} must start with http:// or https://")
    model = model.strip()
    if not model:
        raise SpecError(f"{where}: the model is empty (expected {kind}:MODEL)")
    options: list[tuple[str, str]] = []
    if query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise SpecError(f"{where}: options must look like key=value&key=value") from None
        seen: set[str] = set()
        for key, value in pairs:
            if key in seen:
                raise SpecError(f"{where}: option {key!r} is given twice")
            seen.add(key)
            options.append((key, value))
    return LLMSpec(kind, model, base_url, tuple(options), source, raw)
