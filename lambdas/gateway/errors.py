"""The error service: Bedrock exceptions and stop reasons -> ``GatewayError`` (HTTP status, OpenAI error, Poe event).

Mapping (docs/reference gateway.md §3.2): before a stream starts the error is an HTTP status with a JSON body (OpenAI
error shape on ``/v1``); once it started it is a Poe ``error`` event (``allow_retry``, ``error_type``) then ``done``,
or an OpenAI error chunk then ``[DONE]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

USER_CAUSED = "user_caused_error"
TOO_LONG = "user_message_too_long"


@dataclass(frozen=True)
class ErrorKind:
    status: int  # HTTP status before the stream starts
    allow_retry: bool  # Poe error event
    openai_type: str  # OpenAI error "type"


# Bedrock error code -> what the gateway answers. Unknown codes: 502, retry allowed.
BEDROCK_ERRORS: dict[str, ErrorKind] = {
    "ValidationException": ErrorKind(400, False, "invalid_request_error"),
    "AccessDeniedException": ErrorKind(502, False, "upstream_error"),
    "ResourceNotFoundException": ErrorKind(404, False, "not_found_error"),
    "ThrottlingException": ErrorKind(429, True, "rate_limit_error"),
    "ServiceQuotaExceededException": ErrorKind(429, True, "rate_limit_error"),
    "ModelNotReadyException": ErrorKind(503, True, "service_unavailable"),
    "ModelTimeoutException": ErrorKind(504, True, "timeout"),
    "ModelErrorException": ErrorKind(502, True, "upstream_error"),
    "ModelStreamErrorException": ErrorKind(502, True, "upstream_error"),
    "InternalServerException": ErrorKind(502, True, "upstream_error"),
    "ServiceUnavailableException": ErrorKind(503, True, "service_unavailable"),
    "ConflictException": ErrorKind(409, False, "invalid_request_error"),
}
UNKNOWN_UPSTREAM = ErrorKind(502, True, "upstream_error")
_TOO_LONG_HINTS = ("too long", "too many tokens", "context window", "input is too large")


class GatewayError(Exception):
    """A failure the gateway reports to its caller, in whichever form the moment allows."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        openai_type: str = "invalid_request_error",
        code: str | None = None,
        allow_retry: bool = False,
        error_type: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.openai_type = openai_type
        self.code = code
        self.allow_retry = allow_retry
        self.error_type = error_type
        self.retry_after = retry_after

    def openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.openai_type, "param": None, "code": self.code}}

    def poe_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {"allow_retry": self.allow_retry, "text": self.message}
        if self.error_type:
            event["error_type"] = self.error_type
        return event

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else {}


def _normalise_code(code: str) -> str:
    """In-stream errors arrive in camelCase (``modelStreamErrorException``); the modeled ones in PascalCase."""
    return code[:1].upper() + code[1:] if code else "UnknownError"


def from_bedrock(error: BaseException) -> GatewayError:
    """Any exception raised by a Bedrock call (or while reading its stream) as a GatewayError."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = _normalise_code(str(details.get("Code", "")))
        message = str(details.get("Message") or error)
        kind = BEDROCK_ERRORS.get(code, UNKNOWN_UPSTREAM)
        error_type = None
        if code == "ValidationException":
            lowered = message.lower()
            error_type = TOO_LONG if any(hint in lowered for hint in _TOO_LONG_HINTS) else USER_CAUSED
        return GatewayError(
            kind.status,
            f"Bedrock {code}: {message}",
            openai_type=kind.openai_type,
            code=code,
            allow_retry=kind.allow_retry,
            error_type=error_type,
            retry_after=1 if kind.status == 429 else None,
        )
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return GatewayError(
            504, "Bedrock did not answer in time", openai_type="timeout", code="Timeout", allow_retry=True
        )
    if isinstance(error, EndpointConnectionError | ConnectionClosedError):
        return GatewayError(502, "Bedrock could not be reached", openai_type="upstream_error", allow_retry=True)
    if isinstance(error, BotoCoreError):
        return GatewayError(502, f"Bedrock client error: {error}", openai_type="upstream_error", allow_retry=True)
    return internal_error()


def internal_error() -> GatewayError:
    return GatewayError(
        500,
        "The gateway failed to handle this request",
        openai_type="server_error",
        code="InternalError",
        allow_retry=True,
    )


@dataclass(frozen=True)
class StopOutcome:
    finish_reason: str  # OpenAI
    poe_error: GatewayError | None  # sent on Poe before ``done``
    openai_error: GatewayError | None = None  # instead of the finish: an error chunk (streamed) or the error (not)


def stop_outcome(stop_reason: str | None) -> StopOutcome:
    """What a Converse ``stopReason`` (botocore ``StopReason``) means for each front end.

    ``end_turn`` / ``stop_sequence`` / ``max_tokens`` / ``tool_use`` end normally (finish ``stop`` / ``length`` /
    ``tool_calls``); ``guardrail_intervened`` / ``content_filtered``: finish ``content_filter``, a user-caused Poe
    error; ``model_context_window_exceeded``: finish ``length``, Poe ``user_message_too_long``; a malformed answer
    (``malformed_model_output`` / ``malformed_tool_use``) is no answer: a retryable error on both routes, so no
    client runs a half-formed tool call. An unknown (newer) reason ends normally."""
    if stop_reason in (None, "end_turn", "stop_sequence"):
        return StopOutcome("stop", None)
    if stop_reason == "max_tokens":
        return StopOutcome("length", None)
    if stop_reason == "tool_use":
        return StopOutcome("tool_calls", None)
    if stop_reason in ("guardrail_intervened", "content_filtered"):
        message = "The answer was blocked by a content filter."
        return StopOutcome("content_filter", GatewayError(400, message, error_type=USER_CAUSED, code=stop_reason))
    if stop_reason == "model_context_window_exceeded":
        message = "The conversation is too long for this model; start a new one or shorten it."
        return StopOutcome("length", GatewayError(400, message, error_type=TOO_LONG, code=stop_reason))
    if stop_reason in ("malformed_model_output", "malformed_tool_use"):
        message = "The model produced a malformed answer; please retry."
        error = GatewayError(502, message, openai_type="upstream_error", allow_retry=True, code=stop_reason)
        return StopOutcome("stop", error, error)
    return StopOutcome("stop", None)
