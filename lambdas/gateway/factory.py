"""The bot factory: a ``BotConfig`` becomes a handler by modality (``HANDLERS``), never by model-name tests.

A text handler answers in two steps so each front end can place errors right: ``await bot.start(chat)`` calls
Bedrock (errors here are "before the stream": HTTP status), then iterating the returned ``TextStream`` yields
``TextDelta`` / ``ReasoningDelta`` events as they arrive and one ``Finished`` last (errors here are "after the stream
started": Poe ``error`` event or OpenAI error chunk). Image bots (``lambdas.gateway.images``) and video bots
(``lambdas.gateway.videos``) answer with a ``MediaFile`` (presigned S3 URL).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from lambdas.gateway.attachments import Fetcher, read_attachments
from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import BotConfig, GatewaySettings
from lambdas.gateway.errors import GatewayError, from_bedrock
from lambdas.gateway.events import Event, Finished, ReasoningDelta, TextDelta, record_usage
from lambdas.gateway.images import ImageBot
from lambdas.gateway.parameters import apply_text_parameters
from lambdas.gateway.tokens import TokenCount, check_context, count_input_tokens
from lambdas.gateway.translate import ChatRequest, PriceBook, Usage, converse_request, text_cost
from lambdas.gateway.videos import VideoBot
from lambdas.shared.observability import logger


class TextStream:
    """The events of one answer; ``events`` is an async iterator of Bedrock stream events (one-key dicts)."""

    def __init__(
        self, bot: TextBot, events: AsyncIterator[dict[str, Any]], raw: Any = None, count: TokenCount | None = None
    ) -> None:
        self.bot = bot
        self._events = events
        self._raw = raw
        self._count = count  # the SDK's event stream, closed when the answer ends or is abandoned

    async def __aiter__(self) -> AsyncIterator[Event]:
        stop_reason: str | None = None
        metadata: Mapping[str, Any] = {}
        try:
            async for event in self._events:
                if "contentBlockDelta" in event:
                    delta = event["contentBlockDelta"].get("delta", {})
                    if delta.get("text"):
                        yield TextDelta(delta["text"])
                    reasoning = delta.get("reasoningContent") or {}
                    if reasoning.get("text") and self.bot.config.capabilities.reasoning:
                        yield ReasoningDelta(reasoning["text"])
                elif "messageStop" in event:
                    stop_reason = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    metadata = event["metadata"]
        except GatewayError:
            raise
        except Exception as error:
            raise self.bot.failed(error) from error
        finally:
            await _close_stream(self._raw)
        yield self.bot.finish(stop_reason, metadata, self._count)


class TextBot:
    """Converse / ConverseStream on one bot's model, through the shared client service."""

    def __init__(self, config: BotConfig, clients: AwsClients, prices: PriceBook, settings: GatewaySettings) -> None:
        self.config = config
        self._clients = clients
        self._prices = prices
        self._fetcher = Fetcher.from_settings(settings)

    async def start(self, chat: ChatRequest) -> TextStream:
        """Parameters checked, attachments read, the prompt counted against ``context_tokens``, then the call."""
        chat = apply_text_parameters(self.config, chat)
        chat = await read_attachments(self.config, chat, self._fetcher)
        request = converse_request(self.config, chat)
        try:
            client = await self._clients.bedrock_runtime(self.config.region)
            count = await count_input_tokens(self.config, request, client)
            check_context(self.config, count)
            if self.config.capabilities.streaming:
                response = await client.converse_stream(**request)
                stream = response["stream"]
                return TextStream(self, aiter(stream), stream, count)
            response = await client.converse(**request)
        except GatewayError:
            raise
        except Exception as error:
            raise self.failed(error) from error
        return TextStream(self, _replay(response), count=count)

    def failed(self, error: BaseException) -> GatewayError:
        mapped = from_bedrock(error)
        if mapped.status == 500:
            logger.exception("gateway internal error", bot=self.config.name)
        else:
            logger.warning("bedrock error", bot=self.config.name, status=mapped.status, code=mapped.code)
        return mapped

    def finish(self, stop_reason: str | None, metadata: Mapping[str, Any], count: TokenCount | None = None) -> Finished:
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
        )
        record_usage(self.config, finished)
        return finished


async def _replay(response: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """A Converse (not streamed) response as the stream events it stands for."""
    for index, block in enumerate(response.get("output", {}).get("message", {}).get("content", [])):
        if "reasoningContent" in block:
            text = block["reasoningContent"].get("reasoningText", {}).get("text", "")
            yield {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"reasoningContent": {"text": text}}}}
        elif "text" in block:
            yield {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"text": block["text"]}}}
    yield {"messageStop": {"stopReason": response.get("stopReason")}}
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
}


def build_bots(settings: GatewaySettings, clients: AwsClients) -> dict[str, BotHandler]:
    prices = PriceBook(settings.bots.values())
    return {name: HANDLERS[bot.modality](bot, clients, prices, settings) for name, bot in settings.bots.items()}
