"""The bot factory: a ``BotConfig`` becomes a handler by modality (``HANDLERS``), never by model-name tests.

A text handler answers in two steps so each front end can place errors right: ``await bot.start(chat)`` calls
Bedrock (errors here are "before the stream": HTTP status), then iterating the returned ``TextStream`` yields
``TextDelta`` / ``ReasoningDelta`` / ``ToolCallStart`` / ``ToolCallDelta`` events as they arrive (and, on bots that
show reasoning, a ``ThinkingBlock`` once a signed or redacted reasoning block is complete) and one ``Finished``
last (errors here are "after the stream started": Poe ``error`` event or OpenAI error chunk). Requests with tools on a
bot without ``capabilities.tools_streaming`` use Converse, replayed as the same events. Image bots
(``lambdas.gateway.images``) and video bots (``lambdas.gateway.videos``) answer with a ``MediaFile`` (presigned S3 URL);
embedding bots (``lambdas.gateway.embeddings``) answer ``/v1/embeddings`` only.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from lambdas.gateway import structured
from lambdas.gateway.attachments import Fetcher, read_attachments
from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import BotConfig, GatewaySettings
from lambdas.gateway.embeddings import EmbeddingBot
from lambdas.gateway.errors import GatewayError, bedrock_failure
from lambdas.gateway.events import (
    Event,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    record_usage,
)
from lambdas.gateway.eventstream import converse_events
from lambdas.gateway.guardrails import INTERVENED, intervention, with_guardrail
from lambdas.gateway.images import ImageBot
from lambdas.gateway.parameters import apply_text_parameters
from lambdas.gateway.tokens import TokenCount, check_context, count_input_tokens, count_request_tokens
from lambdas.gateway.translate import (
    ChatRequest,
    PriceBook,
    ThinkingBlock,
    Usage,
    converse_request,
    text_cost,
    thinking_off_reason,
)
from lambdas.gateway.videos import VideoBot
from lambdas.shared.observability import logger


class TextStream:
    """The events of one answer; ``events`` is an async iterator of Bedrock stream events (one-key dicts)."""

    def __init__(
        self,
        bot: TextBot,
        events: AsyncIterator[dict[str, Any]],
        raw: Any = None,
        count: TokenCount | None = None,
        *,
        started: float | None = None,
        request_id: str | None = None,
        reasoning: bool | None = None,
    ) -> None:
        self.bot = bot
        # show the model's reasoning (and keep its signed blocks): the bot's choice, unless the route asks itself
        self._reasoning = bot.config.capabilities.reasoning if reasoning is None else reasoning
        self._events = events
        self._raw = raw
        self._count = count  # the SDK's event stream, closed when the answer ends or is abandoned
        self._started = time.monotonic() if started is None else started  # when the bot got the request
        self._request_id = request_id  # Bedrock's, for the guardrail log

    async def __aiter__(self) -> AsyncIterator[Event]:
        stop_reason: str | None = None
        response_fields: Mapping[str, Any] | None = None  # additionalModelResponseFields (e.g. Claude's stop_sequence)
        metadata: Mapping[str, Any] = {}
        first_token_ms: int | None = None  # TimeToFirstToken: the first text or reasoning the client is sent
        tool_calls: dict[int, int] = {}  # content block index -> tool call index (0, 1, ... in the answer)
        thinking = ThinkingBlocks(self._reasoning)
        try:
            async for event in self._events:
                if "contentBlockDelta" in event:
                    delta = event["contentBlockDelta"].get("delta", {})
                    if len(delta) == 1 and delta.get("text"):  # text alone, most of an answer: the branches below
                        if first_token_ms is None:  # would reach only the first-token time and the TextDelta
                            first_token_ms = round((time.monotonic() - self._started) * 1000)
                        yield TextDelta(delta["text"])
                        continue
                    reasoning = delta.get("reasoningContent") or {}
                    shown = reasoning.get("text") and self._reasoning
                    if first_token_ms is None and (delta.get("text") or shown):
                        first_token_ms = round((time.monotonic() - self._started) * 1000)
                    if delta.get("text"):
                        yield TextDelta(delta["text"])
                    if shown:
                        yield ReasoningDelta(reasoning["text"])
                    if reasoning:
                        thinking.add(event["contentBlockDelta"].get("contentBlockIndex", 0), reasoning)
                    arguments = (delta.get("toolUse") or {}).get("input")
                    if arguments:
                        block = event["contentBlockDelta"].get("contentBlockIndex", 0)
                        yield ToolCallDelta(tool_calls.get(block, 0), arguments)
                elif "contentBlockStop" in event:
                    block = thinking.done(event["contentBlockStop"].get("contentBlockIndex", 0))
                    if block is not None:
                        yield block
                elif "contentBlockStart" in event:
                    tool = (event["contentBlockStart"].get("start") or {}).get("toolUse")
                    if tool:
                        block = event["contentBlockStart"].get("contentBlockIndex", 0)
                        tool_calls[block] = len(tool_calls)
                        yield ToolCallStart(tool_calls[block], tool.get("toolUseId", ""), tool.get("name", ""))
                elif "messageStop" in event:
                    for block in thinking.rest():  # blocks a stream left open
                        yield block
                    stop_reason = event["messageStop"].get("stopReason")
                    response_fields = event["messageStop"].get("additionalModelResponseFields")
                elif "metadata" in event:
                    metadata = event["metadata"]
        except GatewayError:
            raise
        except Exception as error:
            raise self.bot.failed(error) from error
        finally:
            await _close_stream(self._raw)
        finished = self.bot.finish(stop_reason, metadata, self._count, first_token_ms, response_fields)
        if stop_reason == INTERVENED:  # billed and recorded, but the client gets an error, not the blocked answer
            trace = (metadata.get("trace") or {}).get("guardrail")
            raise intervention(self.bot.config, trace=trace, request_id=self._request_id, source="converse")
        yield finished


class ThinkingBlocks:
    """Signed reasoning blocks as ConverseStream delivers them: per content block, ``reasoningContent`` deltas with
    ``text`` pieces then one ``signature``, or a ``redactedContent`` (bytes); the block is complete at its
    ``contentBlockStop``. Only kept on bots that show reasoning, and only blocks with a signature or redacted data
    (nothing else can be sent back)."""

    def __init__(self, shown: bool) -> None:
        self._shown = shown
        self._open: dict[int, tuple[list[str], str, bytes | None]] = {}

    def add(self, index: int, delta: Mapping[str, Any]) -> None:
        if not self._shown:
            return
        texts, signature, redacted = self._open.get(index, ([], "", None))
        if isinstance(delta.get("text"), str):
            texts.append(delta["text"])
        if isinstance(delta.get("signature"), str):
            signature += delta["signature"]
        if isinstance(delta.get("redactedContent"), bytes | bytearray):
            redacted = (redacted or b"") + bytes(delta["redactedContent"])
        self._open[index] = (texts, signature, redacted)

    def done(self, index: int) -> ThinkingBlock | None:
        if index not in self._open:
            return None
        texts, signature, redacted = self._open.pop(index)
        if redacted is not None:
            return ThinkingBlock(redacted=redacted)
        return ThinkingBlock("".join(texts), signature) if signature else None

    def rest(self) -> list[ThinkingBlock]:
        return [block for block in (self.done(index) for index in sorted(self._open)) if block is not None]


class TextBot:
    """Converse / ConverseStream on one bot's model, through the shared client service."""

    def __init__(self, config: BotConfig, clients: AwsClients, prices: PriceBook, settings: GatewaySettings) -> None:
        self.config = config
        self._clients = clients
        self._prices = prices
        self._fetcher = Fetcher.from_settings(settings)

    async def start(self, chat: ChatRequest) -> AsyncIterable[Event]:
        """Parameters checked, attachments read, the prompt counted against ``context_tokens``, then the call (with
        the bot's guardrail, if any); a ``response_format`` answer is checked JSON (``lambdas.gateway.structured``)."""
        started = time.monotonic()
        chat = apply_text_parameters(self.config, structured.prepare(self.config, chat))
        chat = await read_attachments(self.config, chat, self._fetcher)
        request = converse_request(self.config, chat)
        reason = thinking_off_reason(self.config, chat)
        if reason:
            logger.info("thinking turned off for this request", bot=self.config.name, reason=reason)
        answer = await self.send(request, started)
        return answer if chat.response_format is None else structured.answer_events(answer, chat.response_format)

    async def send(self, request: dict[str, Any], started: float, *, reasoning: bool | None = None) -> TextStream:
        """A Converse request built by a route: counted against ``context_tokens``, then sent (with the bot's
        guardrail, if any). ``reasoning``: show the model's reasoning whatever the bot's capability says."""
        try:
            client = await self._clients.bedrock_runtime(self.config.region)
            count = await count_input_tokens(self.config, request, client)
            check_context(self.config, count)
            caps = self.config.capabilities
            streaming = caps.streaming and ("toolConfig" not in request or caps.tools_streaming)
            call = with_guardrail(self.config, request, streaming=streaming)
            if streaming:
                response = await client.converse_stream(**call)
                stream = response["stream"]
                request_id = _request_id(response)
                return TextStream(
                    self,
                    converse_events(stream, self._clients.pacer),
                    stream,
                    count,
                    started=started,
                    request_id=request_id,
                    reasoning=reasoning,
                )
            response = await client.converse(**call)
        except GatewayError:
            raise
        except Exception as error:
            raise self.failed(error) from error
        replayed = _replay(response)
        return TextStream(
            self, replayed, count=count, started=started, request_id=_request_id(response), reasoning=reasoning
        )

    async def count_tokens(self, request: Mapping[str, Any]) -> TokenCount:
        """The input tokens of a Converse request, as the count-tokens routes report them (``count_request_tokens``)."""
        try:
            client = await self._clients.bedrock_runtime(self.config.region)
            return await count_request_tokens(self.config, request, client)
        except GatewayError:
            raise
        except Exception as error:
            raise self.failed(error) from error

    def failed(self, error: BaseException) -> GatewayError:
        return bedrock_failure(self.config.name, error)

    def finish(
        self,
        stop_reason: str | None,
        metadata: Mapping[str, Any],
        count: TokenCount | None = None,
        first_token_ms: int | None = None,
        response_fields: Mapping[str, Any] | None = None,
    ) -> Finished:
        usage = Usage.from_converse(metadata.get("usage"))
        invoked = ((metadata.get("trace") or {}).get("promptRouter") or {}).get("invokedModelId")
        latency = (metadata.get("metrics") or {}).get("latencyMs")
        cost = text_cost(usage, self._prices.prices_for(self.config, invoked))
        finished = Finished(
            stop_reason,
            usage,
            latency,
            invoked,
            cost,
            counted_input_tokens=count.tokens if count else None,
            token_count_source=count.source if count else None,
            first_token_ms=first_token_ms,
            response_fields=response_fields if isinstance(response_fields, Mapping) else None,
        )
        record_usage(self.config, finished)
        return finished


