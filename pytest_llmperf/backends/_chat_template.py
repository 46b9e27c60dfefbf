"""Chat templates for the in-process engines (``llamacpp``, ``hf``): which one a spec's
``chat_template`` option selects, checked before any test, and how chat messages become text.

``chat_template`` is one of:

- empty: the model's own template. The embedded model (a base model whose GGUF has none) gets
  Gemma 3's own chat format instead, shipped as ``data/chat_templates/gemma3.jinja``, so a chat
  prompt works on it on both engines, as it does on llama.cpp's server;
- ``gemma3``: that shipped template, for any model;
- a chat format that llama-cpp-python registers (``chatml``, ``llama-2``, ``mistral-instruct``,
  ...), formatted by llama-cpp-python itself (also for ``hf``, when it is installed);
- a path to a Jinja file in Hugging Face's convention (``messages``, ``add_generation_prompt``,
  ``bos_token``, ``eos_token``, ``raise_exception``), rendered in jinja2's immutable sandbox set
  up as transformers and llama-cpp-python set theirs up, so a file renders here as it does there.

A bad value is a :class:`~pytest_llmperf.errors.SpecError` at ``check()``, before any test; a
chat prompt to a model left without a template is
:class:`~pytest_llmperf.errors.NoChatTemplate`, whose message says how to supply one.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, InvalidRequest, NoChatTemplate, SpecError
from ..spec import LLMSpec

__all__ = [
    "EMBEDDED_TEMPLATE",
    "SHIPPED",
    "ChatTemplate",
    "check_chat_template",
    "messages_of",
    "needs_bos",
    "no_chat_template",
    "resolve_chat_template",
]

#: Templates shipped in the package, and the text that ends a model turn in each: a base model
#: has no end-of-turn token among its end-of-generation ids, so the engines add these.
SHIPPED: Mapping[str, tuple[str, ...]] = {"gemma3": ("<end_of_turn>",)}
#: What an empty ``chat_template`` means for the embedded model.
EMBEDDED_TEMPLATE = "gemma3"
_SUFFIXES = (".jinja", ".jinja2", ".j2")

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class ChatTemplate:
    """A resolved template: where it came from (what ``info()`` reports), how it renders a
    conversation (with the generation prompt), the texts that end a model turn, and the ids of
    those that are one token in the model's vocabulary (generation ends there, as on EOS)."""

    source: str
    render: Callable[[Messages], str]
    stops: tuple[str, ...] = ()
    stop_ids: frozenset[int] = frozenset()

    def format(self, prompt: str | Sequence[Mapping[str, str]]) -> str:
        try:
            return self.render(messages_of(prompt))
        # Whatever a template raises (its raise_exception, jinja2's UndefinedError or
        # SecurityError, a llama-cpp-python formatter's KeyError) says the request does not fit.
        except Exception as exc:
            raise InvalidRequest(
                f"the chat template ({self.source}) failed: {type(exc).__name__}: {exc}"
            ) from exc


def messages_of(prompt: str | Sequence[Mapping[str, str]]) -> Messages:
    """A string prompt is one user message (``chat=true``)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def needs_bos(text: str, bos: str) -> bool:
    """Whether the engine should put BOS in front of a formatted prompt. One rule on both
    engines (llama.cpp's server applies it too): the template's own BOS if it wrote one, else
    the tokenizer's, never both."""
    return not (bos and text.startswith(bos))


def no_chat_template(spec: LLMSpec) -> NoChatTemplate:
    """The error for a chat prompt to a model left without a template: how to supply one."""
    with_option = f"{spec.text}{'&' if spec.options else '?'}chat_template="
    return NoChatTemplate(
        f"{spec.short_id}: the model has no chat template, so it cannot take chat messages or "
        f"chat=true; supply one in the spec, a llama-cpp-python chat format ({with_option}chatml) "
        f"or a path to a Jinja file ({with_option}/path/to/template.jinja), or pass a plain "
        "string prompt"
    )


# -- checking, before any test ---------------------------------------------------------------


def check_chat_template(value: str, where: str) -> None:
    """Raise :class:`SpecError` (one line: the spec, the value, what is valid) for a value that
    names no template, or :class:`BackendUnavailable` for a llama-cpp-python chat format
    without llama-cpp-python; the file is read and compiled here, so a broken one stops the run
    before any test."""
    if not value or value in SHIPPED:
        return
    kind = _kind(value)
    if kind == "file":
        _compile(_read(value, where), value, where)
    elif kind == "name":
        _llama_cpp_format(value, where)


def _kind(value: str) -> str:
    """``file`` or ``name``. A name never holds a path separator or a Jinja suffix; a bare word
    is a file only when it is one and no chat format has that name."""
    if "/" in value or "\\" in value or value.startswith("~") or value.endswith(_SUFFIXES):
        return "file"
    if Path(value).is_file() and value not in _llama_cpp_formats():
        return "file"
    return "name"


def _bad_value(value: str, where: str, reason: str) -> SpecError:
    return SpecError(f"{where}: bad value {value!r} for option 'chat_template': {reason}")


def _read(value: str, where: str) -> str:
    path = Path(value).expanduser()
    if not path.exists():
        raise _bad_value(value, where, f"no such Jinja file: {path}")
    if not path.is_file():
        raise _bad_value(value, where, f"not a file: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_value(value, where, f"{path} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise _bad_value(value, where, f"cannot read {path}: {exc.strerror or exc}") from None


@lru_cache(maxsize=1)
def _environment() -> Any:
    """The sandbox transformers renders chat templates in (``_compile_jinja_template``):
    block trimming, loop controls, a ``tojson`` that keeps non-ASCII text, and the
    ``raise_exception`` and ``strftime_now`` globals templates call."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _IgnoreGenerationTags(jinja2.ext.Extension):
        """HF's ``{% generation %}`` marks assistant text for training masks: render its body."""

        tags = {"generation"}  # noqa: RUF012 (jinja2 reads a class attribute)

        def parse(self, parser: Any) -> Any:
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, **kw: Any) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, **kw)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _compile(text: str, value: str, where: str) -> Any:
    import jinja2

    try:
        return _environment().from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        reason = " ".join(str(exc.message or exc).split())  # one line
        raise _bad_value(
            value, where, f"not a valid Jinja template: {reason} (line {exc.lineno})"
        ) from None


