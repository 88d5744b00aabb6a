"""The gateway's ASGI app: Poe server-bot protocol, an OpenAI-compatible chat API, the model list and a health check.

    uvicorn lambdas.gateway.app:app --port 8080     # locally; in Lambda the Web Adapter runs the same command

``app`` is built on first access by ``create_app(GatewaySettings.from_env())``; tests call ``create_app(settings)``.
SSE frames are written here (no Powertools resolver: it buffers). Poe queries send ``meta`` before any AWS call.
"""

from __future__ import annotations

import gc
import json
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.telemetry._asgi import ExceptionTelemetryMiddleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from lambdas.gateway import error_shapes, metrics, openai_parameters
from lambdas.gateway.batch_store import BatchStore
from lambdas.gateway.bodies import UNAUTHORIZED, bearer, key_matches, read_json, unknown_bot
from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import GatewaySettings, parse_access_keys
from lambdas.gateway.correlation import CorrelationIds
from lambdas.gateway.error_shapes import error_response, invalid_body
from lambdas.gateway.errors import GatewayError, internal_error, stop_outcome
from lambdas.gateway.events import (
    Event,
    Finished,
    MediaFile,
    Progress,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)
from lambdas.gateway.factory import BotHandler, build_bots
from lambdas.gateway.guardrails import INTERVENED
from lambdas.gateway.key_guard import KeyGuard, TeamKeys, current_caller, require_bot
from lambdas.gateway.openai_chat import OpenAIChatRequest
from lambdas.gateway.parameters import image_parameter_controls, text_parameter_controls
from lambdas.gateway.routes_admin import router as admin_router
from lambdas.gateway.routes_anthropic import router as anthropic_router
from lambdas.gateway.routes_batches import batches_router
from lambdas.gateway.routes_embeddings import embeddings_router
from lambdas.gateway.routes_files import files_router
from lambdas.gateway.routes_images import images_router
from lambdas.gateway.streaming import SERVER_SEND, AnswerResponse, coalesced
from lambdas.gateway.tools import ToolResult, parse_tool_calls, parse_tools
from lambdas.gateway.translate import (
    ROLES,
    Attachment,
    ChatMessage,
    ChatRequest,
    ThinkingBlock,
)
from lambdas.shared.observability import logger

POE_REPORTS = ("report_feedback", "report_reaction", "report_error")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# ---------------------------------------------------------------- request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PoeAttachment(_Body):
    url: str
    content_type: str = ""
    name: str = ""
    parsed_content: str | None = None


class PoeMessage(_Body):
    role: str
    content: str = ""
    content_type: str = "text/markdown"
    attachments: list[PoeAttachment] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)

    def chat_message(self) -> ChatMessage | None:
        role = ROLES.get(self.role)
        if role is None:
            return None
        files = tuple(Attachment(a.url, a.content_type, a.name, a.parsed_content) for a in self.attachments)
        return ChatMessage(role, self.content, files)


class PoeToolCall(_Body):
    id: str
    type: str = "function"
    function: dict[str, Any]


class PoeToolResult(_Body):
    tool_call_id: str
    content: str = ""


class PoeRequest(_Body):
    version: str = ""
    type: str
    query: list[PoeMessage] = Field(default_factory=list)
    temperature: float | None = None
    stop_sequences: list[str] = Field(default_factory=list)
    user_id: str = ""
    conversation_id: str = ""
    message_id: str = ""
    # function calling (OpenAI shapes): the tools, and on the follow-up query the calls made and their results
    tools: list[dict[str, Any]] | None = None
    tool_calls: list[PoeToolCall] | None = None
    tool_results: list[PoeToolResult] | None = None

    def chat(self) -> ChatRequest:
        messages = tuple(m for m in (message.chat_message() for message in self.query) if m is not None)
        if self.tool_calls:  # the calls follow the query, then their results (fastapi_poe's tool loop)
            calls = parse_tool_calls([call.model_dump() for call in self.tool_calls])
            messages = (*messages, ChatMessage("assistant", "", tool_calls=calls))
        if self.tool_results:
            results = tuple(ToolResult(result.tool_call_id, result.content) for result in self.tool_results)
            messages = (*messages, ChatMessage("user", "", tool_results=results))
        users = [message for message in self.query if message.role == "user"]
        return ChatRequest(
            messages=messages,
            temperature=self.temperature,
            stop_sequences=tuple(self.stop_sequences),
            parameters=dict(users[-1].parameters) if users else {},
            tools=parse_tools(self.tools),
        )


# ---------------------------------------------------------------- helpers


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


