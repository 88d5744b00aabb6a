"""Input tokens before the call, to refuse prompts over a bot's ``context_tokens`` (docs/bedrock-facts.md, Runtime:
Converse and ConverseStream: CountTokens).

Bots with ``capabilities.token_counting`` ask CountTokens (free, the billed count) with ``count_tokens_model_id``
(or ``model_id``). CountTokens serves a subset of models (Claude) and bare foundation-model ids only; when it
refuses the model (ValidationException, AccessDenied, ResourceNotFound) the gateway falls back to the estimate,
which every other bot uses (transient failures - throttling, 5xx, timeouts - are the answer's error, retryable):

    text characters / 4 (rounded up)  +  1,600 per image  +  document bytes / 16

(tool calls, tool results and tool specs count as the characters of their JSON text).

(characters/4 is the usual rule of thumb for English; 1,600 is Claude's cost of a full-size image; documents are a
rough guess). The estimate only guards the context limit: billing uses the answer's ``usage``.

CountTokens costs a round trip before the first token, so it is asked only when the prompt might not fit: when
``upper_bound_tokens`` - UTF-8 bytes of the text (a byte-level tokenizer never emits more tokens than bytes) plus a
generous allowance per image, per message and for the framing - is within ``context_tokens``, the prompt fits
whatever the exact count, and the estimate is recorded instead (documents have no such bound: a compressed PDF can
hold more text than bytes, so a prompt with a document is always counted).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from lambdas.gateway.config import BotConfig
from lambdas.gateway.errors import TOO_LONG, GatewayError
from lambdas.shared.observability import logger

IMAGE_TOKENS = 1_600
CHARS_PER_TOKEN = 4
DOCUMENT_BYTES_PER_TOKEN = 16
FALLBACK_CODES = ("ValidationException", "AccessDeniedException", "ResourceNotFoundException")
CountSource = Literal["count_tokens", "estimate"]
IMAGE_TOKENS_BOUND = 10_000  # above any model's tokens for one image
MESSAGE_TOKENS_BOUND = 16  # role and turn markers per message or system block
FRAMING_TOKENS_BOUND = 64  # the prompt template around the conversation


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    source: CountSource


def _block_chars_and_media(block: Mapping[str, Any]) -> tuple[int, int]:
    """(text characters, media tokens) of one content block."""
    if isinstance(block.get("text"), str):
        return len(block["text"]), 0
    if "image" in block:
        return 0, IMAGE_TOKENS
    if "document" in block:
        data = (block["document"].get("source") or {}).get("bytes") or b""
        return 0, math.ceil(len(data) / DOCUMENT_BYTES_PER_TOKEN)
    if "toolUse" in block:  # the call's name and arguments
        return len(block["toolUse"].get("name", "")) + len(json.dumps(block["toolUse"].get("input"))), 0
    if "toolResult" in block:
        parts = [_block_chars_and_media(part) for part in block["toolResult"].get("content") or []]
        return sum(chars for chars, _ in parts), sum(media for _, media in parts)
    if "reasoningContent" in block:  # a thinking block sent back: its text (redacted data: its size)
        reasoning = block["reasoningContent"]
        text = (reasoning.get("reasoningText") or {}).get("text", "")
        return len(text) + len(reasoning.get("redactedContent", b"")), 0
    if "toolSpec" in block:  # a tool the model is offered: its name, description and schema
        spec = block["toolSpec"]
        schema = json.dumps((spec.get("inputSchema") or {}).get("json"))
        return len(spec.get("name", "")) + len(spec.get("description", "")) + len(schema), 0
    return 0, 0


def estimate_tokens(request: Mapping[str, Any]) -> int:
    """The documented estimate for a Converse request (tools, system and messages)."""
    chars, media = 0, 0
    blocks = [*(request.get("toolConfig") or {}).get("tools", []), *(request.get("system") or [])]
    for message in request.get("messages") or []:
        blocks.extend(message.get("content") or [])
    for block in blocks:
        block_chars, block_media = _block_chars_and_media(block)
        chars += block_chars
        media += block_media
    return math.ceil(chars / CHARS_PER_TOKEN) + media


def upper_bound_tokens(request: Mapping[str, Any]) -> int | None:
    """Tokens this Converse request cannot exceed on any model, or None when there is no such bound (documents,
    tools)."""
    if "toolConfig" in request:
        return None
    system = request.get("system") or []
    messages = request.get("messages") or []
    bound = FRAMING_TOKENS_BOUND + MESSAGE_TOKENS_BOUND * (len(system) + len(messages))
    for block in [*system, *(b for m in messages for b in m.get("content") or [])]:
        if isinstance(block.get("text"), str):
            bound += len(block["text"].encode("utf-8", "surrogatepass"))
        elif "image" in block:
            bound += IMAGE_TOKENS_BOUND
        elif "cachePoint" not in block:
            return None
    return bound


def count_tokens_input(request: Mapping[str, Any]) -> dict[str, Any]:
    """The CountTokens ``input`` for a Converse request."""
    keys = ("messages", "system", "toolConfig", "additionalModelRequestFields")
    return {"converse": {key: request[key] for key in keys if key in request}}


async def count_input_tokens(bot: BotConfig, request: Mapping[str, Any], client: Any) -> TokenCount:
    """CountTokens for bots with ``token_counting`` when the prompt might not fit (any refusal: the estimate), the
    estimate for the others and for prompts that fit whatever their count."""
    bound = upper_bound_tokens(request) if bot.capabilities.token_counting else None
    if bot.capabilities.token_counting and (bound is None or bound > bot.context_tokens):
        return await count_request_tokens(bot, request, client)
    return TokenCount(estimate_tokens(request), "estimate")


def check_context(bot: BotConfig, count: TokenCount) -> None:
    """A prompt over the bot's context limit: HTTP 400 / Poe ``user_message_too_long``, before the model is called."""
    if count.tokens > bot.context_tokens:
        about = "" if count.source == "count_tokens" else "about "
        raise GatewayError(
            400,
            f"The conversation is {about}{count.tokens:,} tokens, over this bot's limit of {bot.context_tokens:,}; "
            "shorten it or start a new conversation.",
            error_type=TOO_LONG,
            code="context_length_exceeded",
        )


async def count_request_tokens(bot: BotConfig, request: Mapping[str, Any], client: Any) -> TokenCount:
    """The input tokens of a Converse request whatever its size (the count-tokens routes): CountTokens for bots with
    ``token_counting`` (a refusal of the model: the estimate, as ``count_input_tokens`` does), the documented
    estimate for the others."""
    if bot.capabilities.token_counting:
        model_id = bot.count_tokens_model_id or bot.model_id
        try:
            answer = await client.count_tokens(modelId=model_id, input=count_tokens_input(request))
            return TokenCount(int(answer["inputTokens"]), "count_tokens")
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code not in FALLBACK_CODES:
                raise
            logger.warning("CountTokens refused; using the estimate", bot=bot.name, count_model_id=model_id, code=code)
    return TokenCount(estimate_tokens(request), "estimate")
