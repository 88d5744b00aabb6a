"""What an answer is made of, whatever the modality, and the usage record every answer leaves (log + metric)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lambdas.gateway.config import BotConfig
from lambdas.gateway.key_guard import current_caller
from lambdas.gateway.metrics import COST, INPUT_TOKENS, OUTPUT_TOKENS, TIME_TO_FIRST_TOKEN, Metric, emit_record
from lambdas.gateway.translate import ThinkingBlock, Usage
from lambdas.shared.observability import logger


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    stop_reason: str | None
    usage: Usage
    latency_ms: int | None
    invoked_model_id: str | None
    cost_usd: float
    counted_input_tokens: int | None = None  # before the call (lambdas.gateway.tokens)
    token_count_source: str | None = None  # "count_tokens" or "estimate"
    first_token_ms: int | None = None  # TimeToFirstToken: from the request reaching the bot to its first token
    response_fields: Mapping[str, Any] | None = None  # Converse additionalModelResponseFields, when asked for


@dataclass(frozen=True)
class MediaFile:
    url: str
    content_type: str
    name: str


@dataclass(frozen=True)
class Progress:
    """A status line for long generations (Poe ``replace_response``); not part of the answer."""

    text: str


@dataclass(frozen=True)
class ToolCallStart:
    """The model calls a tool (ConverseStream ``contentBlockStart.start.toolUse``); ``index`` counts the answer's calls
    from 0."""

    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of the JSON text of a tool call's arguments (``delta.toolUse.input``)."""

    index: int
    arguments: str


# ``ThinkingBlock`` (lambdas.gateway.translate): a completed, signed reasoning block, after its ``ReasoningDelta``s
Event = TextDelta | ReasoningDelta | ThinkingBlock | ToolCallStart | ToolCallDelta | MediaFile | Progress | Finished


def record_usage(bot: BotConfig, finished: Finished) -> None:
    """One structured log line and one EMF record of the answer's metrics (time to first token, cost, tokens; per
    bot); with a team key, the answer is charged to it (``lambdas.gateway.key_guard``)."""
    usage = finished.usage
    caller = current_caller()
    if caller is not None:
        caller.charge(bot.name, usage.prompt_tokens, usage.output_tokens, finished.cost_usd)
    logger.info(
        "gateway usage",
        bot=bot.name,
        model_id=bot.model_id,
        invoked_model_id=finished.invoked_model_id,
        stop_reason=finished.stop_reason,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        latency_ms=finished.latency_ms,
        counted_input_tokens=finished.counted_input_tokens,
        token_count_source=finished.token_count_source,
        cost_usd=round(finished.cost_usd, 8),
        first_token_ms=finished.first_token_ms,
        team_key=caller.key.name if caller is not None else None,  # a team key's name, never its secret
    )
    values: list[Metric] = [
        (COST, finished.cost_usd, "Count"),
        (INPUT_TOKENS, usage.prompt_tokens, "Count"),
        (OUTPUT_TOKENS, usage.output_tokens, "Count"),
    ]
    if finished.first_token_ms is not None:  # a streamed answer (see ``Finished.first_token_ms``)
        values.insert(0, (TIME_TO_FIRST_TOKEN, finished.first_token_ms, "Milliseconds"))
    emit_record(values, bot=bot.name)  # one EMF record: the four metrics share the ``bot`` dimension
