"""``POST /v1/embeddings``: OpenAI's embeddings API over the gateway's embedding bots (``lambdas.gateway.embeddings``).

Request: ``model`` (an embedding bot), ``input`` (a string or a list of strings; token arrays are refused),
``encoding_format`` (``float``, or ``base64``: little-endian float32 as OpenAI sends it), ``dimensions`` (one of the
model's sizes), ``user`` (accepted, not used). Answer: ``{"object": "list", "data": [{"object": "embedding", "index",
"embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}``. Keys, body limits, correlation ids, guardrails,
errors and per-bot metrics are the chat route's (``lambdas.gateway.app``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.embeddings import EmbeddingBot, EmbeddingRequest, OpenAIEmbeddingRequest, encode_base64, invalid
from lambdas.gateway.error_shapes import error_response, invalid_body
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.factory import BotHandler
from lambdas.gateway.routes_common import model_request


def embedding_data(vectors: list[list[float]], encoding_format: str) -> list[dict[str, Any]]:
    return [
        {"object": "embedding", "index": index, "embedding": encode_base64(v) if encoding_format == "base64" else v}
        for index, v in enumerate(vectors)
    ]


def embeddings_router(
    bots: Mapping[str, BotHandler],
    settings: GatewaySettings,
    authenticated: Callable[[Request], bool],
    authorized: Callable[[Request, BotHandler], bool],
) -> APIRouter:
    """The route, with the app's bots, settings, and its key checks (any key of the gateway; the bot's)."""
    router = APIRouter()

    @router.post("/v1/embeddings", response_model=None)
    async def embeddings(request: Request) -> JSONResponse:
        try:
            body, bot = await model_request(request, OpenAIEmbeddingRequest, bots, settings, authenticated, authorized)
            if not isinstance(bot, EmbeddingBot):
                embedders = sorted(name for name, other in bots.items() if isinstance(other, EmbeddingBot))
                raise invalid(
                    f"'model' = '{body.model}' is a {bot.config.modality} model; /v1/embeddings serves the embedding "
                    f"models: {', '.join(embedders) or 'none configured'}.",
                    code="wrong_endpoint",
                )
            result = await bot.embed(EmbeddingRequest(body.texts(), body.dimensions))
        except GatewayError as error:
            return error_response(error, openai=True)
        except ValidationError as error:
            return error_response(invalid_body(error.errors()), openai=True)
        return JSONResponse(
            {
                "object": "list",
                "data": embedding_data(result.vectors, body.encoding_format),
                "model": body.model,
                "usage": {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens},
            }
        )

    return router
