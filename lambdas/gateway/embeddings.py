"""Embedding bots: texts -> InvokeModel on the bot's embedding model (body by its family in
``lambdas.shared.model_families``) -> one vector per text, in the order given.

A list longer than the model takes per call (Titan and Nova Multimodal Embeddings: one text, Cohere Embed v3: 96) is
split into calls of at most that many texts, run ``EMBED_CONCURRENCY`` at a time, and reassembled in order; if any call
fails the request fails (no vector is dropped or answered out of place). Input tokens come from the answer (Titan's
``inputTextTokenCount``), else from Bedrock's ``X-Amzn-Bedrock-Input-Token-Count`` header, else an estimate of one
token per 4 characters (Cohere's and Nova's answers carry no count; docs/bedrock-facts.md, Embeddings). A bot's
guardrail checks each call's texts (``ApplyGuardrail``) before the call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import BotConfig, GatewaySettings
from lambdas.gateway.errors import USER_CAUSED, GatewayError, bedrock_failure
from lambdas.gateway.events import Event, Finished, record_usage
from lambdas.gateway.guardrails import check_prompt
from lambdas.gateway.translate import ChatRequest, PriceBook, Usage
from lambdas.shared.model_families import EmbeddingAdapter, InferenceSettings, embedding_adapter_of

EMBED_CONCURRENCY = 4  # InvokeModel calls one request has in flight at once
CHARS_PER_TOKEN = 4  # the estimate when Bedrock reports no count ("Cohere Embed v3": 1 token is about 4 characters)
TOKEN_COUNT_HEADER = "x-amzn-bedrock-input-token-count"


def invalid(message: str, code: str = "invalid_input") -> GatewayError:
    return GatewayError(400, message, error_type=USER_CAUSED, code=code)


class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's embeddings request body, read by ``POST /v1/embeddings`` and by the batch input lines
    (``lambdas.gateway.batch_lines``)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def texts(self) -> tuple[str, ...]:
        """``input`` as texts; a token array (integers, or lists of them) is a 400 naming ``input``."""
        if isinstance(self.input, str):
            return (self.input,)
        for index, item in enumerate(self.input):
            if not isinstance(item, str):
                raise invalid(
                    f"'input[{index}]' is not a string: token arrays are not supported (the gateway cannot know the "
                    "Bedrock model's tokens); send the text itself."
                )
        return tuple(self.input)


@dataclass(frozen=True)
class EmbeddingRequest:
    texts: tuple[str, ...]
    dimensions: int | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]
    input_tokens: int
    cost_usd: float


def batches(texts: Sequence[str], size: int) -> list[list[str]]:
    """``texts`` in consecutive calls of at most ``size`` texts; joined back in order they are ``texts`` again."""
    return [list(texts[start : start + size]) for start in range(0, len(texts), size)]


def encode_base64(vector: Sequence[float]) -> str:
    """A vector as OpenAI's ``encoding_format: base64``: little-endian float32 values, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def check_texts(config: BotConfig, adapter: EmbeddingAdapter, texts: Sequence[str]) -> None:
    """The request's texts, before any call: 1 to ``embedding.max_inputs`` of them, none empty, none longer than the
    model takes (each a 400 naming ``input`` and the fix)."""
    limit = config.embeddings.max_inputs
    if not texts:
        raise invalid("'input' is empty: give a string or a list of 1 or more strings.")
    if len(texts) > limit:
        raise invalid(f"'input' has {len(texts)} texts; bot '{config.name}' embeds at most {limit} per request.")
    for index, text in enumerate(texts):
        if not text:
            raise invalid(f"'input[{index}]' is an empty string; every text must have at least one character.")
        if adapter.max_chars and len(text) > adapter.max_chars:
            raise invalid(
                f"'input[{index}]' has {len(text)} characters; {adapter.title} takes at most {adapter.max_chars}. "
                "Split the text."
            )


