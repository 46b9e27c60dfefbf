"""llama.cpp through llama-cpp-python, on a local GGUF file.

Generation drives ``Llama.generate`` token by token rather than ``create_completion``: one
chunk per sampled token (exact counts even where text is held back for an incomplete UTF-8
sequence), and the KV cache is cleared before every request so each run pays its full prefill
(llama-cpp-python otherwise reuses a matching prompt prefix and TTFT would measure nothing).
"""

from __future__ import annotations

import codecs
import importlib.util
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, GenerationError, InvalidRequest, ModelLoadError
from ..models import EMBEDDED_ALIAS, check_gguf_file, embedded_available, embedded_model_path
from ..options import Option
from ..spec import LLMSpec
from . import Chunk, Message, Request, Usage

__all__ = ["LlamaCppBackend"]

_INSTALL = "pip install 'pytest-llmperf[llamacpp]'"


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
        Option("chat", bool, False, "format string prompts with the model's chat template"),
        Option("top_k", int, 40, "top-k sampling (temperature > 0)", minimum=0),
        Option("top_p", float, 0.95, "top-p sampling (temperature > 0)", minimum=0.0),
    )

    def __init__(self, spec: LLMSpec, options: Mapping[str, Any]) -> None:
        self.spec = spec
        self.opts = dict(options)
        self._llm: Any = None
        self._path: Path | None = None

    @property
    def model_file(self) -> Path | None:
        return self._path

    def check(self) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise BackendUnavailable(f"llamacpp needs llama-cpp-python: {_INSTALL}")
        if self.opts["n_gpu_layers"] != 0:
            self._check_gpu_offload()
        if self.spec.model == EMBEDDED_ALIAS:
            if not embedded_available():
                embedded_model_path()  # raises with the install hint
            return
        check_gguf_file(Path(self.spec.model).expanduser())

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

    def _prompt_tokens(self, prompt: str | Sequence[Message]) -> list[int]:
        llm = self._llm
        if isinstance(prompt, str) and not self.opts["chat"]:
            return list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False))
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        text = self._chat_formatter()(messages=list(messages)).prompt
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace")
        add_bos = not (bos and text.startswith(bos))
        return list(llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def _chat_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise InvalidRequest(
                f"{self.spec.short_id}: the model has no chat template, so it cannot take chat "
                "messages or chat=true; pass a plain string prompt"
            )

        def token_text(tok: int) -> str:
            return str(llm.detokenize([tok], special=True).decode("utf-8", "replace"))

        return Jinja2ChatFormatter(
            template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos())
        )

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        import llama_cpp

        llm = self._llm
        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        unknown = set(request.options) - {"top_k", "top_p", "repeat_penalty", "min_p"}
        if unknown:
            raise InvalidRequest(
                f"unknown generation option(s) for llamacpp: {', '.join(sorted(unknown))}; "
                "valid: min_p, repeat_penalty, top_k, top_p"
            )
        tokens = self._prompt_tokens(request.prompt)
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
                if llama_cpp.llama_vocab_is_eog(vocab, token):
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
        }

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
