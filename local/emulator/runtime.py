"""The ``bedrock-runtime`` operations: Converse, ConverseStream, CountTokens, InvokeModel and the async invokes.

``RuntimeState`` serves them next to the batch control plane (same ``EmulatorState``: clock, ``step_seconds``, S3
client, region, account and ``faults``), so one ``endpoint_url`` serves both ``bedrock`` and ``bedrock-runtime``
clients. What each operation answers: ``local.emulator.conversation`` (Converse), ``local.emulator.images``
(InvokeModel on image models; text and embedding models answer as in batch, through ``local.emulator.families``),
``local.emulator.async_invoke`` (Nova Reel).

Wire formats: Converse, CountTokens and the async invokes are restJson1 (``local.emulator.protocol``). ConverseStream
answers HTTP 200 with a chunked ``application/vnd.amazon.eventstream`` body, one frame per event
(``local.emulator.eventstream``): ``messageStart``, [``contentBlockDelta`` ``reasoningContent`` text..., signature
(or one ``redactedContent``), ``contentBlockStop``], ``contentBlockDelta`` text (``words_per_delta`` words each) -
or, for a tool call, ``contentBlockStart`` ``toolUse`` {toolUseId, name} and its input JSON in 2+
``contentBlockDelta`` pieces -, ``contentBlockStop``, ``messageStop``, then ``metadata`` (usage, metrics, trace)
last. Errors found before streaming are normal JSON error responses. InvokeModel returns the model's JSON body with
``X-Amzn-Bedrock-Input-Token-Count`` / ``-Output-Token-Count`` headers for text models (not for embedding models,
``UNCOUNTED_FAMILIES``) and ``-Invocation-Latency`` for all.

Runtime faults (``local.emulator.faults``): ``runtime_throttle`` and ``model_error`` hit the next N inference calls
(ThrottlingException 429, then ModelErrorException 424 where the operation models it); ``runtime_error=<Name>:N``
fails the next N calls of operations that model exception <Name> with it (``RUNTIME_ERROR_MESSAGES`` holds each
one's message); ``stream_error_after=K`` and ``stream_error=<exception>`` make every ConverseStream send K text
deltas and then that exception's frame (default ``modelStreamErrorException``); ``video_failed`` fails the next N
async invocations.

Knobs (attributes, change them at any time): ``blocked_words`` (content filter of image and video prompts),
``prompt_routers`` (custom router ARN or id -> model ids), ``min_cache_tokens`` (None: each model's documented
minimum tokens per cache checkpoint; a number overrides it for every model), ``short_prompt_tokens``,
``words_per_delta``, ``stream_delay_seconds``, ``before_stream_event`` (a hook called before each frame is sent) and
``guardrails`` (``blocked_words``, default ``BLOCKME``: what a ``guardrailConfig`` or ``ApplyGuardrail`` blocks;
``output_blocked_words``, default ``BLOCKOUTPUT``: what it blocks in the model's answer only).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from local.emulator.async_invoke import AsyncInvocations
from local.emulator.conversation import (
    INVALID_MODEL,
    Answer,
    PromptCache,
    answer,
    check_messages,
    is_prompt_router,
    measure_prompt,
    route,
    words,
)
from local.emulator.errors import ApiError, validation_error
from local.emulator.eventstream import CONTENT_TYPE, event_frame, exception_frame
from local.emulator.families import FAMILIES, RecordError, base_model_id, family_for_model, invoke
from local.emulator.faults import parse_exception_calls
from local.emulator.guardrails import Guardrails
from local.emulator.images import IMAGE_FAMILIES, image_family
from local.emulator.jobs import EmulatorState
from local.emulator.protocol import Handler, HttpResponse, PacedBody, service_model, to_wire
from local.emulator.tool_use import check_streaming_tools, json_pieces

COUNT_TOKENS_UNSUPPORTED = "The provided model doesn't support counting tokens."
COUNT_TOKENS_PREFIXES = ("anthropic.claude",)  # bare foundation-model ids only: no profile, no router
ASYNC_ONLY_PREFIXES = ("amazon.nova-reel",)
DEFAULT_BLOCKED_WORDS = ("nsfw",)
THROTTLED = "Too many requests, please wait before trying again."
MODEL_ERROR = "The system encountered an unexpected error during processing. Try your request again."
DEFAULT_STREAM_ERROR = "modelStreamErrorException"
# What each in-stream exception says (undocumented wording; the codes are botocore's ConverseStreamOutput members)
STREAM_ERROR_MESSAGES = {
    "internalServerException": "An internal server error occurred. Retry your request.",
    "modelStreamErrorException": "The model encountered an error while streaming its response. Retry your request.",
    "validationException": "The model returned the following errors: the request is invalid for this model.",
    "throttlingException": THROTTLED,
    "serviceUnavailableException": "The service isn't available. Try again later.",
}
# What ``runtime_error=<Name>:N`` answers with. The wording is the emulator's: Bedrock's own messages are not
# documented, except AccessDeniedException's IAM form (an ARN with the account id, which a gateway must not show its
# users) and ServiceQuotaExceededException naming the quota, which these imitate.
RUNTIME_ERROR_MESSAGES = {
    "AccessDeniedException": (
        "User: arn:aws:sts::{account}:assumed-role/emulated-gateway-role/session is not authorized to perform: "
        "bedrock:InvokeModel on resource: arn:aws:bedrock:{region}::foundation-model/{model} because no "
        "identity-based policy allows the bedrock:InvokeModel action"
    ),
    "ConflictException": "The request conflicts with an invocation in progress.",
    "InternalServerException": "The server encountered an internal error while processing the request.",
    "ModelErrorException": MODEL_ERROR,
    "ModelNotReadyException": "The model {model} is not ready to serve inference requests. Try again later.",
    "ModelTimeoutException": "The model {model} took too long to process the request. Try your request again.",
    "ResourceNotFoundException": "The model {model} was not found in {region}.",
    "ServiceQuotaExceededException": (
        "Your request exceeds the service quota 'On-demand model inference tokens per day for {model}' for your "
        "account. You can resubmit your request later."
    ),
    "ServiceUnavailableException": "The service isn't currently available. Try again later.",
    "ThrottlingException": THROTTLED,
    "ValidationException": "The request failed validation.",
}
# Call faults per operation, checked in this order before the operation does anything.
RUNTIME_CALL_FAULTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    operation: tuple(
        (name, code, message)
        for name, code, message in (
            ("runtime_throttle", "ThrottlingException", THROTTLED),
            ("model_error", "ModelErrorException", MODEL_ERROR),
        )
        if code in {shape.name for shape in service_model("bedrock-runtime").operation_model(operation).error_shapes}
    )
    for operation in ("Converse", "ConverseStream", "CountTokens", "InvokeModel", "StartAsyncInvoke")
}
# Embedding families answer without token-count headers: InvokeModelResponse models none (botocore) and no page we read
# promises them, so the stricter reading (a client must not count on them; Titan's body has inputTextTokenCount)
UNCOUNTED_FAMILIES = ("titan-embed-text-v2", "titan-embed-image-v1", "cohere-embed", "nova-multimodal-embed")
_GEO_PREFIXED = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.")

StreamHook = Callable[[str], None]


@dataclass(frozen=True)
class StreamError:
    """The ``stream_error`` / ``stream_error_after`` fault: the exception frame ``name`` after ``after`` text
    deltas."""

    name: str
    after: int


class RuntimeState:
    """The runtime operations of one emulated account, sharing ``state`` with the batch control plane."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.blocked_words: list[str] = list(DEFAULT_BLOCKED_WORDS)
        self.prompt_routers: dict[str, tuple[str, ...]] = {}
        self.min_cache_tokens: int | None = None  # None: each model's documented minimum
        self.short_prompt_tokens = 32
        self.words_per_delta = 1
        self.stream_delay_seconds = 0.0
        self.before_stream_event: StreamHook | None = None
        self.cache = PromptCache()
        self.guardrails = Guardrails()  # guardrailConfig and ApplyGuardrail (local.emulator.guardrails)
        self.videos = AsyncInvocations(state, self._take_fault, self.is_blocked)

    def handlers(self) -> dict[str, Handler]:
        """Operation name -> handler, for ``RouteTable.add_service("bedrock-runtime", ...)``."""
        return {
            "Converse": self.converse,
            "ConverseStream": self.converse_stream,
            "CountTokens": self.count_tokens,
            "InvokeModel": self.invoke_model,
            "StartAsyncInvoke": self.start_async_invoke,
            "GetAsyncInvoke": self.videos.get,
            "ListAsyncInvokes": self.videos.list_page,
            "ApplyGuardrail": self.guardrails.apply,
        }

    def is_blocked(self, text: str) -> bool:
        lowered = text.lower()
        return any(re.search(rf"\b{re.escape(word.lower())}\b", lowered) for word in self.blocked_words if word)

    # ------------------------------------------------------------ faults (counted in the EmulatorState)

    def _take_fault(self, name: str) -> str | None:
        """Inject one ``name`` fault if its count allows: ``"k of N"``, else None.

        Uses the EmulatorState's fault counter so ``faults_injected()`` reports runtime and batch faults together.
        """
        state = self.state
        with state._lock:  # one counter for every fault of the emulator (see the docstring)
            if not state._take_fault(name):
                return None
            return f"{state.faults_injected()[name]} of {state.faults[name]}"

    def _inject_call_fault(self, operation: str, model_id: str = "") -> None:
        for name, code, message in RUNTIME_CALL_FAULTS[operation]:
            injected = self._take_fault(name)
            if injected:
                raise ApiError(code, f"{message} (emulated fault {name}: {injected})")
        self._inject_runtime_error(operation, model_id)

    def _inject_runtime_error(self, operation: str, model_id: str) -> None:
        """``runtime_error=<Name>:N``: the next N calls of operations that model <Name> fail with it."""
        spec = self.state.faults.get("runtime_error")
        if not spec:
            return
        code, calls = parse_exception_calls(str(spec))
        if code not in {
            shape.name for shape in service_model("bedrock-runtime").operation_model(operation).error_shapes
        }:
            return
        state = self.state
        with state._lock:  # the EmulatorState's counter, as for every other fault
            if state._injected["runtime_error"] >= calls:
                return
            state._injected["runtime_error"] += 1
            injected = state._injected["runtime_error"]
        template = RUNTIME_ERROR_MESSAGES[code]
        message = template.format(account=state.account_id, region=state.region, model=base_model_id(model_id))
        raise ApiError(code, f"{message} (emulated fault runtime_error={spec}: {injected} of {calls})")

    def _stream_error(self) -> StreamError | None:
        """The stream fault if ``stream_error_after`` or ``stream_error`` is set (counted as injected once per stream
        it breaks), else None."""
        faults = self.state.faults
        if "stream_error_after" not in faults and "stream_error" not in faults:
            return None
        with self.state._lock:
            self.state._injected["stream_error_after" if "stream_error_after" in faults else "stream_error"] += 1
        return StreamError(
            str(faults.get("stream_error", DEFAULT_STREAM_ERROR)), int(faults.get("stream_error_after", 0))
        )

    def _now(self) -> datetime:
        return self.state.clock()

    # ------------------------------------------------------------ Converse / ConverseStream

    def _answer(self, params: dict[str, Any], streaming: bool = False) -> Answer:
        check_messages(params.get("messages") or [])
        prompt = measure_prompt(params)
        target = route(params["modelId"], prompt.tokens, self.prompt_routers, self.short_prompt_tokens)
        if streaming:
            check_streaming_tools(params, target.family)
        result = answer(params, target, prompt, self.cache, self._now(), self.min_cache_tokens)
        return self.guardrails.guard(params, result, streaming=streaming)

    def converse(self, params: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        self._inject_call_fault("Converse", params["modelId"])
        result = self._answer(params)
        return {
            "output": {"message": {"role": "assistant", "content": result.content()}},
            "stopReason": result.stop_reason,
            "usage": result.usage(),
            "metrics": {"latencyMs": _elapsed_ms(started)},
            "additionalModelResponseFields": result.response_fields(),
            "trace": result.trace(),
        }

    def converse_stream(self, params: dict[str, Any]) -> HttpResponse:
        started = time.monotonic()
        self._inject_call_fault("ConverseStream", params["modelId"])
        result = self._answer(params, streaming=True)
        error = self._stream_error()
        headers = {"x-amzn-requestid": str(uuid.uuid4()), "content-type": CONTENT_TYPE}
        frames = self._frames(result, started, error)
        if self.stream_delay_seconds:  # paced: the HTTP layer waits before each text frame (one thread for all)
            return HttpResponse(200, headers, PacedBody(frames))
        return HttpResponse(200, headers, (frame for _, frame in frames))

    def _frames(self, result: Answer, started: float, error: StreamError | None) -> Iterator[tuple[float, bytes]]:
        """The stream's frames, each with the seconds to wait before sending it (``stream_delay_seconds`` before a
        text delta), produced as they are sent (the HTTP layer sends each as one chunk)."""
        shape = service_model("bedrock-runtime").shape_for("ConverseStreamOutput")
        text_index = 0 if result.reasoning is None else 1
        text_deltas = 0
        for event_type, body in stream_events(result, self.words_per_delta):
            is_text = event_type == "contentBlockDelta" and "text" in body["delta"]
            text_done = event_type == "contentBlockStop" and body["contentBlockIndex"] == text_index
            if error is not None and ((is_text and text_deltas == error.after) or text_done):
                message = f"{STREAM_ERROR_MESSAGES[error.name]} (emulated fault {error.name} after {error.after})"
                yield 0.0, exception_frame(error.name, {"message": message})
                return
            if event_type == "metadata":
                body = {**body, "metrics": {"latencyMs": _elapsed_ms(started)}}
            if self.before_stream_event is not None:
                self.before_stream_event(event_type)
            text_deltas += is_text
            wait = self.stream_delay_seconds if is_text else 0.0
            if is_text and type(body["delta"]["text"]) is str:
                yield wait, _text_delta_frame(body["contentBlockIndex"], body["delta"]["text"])
            else:
                yield wait, event_frame(event_type, to_wire(body, shape.members[event_type]))

    # ------------------------------------------------------------ CountTokens

    def count_tokens(self, params: dict[str, Any]) -> dict[str, Any]:
        self._inject_call_fault("CountTokens", params["modelId"])
        model_id = params["modelId"]
        base = base_model_id(model_id)
        if is_prompt_router(model_id) or _GEO_PREFIXED.match(model_id) or "inference-profile/" in model_id:
            raise validation_error(COUNT_TOKENS_UNSUPPORTED)
        if not base.startswith(COUNT_TOKENS_PREFIXES):
            known = family_for_model(model_id) is not None or image_family(model_id) is not None
            raise validation_error(COUNT_TOKENS_UNSUPPORTED if known else INVALID_MODEL)
        request = params["input"]
        if "converse" in request:
            check_messages(request["converse"].get("messages") or [])
            return {"inputTokens": measure_prompt(request["converse"]).tokens}
        body = _json_body(_b64decode(request["invokeModel"]["body"]))
        try:
            return {"inputTokens": invoke(family_for_model(model_id), model_id, body).input_tokens}
        except RecordError as error:
            raise validation_error(str(error)) from None

    # ------------------------------------------------------------ InvokeModel

    def invoke_model(self, params: dict[str, Any]) -> HttpResponse:
        started = time.monotonic()
        self._inject_call_fault("InvokeModel", params["modelId"])
        model_id = params["modelId"]
        body = _json_body(params.get("body") or b"")
        headers = {"x-amzn-requestid": str(uuid.uuid4()), "content-type": "application/json"}
        image = image_family(model_id)
        if image is not None:
            output = IMAGE_FAMILIES[image](model_id, body, self.is_blocked)
        else:
            family = family_for_model(model_id)
            if family not in FAMILIES or base_model_id(model_id).startswith(ASYNC_ONLY_PREFIXES):
                raise validation_error(INVALID_MODEL)
            try:
                invocation = invoke(family, model_id, body)
            except RecordError as error:
                raise validation_error(str(error)) from None
            output = invocation.output
            if family not in UNCOUNTED_FAMILIES:
                headers |= {
                    "x-amzn-bedrock-input-token-count": str(invocation.input_tokens),
                    "x-amzn-bedrock-output-token-count": str(invocation.output_tokens),
                }
        headers["x-amzn-bedrock-invocation-latency"] = str(_elapsed_ms(started))
        return HttpResponse(200, headers, json.dumps(output).encode())

    # ------------------------------------------------------------ async invokes

    def start_async_invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        self._inject_call_fault("StartAsyncInvoke", params["modelId"])
        return self.videos.start(params)


def stream_events(result: Answer, words_per_delta: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
    """The ConverseStream events of ``result``, as (event type, body); ``metadata`` carries latency 0 here."""
    yield "messageStart", {"role": "assistant"}
    index = 0
    if result.reasoning is not None and result.redacted:
        data = result.content()[0]["reasoningContent"]["redactedContent"]
        yield "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": data}}}
    elif result.reasoning is not None:
        for chunk in _chunks(result.reasoning, words_per_delta):
            yield "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": chunk}}}
        signature = result.content()[0]["reasoningContent"]["reasoningText"]["signature"]
        yield "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": signature}}}
    if result.reasoning is not None:
        yield "contentBlockStop", {"contentBlockIndex": 0}
        index = 1
    if result.text or not result.tool_uses:
        for chunk in _chunks(result.text, words_per_delta):
            yield "contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": chunk}}
        yield "contentBlockStop", {"contentBlockIndex": index}
        index += bool(result.tool_uses)
    for number, tool in enumerate(result.tool_uses):  # one block each, its input JSON in pieces as models stream it
        start = {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}}
        yield "contentBlockStart", {"contentBlockIndex": index + number, "start": start}
        for piece in json_pieces(json.dumps(tool["input"])):
            yield "contentBlockDelta", {"contentBlockIndex": index + number, "delta": {"toolUse": {"input": piece}}}
        yield "contentBlockStop", {"contentBlockIndex": index + number}
    stop: dict[str, Any] = {"stopReason": result.stop_reason}
    if result.response_fields() is not None:
        stop["additionalModelResponseFields"] = result.response_fields()
    yield "messageStop", stop
    metadata: dict[str, Any] = {"usage": result.usage(), "metrics": {"latencyMs": 0}}
    if result.trace() is not None:
        metadata["trace"] = result.trace()
    yield "metadata", metadata


@lru_cache(maxsize=4096)
def _text_delta_frame(index: int, text: str) -> bytes:
    """A text delta's frame, encoded as every other frame is, once per (block, text): an answer repeats its words, and
    encoding (the shape walk, JSON, two CRC32s) was most of the CPU a streamed frame cost the emulator."""
    body = {"contentBlockIndex": index, "delta": {"text": text}}
    shape = service_model("bedrock-runtime").shape_for("ConverseStreamOutput").members["contentBlockDelta"]
    return event_frame("contentBlockDelta", to_wire(body, shape))


def _chunks(text: str, words_per_delta: int) -> Iterator[str]:
    pieces = words(text)
    size = max(1, words_per_delta)
    for start in range(0, len(pieces), size):
        yield "".join(pieces[start : start + size])


def _elapsed_ms(started: float) -> int:
    return max(1, round((time.monotonic() - started) * 1000))


def _b64decode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise validation_error("input.invokeModel.body is not valid base64") from None


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError as error:
        raise validation_error(f"Malformed input request: the body is not valid JSON ({error})") from None
    if not isinstance(body, dict):
        raise validation_error("Malformed input request: the body must be a JSON object")
    return body