# json.dumps of a str alone is this function's result (ASCII: non-ASCII characters escaped), as it is inside any JSON
# json.dumps writes: the per-frame encoders below use it directly and keep the rest of a frame's bytes ready.
json_string = json.encoder.encode_basestring_ascii
_TEXT_EVENT = b'event: text\ndata: {"text": '


def text_event(text: str) -> bytes:
    """``sse("text", {"text": text})``, byte for byte, with only the text encoded."""
    return _TEXT_EVENT + json_string(text).encode() + b"}\n\n"


def data_line(data: Mapping[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


# ---------------------------------------------------------------- the app

# The garbage collector's young-generation threshold (CPython's is 700 allocations). Each streamed frame allocates a
# few short-lived containers (the event's dicts, the delta): at 500 streams of 20-second answers (25,000 frames a
# second) the default ran about 60 collections a second and a full one (every live stream's objects) every few seconds,
# 11% of the process's CPU; at 10,000 most of those objects are gone before a collection sees them: 2% (see
# docs/gateway-streaming-cpu.md). Older generations keep CPython's thresholds.
GC_YOUNG_THRESHOLD = 10_000

# The middlewares between the server and the routes, each known to pass a body message that is not the last one on
# unchanged (``lambdas.gateway.streaming.AnswerResponse`` sends those past them): Starlette's and FastAPI's error and
# exit-stack layers act on exceptions and on the response's start, ``CorrelationIds`` on the start, ``KeyGuard`` on
# the last body message.
PASS_THROUGH_MIDDLEWARE: tuple[type, ...] = (
    ServerErrorMiddleware,
    ExceptionTelemetryMiddleware,
    CorrelationIds,
    KeyGuard,
    ExceptionMiddleware,
    AsyncExitStackMiddleware,
)


class GatewayApp(FastAPI):
    """FastAPI, with the server's own ``send`` kept in each HTTP request's scope (``SERVER_SEND``) for the streamed
    answers' body (``AnswerResponse``), and only middlewares of ``PASS_THROUGH_MIDDLEWARE`` between it and the
    routes: another one (which may change or count body messages) stops the app at its first request."""

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        layer: Any = stack
        while layer is not self.router:
            if type(layer) not in PASS_THROUGH_MIDDLEWARE:
                raise RuntimeError(
                    f"{type(layer).__name__} sits between the server and the routes, but streamed answers send their "
                    "body past it (lambdas.gateway.streaming.AnswerResponse); if it passes body messages on unchanged, "
                    "add it to PASS_THROUGH_MIDDLEWARE in lambdas/gateway/app.py"
                )
            layer = layer.app
        return stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings.from_env()
    metrics.use_agent(settings.emf_agent)  # where this process's EMF records go (printed unless an agent is set)
    clients = AwsClients(settings)
    bots = build_bots(settings, clients)
    keys: dict[str, str] = dict(settings.access_keys)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.access_keys_secret_arn:  # on AWS the keys live in Secrets Manager, never in the environment
            region = settings.access_keys_secret_arn.split(":")[3]
            secrets = await clients.client("secretsmanager", region)
            value = await secrets.get_secret_value(SecretId=settings.access_keys_secret_arn)
            keys.update(parse_access_keys(value["SecretString"], "the access-keys secret"))
        missing = sorted({b.access_key_ref for b in settings.bots.values()} - set(keys))
        if missing:
            logger.warning("access keys not configured: their bots refuse every request", key_refs=missing)
        for region in sorted({b.region for b in settings.bots.values() if b.modality == "text"}):
            await clients.bedrock_runtime(region)
        # What start-up built (modules, bots, clients) lives as long as the process: out of the collector's way, so a
        # full collection scans only what requests create (shorter pauses while other streams wait on the loop)
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        yield
        await team_keys.close()  # the key slices being leased, before their client closes
        await clients.close()

    # FastAPI's own OpenTelemetry support is off: the gateway traces with Powertools (X-Ray) and its metrics are EMF.
    # Left on, it looks the global OpenTelemetry providers up on every request (environment reads included) only to
    # find none configured.
    app = GatewayApp(
        title="Bedrock model gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    team_keys = TeamKeys(settings.team_keys, clients)
    app.add_middleware(KeyGuard, keys=team_keys)  # team keys: every route, inside the correlation ids
    app.add_middleware(CorrelationIds)
    app.state.settings = settings
    app.state.bots = bots
    app.state.access_keys = keys  # read by the routers included below (a key added at start is seen there too)
    app.include_router(anthropic_router)
    app.state.team_keys = team_keys
    app.include_router(admin_router)

    def authorized(request: Request, bot: BotHandler) -> bool:
        """A team key that may use the bot (else its 403 is raised), or the bot's Secrets Manager key."""
        return require_bot(bot.config.name) or key_matches(bearer(request), keys.get(bot.config.access_key_ref))

    def authenticated(request: Request) -> bool:
        return current_caller() is not None or any(key_matches(bearer(request), key) for key in keys.values())

    @app.exception_handler(GatewayError)
    async def _refused(request: Request, exc: GatewayError) -> JSONResponse:
        return error_shapes.shaped_response(request.url.path, exc)

    error_shapes.install(app)  # unknown routes, wrong methods, FastAPI's validation errors, unexpected exceptions

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "bots": len(bots)}

    # ------------------------------------------------------------ Poe

    @app.post("/poe/{bot_name}", response_model=None)
    async def poe(bot_name: str, request: Request) -> JSONResponse | StreamingResponse:
        bot = bots.get(bot_name)
        if bot is None:
            return error_response(
                GatewayError(404, f"Unknown bot {unknown_bot(bot_name)}.", code="unknown_bot"), openai=False
            )
        if not authorized(request, bot):
            return error_response(GatewayError(401, UNAUTHORIZED, code="unauthorized"), openai=False)
        try:
            body = PoeRequest.model_validate(await read_json(request, settings.max_body_bytes, settings.body_timeout))
            chat = body.chat() if body.type == "query" else None
        except GatewayError as error:
            return error_response(error, openai=False)
        except ValidationError as error:  # 400 as for unparsable JSON (docs/gateway/index.md: "Poe request errors")
            return error_response(invalid_body(error.errors()), openai=False)
        if chat is not None:
            return AnswerResponse(coalesced(poe_answer(bot, chat)), media_type="text/event-stream", headers=SSE_HEADERS)
        if body.type == "settings":
            return JSONResponse(poe_settings(bot))
        if body.type in POE_REPORTS:
            logger.info("poe report", bot=bot_name, report=body.type, body=body.model_extra)
            return JSONResponse({})
        return error_response(
            GatewayError(501, f"Unsupported request type '{body.type}'.", code="unsupported"), openai=False
        )

    # ------------------------------------------------------------ OpenAI

    @app.get("/v1/models", response_model=None)
    async def models(request: Request) -> JSONResponse:
        if not authenticated(request):
            return error_response(GatewayError(401, UNAUTHORIZED, openai_type="authentication_error"), openai=True)
        caller = current_caller()
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "amazon-bedrock",
                "modality": bot.config.modality,
                "model_id": bot.config.model_id,
            }
            for name, bot in bots.items()
            if caller is None or caller.key.may_use(name)  # a team key sees only the bots it may use
        ]
        return JSONResponse({"object": "list", "data": data})

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> JSONResponse | StreamingResponse:
        if not authenticated(request):
            return error_response(GatewayError(401, UNAUTHORIZED, openai_type="authentication_error"), openai=True)
        try:
            raw = await read_json(request, settings.max_body_bytes, settings.body_timeout)
            body = OpenAIChatRequest.model_validate(raw)
            require_bot(body.model)  # a team key: 403 for a bot it may not use, whether the bot exists or not
            bot = bots.get(body.model)
            if bot is None:
                raise GatewayError(
                    404, f"The model {unknown_bot(body.model)} does not exist.", code="model_not_found", param="model"
                )
            if not authorized(request, bot):
                raise GatewayError(401, UNAUTHORIZED, openai_type="authentication_error")
            openai_parameters.check(
                raw, bot.config.modality, body.model
            )  # every parameter honoured, or a 400 naming it
            if body.user or body.safety_identifier:
                logger.info("openai end user", bot=body.model, end_user=body.safety_identifier or body.user)
            chat = body.chat()
            stream = await bot.start(chat)
        except GatewayError as error:
            return error_response(error, openai=True)
        except ValidationError as error:
            return error_response(invalid_body(error.errors()), openai=True)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if body.stream:
            chunks = coalesced(openai_chunks(stream, body.model, include_usage))
            return AnswerResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
        return await openai_completion(stream, body.model)

    # route families in their own modules, with the same keys and checks
    app.include_router(embeddings_router(bots, settings, authenticated, authorized))
    app.include_router(images_router(bots, settings, authenticated, authorized))
    app.state.batch_store = BatchStore(clients, settings)  # the Batch API's files and batches, in the batch bucket
    app.include_router(files_router(settings, app.state.batch_store, authenticated, keys))
    app.include_router(batches_router(bots, settings, app.state.batch_store, clients, keys))
    return app


