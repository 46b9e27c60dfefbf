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

import email.utils
import importlib.util
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendUnavailable, GenerationError, InvalidRequest, TransientError
from ..options import Option
from ..spec import LLMSpec
from . import Chunk, Request, Usage

__all__ = ["BedrockBackend"]

_INSTALL = "pip install 'pytest-llmperf[bedrock]'"
_NO_REGION = (
    "no AWS region is configured: set AWS_REGION or AWS_DEFAULT_REGION (or a region in "
    "~/.aws/config), or add ?region=us-east-1 to the spec"
)
_NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
    "(or ?profile=) naming a profile in ~/.aws; to use an EC2 instance role, set "
    "AWS_EC2_METADATA_DISABLED=false"
)

# What an error code means, compared case-insensitively: HTTP errors say ThrottlingException,
# exception frames inside the stream say throttlingException.
_BY_CODE = {
    "throttlingexception": "rate_limit",
    "toomanyrequestsexception": "rate_limit",
    "internalserverexception": "server_error",
    "serviceunavailableexception": "server_error",
    "modelnotreadyexception": "server_error",
    "modelerrorexception": "server_error",
    "modeltimeoutexception": "timeout",
    "modelstreamerrorexception": "stream_cut",
    "accessdeniedexception": "refused",
    "unrecognizedclientexception": "refused",
    "invalidsignatureexception": "refused",
    "expiredtokenexception": "refused",
    "resourcenotfoundexception": "not_found",
    "validationexception": "invalid",
}
# For codes not above (a proxy, a new service error): what the HTTP status says.
_BY_STATUS = {
    400: "invalid",
    401: "refused",
    403: "refused",
    404: "not_found",
    408: "timeout",
    429: "rate_limit",
}
_TRANSIENT = ("rate_limit", "server_error", "timeout", "stream_cut")


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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # the HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _plural(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


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
            raise BackendUnavailable(_NO_CREDENTIALS)

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

    def stream(self, request: Request) -> Iterator[Chunk | Usage]:
        return self._stream_with(self._client, request)

    def _stream_with(self, client: Any, request: Request) -> Iterator[Chunk | Usage]:
        from botocore.eventstream import ParserError
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        if request.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {request.max_tokens}")
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
                f"{self._where} ended the stream without messageStop after {_plural(chunks)}",
                kind="stream_cut",
            )
        server_s = None
        if metadata is not None:
            self.last_server_latency_ms = metadata.get("metrics", {}).get("latencyMs")
            if self.last_server_latency_ms is not None:
                server_s = self.last_server_latency_ms / 1000
            usage = metadata.get("usage")
            if usage is not None:
                yield Usage(
                    usage.get("inputTokens"),
                    "usage",
                    output_tokens=usage.get("outputTokens"),
                    server_latency_s=server_s,
                )
                return
        yield Usage(None, "chunks", server_latency_s=server_s)

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
        from botocore.eventstream import ParserError
        from botocore.exceptions import (
            ClientError,
            EventStreamError,
            NoCredentialsError,
            ParamValidationError,
        )
        from botocore.exceptions import ReadTimeoutError as BotocoreReadTimeout
        from urllib3.exceptions import ReadTimeoutError

        where = self._where
        after = "" if chunks is None else f" after {_plural(chunks)}"
        # botocore raises its own before the response, urllib3's while the stream is read.
        if isinstance(exc, (BotocoreReadTimeout, ReadTimeoutError)):
            timeout = self.opts["timeout"]
            return TransientError(f"{where} sent nothing for {timeout:g} s{after}", kind="timeout")
        if isinstance(exc, ParamValidationError):  # e.g. performanceConfig on an old botocore
            return InvalidRequest(f"boto3 {exc}")
        if isinstance(exc, NoCredentialsError):
            return GenerationError(f"{_NO_CREDENTIALS} ({exc})")
        if isinstance(exc, ParserError):
            # Bytes changed on the way (a CRC mismatch): a broken proxy, not a busy server.
            return GenerationError(f"corrupt event stream from {where}{after}: {exc}")
        if not isinstance(exc, ClientError):
            # Connection refused or reset, a body cut short.
            if chunks is None:
                return TransientError(f"lost {where}: {exc}", kind="connection")
            return TransientError(f"{where} cut the stream{after}: {exc}", kind="stream_cut")
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or exc)
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode") or 0)
        category = _BY_CODE.get(code.lower()) or _BY_STATUS.get(status)
        if category is None:
            category = "server_error" if status >= 500 else "other"
        if isinstance(exc, EventStreamError) and category not in ("rate_limit", "invalid"):
            # Whatever the frame says, the answer is cut short mid-way.
            category = "stream_cut"
        said = f"{code or 'HTTP ' + str(status)}: {message}"
        if category == "rate_limit":
            retry = _retry_after(meta.get("HTTPHeaders", {}))
            return TransientError(
                f"{where} throttled the request{after}: {said}",
                kind="rate_limit",
                retry_after=retry,
            )
        if category == "stream_cut":
            return TransientError(f"{where} broke off the stream{after}: {said}", kind=category)
        if category in _TRANSIENT:
            return TransientError(f"{where} failed{after}: {said}", kind=category)
        if category == "invalid":
            return InvalidRequest(f"{where} rejected the request: {said}")
        if category == "refused":
            return GenerationError(
                f"{where} refused the credentials: {said}; check the access key or profile, the "
                "IAM policy (bedrock:InvokeModelWithResponseStream) and that the model is "
                "enabled in this account and region"
            )
        if category == "not_found":
            return GenerationError(
                f"{where} has no model {self.spec.model!r}: {said}; check the model id and the "
                "region, or use an inference profile id (us.MODEL_ID)"
            )
        return GenerationError(f"{where} failed{after}: {said}")

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