@lru_cache(maxsize=1)
def _llama_cpp_formats() -> dict[str, Callable[..., Any]]:
    """llama-cpp-python's chat formats by name: the formatter each registered handler wraps.

    Its registry holds chat-completion handlers, which tokenize and generate themselves; a
    format registered with ``register_chat_format`` is a closure over the formatter that only
    writes the prompt, and that formatter is what an engine here needs. Handlers that are not
    such closures (function calling, multimodal) are left out: they cannot just format text.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        return {}
    from llama_cpp import llama_chat_format

    formats: dict[str, Callable[..., Any]] = {}
    registry_class: Any = llama_chat_format.LlamaChatCompletionHandlerRegistry  # untyped
    registry = registry_class()
    for name, handler in registry._chat_handlers.items():
        code, cells = getattr(handler, "__code__", None), getattr(handler, "__closure__", None)
        if code is None or not cells or "chat_formatter" not in code.co_freevars:
            continue
        formats[name] = cells[code.co_freevars.index("chat_formatter")].cell_contents
    return formats


def _llama_cpp_format(name: str, where: str) -> Callable[..., Any]:
    if importlib.util.find_spec("llama_cpp") is None:
        raise BackendUnavailable(
            f"{where}: chat_template={name!r} is not {', '.join(SHIPPED)} nor a path to a Jinja "
            "file, so it would be a llama-cpp-python chat format, but llama-cpp-python is not "
            "installed: pip install llama-cpp-python (or pass a path to a Jinja file)"
        )
    formats = _llama_cpp_formats()
    if name not in formats:
        valid = ", ".join([*SHIPPED, *sorted(formats)])
        raise _bad_value(name, where, f"expected a chat format ({valid}) or a path to a Jinja file")
    return formats[name]


# -- resolving, once the model is loaded -----------------------------------------------------


def resolve_chat_template(
    value: str,
    *,
    where: str,
    model: ChatTemplate | None,
    embedded: bool,
    bos: str,
    eos: str,
    tokenize: Callable[[str], Sequence[int]],
) -> ChatTemplate | None:
    """The template a loaded model formats chat prompts with, or None where it has none.

    ``model`` is the engine's rendering of the model's own template (source ``"model"``);
    ``bos`` and ``eos`` are the texts of the model's BOS and EOS tokens, for Jinja templates;
    ``tokenize`` turns text into the model's token ids (special tokens parsed, no BOS).
    """
    template = _resolve(value, where=where, model=model, embedded=embedded, bos=bos, eos=eos)
    if template is None:
        return None
    # Stop texts of one token (<end_of_turn>) end generation; longer ones are left to EOS.
    ids = {tuple(tokenize(stop.strip())) for stop in template.stops if stop.strip()}
    return replace(template, stop_ids=frozenset(int(t[0]) for t in ids if len(t) == 1))


def _resolve(
    value: str, *, where: str, model: ChatTemplate | None, embedded: bool, bos: str, eos: str
) -> ChatTemplate | None:
    if not value:
        if model is not None:
            return model
        if not embedded:
            return None
        shipped = _jinja(_shipped_text(EMBEDDED_TEMPLATE), EMBEDDED_TEMPLATE, where, bos, eos)
        label = f"{EMBEDDED_TEMPLATE} (built in for the embedded model)"
        return ChatTemplate(label, shipped.render, SHIPPED[EMBEDDED_TEMPLATE])
    if value in SHIPPED:
        return _jinja(_shipped_text(value), value, where, bos, eos, SHIPPED[value])
    if _kind(value) == "file":
        return _jinja(_read(value, where), value, where, bos, eos)
    formatter = _llama_cpp_format(value, where)

    def render(messages: Messages) -> str:
        return str(formatter(messages=messages).prompt)

    stop = formatter(messages=[{"role": "user", "content": ""}]).stop
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    return ChatTemplate(value, render, stops)


def _shipped_text(name: str) -> str:
    files = resources.files("pytest_llmperf") / "data" / "chat_templates"
    return (files / f"{name}.jinja").read_text(encoding="utf-8")


def _jinja(
    text: str, value: str, where: str, bos: str, eos: str, stops: tuple[str, ...] = ()
) -> ChatTemplate:
    template = _compile(text, value, where)

    def render(messages: Messages) -> str:
        return str(
            template.render(
                messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos
            )
        )

    return ChatTemplate(value, render, stops)