# ---------------------------------------------------------------- Poe answers


def poe_settings(bot: BotHandler) -> dict[str, Any]:
    """Attachments are allowed on text bots that read images or documents (text files are inlined from Poe's parsed
    content); image and text bots offer their choices as parameter controls unless ``poe.parameter_controls`` is
    set (``lambdas.gateway.parameters``)."""
    config = bot.config
    caps = config.capabilities
    reads_files = config.modality == "text" and (caps.images_in or caps.documents)
    answer: dict[str, Any] = {
        "introduction_message": config.poe.introduction_message,
        "allow_attachments": reads_files,
        "expand_text_attachments": reads_files,
        "enable_image_comprehension": config.modality == "text" and caps.images_in,
        "enforce_author_role_alternation": False,
    }
    if config.poe.parameter_controls is not None:
        answer["parameter_controls"] = config.poe.parameter_controls
    elif config.modality == "image":
        answer["parameter_controls"] = image_parameter_controls(config)
    elif config.modality == "text":
        answer["parameter_controls"] = text_parameter_controls(config)
    return answer


async def poe_answer(bot: BotHandler, chat: ChatRequest) -> AsyncIterator[bytes]:
    """``meta`` at once, text as it arrives, reasoning as a quoted block, failures as ``error``, ``done`` last."""
    yield sse("meta", {"content_type": "text/markdown", "suggested_replies": False})
    try:
        stream = await bot.start(chat)
        reasoning, progressed, files = False, False, 0
        async for event in stream:
            if isinstance(event, ReasoningDelta):
                quoted = event.text.replace("\n", "\n> ")
                yield sse("text", {"text": quoted if reasoning else "> " + quoted})
                reasoning = True
            elif isinstance(event, TextDelta):
                if reasoning:
                    yield sse("text", {"text": "\n\n"})
                    reasoning = False
                yield text_event(event.text)
            elif isinstance(event, Progress):
                yield sse("replace_response", {"text": event.text})
                progressed = True
            elif isinstance(event, MediaFile):
                ref = f"file{files}"
                files += 1
                file = {"url": event.url, "content_type": event.content_type, "name": event.name, "inline_ref": ref}
                yield sse("file", file)
                # a progress line is replaced by the media reference
                yield sse("replace_response" if progressed else "text", {"text": f"![{event.name}][{ref}]\n"})
                progressed = False
            elif isinstance(event, ToolCallStart | ToolCallDelta):  # OpenAI chunks in json events, as fastapi_poe reads
                yield sse("json", _tool_chunk({"tool_calls": [tool_call_delta(event)]}, None))
            elif isinstance(event, Finished):
                outcome = stop_outcome(event.stop_reason)
                if outcome.finish_reason == "tool_calls":
                    yield sse("json", _tool_chunk({}, "tool_calls"))
                if event.invoked_model_id:  # a router's choice, as data beside the answer (no "choices": no tool call)
                    yield sse("json", {"bedrock": bedrock_details(event)})
                if outcome.poe_error is not None:
                    yield sse("error", outcome.poe_error.poe_event())
    except GatewayError as error:
        if error.code == INTERVENED:  # what was streamed is withdrawn: the guardrail's error is the answer
            yield sse("replace_response", {"text": ""})
        yield sse("error", error.poe_event())
    except Exception:
        logger.exception("poe answer failed", bot=bot.config.name)
        yield sse("error", internal_error().poe_event())
    yield sse("done", {})


