"""Pure translation: chat messages (Poe or OpenAI) -> a Converse request; Converse usage -> tokens and cost.

No I/O here. Roles: Poe ``bot`` and OpenAI ``assistant`` -> ``assistant``; ``system`` -> Converse ``system`` blocks;
OpenAI ``tool`` messages arrive as user messages with ``tool_results`` (``lambdas.gateway.tools``); other roles are
ignored. Consecutive same-role messages merge so roles alternate, starting with user. An assistant message's signed
thinking blocks (OpenAI ``thinking_blocks``, LiteLLM's convention) become Converse ``reasoningContent`` blocks first
in its turn, sent only while Claude's thinking is on for the request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lambdas.gateway.config import BotConfig, Prices
from lambdas.gateway.errors import USER_CAUSED, GatewayError
from lambdas.gateway.response_format import ResponseFormat
from lambdas.gateway.tools import (
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
    tool_call_text,
    tool_config,
    tool_result_block,
    tool_result_text,
    tool_use_block,
)
from lambdas.shared.model_families import ModelRef

Role = Literal["system", "user", "assistant"]
ROLES: dict[str, Role] = {"system": "system", "user": "user", "bot": "assistant", "assistant": "assistant"}
CACHE_POINT: dict[str, Any] = {"cachePoint": {"type": "default"}}
MIN_THINKING_TOP_P = 0.95  # Claude with thinking on: topP from 0.95 to 1


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message: a Poe attachment or an OpenAI ``image_url`` / ``file`` part (``url`` may be a
    ``data:`` URL). Turned into Converse blocks by ``lambdas.gateway.attachments``."""

    url: str
    content_type: str = ""
    name: str = ""
    parsed_content: str | None = None


@dataclass(frozen=True)
class ThinkingBlock:
    """A signed reasoning block of an assistant answer, to be sent back unchanged in a tool loop: Converse
    ``reasoningContent`` ``{reasoningText: {text, signature}}`` or ``{redactedContent: bytes}``; OpenAI
    ``thinking_blocks[]`` ``{"type": "thinking", "thinking", "signature"}`` or ``{"type": "redacted_thinking",
    "data": base64}``. Also the event that streams a completed block."""

    text: str = ""
    signature: str = ""
    redacted: bytes | None = None  # a redacted block: the model's encrypted reasoning

    def converse(self) -> dict[str, Any]:
        if self.redacted is not None:
            return {"reasoningContent": {"redactedContent": self.redacted}}
        return {"reasoningContent": {"reasoningText": {"text": self.text, "signature": self.signature}}}

    def openai(self) -> dict[str, Any]:
        if self.redacted is not None:
            return {"type": "redacted_thinking", "data": base64.b64encode(self.redacted).decode()}
        return {"type": "thinking", "thinking": self.text, "signature": self.signature}


def invalid_thinking(message: str) -> GatewayError:
    return GatewayError(400, message, error_type=USER_CAUSED, code="invalid_thinking_blocks")


def parse_thinking_blocks(blocks: Sequence[Any] | None) -> tuple[ThinkingBlock, ...]:
    """An assistant message's OpenAI ``thinking_blocks``, as an answer gave them; a clear 400 for another shape."""
    parsed: list[ThinkingBlock] = []
    for index, block in enumerate(blocks or ()):
        where = f"thinking_blocks[{index}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "thinking":
            text, signature = block.get("thinking"), block.get("signature")
            if not isinstance(text, str) or not isinstance(signature, str) or not signature:
                raise invalid_thinking(
                    f"{where} needs its 'thinking' text and 'signature' as the answer gave them; send the block back "
                    "unchanged, or leave 'thinking_blocks' out."
                )
            parsed.append(ThinkingBlock(text, signature))
        elif kind == "redacted_thinking":
            data = block.get("data")
            try:
                redacted = base64.b64decode(data, validate=True) if isinstance(data, str) and data else None
            except (binascii.Error, ValueError):
                redacted = None
            if not redacted:
                raise invalid_thinking(f"{where} needs its 'data' (base64) as the answer gave it.")
            parsed.append(ThinkingBlock(redacted=redacted))
        else:
            raise invalid_thinking(f"{where} must have type 'thinking' or 'redacted_thinking', not {kind!r}.")
    return tuple(parsed)


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    text: str
    attachments: tuple[Attachment, ...] = ()
    blocks: tuple[dict[str, Any], ...] = ()  # Converse content blocks the attachments became (before the text)
    tool_calls: tuple[ToolCall, ...] = ()  # assistant: the calls it made (toolUse blocks after the text)
    tool_results: tuple[ToolResult, ...] = ()  # user: what the tools returned (toolResult blocks first)
    thinking: tuple[ThinkingBlock, ...] = ()  # assistant: its signed reasoning (reasoningContent blocks first)