def embedding_settings(config: BotConfig, adapter: EmbeddingAdapter, dimensions: int | None) -> InferenceSettings:
    """The InvokeModel settings of a request: ``dimensions`` one of the model's (a 400 naming them otherwise), the
    bot's ``input_type`` (Cohere) and ``embedding_purpose`` (Nova Multimodal Embeddings)."""
    if dimensions is not None:
        accepted = adapter.choices.get("dimensions") if "dimensions" in adapter.parameters else None
        if accepted is None:
            raise invalid(
                f"'dimensions' = {dimensions}: {adapter.title} ({config.name}) has one fixed output size; remove "
                "'dimensions'.",
                code="invalid_dimensions",
            )
        if dimensions not in accepted:
            raise invalid(
                f"'dimensions' = {dimensions} is not accepted by {adapter.title} ({config.name}); use one of "
                f"{', '.join(map(str, accepted))}.",
                code="invalid_dimensions",
            )
    options = config.embeddings
    return InferenceSettings(
        dimensions=dimensions, input_type=options.input_type, embedding_purpose=options.embedding_purpose
    )


def input_tokens(answer: dict[str, Any], response: dict[str, Any], texts: Sequence[str]) -> int:
    """The input tokens of one call: the answer's ``inputTextTokenCount`` (Titan), else Bedrock's token-count
    header, else the estimate (``CHARS_PER_TOKEN``)."""
    counted = answer.get("inputTextTokenCount")
    if isinstance(counted, int) and not isinstance(counted, bool) and counted >= 0:
        return counted
    header = ((response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}).get(TOKEN_COUNT_HEADER, "")
    if isinstance(header, str) and header.isdigit():
        return int(header)
    return sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in texts)


class EmbeddingBot:
    """Embeds texts with one bot's model (``/v1/embeddings``); it answers no chat."""

    def __init__(self, config: BotConfig, clients: AwsClients, prices: PriceBook, settings: GatewaySettings) -> None:
        adapter = embedding_adapter_of(config.model_id)
        assert adapter is not None  # BotConfig checks that an embedding bot's model is one
        self.config = config
        self.adapter = adapter
        self._clients = clients

    async def start(self, chat: ChatRequest) -> AsyncIterator[Event]:
        raise invalid(
            f"'{self.config.name}' is an embedding model: it answers POST /v1/embeddings, not chat.",
            code="wrong_endpoint",
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        check_texts(self.config, self.adapter, request.texts)
        settings = embedding_settings(self.config, self.adapter, request.dimensions)
        calls = batches(request.texts, self.adapter.texts_per_call)
        started = time.monotonic()
        slots = asyncio.Semaphore(EMBED_CONCURRENCY)
        try:
            runtime = await self._clients.bedrock_runtime(self.config.region)
            async with asyncio.TaskGroup() as group:  # the first failed call cancels the others
                tasks = [group.create_task(self._call(runtime, texts, settings, slots)) for texts in calls]
        except ExceptionGroup as failures:  # calls that failed before the others were cancelled: the first one
            first = failures.exceptions[0]
            raise first if isinstance(first, GatewayError) else self.failed(first) from None
        except GatewayError:
            raise
        except Exception as error:  # the client could not be made
            raise self.failed(error) from error
        results = [task.result() for task in tasks]
        vectors = [vector for call_vectors, _ in results for vector in call_vectors]
        tokens = sum(count for _, count in results)
        cost = tokens / 1000 * self.config.prices.input_per_1k
        latency = round((time.monotonic() - started) * 1000)
        record_usage(self.config, Finished("end_turn", Usage(input_tokens=tokens), latency, None, cost))
        return EmbeddingResult(vectors, tokens, cost)

    async def _call(
        self, runtime: Any, texts: list[str], settings: InferenceSettings, slots: asyncio.Semaphore
    ) -> tuple[list[list[float]], int]:
        async with slots:
            await check_prompt(self.config, runtime, "\n".join(texts))  # the bot's guardrail, if any
            response = await runtime.invoke_model(
                modelId=self.config.model_id,
                body=json.dumps(self.adapter.build_texts_input(texts, settings)),
                contentType="application/json",
                accept="application/json",
            )
            answer = json.loads(await response["body"].read())
        try:
            vectors = self.adapter.parse_vectors(answer)
        except ValueError as error:
            raise GatewayError(502, f"The model answered without embeddings ({error}).", allow_retry=True) from None
        if len(vectors) != len(texts):
            raise GatewayError(
                502, f"The model answered {len(vectors)} embeddings for {len(texts)} texts.", allow_retry=True
            )
        return vectors, input_tokens(answer, response, texts)

    def failed(self, error: BaseException) -> GatewayError:
        return bedrock_failure(self.config.name, error)
