"""AWS Bedrock through the ConverseStream API: ``bedrock:MODEL_ID[?options]``.

``MODEL_ID`` is a Bedrock model id, inference profile id or ARN (``anthropic.claude-3-haiku-
20240307-v1:0``, ``us.amazon.nova-lite-v1:0``). Credentials and region follow the usual AWS chain
(environment, ``~/.aws``, SSO), plus ``?profile=`` and ``?region=``; ``AWS_REGION`` counts too,
after ``AWS_DEFAULT_REGION`` and the profile's region (boto3 alone ignores it). The endpoint is
the regional one unless ``?endpoint_url=`` (or ``bedrock:MODEL@URL``) is given; boto3 also
honours ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` by itself. The EC2 instance-metadata service is not
asked for credentials unless ``AWS_EC2_METADATA_DISABLED=false`` is set: off EC2 that probe
stalls.

Bedrock reports no per-delta token counts, so each text delta counts one token until the
``metadata`` event's usage gives the real totals (``token_source`` says which happened).
botocore's retries are off: a throttled or failed attempt surfaces as a
:class:`~pytest_llmperf.errors.TransientError` that the harness counts, never as a slow sample.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, GenerationError, InvalidRequest, TransientError
from ..harness import MAX_OUTPUT_TOKENS, token_count
from ..numeric import MAX_COUNT, check_finite
from ..options import Option
from ..redact import register_spec_variables
from ..spec import LLMSpec
from . import Chunk, Request, Usage, check_generation_options
from ._bedrock_errors import NO_CREDENTIALS, plural, translate

__all__ = ["BedrockBackend"]

_INSTALL = "pip install 'pytest-llmperf[bedrock]'"
#: ConverseStream's request fields a benchmark may set (botocore's service model; the rest of
#: the request is the backend's).
_CONVERSE_FIELDS = frozenset(
    (
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "guardrailConfig",
        "outputConfig",
        "projectIdentifier",
        "promptVariables",
        "requestMetadata",
        "serviceTier",
        "toolConfig",
    )
)
_NO_REGION = (
    "no AWS region is configured: set AWS_REGION or AWS_DEFAULT_REGION (or a region in "
    "~/.aws/config), or add ?region=us-east-1 to the spec"
)


@contextmanager
def _without_instance_metadata() -> Iterator[None]:
    # The same guard as environment.api_credentials, but an explicit setting wins.
    if "AWS_EC2_METADATA_DISABLED" in os.environ:
        yield
        return
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    try:
        yield
    finally:
        os.environ.pop("AWS_EC2_METADATA_DISABLED", None)


class BedrockBackend:
    kind: ClassVar[str] = "bedrock"
    install_hint: ClassVar[str] = _INSTALL
    options: ClassVar[Sequence[Option]] = (
        Option("region", str, None, "AWS region; unset: AWS_DEFAULT_REGION, profile, AWS_REGION"),
        Option(
            "endpoint_url",
            str,
            None,
            "endpoint; unset: AWS_ENDPOINT_URL_BEDROCK_RUNTIME or the regional one",
        ),
        Option("profile", str, None, "AWS profile; unset: AWS_PROFILE or the default profile"),
        Option("timeout", float, 60.0, "seconds to wait for the next bytes", minimum=0.1),
        Option("connect_timeout", float, 10.0, "seconds to open a connection", minimum=0.1),
        Option(
            "latency",
            str,
            None,
            "performanceConfig latency; unset: not sent",
            choices=("standard", "optimized"),
        ),
    )

    def __init__(self, spec: LLMSpec, options: Mapping[str, Any]) -> None:
        self.spec = spec
        self.opts = dict(options)
        register_spec_variables(self.opts)  # none today; a *_env option added later is covered
        self._session: Any = None
        self._client: Any = None
        self._where = "Bedrock"
        #: The server's own ``metrics.latencyMs`` of the last generation, if it sent one.
        self.last_server_latency_ms: int | None = None
        #: ``stopReason`` of the last generation (``end_turn``, ``max_tokens``, ...).
        self.last_stop_reason: str | None = None

    @property
    def model_file(self) -> Path | None:
        return None

    def _endpoint(self) -> str | None:
        option, at_url = self.opts["endpoint_url"], self.spec.base_url
        if option and at_url and option != at_url:
            raise BackendUnavailable(
                f"two endpoints given ({at_url} and ?endpoint_url={option}): give one"
            )
        return option or at_url or None

    def _get_session(self) -> Any:
        if self._session is None:
            import boto3
            from botocore.exceptions import BotoCoreError

            try:
                self._session = boto3.Session(
                    profile_name=self.opts["profile"], region_name=self.opts["region"]
                )
            except BotoCoreError as exc:  # ProfileNotFound, a malformed ~/.aws/config
                raise BackendUnavailable(f"AWS configuration: {exc}") from exc
        return self._session

    def _region(self, session: Any) -> str | None:
        # botocore reads AWS_DEFAULT_REGION only; other AWS SDKs and Lambda set AWS_REGION.
        return session.region_name or os.environ.get("AWS_REGION") or None

    def _require_credentials(self, session: Any) -> None:
        from botocore.exceptions import BotoCoreError

        try:
            with _without_instance_metadata():
                found = session.get_credentials()
        except BotoCoreError as exc:  # an expired SSO token, a broken credential_process
            raise BackendUnavailable(f"AWS credentials: {exc}") from exc
        if found is None:
            raise BackendUnavailable(NO_CREDENTIALS)

    def check(self) -> None:
        if importlib.util.find_spec("boto3") is None:
            raise BackendUnavailable(f"bedrock needs the boto3 package: {_INSTALL}")
        self._endpoint()
        session = self._get_session()
        if self._region(session) is None:
            raise BackendUnavailable(_NO_REGION)
        self._require_credentials(session)

    def load(self) -> None:
        session = self._get_session()
        self._require_credentials(session)
        self._client = self._new_client()
        self._where = f"Bedrock at {self._client.meta.endpoint_url}"

    def _new_client(self, **config: Any) -> Any:
        """A bedrock-runtime client; ``config``: further botocore ``Config`` settings."""
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoRegionError

        session = self._get_session()
        settings = Config(
            # total_max_attempts counts the first try ("max_attempts": 1 would allow a retry).
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=self.opts["connect_timeout"],
            read_timeout=self.opts["timeout"],
            **config,
        )
        try:
            return session.client(
                "bedrock-runtime",
                region_name=self._region(session),
                endpoint_url=self._endpoint(),
                config=settings,
            )
        except NoRegionError as exc:
            raise BackendUnavailable(_NO_REGION) from exc
        except (BotoCoreError, ValueError) as exc:  # ValueError: a malformed endpoint URL
            raise BackendUnavailable(f"cannot create a bedrock-runtime client: {exc}") from exc

    def _converse_kwargs(self, request: Request) -> dict[str, Any]:
        prompt = request.prompt
        system: list[dict[str, str]] = []
        messages: list[dict[str, Any]] = []
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": [{"text": prompt}]})
        else:
            for message in prompt:
                role, text = message.get("role"), message.get("content", "")
                if role == "system":
                    system.append({"text": text})
                elif role in ("user", "assistant"):
                    messages.append({"role": role, "content": [{"text": text}]})
                else:
                    raise InvalidRequest(
                        f"Bedrock takes system, user and assistant messages, not {role!r}"
                    )
        kwargs: dict[str, Any] = {
            "modelId": self.spec.model,
            "messages": messages,
            "inferenceConfig": {
                "maxTokens": request.max_tokens,
                "temperature": request.temperature,
            },
        }
        if system:
            kwargs["system"] = system
        if self.opts["latency"] is not None:
            kwargs["performanceConfig"] = {"latency": self.opts["latency"]}
        # Converse has no seed; per-call extras (additionalModelRequestFields, ...) pass through.
        kwargs.update(request.options)
        return kwargs

    def generation_options(self) -> frozenset[str]:
        """ConverseStream's own request fields, passed through as given; the backend sets
        ``modelId``, ``messages``, ``system``, ``inferenceConfig`` and ``performanceConfig``."""
        return _CONVERSE_FIELDS

    def ignore_eos_note(self) -> str | None:
        return "Bedrock's Converse API has no field that forces the output length"

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        return self._stream_with(self._client, request)

    def _stream_with(self, client: Any, request: Request) -> Iterator[Chunk | Usage]:
        from botocore.eventstream import ParserError
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
        check_generation_options(self.kind, request.options, _CONVERSE_FIELDS)
        kwargs = self._converse_kwargs(request)
        self.last_server_latency_ms = self.last_stop_reason = None
        try:
            events = client.converse_stream(**kwargs)["stream"]
        except (ClientError, BotoCoreError, HTTPError) as exc:
            raise self._translate(exc, None) from exc
        chunks = 0
        metadata: dict[str, Any] | None = None
        # Local, not the attribute: under llm_load other threads stream at the same time.
        stop_reason: str | None = None
        finished = False
        try:
            for event in events:
                delta = event.get("contentBlockDelta")
                if delta is not None:
                    text = delta["delta"].get("text")
                    if text:
                        chunks += 1
                        yield Chunk(text, 1)
                elif "messageStop" in event:
                    stop_reason = self.last_stop_reason = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    metadata = event["metadata"]
            finished = True
        except (ClientError, BotoCoreError, HTTPError, ParserError) as exc:
            raise self._translate(exc, chunks) from exc
        finally:
            if not finished:
                # A half-read connection must not go back to the pool for the next sample.
                events.close()
        if stop_reason is None:
            raise TransientError(
                f"{self._where} ended the stream without messageStop after {plural(chunks)}",
                kind="stream_cut",
            )
        server_s = None
        if metadata is not None:
            try:
                latency, input_tokens, output_tokens = self._metadata(metadata)
            except (ValueError, TypeError, AttributeError) as exc:
                raise GenerationError(
                    f"{self._where} sent metadata that cannot be true after {plural(chunks)}: {exc}"
                ) from exc
            self.last_server_latency_ms = latency
            if latency is not None:
                server_s = latency / 1000
            if metadata.get("usage") is not None:
                yield Usage(
                    input_tokens, "usage", output_tokens=output_tokens, server_latency_s=server_s
                )
                return
        yield Usage(None, "chunks", server_latency_s=server_s)

    @staticmethod
    def _metadata(metadata: Mapping[str, Any]) -> tuple[Any, int | None, int | None]:
        """``metrics.latencyMs`` and the usage counts, each checked: numbers from the wire."""
        latency = (metadata.get("metrics") or {}).get("latencyMs")
        if latency is not None:
            check_finite(latency, what="metrics.latencyMs", low=0.0)
        usage = metadata.get("usage") or {}
        counts: list[int | None] = []
        for name, high in (("inputTokens", MAX_COUNT), ("outputTokens", MAX_OUTPUT_TOKENS)):
            value = usage.get(name)
            counts.append(None if value is None else token_count(value, what=name, high=high))
        return latency, counts[0], counts[1]

    def open_async(self, limit: int) -> Any:
        """``llm_load``'s concurrent streams. boto3 has no async client (and aiobotocore is not
        a dependency): each ConverseStream runs in a pool of ``limit`` threads, its events
        handed to the event loop as they arrive (``_async_bridge``). They share a client of
        their own whose connection pool holds ``limit`` connections: with botocore's default
        of 10, more threads would open connections the pool then discards ("Connection pool
        is full"), so later requests would pay a new connection inside the measurement."""
        from ._async_bridge import ThreadedStreamer

        client = self._new_client(max_pool_connections=limit)
        return ThreadedStreamer(
            lambda request: self._stream_with(client, request),
            limit,
            "llmperf-bedrock",
            on_close=client.close,
        )

    def _translate(self, exc: Exception, chunks: int | None) -> GenerationError:
        """The error to raise for an SDK failure; ``chunks`` is None before the stream began."""
        return translate(
            exc, chunks, where=self._where, timeout=self.opts["timeout"], model=self.spec.model
        )

    def info(self) -> dict[str, Any]:
        import boto3

        return {
            "library": "boto3",
            "library_version": boto3.__version__,
            "options": self.opts,
            "region": None if self._client is None else self._client.meta.region_name,
            "endpoint_url": None if self._client is None else self._client.meta.endpoint_url,
        }

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
