"""The Anthropic Messages API over Converse, both ways (docs/gateway/anthropic.md).

Request (``MessagesRequest``, ``CountTokensRequest``) -> a Converse request for one bot (``converse_request``):

- ``system`` (a string or text blocks) -> ``system`` text blocks, after the bot's own system prompt;
- ``messages[].content`` (a string or blocks) -> Converse content blocks in the order given, consecutive messages of
  one role merged (Converse wants roles to alternate): ``text``; ``image`` and ``document`` (``base64``, ``url`` and,
  for documents, ``text`` sources) through the bot's attachment reader (its ``images_in`` / ``documents``
  capabilities, formats and limits); ``tool_use`` / ``tool_result`` -> ``toolUse`` / ``toolResult`` (``is_error`` ->
  ``status: error``), or text when the request sends no tools; ``thinking`` / ``redacted_thinking`` ->
  ``reasoningContent`` (text + signature, or the redacted bytes) while thinking is on for the request, left out
  otherwise (as Anthropic's API leaves earlier turns' thinking out of the context);
- ``cache_control`` on a tool, a system block or a message block -> a ``cachePoint`` after it (``ttl`` kept) on bots
  with ``prompt_caching``; on other bots the prompt is simply not cached (usage shows 0 cache tokens);
- ``tools`` -> ``toolConfig.tools`` (custom tools only); ``tool_choice`` ``auto`` / ``any`` / ``tool`` / ``none`` ->
  no ``toolChoice`` / ``{any}`` / ``{tool: {name}}`` / no ``toolConfig``;
- ``max_tokens`` (lowered to the bot's ``inference.max_tokens``), ``temperature`` (at most the bot's
  ``max_temperature``), ``top_p``, ``stop_sequences`` -> ``inferenceConfig``; on Claude models ``top_k`` and
  ``thinking`` (``enabled`` with ``budget_tokens``, or ``adaptive``) -> ``additionalModelRequestFields``, and a stop
  sequence asks for ``/stop_sequence`` back; other models: HTTP 400 for ``top_k`` and ``thinking``;
- ``metadata.user_id`` -> ``requestMetadata.user_id`` (Bedrock's character set for metadata values).

Answer: the gateway's answer events (``lambdas.gateway.events``) -> Anthropic's stream events (``message_events``):
``message_start``, ``ping``, one ``content_block_start`` / ``content_block_delta`` (``text_delta``,
``thinking_delta``, ``signature_delta``, ``input_json_delta``) / ``content_block_stop`` run per block, then
``message_delta`` (stop reason, stop sequence, usage) and ``message_stop``; a failure after the stream started is an
``error`` event. The answer without streaming (``message_body``) is those same events folded into one message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lambdas.gateway.attachments import AttachmentReader
from lambdas.gateway.config import BotConfig
from lambdas.gateway.error_shapes import anthropic_shape as error_body
from lambdas.gateway.errors import GatewayError, internal_error, stop_outcome
from lambdas.gateway.events import Event, Finished, ReasoningDelta, TextDelta, ToolCallDelta, ToolCallStart
from lambdas.gateway.tools import TOOL_NAME
from lambdas.gateway.translate import Attachment, ChatRequest, ThinkingBlock, inference_config
from lambdas.shared.model_families import ModelFamilyError, family_of
from lambdas.shared.observability import logger

CLAUDE_FAMILY = "anthropic"  # lambdas.shared.model_families: the models that take Claude's own request fields
# Bedrock's requestMetadata values (botocore RequestMetadataValueString)
METADATA_VALUE = re.compile(r"^[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}$")
NO_OUTPUT = "(no output)"  # Converse refuses a blank text block; a tool may well return nothing
# Anthropic ``stop_reason`` per Converse ``stopReason`` (the others: an error, ``lambdas.gateway.errors.stop_outcome``)
STOP_REASONS = {
    "end_turn": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_use": "tool_use",
    "content_filtered": "refusal",
    "model_context_window_exceeded": "model_context_window_exceeded",
}


def invalid(message: str) -> GatewayError:
    return GatewayError(400, message, code="invalid_request_error")


# ---------------------------------------------------------------- request bodies


class _Strict(BaseModel):
    """Unknown fields are refused, as Anthropic's API refuses them ("Extra inputs are not permitted")."""

    model_config = ConfigDict(extra="forbid")