@dataclass(frozen=True)
class ChatRequest:
    """One chat turn as either front end asked for it; None means "the bot's default".

    ``parameters``: the user's choices (Poe ``parameters``, OpenAI extra body fields), checked by the bot
    (``lambdas.gateway.parameters``); ``thinking_budget`` overrides the bot's Claude thinking budget (0: thinking
    off); ``reasoning_effort`` (OpenAI) becomes a ``thinking_budget``; ``tools`` / ``tool_choice``: tool use;
    ``response_format``: structured output (``lambdas.gateway.structured``)."""

    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    thinking_budget: int | None = None
    reasoning_effort: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    response_format: ResponseFormat | None = None


def chat_messages(pairs: Iterable[tuple[str, str]]) -> tuple[ChatMessage, ...]:
    """(role, text) pairs from a front end, unknown roles dropped, roles normalised."""
    return tuple(ChatMessage(ROLES[role], text) for role, text in pairs if role in ROLES)


def has_content(message: ChatMessage) -> bool:
    return bool(message.text.strip() or message.blocks or message.tool_calls or message.tool_results)


def tool_loop_thinking(messages: Sequence[ChatMessage]) -> tuple[ThinkingBlock, ...]:
    """The thinking blocks of the assistant turn that opened the ongoing tool loop (the assistant messages right
    after the last user message without tool results, which merge into one Converse turn); () when the conversation
    does not end inside a tool loop."""
    if not continues_tool_loop(messages):
        return ()
    thinking: list[ThinkingBlock] = []
    opening = closed = False  # inside the opening assistant run / past it
    for message in messages:
        if message.role == "system" or not has_content(message):
            continue
        if message.role == "user":
            if not message.tool_results:
                thinking, opening, closed = [], False, False
            elif opening:
                opening, closed = False, True
        elif not closed:
            opening = True
            thinking.extend(message.thinking)
    return tuple(thinking)


def message_content(
    message: ChatMessage, tools_as_text: bool = False, with_thinking: bool = False
) -> list[dict[str, Any]]:
    """Thinking blocks first (``with_thinking``: Claude wants them to open the assistant message), tool results next
    (Converse wants them before anything else), attachment blocks next (models read media before the question), then
    the text, then the tool calls. Converse wants a text block beside a document, so a message of documents alone
    gets a short one. ``tools_as_text``: calls and results as text blocks (a request without ``toolConfig`` may hold
    no tool blocks)."""
    results = tool_result_text if tools_as_text else tool_result_block
    content = [block.converse() for block in message.thinking] if with_thinking else []
    content += [results(result) for result in message.tool_results]
    content += [dict(block) for block in message.blocks]
    if message.text.strip():
        content.append({"text": message.text})
    elif any("document" in block for block in message.blocks):
        content.append({"text": "(see the attached document)"})
    content += [tool_call_text(call) if tools_as_text else tool_use_block(call) for call in message.tool_calls]
    return content


