"""The body of one OpenAI-style streaming request, and which generation options it may carry.

Shared by the blocking path (:mod:`.openai`) and ``llm_load``'s async path
(:mod:`._openai_async`), so both send exactly the same request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidRequest
from . import Request

if TYPE_CHECKING:
    from .openai import OpenAIBackend

__all__ = [
    "EXTRA_BODY_HINT",
    "end_token_ids",
    "request_body",
    "schema_fields",
    "served_by_llama_cpp_python",
]

#: The logit bias that rules a token out (added to its logit; JSON has no -inf).
_NEVER = -1e9
#: End-of-generation tokens by their text in common vocabularies (Gemma, Llama 2 and 3, ChatML,
#: Phi, GPT-style); a model's own others still end a generation early, and count as short.
_END_TEXTS = (
    "<eos>",
    "</s>",
    "<end_of_turn>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|end|>",
    "<|return|>",
)
EXTRA_BODY_HINT = " (fields beyond the OpenAI schema go in extra_body={...})"
#: Set by the backend from the request itself (or breaking one-stream timing: ``n``,
#: ``best_of``; ``echo`` returns the prompt as output; ``max_completion_tokens`` would fight
#: ``max_tokens``).
_SET_BY_BACKEND = frozenset(
    (
        "model",
        "messages",
        "prompt",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "seed",
        "n",
        "best_of",
        "echo",
    )
)


@functools.cache
def schema_fields(api: str) -> frozenset[str]:
    """The request fields of the endpoint, as the installed SDK's request types declare them."""
    from openai.types import completion_create_params as completions
    from openai.types.chat import completion_create_params as chat

    module: Any = completions if api == "completions" else chat
    fields = frozenset(module.CompletionCreateParamsBase.__annotations__)
    return fields - _SET_BY_BACKEND | {"extra_body"}


def request_body(backend: OpenAIBackend, request: Request) -> tuple[str, dict[str, Any]]:
    """The endpoint path and JSON body of one streaming request (both the blocking and the
    ``llm_load`` path send exactly this).

    ``extra_body`` is merged last, the SDK's own convention for fields beyond the schema (vLLM's
    ``top_k``, ``min_p``, ``repetition_penalty``), but may not replace what the request sets.
    ``ignore_eos`` and ``prefix_cache="bust"`` become the fields compatible servers honour;
    the OpenAI API refuses unknown fields with HTTP 400, so it gets none of them.
    """
    options = dict(request.options)
    extra = options.pop("extra_body", None) or {}
    if not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra):
        raise InvalidRequest(f"extra_body must be a mapping of field names, not {extra!r:.60}")
    body: dict[str, Any] = {
        "model": backend.spec.model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        **options,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    compatible = backend.spec.base_url is not None
    if request.ignore_eos and compatible:
        # vLLM and llama.cpp's C++ server: ignore_eos and min_tokens.
        body["ignore_eos"] = True
        if backend.end_tokens:
            # llama-cpp-python's server ignores ignore_eos, and its min_tokens masks only EOS
            # (server/app.py: MinTokensLogitsProcessor(min_tokens, llama.token_eos())), while
            # any end-of-generation token ends the stream (llama.py: llama_vocab_is_eog), e.g.
            # Gemma's <end_of_turn> and </s>. So every end token found at load is biased away;
            # and min_tokens is not sent, because with logit_bias it cancels both (llama.py:
            # ``logits_processor = logits_processor.extend(...)``, which is None).
            bias = dict(body.get("logit_bias") or {})
            bias.update((str(token), _NEVER) for token in backend.end_tokens)
            body["logit_bias"] = bias
        else:
            body["min_tokens"] = request.max_tokens
    if request.prefix_cache == "bust" and compatible:
        # llama.cpp's C++ server skips its prompt cache on this; llama-cpp-python's ignores
        # the field, and the nonce the harness put in front of the prompt defeats its cache.
        body["cache_prompt"] = False
    path = "/chat/completions"
    if backend.opts["api"] == "completions":
        if not isinstance(request.prompt, str):
            raise InvalidRequest("api=completions takes a string prompt, not chat messages")
        body["prompt"] = request.prompt
        path = "/completions"
    else:
        prompt = request.prompt
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        body["messages"] = [dict(m) for m in messages]
    if clash := sorted(set(extra) & (set(body) | _SET_BY_BACKEND)):
        raise InvalidRequest(
            f"extra_body may not set {', '.join(map(repr, clash))}: the request sets "
            f"{'it' if len(clash) == 1 else 'them'} (use the keyword of the same name)"
        )
    body.update(extra)
    return path, body


def served_by_llama_cpp_python(models: Iterable[Any]) -> bool:
    """Whether a ``GET /models`` answer is llama-cpp-python's server's (``llama_cpp.server``
    answers ``owned_by: "me"`` for every model it serves)."""
    owners = {getattr(model, "owned_by", None) for model in models}
    return owners == {"me"}


def end_token_ids(
    http: Any, base_url: str, headers: Mapping[str, str], model: str
) -> tuple[int, ...]:
    """The ids of the model's end-of-generation tokens among :data:`_END_TEXTS`, asked of
    llama-cpp-python's ``POST /extras/tokenize`` (which parses special tokens); () when it
    cannot say. A text counts when it is one token after the tokenizer's own prefix (BOS)."""
    if not base_url.endswith("/v1"):
        return ()  # its routes are /v1/... and /extras/...: somewhere else, it is not that server
    url = base_url.removesuffix("/v1") + "/extras/tokenize"

    def tokenize(text: str) -> list[int] | None:
        try:
            response = http.post(
                url, headers=headers, content=json.dumps({"model": model, "input": text})
            )
            tokens = response.json()["tokens"] if response.status_code == 200 else None
        except Exception:  # any failure: no ids, and min_tokens is sent instead
            return None
        ok = isinstance(tokens, list) and all(type(t) is int and t >= 0 for t in tokens)
        return tokens if ok else None

    prefix = tokenize("")
    if prefix is None:
        return ()
    found: list[int] = []
    for text in _END_TEXTS:
        tokens = tokenize(text)
        if tokens is None:
            return ()
        if tokens[: len(prefix)] == prefix and len(tokens) == len(prefix) + 1:
            found.append(tokens[-1])
    return tuple(sorted(set(found)))