class CacheControl(_Strict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None
    scope: str | None = None  # prompt-caching-scope beta (where Anthropic shares a cache): Bedrock's points have none


class OutputConfig(_Strict):
    """``output_config`` (the effort beta): how much the model may spend; forwarded where the model takes it."""

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None


class Thinking(_Strict):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(default=None, ge=1024)


class ToolChoiceParam(_Strict):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class MetadataParam(_Strict):
    user_id: str | None = Field(default=None, max_length=256)


class MessageParam(_Strict):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class CountTokensRequest(_Strict):
    """``POST /v1/messages/count_tokens``: what the model would read."""

    model: str
    messages: list[MessageParam] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoiceParam | None = None
    thinking: Thinking | None = None
    # fields of Bedrock's Claude betas (lambdas.gateway.anthropic_betas.FIELD_BETAS): forwarded with their beta
    context_management: dict[str, Any] | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``."""

    max_tokens: int = Field(ge=1)
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    metadata: MetadataParam | None = None


# ---------------------------------------------------------------- request -> Converse


def is_claude(bot: BotConfig) -> bool:
    """Whether the bot's model takes Claude's own request fields (``thinking``, ``top_k``), by the family registry."""
    try:
        return family_of(bot.model_id) == CLAUDE_FAMILY
    except ModelFamilyError:
        return False


@dataclass(frozen=True)
class Translated:
    """A Converse request and what the answer needs to know about the request."""

    request: dict[str, Any]
    thinking: bool  # thinking is on: the answer shows it (thinking blocks with their signatures)
    stop_sequences: tuple[str, ...] = ()


def cache_point(control: Mapping[str, Any] | None, caching: bool) -> list[dict[str, Any]]:
    """The ``cachePoint`` block a ``cache_control`` stands for ([] without one, or on a bot that does not cache)."""
    if not control or not caching:
        return []
    parsed = CacheControl.model_validate(control)
    point: dict[str, Any] = {"type": "default"}
    if parsed.ttl:
        point["ttl"] = parsed.ttl
    return [{"cachePoint": point}]


def thinking_fields(bot: BotConfig, body: CountTokensRequest, max_tokens: int | None) -> dict[str, Any]:
    """``additionalModelRequestFields``: the bot's own, with the request's ``thinking`` (and ``top_k``) on Claude."""
    fields = dict(bot.additional_request_fields or {})
    thinking = body.thinking
    if thinking is not None and thinking.type != "disabled":
        if not is_claude(bot):
            raise invalid(
                f"thinking: the model '{body.model}' is not a Claude model; extended thinking is a Claude feature on "
                "Bedrock. Leave 'thinking' out, or ask a Claude model."
            )
        if thinking.type == "enabled":
            if thinking.budget_tokens is None:
                raise invalid("thinking.budget_tokens: required when thinking.type is 'enabled' (at least 1024).")
            if max_tokens is not None and thinking.budget_tokens >= max_tokens:
                raise invalid(
                    f"thinking.budget_tokens ({thinking.budget_tokens}) must be less than max_tokens ({max_tokens}, "
                    f"after the bot's limit of {bot.inference.max_tokens}); lower the budget."
                )
            fields["thinking"] = {"type": "enabled", "budget_tokens": thinking.budget_tokens}
        else:
            fields["thinking"] = {"type": "adaptive"}
    elif thinking is not None:
        fields.pop("thinking", None)
    top_k = getattr(body, "top_k", None)
    if top_k is not None:
        if not is_claude(bot):
            raise invalid(
                f"top_k: the model '{body.model}' takes no top_k through Bedrock Converse; leave it out (top_k is "
                "passed on to Claude models only)."
            )
        fields["top_k"] = top_k
    return fields


def thinking_is_on(fields: Mapping[str, Any]) -> bool:
    thinking = fields.get("thinking")
    return isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")


def tool_config(bot: BotConfig, body: CountTokensRequest) -> dict[str, Any] | None:
    """``toolConfig`` from ``tools`` and ``tool_choice``; None when the model gets no tools."""
    choice = body.tool_choice
    if not body.tools:
        if choice is not None and choice.type in ("any", "tool"):
            raise invalid(f"tool_choice: type '{choice.type}' needs 'tools'; send the tools the model may call.")
        return None
    if not bot.capabilities.tools:
        raise invalid(
            f"tools: the model '{body.model}' does not take tools on this gateway (capabilities.tools of the bot); "
            "remove 'tools', or ask a bot with tool use."
        )
    caching = bot.capabilities.prompt_caching
    specs: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, tool in enumerate(body.tools):
        where = f"tools[{index}]"
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise invalid(
                f"{where}.type: '{kind}' is an Anthropic server or client tool, which Bedrock Converse does not "
                "run; describe it as a custom tool (name, description, input_schema)."
            )
        unknown = sorted(set(tool) - {"type", "name", "description", "input_schema", "cache_control"})
        if unknown:
            raise invalid(f"{where}: unknown fields {unknown}; a tool has name, description, input_schema.")
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise invalid(f"{where}.name: {name!r} is not a valid tool name (1 to 64 letters, digits, '_' or '-').")
        if name in names:
            raise invalid(f"{where}.name: '{name}' is used twice; give each tool its own name.")
        names.add(name)
        if not isinstance(schema, Mapping):
            raise invalid(f"{where}.input_schema: required, a JSON schema object.")
        spec: dict[str, Any] = {"name": name, "inputSchema": {"json": dict(schema)}}
        description = tool.get("description")
        if isinstance(description, str) and description.strip():
            spec["description"] = description
        specs.append({"toolSpec": spec})
        specs.extend(cache_point(tool.get("cache_control"), caching))
    if choice is not None and choice.type == "none":
        return None
    config: dict[str, Any] = {"tools": specs}
    if choice is not None and choice.type == "any":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and choice.type == "tool":
        if choice.name not in names:
            raise invalid(f"tool_choice.name: {choice.name!r} is not one of the tools; name one of {sorted(names)}.")
        config["toolChoice"] = {"tool": {"name": choice.name}}
    return config


def system_blocks(bot: BotConfig, system: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": bot.system_prompt}] if bot.system_prompt else []
    if isinstance(system, str):
        return [*blocks, {"text": system}] if system.strip() else blocks
    for index, block in enumerate(system or []):
        if block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise invalid(f"system[{index}]: system blocks must be text blocks {{type: 'text', text}}.")
        if block["text"].strip():
            blocks.append({"text": block["text"]})
        blocks.extend(cache_point(block.get("cache_control"), bot.capabilities.prompt_caching))
    return blocks


class MessageTranslator:
    """One request's messages as Converse messages (see the module docstring)."""

    def __init__(self, bot: BotConfig, reader: AttachmentReader, *, tools: bool, thinking: bool) -> None:
        self.bot = bot
        self.reader = reader
        self.tools = tools  # the request has a toolConfig: tool blocks go as they are (else as text)
        self.thinking = thinking
        self.caching = bot.capabilities.prompt_caching
        self.files = 0

    async def messages(self, messages: Sequence[MessageParam]) -> list[dict[str, Any]]:
        turns: list[dict[str, Any]] = []
        for index, message in enumerate(messages):
            content = await self.content(message, f"messages[{index}]")
            if not content:
                continue
            if turns and turns[-1]["role"] == message.role:
                turns[-1]["content"].extend(content)
            else:
                turns.append({"role": message.role, "content": content})
        return turns

    async def content(self, message: MessageParam, where: str) -> list[dict[str, Any]]:
        if isinstance(message.content, str):
            if not message.content.strip():
                raise invalid(f"{where}.content: text content must be non-empty.")
            return [{"text": message.content}]
        blocks: list[dict[str, Any]] = []
        for number, block in enumerate(message.content):
            blocks.extend(await self.block(block, f"{where}.content[{number}]", message.role))
            blocks.extend(cache_point(marked(block), self.caching))
        if any("document" in block for block in blocks) and not any("text" in block for block in blocks):
            blocks.append({"text": "(see the attached document)"})  # Converse wants a text block beside a document
        return blocks

    async def block(self, block: Mapping[str, Any], where: str, role: str) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str) or not text.strip():
                raise invalid(f"{where}.text: text content blocks must be non-empty.")
            return [{"text": text}]
        if kind in ("image", "document"):
            return await self.media(block, where, kind)
        if kind == "tool_use":
            return [self.tool_use(block, where)]
        if kind == "tool_result":
            return [await self.tool_result(block, where)]
        if kind in ("thinking", "redacted_thinking"):
            if role != "assistant":
                raise invalid(f"{where}: {kind} blocks belong to assistant messages.")
            return [reasoning_block(block, where).converse()] if self.thinking else []
        raise invalid(
            f"{where}.type: '{kind}' blocks are not supported by this gateway; send text, image, document, "
            "tool_use, tool_result, thinking or redacted_thinking blocks."
        )

    async def media(self, block: Mapping[str, Any], where: str, kind: str) -> list[dict[str, Any]]:
        source = block.get("source")
        source_type = source.get("type") if isinstance(source, Mapping) else None
        self.files += 1
        name = str(block.get("title") or f"{kind}{self.files}")
        if source_type == "base64" and isinstance(source, Mapping):
            media_type, data = source.get("media_type"), source.get("data")
            if not isinstance(media_type, str) or not isinstance(data, str) or not data:
                raise invalid(f"{where}.source: a base64 source needs 'media_type' and 'data'.")
            attachment = Attachment(f"data:{media_type};base64,{data}", media_type, name)
        elif source_type == "url" and isinstance(source, Mapping) and isinstance(source.get("url"), str):
            attachment = Attachment(source["url"], "", name)
        elif source_type == "text" and kind == "document" and isinstance(source, Mapping):
            data = source.get("data")
            if not isinstance(data, str):
                raise invalid(f"{where}.source.data: the document's text is required.")
            encoded = base64.b64encode(data.encode()).decode()
            attachment = Attachment(f"data:text/plain;base64,{encoded}", "text/plain", name)
        else:
            raise invalid(
                f"{where}.source.type: {source_type!r} is not supported; send a 'base64' or 'url' source"
                + (" (or 'text' for a document)." if kind == "document" else ".")
            )
        return await self.reader.blocks(attachment)

    def tool_use(self, block: Mapping[str, Any], where: str) -> dict[str, Any]:
        call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not isinstance(arguments, dict):
            raise invalid(f"{where}: a tool_use block needs 'id', 'name' and an object 'input', as the answer gave.")
        if not self.tools:
            return {"text": f"[called tool {name} (id {call_id}) with arguments {json.dumps(arguments)}]"}
        return {"toolUse": {"toolUseId": call_id, "name": name, "input": arguments}}

    async def tool_result(self, block: Mapping[str, Any], where: str) -> dict[str, Any]:
        call_id = block.get("tool_use_id")
        if not isinstance(call_id, str) or not call_id:
            raise invalid(f"{where}.tool_use_id: required, the id of the tool_use block this result answers.")
        given = block.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(given, str):
            parts.append({"text": given or NO_OUTPUT})
        for number, part in enumerate(given if isinstance(given, list) else []):
            if part.get("type") == "text":
                parts.append({"text": str(part.get("text") or NO_OUTPUT)})
            elif part.get("type") in ("image", "document"):
                parts.extend(await self.media(part, f"{where}.content[{number}]", str(part["type"])))
            else:
                raise invalid(f"{where}.content[{number}].type: tool results hold text, image or document blocks.")
        if not self.tools:
            text = " ".join(part.get("text", "[media]") for part in parts) or NO_OUTPUT
            return {"text": f"[result of tool call {call_id}]: {text}"}
        result: dict[str, Any] = {"toolUseId": call_id, "content": parts or [{"text": NO_OUTPUT}]}
        if block.get("is_error"):
            result["status"] = "error"
        return {"toolResult": result}