def _tool_chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def tool_call_delta(event: ToolCallStart | ToolCallDelta) -> dict[str, Any]:
    """An OpenAI ``delta.tool_calls`` entry: the first one names the call, the next carry pieces of its arguments."""
    if isinstance(event, ToolCallStart):
        function = {"name": event.name, "arguments": ""}
        return {"index": event.index, "id": event.id, "type": "function", "function": function}
    return {"index": event.index, "function": {"arguments": event.arguments}}


# ---------------------------------------------------------------- OpenAI answers


def _chunk(completion_id: str, model: str, created: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def markdown_image(media: MediaFile) -> str:
    """An image inline, any other media (video) as a link."""
    bang = "!" if media.content_type.startswith("image/") else ""
    return f"{bang}[{media.name}]({media.url})\n"


def bedrock_details(finished: Finished) -> dict[str, Any]:
    """Gateway extras beside OpenAI's usage: the router's choice, Bedrock's latency, the cost, cache writes and the
    input tokens counted before the call (CountTokens or the estimate, ``lambdas.gateway.tokens``)."""
    return {
        "invoked_model_id": finished.invoked_model_id,
        "latency_ms": finished.latency_ms,
        "cost_usd": round(finished.cost_usd, 8),
        "cache_write_tokens": finished.usage.cache_write_tokens,
        "stop_reason": finished.stop_reason,
        "counted_input_tokens": finished.counted_input_tokens,
        "token_count_source": finished.token_count_source,
    }


class ContentLines:
    """``data_line(_chunk(completion_id, model, created, {"content": text}, None))``, byte for byte, with only the text
    encoded per frame: the rest of the chunk is the same for a whole answer (json.dumps encodes a string alone as it
    encodes it inside the chunk)."""

    _MARK = "\ue000content\ue000"

    def __init__(self, completion_id: str, model: str, created: int) -> None:
        self._chunk = (completion_id, model, created)
        whole = json.dumps(_chunk(completion_id, model, created, {"content": self._MARK}, None))
        mark = json.dumps(self._MARK)
        head, _, tail = whole.partition(mark)
        # json.dumps writes ASCII only, so the parts are their bytes
        self._parts = (f"data: {head}".encode(), f"{tail}\n\n".encode()) if whole.count(mark) == 1 else None

    def __call__(self, text: str) -> bytes:
        if self._parts is None:  # the mark is in the model's name: the whole chunk, encoded each time
            return data_line(_chunk(*self._chunk, {"content": text}, None))
        return self._parts[0] + json_string(text).encode() + self._parts[1]


async def openai_chunks(stream: AsyncIterable[Event], model: str, include_usage: bool) -> AsyncIterator[bytes]:
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    content_line = ContentLines(completion_id, model, created)
    yield data_line(_chunk(completion_id, model, created, {"role": "assistant", "content": ""}, None))
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                yield content_line(event.text)
            elif isinstance(event, ReasoningDelta):
                yield data_line(_chunk(completion_id, model, created, {"reasoning_content": event.text}, None))
            elif isinstance(event, ThinkingBlock):  # the block complete with its signature, to be sent back
                yield data_line(_chunk(completion_id, model, created, {"thinking_blocks": [event.openai()]}, None))
            elif isinstance(event, ToolCallStart | ToolCallDelta):
                delta = {"tool_calls": [tool_call_delta(event)]}
                yield data_line(_chunk(completion_id, model, created, delta, None))
            elif isinstance(event, MediaFile):
                yield data_line(_chunk(completion_id, model, created, {"content": markdown_image(event)}, None))
            elif isinstance(event, Finished):
                outcome = stop_outcome(event.stop_reason)
                if outcome.openai_error is not None:  # no finish: what was streamed is not an answer
                    raise outcome.openai_error
                yield data_line(_chunk(completion_id, model, created, {}, outcome.finish_reason))
                if include_usage:
                    usage_chunk = _chunk(completion_id, model, created, {}, None) | {"choices": []}
                    yield data_line(usage_chunk | {"usage": event.usage.openai(), "bedrock": bedrock_details(event)})
    except GatewayError as error:
        yield data_line(error.openai_body())
    except Exception:
        logger.exception("openai stream failed", model=model)
        yield data_line(internal_error().openai_body())
    yield data_line("[DONE]")


async def openai_completion(stream: AsyncIterable[Event], model: str) -> JSONResponse:
    text: list[str] = []
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: dict[int, dict[str, Any]] = {}
    finished: Finished | None = None
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, ReasoningDelta):
                reasoning.append(event.text)
            elif isinstance(event, ThinkingBlock):
                thinking.append(event.openai())
            elif isinstance(event, ToolCallStart):
                calls[event.index] = tool_call_delta(event)
            elif isinstance(event, ToolCallDelta) and event.index in calls:
                calls[event.index]["function"]["arguments"] += event.arguments
            elif isinstance(event, MediaFile):
                text.append(markdown_image(event))
            elif isinstance(event, Finished):
                finished = event
    except GatewayError as error:
        return error_response(error, openai=True)
    assert finished is not None  # every answer ends with Finished
    outcome = stop_outcome(finished.stop_reason)
    if outcome.openai_error is not None:
        return error_response(outcome.openai_error, openai=True)
    # ``refusal``: Bedrock has no refusal message (a blocked answer is an error, stop_outcome); OpenAI requires the key
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) or (None if calls else ""),
        "refusal": None,
    }
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking:
        message["thinking_blocks"] = thinking
    if calls:
        message["tool_calls"] = [{k: v for k, v in call.items() if k != "index"} for _, call in sorted(calls.items())]
    return JSONResponse(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": outcome.finish_reason, "logprobs": None}],
            "usage": finished.usage.openai(),
            "bedrock": bedrock_details(finished),
        }
    )


def __getattr__(name: str) -> Any:
    """``app`` for uvicorn and the Lambda Web Adapter, built from the environment on first access."""
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(name)
