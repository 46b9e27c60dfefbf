"""llama.cpp through llama-cpp-python, on a local GGUF file.

Generation drives ``Llama.generate`` token by token rather than ``create_completion``: one
chunk per sampled token (exact counts even where text is held back for an incomplete UTF-8
sequence), and the KV cache is cleared before every request so each run pays its full prefill
(llama-cpp-python otherwise reuses a matching prompt prefix and TTFT would measure nothing).
That is also why ``Request.prefix_cache`` needs nothing here: every request pays its prefill
whatever the mode (under ``"bust"`` the harness has put its nonce in the prompt already).

Chat prompts (and string prompts with ``chat=true``) are formatted with the template that
``chat_template`` selects (see ``_chat_template``): the GGUF's own by default, Gemma 3's format
for the embedded model, whose GGUF has none.
"""

from __future__ import annotations

import codecs
import importlib.util
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, GenerationError, InvalidRequest, ModelLoadError
from ..models import EMBEDDED_ALIAS, check_gguf_file, embedded_available, embedded_model_path
from ..options import Option
from ..spec import LLMSpec
from . import Chunk, Message, Request, Usage, check_generation_options
from ._chat_template import (
    ChatTemplate,
    check_chat_template,
    needs_bos,
    no_chat_template,
    resolve_chat_template,
)

__all__ = ["LlamaCppBackend"]