def _request_id(response: Mapping[str, Any]) -> str | None:
    return (response.get("ResponseMetadata") or {}).get("RequestId")


async def _replay(response: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A Converse (not streamed) response as the stream events it stands for."""
    for index, block in enumerate(response.get("output", {}).get("message", {}).get("content", [])):
        if "reasoningContent" in block:  # text, then its signature (or the redacted data), then the block's end
            reasoning = block["reasoningContent"]
            signed = reasoning.get("reasoningText") or {}
            deltas: list[dict[str, Any]] = [{"text": signed.get("text", "")}] if "reasoningText" in reasoning else []
            if signed.get("signature"):
                deltas.append({"signature": signed["signature"]})
            if "redactedContent" in reasoning:
                deltas.append({"redactedContent": reasoning["redactedContent"]})
            for delta in deltas:
                yield {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"reasoningContent": delta}}}
            yield {"contentBlockStop": {"contentBlockIndex": index}}
        elif "text" in block:
            yield {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"text": block["text"]}}}
        elif "toolUse" in block:
            tool = block["toolUse"]
            start = {"toolUse": {"toolUseId": tool.get("toolUseId", ""), "name": tool.get("name", "")}}
            yield {"contentBlockStart": {"contentBlockIndex": index, "start": start}}
            arguments = json.dumps(tool.get("input") or {})
            yield {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"toolUse": {"input": arguments}}}}
    stop = {"stopReason": response.get("stopReason")}
    if response.get("additionalModelResponseFields") is not None:
        stop["additionalModelResponseFields"] = response["additionalModelResponseFields"]
    yield {"messageStop": stop}
    yield {"metadata": {key: response[key] for key in ("usage", "metrics", "trace") if key in response}}


async def _close_stream(stream: Any) -> None:
    """Release the HTTP connection behind an event stream (botocore ``EventStream.close``; sync or async)."""
    close = getattr(stream, "close", None)
    if callable(close):
        result = close()
        if inspect.isawaitable(result):
            await result


class BotHandler(Protocol):
    config: BotConfig

    async def start(self, chat: ChatRequest) -> AsyncIterable[Event]: ...


HANDLERS: dict[str, Callable[[BotConfig, AwsClients, PriceBook, GatewaySettings], BotHandler]] = {
    "text": TextBot,
    "image": ImageBot,
    "video": VideoBot,
    "embedding": EmbeddingBot,
}


def build_bots(settings: GatewaySettings, clients: AwsClients) -> dict[str, BotHandler]:
    prices = PriceBook(settings.bots.values())
    return {name: HANDLERS[bot.modality](bot, clients, prices, settings) for name, bot in settings.bots.items()}
