"""Bedrock's failures as ours: botocore's and urllib3's exceptions, error codes and HTTP statuses
mapped to :class:`~pytest_llmperf.errors.TransientError` kinds (counted, retried as fresh
attempts) or plain :class:`~pytest_llmperf.errors.GenerationError` (the test fails with the
reason and what to check)."""

from __future__ import annotations

from ..errors import GenerationError, InvalidRequest, TransientError
from ..retry_after import parse_retry_after

__all__ = ["NO_CREDENTIALS", "plural", "translate"]

NO_CREDENTIALS = (
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


def plural(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def translate(
    exc: Exception, chunks: int | None, *, where: str, timeout: float, model: str
) -> GenerationError:
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

    after = "" if chunks is None else f" after {plural(chunks)}"
    # botocore raises its own before the response, urllib3's while the stream is read.
    if isinstance(exc, (BotocoreReadTimeout, ReadTimeoutError)):
        return TransientError(f"{where} sent nothing for {timeout:g} s{after}", kind="timeout")
    if isinstance(exc, ParamValidationError):  # e.g. performanceConfig on an old botocore
        return InvalidRequest(f"boto3 {exc}")
    if isinstance(exc, NoCredentialsError):
        return GenerationError(f"{NO_CREDENTIALS} ({exc})")
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
        retry = parse_retry_after(meta.get("HTTPHeaders") or {})
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
            f"{where} has no model {model!r}: {said}; check the model id and the "
            "region, or use an inference profile id (us.MODEL_ID)"
        )
    return GenerationError(f"{where} failed{after}: {said}")