_INSTALL = "pip install 'pytest-llmperf[llamacpp]'"
#: What a request's ``options`` may set: the sampler's knobs ``Llama.generate`` takes.
_GENERATION_OPTIONS = frozenset(("top_k", "top_p", "repeat_penalty", "min_p"))


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LlamaCppBackend:
    kind: ClassVar[str] = "llamacpp"
    install_hint: ClassVar[str] = _INSTALL
    options: ClassVar[Sequence[Option]] = (
        Option("n_ctx", int, 2048, "context length in tokens", minimum=16),
        Option("n_threads", int, 0, "CPU threads; 0 = all usable CPUs", minimum=0),
        Option("n_batch", int, 512, "prompt tokens evaluated per batch", minimum=1),
        Option("n_gpu_layers", int, 0, "layers offloaded to the GPU; -1 = all", minimum=-1),
        Option("seed", int, 0, "sampling seed (used when temperature > 0)", minimum=0),
        Option("chat", bool, False, "format string prompts with the chat template"),
        Option(
            "chat_template",
            str,
            "",
            "chat template: a llama-cpp-python chat format (chatml, gemma, llama-2, ...), "
            "gemma3, or a path to a Jinja file; empty = the model's own (the embedded model: "
            "gemma3)",
        ),
        Option("top_k", int, 40, "top-k sampling (temperature > 0)", minimum=0),
        Option("top_p", float, 0.95, "top-p sampling (temperature > 0)", minimum=0.0),
    )

    def __init__(self, spec: LLMSpec, options: Mapping[str, Any]) -> None:
        self.spec = spec
        self.opts = dict(options)
        self._llm: Any = None
        self._path: Path | None = None
        self._template: ChatTemplate | None = None
        self._bos = ""

    @property
    def model_file(self) -> Path | None:
        return self._path

    def check(self) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise BackendUnavailable(f"llamacpp needs llama-cpp-python: {_INSTALL}")
        check_chat_template(self.opts["chat_template"], self._where)
        if self.opts["n_gpu_layers"] != 0:
            self._check_gpu_offload()
        if self.spec.model == EMBEDDED_ALIAS:
            if not embedded_available():
                embedded_model_path()  # raises with the install hint
            return
        check_gguf_file(Path(self.spec.model).expanduser())

    @property
    def _where(self) -> str:
        return f"{self.spec.source}={self.spec.raw or self.spec.text!r}"

    def _check_gpu_offload(self) -> None:
        # A CPU-only build ignores n_gpu_layers silently; CPU figures labelled as GPU would be a
        # wrong number, so refuse instead.
        import llama_cpp

        if not llama_cpp.llama_supports_gpu_offload():
            raise BackendUnavailable(
                f"n_gpu_layers={self.opts['n_gpu_layers']} asks for GPU offload, but this "
                "llama-cpp-python build has no GPU support; reinstall it with "
                "CMAKE_ARGS='-DGGML_CUDA=on' pip install --force-reinstall --no-cache-dir "
                "llama-cpp-python (or use n_gpu_layers=0)"
            )

    def load(self) -> None:
        if self.spec.model == EMBEDDED_ALIAS:
            path = embedded_model_path()
        else:
            path = Path(self.spec.model).expanduser()
            check_gguf_file(path)
        try:
            import llama_cpp
        except ImportError as exc:
            raise BackendUnavailable(
                f"llamacpp needs llama-cpp-python ({exc}): {_INSTALL}"
            ) from exc
        self._path = path
        try:
            self._llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self.opts["n_ctx"],
                n_threads=self.opts["n_threads"] or _usable_cpus(),
                n_batch=self.opts["n_batch"],
                n_gpu_layers=self.opts["n_gpu_layers"],
                seed=self.opts["seed"],
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {path} ({path.stat().st_size:,} bytes): {exc}. "
                "Is it a complete GGUF file (not truncated) of an architecture this "
                "llama-cpp-python supports?"
            ) from exc
        self._resolve_template()

    def _resolve_template(self) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        bos, eos = self._token_text(llm.token_bos()), self._token_text(llm.token_eos())
        self._bos = bos
        model = None
        if own := llm.metadata.get("tokenizer.chat_template"):
            # The GGUF's own template, rendered as llama-cpp-python's create_chat_completion does.
            formatter: Any = Jinja2ChatFormatter(own, eos_token=eos, bos_token=bos)
            model = ChatTemplate("model", lambda m: str(formatter(messages=m).prompt))
        self._template = resolve_chat_template(
            self.opts["chat_template"],
            where=self._where,
            model=model,
            embedded=self.spec.model == EMBEDDED_ALIAS,
            bos=bos,
            eos=eos,
            tokenize=lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=True),
        )

    def _token_text(self, token: int) -> str:
        if token < 0:  # the vocabulary has no such token
            return ""
        return str(self._llm.detokenize([token], special=True).decode("utf-8", "replace"))

    def _prompt_tokens(self, prompt: str | Sequence[Message]) -> tuple[list[int], bool]:
        """The prompt's tokens, and whether a chat template formatted it."""
        llm = self._llm
        if isinstance(prompt, str) and not self.opts["chat"]:
            return list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)), False
        if self._template is None:
            raise no_chat_template(self.spec)
        text = self._template.format(prompt)
        tokens = llm.tokenize(
            text.encode("utf-8"), add_bos=needs_bos(text, self._bos), special=True
        )
        return list(tokens), True

    def generation_options(self) -> Collection[str]:
        return _GENERATION_OPTIONS

    def ignore_eos_note(self) -> str | None:
        return None  # honoured: see stream

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        import llama_cpp

        llm = self._llm
        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        check_generation_options(self.kind, request.options, self.generation_options())
        tokens, chat = self._prompt_tokens(request.prompt)
        # A template's end-of-turn token ends a chat answer; llama.cpp counts most such tokens
        # as end-of-generation already, the template's stop_ids cover the rest.
        stop_ids = self._template.stop_ids if chat and self._template else frozenset()
        n_ctx = int(llm.n_ctx())
        if len(tokens) + request.max_tokens > n_ctx:
            raise InvalidRequest(
                f"prompt ({len(tokens)} tokens) + max_tokens ({request.max_tokens}) exceeds the "
                f"context of {n_ctx} tokens; shorten the prompt or raise n_ctx in the spec "
                f"(e.g. {self.spec.kind}:{self.spec.model}?n_ctx={2 * n_ctx})"
            )
        seed = self.opts["seed"] if request.seed is None else request.seed
        llm.set_seed(seed)
        llm.reset()  # full prefill every time: see module docstring
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llm._model.vocab
        sampling = {
            "top_k": self.opts["top_k"],
            "top_p": self.opts["top_p"],
            "repeat_penalty": 1.0,
            **request.options,
        }
        produced = 0
        yield Usage(prompt_tokens=len(tokens), token_source="engine")
        try:
            for token in llm.generate(tokens, temp=request.temperature, reset=False, **sampling):
                # ignore_eos keeps generating past end-of-generation tokens, counting them like
                # any other (as vLLM's ignore_eos does) rather than banning them from sampling:
                # a ban needs a logits processor that copies the whole vocabulary's logits into
                # Python at every step, a cost inside the very decode loop being timed.
                if not request.ignore_eos and (
                    token in stop_ids or llama_cpp.llama_vocab_is_eog(vocab, token)
                ):
                    break
                produced += 1
                yield Chunk(decoder.decode(llm.detokenize([token])), 1)
                if produced >= request.max_tokens:
                    break
        except RuntimeError as exc:
            raise GenerationError(f"llama.cpp failed while generating: {exc}") from exc
        tail = decoder.decode(b"", final=True)
        if tail:
            yield Chunk(tail, 0)

    def info(self) -> dict[str, Any]:
        import llama_cpp

        return {
            "library": "llama-cpp-python",
            "library_version": llama_cpp.__version__,
            "options": self.opts,
            "n_threads_effective": self.opts["n_threads"] or _usable_cpus(),
            "chat_template": self._template.source if self._template else None,
        }

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