def marked(block: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A block's ``cache_control``, or that of a part of a tool result's content (Converse takes no cache point
    inside a ``toolResult``: it goes after the block)."""
    if block.get("cache_control"):
        return block["cache_control"]
    parts = block.get("content") if block.get("type") == "tool_result" else None
    controls = [
        part["cache_control"] for part in parts or [] if isinstance(part, Mapping) and part.get("cache_control")
    ]
    return controls[-1] if controls else None


def reasoning_block(block: Mapping[str, Any], where: str) -> ThinkingBlock:
    """A ``thinking`` / ``redacted_thinking`` block sent back, as the answer gave it."""
    if block.get("type") == "redacted_thinking":
        data = block.get("data")
        try:
            redacted = base64.b64decode(data, validate=True) if isinstance(data, str) and data else b""
        except (binascii.Error, ValueError):
            redacted = b""
        if not redacted:
            raise invalid(f"{where}.data: the redacted thinking's data (base64), as the answer gave it.")
        return ThinkingBlock(redacted=redacted)
    text, signature = block.get("thinking"), block.get("signature")
    if not isinstance(text, str) or not isinstance(signature, str) or not signature:
        raise invalid(f"{where}: a thinking block needs its 'thinking' and 'signature', as the answer gave them.")
    return ThinkingBlock(text, signature)


async def converse_request(
    bot: BotConfig, body: CountTokensRequest, reader: AttachmentReader, betas: Sequence[str] = ()
) -> Translated:
    """The Converse request for ``body`` on ``bot`` (a ``MessagesRequest``, or a ``CountTokensRequest``); ``betas``:
    the request's betas Bedrock takes for the bot's model (``lambdas.gateway.anthropic_betas.for_model``), which go
    with the fields they open."""
    max_tokens = getattr(body, "max_tokens", None)
    limited = min(max_tokens, bot.inference.max_tokens) if max_tokens is not None else None
    fields = thinking_fields(bot, body, limited)
    if betas:  # after any the bot's own fields name
        fields["anthropic_beta"] = list(dict.fromkeys([*fields.get("anthropic_beta", []), *betas]))
    if body.context_management is not None:
        fields["context_management"] = body.context_management
    if body.output_config is not None and body.output_config.effort is not None:
        fields["output_config"] = body.output_config.model_dump(exclude_none=True)
    thinking = thinking_is_on(fields)
    tools = tool_config(bot, body)
    translator = MessageTranslator(bot, reader, tools=tools is not None, thinking=thinking)
    request: dict[str, Any] = {"modelId": bot.model_id, "messages": await translator.messages(body.messages)}
    system = system_blocks(bot, body.system)
    if system:
        request["system"] = system
    if tools is not None:
        request["toolConfig"] = tools
    stops: tuple[str, ...] = ()
    if isinstance(body, MessagesRequest):
        stops = tuple(body.stop_sequences or ())
        if len(stops) > bot.inference.max_stop_sequences:
            raise invalid(
                f"stop_sequences: {len(stops)} given, this model takes at most {bot.inference.max_stop_sequences}."
            )
        chat = ChatRequest(
            messages=(),
            max_tokens=body.max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop_sequences=stops,
        )
        config = inference_config(bot, chat)
        if thinking:  # the bot's defaults give way to Claude's thinking (the request's own values are checked by it)
            if body.temperature is None:
                config.pop("temperature", None)
            if body.top_p is None:
                config.pop("topP", None)
        request["inferenceConfig"] = config
        if stops and is_claude(bot):
            request["additionalModelResponseFieldPaths"] = ["/stop_sequence"]
        user_id = body.metadata.user_id if body.metadata else None
        if user_id:
            if not METADATA_VALUE.match(user_id):
                raise invalid(
                    "metadata.user_id: Bedrock takes letters, digits, spaces and : _ @ $ # = / + , - . only; send "
                    "an opaque id such as a hash."
                )
            request["requestMetadata"] = {"user_id": user_id}
    if fields:
        request["additionalModelRequestFields"] = fields
    return Translated(request, thinking, stops)


# ---------------------------------------------------------------- answer -> Anthropic events


def usage_body(finished: Finished) -> dict[str, Any]:
    usage = finished.usage
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
    }


def stop_fields(finished: Finished, stop_sequences: Sequence[str]) -> dict[str, Any]:
    """``stop_reason`` and ``stop_sequence`` of the answer; a stop reason that is no answer raises its error."""
    outcome = stop_outcome(finished.stop_reason)
    if outcome.openai_error is not None:
        raise outcome.openai_error
    reason = STOP_REASONS.get(finished.stop_reason or "end_turn", "end_turn")
    sequence = None
    if reason == "stop_sequence":
        matched = (finished.response_fields or {}).get("stop_sequence")
        sequence = matched if isinstance(matched, str) else (stop_sequences[0] if len(stop_sequences) == 1 else None)
    return {"stop_reason": reason, "stop_sequence": sequence}


Frame = tuple[str, dict[str, Any]]  # (SSE event name, data)


async def message_events(
    stream: AsyncIterable[Event], model: str, stop_sequences: Sequence[str] = (), *, errors_as_events: bool = True
) -> AsyncIterator[Frame]:
    """Anthropic's stream events for one answer (see the module docstring). ``errors_as_events``: a failure is an
    ``error`` event (streaming); else it is raised (the answer without streaming becomes an HTTP error)."""
    message: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    yield "message_start", {"type": "message_start", "message": message}
    yield "ping", {"type": "ping"}
    blocks = Blocks()
    try:
        async for event in stream:
            for frame in blocks.frames(event):
                yield frame
            if isinstance(event, Finished):
                delta = stop_fields(event, stop_sequences)
                yield "message_delta", {"type": "message_delta", "delta": delta, "usage": usage_body(event)}
                yield "message_stop", {"type": "message_stop"}
    except GatewayError as error:
        if not errors_as_events:
            raise
        yield "error", error_body(error)
    except Exception:
        logger.exception("anthropic answer failed", model=model)
        if not errors_as_events:
            raise
        yield "error", error_body(internal_error())


class Blocks:
    """Content-block framing: the answer's events carry no block boundaries, so a block opens when an event of
    another kind (or a new tool call) arrives and closes before the next one opens."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None  # "text", "thinking", "tool_use"

    def _start(self, kind: str, block: dict[str, Any]) -> list[Frame]:
        frames = self._stop()
        self.index += 1
        self.open = kind
        frames.append(
            ("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})
        )
        return frames

    def _stop(self) -> list[Frame]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def _delta(self, delta: dict[str, Any]) -> Frame:
        return "content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta}

    def frames(self, event: Event) -> list[Frame]:
        frames: list[Frame] = []
        if isinstance(event, TextDelta):
            if self.open != "text":
                frames += self._start("text", {"type": "text", "text": ""})
            frames.append(self._delta({"type": "text_delta", "text": event.text}))
        elif isinstance(event, ReasoningDelta):
            if self.open != "thinking":
                frames += self._start("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            frames.append(self._delta({"type": "thinking_delta", "thinking": event.text}))
        elif isinstance(event, ThinkingBlock):  # a reasoning block is complete
            if event.redacted is not None:
                data = base64.b64encode(event.redacted).decode()
                frames += self._start("redacted_thinking", {"type": "redacted_thinking", "data": data})
            else:
                if self.open != "thinking":
                    frames += self._start("thinking", {"type": "thinking", "thinking": event.text, "signature": ""})
                frames.append(self._delta({"type": "signature_delta", "signature": event.signature}))
            frames += self._stop()
        elif isinstance(event, ToolCallStart):
            frames += self._start("tool_use", {"type": "tool_use", "id": event.id, "name": event.name, "input": {}})
        elif isinstance(event, ToolCallDelta) and self.open == "tool_use":
            frames.append(self._delta({"type": "input_json_delta", "partial_json": event.arguments}))
        elif isinstance(event, Finished):
            frames += self._stop()
        return frames


async def message_body(stream: AsyncIterable[Event], model: str, stop_sequences: Sequence[str] = ()) -> dict[str, Any]:
    """The answer as one Anthropic message: the stream events, folded (a failure is raised)."""
    message: dict[str, Any] = {}
    arguments: dict[int, str] = {}
    async for name, data in message_events(stream, model, stop_sequences, errors_as_events=False):
        if name == "message_start":
            message = dict(data["message"])
        elif name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = message["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                arguments[data["index"]] = arguments.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in arguments:
            message["content"][data["index"]]["input"] = json.loads(arguments[data["index"]] or "{}")
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = data["usage"]
    return message
