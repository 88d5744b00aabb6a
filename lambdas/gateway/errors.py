"""The error service: Bedrock exceptions and stop reasons -> ``GatewayError`` (HTTP status, OpenAI error, Poe event).

Mapping (docs/bedrock-facts.md, "Runtime errors and how the gateway maps them"): before a stream starts the error
is an HTTP status with a JSON body (OpenAI error shape on ``/v1``) and, for Bedrock errors, the retry hints
``Retry-After`` (where waiting helps) and ``x-should-retry`` (which the openai SDK obeys); once it started it is a
Poe ``error`` event (``allow_retry``, ``error_type``) then ``done``, or an OpenAI error chunk then ``[DONE]``.
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

from lambdas.gateway import metrics
from lambdas.shared.observability import logger

USER_CAUSED = "user_caused_error"
TOO_LONG = "user_message_too_long"


@dataclass(frozen=True)
class ErrorKind:
    status: int  # HTTP status before the stream starts
    allow_retry: bool  # Poe error event; also the x-should-retry header
    openai_type: str  # OpenAI error "type"
    advice: str = ""  # what the user can do, after Bedrock's message
    retry_after: int | None = None  # seconds for a Retry-After header, only where waiting helps
    operator_fix: str = ""  # set: Bedrock's message goes to the log with this fix, never to the user


ACCESS_DENIED_FIX = (
    "enable access to the bot's model in the Bedrock console (Model access) of the bot's region, and check that the "
    "gateway's role may call bedrock:InvokeModel* on it (the stack grants the models of bots.json)"
)
# Bedrock error code -> what the gateway answers (status per botocore's bedrock-runtime error shapes, docs/bedrock-
# facts.md). Unknown codes: UNKNOWN_UPSTREAM.
BEDROCK_ERRORS: dict[str, ErrorKind] = {
    "ValidationException": ErrorKind(400, False, "invalid_request_error"),
    "AccessDeniedException": ErrorKind(
        502,
        False,
        "upstream_error",
        "This bot is unavailable: Amazon Bedrock refused the gateway access to its model. Retrying will not help; "
        "the gateway's operator has to grant the access.",
        operator_fix=ACCESS_DENIED_FIX,
    ),
    "ResourceNotFoundException": ErrorKind(
        404,
        False,
        "not_found_error",
        "The bot's model was not found in its region; the operator must fix its model_id.",
    ),
    "ThrottlingException": ErrorKind(
        429, True, "rate_limit_error", "Too many requests right now: retry in a moment.", retry_after=1
    ),
    "ServiceQuotaExceededException": ErrorKind(
        429,
        False,
        "insufficient_quota",
        "This request exceeds a service quota of the gateway's AWS account (named above): retrying right away will "
        "not help. Try again later, or ask the operator to raise the quota in Service Quotas.",
    ),
    "ModelNotReadyException": ErrorKind(
        503, True, "service_unavailable", "The model is not ready to serve requests yet: retry shortly.", retry_after=10
    ),
    "ModelTimeoutException": ErrorKind(
        504, True, "timeout", "The model took too long: retry, or shorten the conversation or the answer asked for."
    ),
    "ModelErrorException": ErrorKind(
        502, True, "upstream_error", "The model failed on this request: retry, and rephrase it if it fails again."
    ),
    "ModelStreamErrorException": ErrorKind(502, True, "upstream_error"),
    "InternalServerException": ErrorKind(
        502, True, "upstream_error", "Amazon Bedrock had an internal error: retry.", retry_after=1
    ),
    "ServiceUnavailableException": ErrorKind(
        503, True, "service_unavailable", "Amazon Bedrock is unavailable right now: retry shortly.", retry_after=5
    ),
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
        should_retry: bool | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.openai_type = openai_type
        self.code = code
        self.allow_retry = allow_retry
        self.error_type = error_type
        self.retry_after = retry_after
        self.should_retry = should_retry  # sent as x-should-retry when set (the openai SDK obeys it)
        self.param = param  # the request field at fault (OpenAI ``error.param``), as a dotted path

    def openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.openai_type, "param": self.param, "code": self.code}}

    def poe_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {"allow_retry": self.allow_retry, "text": self.message}
        if self.error_type:
            event["error_type"] = self.error_type
        return event

    def headers(self) -> dict[str, str]:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        return headers


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
        if kind.operator_fix:  # the operator's to fix: the details (e.g. the role ARN, the account) go to the log only
            logger.error("bedrock error: operator action needed", code=code, detail=message, fix=kind.operator_fix)
        text = f"Bedrock {code}." if kind.operator_fix else f"Bedrock {code}: {message}"
        return GatewayError(
            kind.status,
            f"{text} {kind.advice}" if kind.advice else text,
            openai_type=kind.openai_type,
            code=code,
            allow_retry=kind.allow_retry,
            error_type=error_type,
            retry_after=kind.retry_after,
            should_retry=kind.allow_retry,
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
    client runs a half-formed tool call. An unknown (newer) reason ends normally (docs/bedrock-facts.md, Runtime:
    Converse and ConverseStream)."""
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


def bedrock_failure(bot: str, error: BaseException) -> GatewayError:
    """A failed Bedrock call of ``bot`` as the answer's GatewayError: logged (an unexpected one with its traceback)
    and counted as ``BedrockErrors`` by error class."""
    mapped = from_bedrock(error)
    if mapped.status == 500:
        logger.exception("gateway internal error", bot=bot)
    else:
        logger.warning("bedrock error", bot=bot, status=mapped.status, code=mapped.code)
    metrics.emit(metrics.BEDROCK_ERRORS, 1, "Count", error_class=mapped.openai_type)
    return mapped