def converse_messages(
    messages: Sequence[ChatMessage], tools_as_text: bool = False, with_thinking: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """(Converse messages, system texts): blank messages dropped, same-role runs merged, leading assistant turns
    dropped (Converse starts with user). ``with_thinking``: assistant thinking blocks go along, first in their turn
    (also when two assistant messages merge)."""
    system = [m.text for m in messages if m.role == "system" and m.text.strip()]
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system" or not has_content(message):
            continue
        if not turns and message.role == "assistant":
            continue
        content = message_content(message, tools_as_text, with_thinking)
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"].extend(content)
        else:
            turns.append({"role": message.role, "content": content})
    for turn in turns:  # reasoning opens the turn (a stable sort keeps each group's order)
        turn["content"].sort(key=lambda block: "reasoningContent" not in block)
    if not turns:
        raise GatewayError(400, "The conversation has no user message with text; send at least one.", code="no_message")
    return turns, system


def inference_config(bot: BotConfig, chat: ChatRequest) -> dict[str, Any]:
    """The bot's defaults, overridden by the request within the bot's limits."""
    limits = bot.inference
    max_tokens = min(chat.max_tokens, limits.max_tokens) if chat.max_tokens else limits.max_tokens
    config: dict[str, Any] = {"maxTokens": max(1, max_tokens)}
    temperature = chat.temperature if chat.temperature is not None else limits.temperature
    if temperature is not None:
        config["temperature"] = min(max(0.0, temperature), limits.max_temperature)
    top_p = chat.top_p if chat.top_p is not None else limits.top_p
    if top_p is not None:
        config["topP"] = min(max(0.0, top_p), 1.0)
    stops = list(dict.fromkeys([*limits.stop_sequences, *(s for s in chat.stop_sequences if s)]))
    if stops and limits.max_stop_sequences:
        config["stopSequences"] = stops[: limits.max_stop_sequences]
    return config


def continues_tool_loop(messages: Sequence[ChatMessage]) -> bool:
    """Whether the conversation ends inside a tool loop: tool results follow the last assistant message (or it ends
    with that message's tool calls), so the model's answer continues the same assistant turn."""
    for message in reversed(messages):
        if message.role == "system" or not has_content(message):
            continue
        if message.role == "assistant":
            return bool(message.tool_calls)
        if message.tool_results:
            return True
    return False


def thinking_on(fields: Mapping[str, Any] | None) -> bool:
    """Whether ``additionalModelRequestFields`` turn Claude's thinking on."""
    thinking = (fields or {}).get("thinking")
    return isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")


def thinking_off_reason(bot: BotConfig, chat: ChatRequest) -> str | None:
    """Why the bot's Claude ``thinking`` is turned off for this request, or None when it stays as configured.

    Claude's extended thinking with tool use (Anthropic and Bedrock extended-thinking docs): a tool loop is one
    assistant turn, and while it runs with thinking enabled the assistant message that opened it must start with its
    signed thinking block, sent back unchanged ("Expected `thinking` or `redacted_thinking`, but found `tool_use` ...
    To avoid this requirement, disable `thinking`"). OpenAI clients send them back as the assistant message's
    ``thinking_blocks`` (LiteLLM's convention); when the message that opened the loop has none (Poe, or a client that
    drops them), the request goes without thinking (its turn then holds no thinking blocks, which is what a turn
    without thinking must look like); a new turn keeps thinking. Manual thinking (``type: enabled``) also refuses a
    forced ``tool_choice`` ("Thinking may not be enabled when tool_choice forces tool use")."""
    if not thinking_on(bot.additional_request_fields):
        return None
    thinking = (bot.additional_request_fields or {})["thinking"]
    if chat.thinking_budget == 0 or tool_config(chat.tools, chat.tool_choice) is None:
        return None  # thinking already off, or no tool blocks are sent (the tool history goes as text)
    if continues_tool_loop(chat.messages) and not tool_loop_thinking(chat.messages):
        return "the request continues a tool loop whose assistant message carries no thinking_blocks to send back"
    if thinking.get("type") == "enabled" and chat.tool_choice.mode in ("required", "tool"):
        return "a forced tool_choice cannot be combined with Claude's extended thinking"
    return None


def thinking_inference_config(config: dict[str, Any]) -> dict[str, Any]:
    """``inferenceConfig`` for a request with Claude thinking on: Claude takes no temperature but 1 and no topP
    below 0.95 then (Bedrock: thinking "isn't compatible with temperature, top_p, or top_k modifications"), so those
    are left to the model. Without thinking the request's own values apply."""
    config = dict(config)
    if config.get("temperature") not in (None, 1, 1.0):
        config.pop("temperature")
    if config.get("topP") is not None and config["topP"] < MIN_THINKING_TOP_P:
        config.pop("topP")
    return config


def converse_request(bot: BotConfig, chat: ChatRequest) -> dict[str, Any]:
    """The Converse / ConverseStream request for ``chat`` on ``bot``."""
    tools = tool_config(chat.tools, chat.tool_choice)
    fields = dict(bot.additional_request_fields or {})
    thinking = fields.get("thinking")
    if chat.thinking_budget == 0 or thinking_off_reason(bot, chat):  # no thinking this time
        fields.pop("thinking", None)
    elif chat.thinking_budget is not None and isinstance(thinking, Mapping):
        fields["thinking"] = {**thinking, "budget_tokens": chat.thinking_budget}
    # thinking blocks go back only while thinking is on (a turn without thinking holds none)
    messages, system_texts = converse_messages(
        chat.messages, tools_as_text=tools is None, with_thinking=thinking_on(fields)
    )
    if bot.system_prompt:
        system_texts = [bot.system_prompt, *system_texts]
    request: dict[str, Any] = {
        "modelId": bot.model_id,
        "messages": messages,
        "inferenceConfig": inference_config(bot, chat),
    }
    if system_texts:
        request["system"] = [{"text": text} for text in system_texts]
        if bot.capabilities.prompt_caching:
            request["system"].append(dict(CACHE_POINT))
    if thinking_on(fields):
        request["inferenceConfig"] = thinking_inference_config(request["inferenceConfig"])
    if fields:
        request["additionalModelRequestFields"] = fields
    if tools is not None:
        request["toolConfig"] = tools
    if chat.response_format is not None and chat.response_format.via == "native":
        request["outputConfig"] = chat.response_format.output_config()
    return request


# ---------------------------------------------------------------- usage and cost


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # not cached
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """All input tokens: Converse ``inputTokens`` excludes the cached ones (docs/bedrock-facts.md,
        Prompt caching)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @classmethod
    def from_converse(cls, usage: Mapping[str, Any] | None) -> Usage:
        usage = usage or {}
        return cls(
            input_tokens=int(usage.get("inputTokens") or 0),
            output_tokens=int(usage.get("outputTokens") or 0),
            cache_read_tokens=int(usage.get("cacheReadInputTokens") or 0),
            cache_write_tokens=int(usage.get("cacheWriteInputTokens") or 0),
        )

    def openai(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens},
        }


def text_cost(usage: Usage, prices: Prices) -> float:
    """USD for one answer; cache reads and writes have their own rates."""
    return (
        usage.input_tokens * prices.input_per_1k
        + usage.output_tokens * prices.output_per_1k
        + usage.cache_read_tokens * prices.cache_read_per_1k
        + usage.cache_write_tokens * prices.cache_write_per_1k
    ) / 1000


class PriceBook:
    """Prices by foundation-model id, from every bot's config: a router's answer is priced by the model it invoked."""

    def __init__(self, bots: Iterable[BotConfig]) -> None:
        self._by_model: dict[str, Prices] = {}
        for bot in bots:
            if not bot.is_router and bot.prices != Prices():
                self._by_model.setdefault(bot.ref.base_model_id, bot.prices)

    def prices_for(self, bot: BotConfig, invoked_model_id: str | None) -> Prices:
        if invoked_model_id:
            found = self._by_model.get(ModelRef.parse(invoked_model_id).base_model_id)
            if found is not None:
                return found
        return bot.prices
