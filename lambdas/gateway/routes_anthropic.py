"""The Anthropic Messages API routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``
(docs/gateway/anthropic.md; the translation is ``lambdas.gateway.anthropic``).

Same governance as the other routes: the bots' access keys (``x-api-key`` or ``Authorization: Bearer``), the body
limits, the bot's guardrail, context limit, metrics and cost (``TextBot.send``). Every failure answers in Anthropic's
error shape ``{"type": "error", "error": {"type", "message"}}`` with its status, unknown paths under
``/v1/messages`` included.
"""

from __future__ import annotations

import json
import time
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from lambdas.gateway import anthropic_betas
from lambdas.gateway.anthropic import (
    CountTokensRequest,
    MessagesRequest,
    Translated,
    converse_request,
    message_body,
    message_events,
)
from lambdas.gateway.anthropic_betas import Betas
from lambdas.gateway.attachments import AttachmentReader, Fetcher
from lambdas.gateway.bodies import bearer, key_matches, read_json, unknown_bot
from lambdas.gateway.error_shapes import anthropic_error_type as error_type
from lambdas.gateway.error_shapes import anthropic_shape as error_body
from lambdas.gateway.errors import GatewayError, internal_error
from lambdas.gateway.factory import TextBot
from lambdas.gateway.key_guard import current_caller, require_bot
from lambdas.gateway.streaming import AnswerResponse, coalesced
from lambdas.shared.observability import logger

router = APIRouter()
Body = TypeVar("Body", bound=CountTokensRequest)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# anthropic-version values served (Anthropic's "Versions" page): 2023-06-01, and 2026-10-21, which removes temperature,
# top_p and top_k. 2023-01-01 streamed another format and is not served.
VERSIONS = ("2023-06-01", "2026-10-21")
SAMPLING_REMOVED = "2026-10-21"
BETAS_NOT_FORWARDED = "x-gateway-betas-not-forwarded"  # Bedrock betas accepted but not taken by the bot's model
NOT_FOUND_METHODS = ["GET", "PUT", "PATCH", "DELETE", "POST"]


def anthropic_error(error: GatewayError) -> JSONResponse:
    status, _ = error_type(error.status)
    return JSONResponse(error_body(error), status_code=status, headers=error.headers())


def request_key(request: Request) -> str:
    """The caller's key: ``x-api-key`` (the SDK's ``api_key``) or a Bearer token (its ``auth_token``)."""
    return request.headers.get("x-api-key", "").strip() or bearer(request)


def check_headers(request: Request) -> tuple[str, tuple[str, ...]]:
    """The ``anthropic-version`` (400 unless served) and the ``anthropic-beta`` values (400 for a beta the gateway
    neither serves nor forwards: ``lambdas.gateway.anthropic_betas``)."""
    version = request.headers.get("anthropic-version", "")
    if version not in VERSIONS:
        shown = f"'{version}'" if version else "missing"
        raise GatewayError(
            400, f"anthropic-version: {shown}; send one of {list(VERSIONS)} (the SDKs send it for you).", code="version"
        )
    return version, anthropic_betas.parse(",".join(request.headers.getlist("anthropic-beta")))


def check_key(request: Request) -> None:
    """401 unless the caller sends one of the gateway's keys."""
    keys: dict[str, str] = request.app.state.access_keys
    if current_caller() is None and not any(key_matches(request_key(request), key) for key in keys.values()):
        raise GatewayError(401, "Invalid or missing API key (x-api-key or Authorization: Bearer).")


def authorized_bot(request: Request, model: str) -> TextBot:
    """The bot named ``model``: 404 for no such bot, 403 for a key of another bot's key ref, 400 for an image or
    video bot."""
    keys: dict[str, str] = request.app.state.access_keys
    given = request_key(request)
    team_key = require_bot(model)  # a team key: 403 for a bot it may not use, whether the bot exists or not
    bot = request.app.state.bots.get(model)
    if bot is None:
        raise GatewayError(404, f"model: {unknown_bot(model)} is not a model of this gateway (see GET /v1/models).")
    if not team_key and not key_matches(given, keys.get(bot.config.access_key_ref)):
        raise GatewayError(403, f"Your API key may not use the model '{model}'.")
    if not isinstance(bot, TextBot):
        raise GatewayError(
            400, f"model: '{model}' is an {bot.config.modality} model; the Messages API serves text models."
        )
    return bot


def invalid_body(error: ValidationError) -> GatewayError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()[:5]
    )
    return GatewayError(400, problems)


async def translated(request: Request, kind: type[Body]) -> tuple[Body, TextBot, Translated, Betas]:
    """The request read in order: the key (401), the headers (400), the body (413, 400), the bot (404, 403), the
    betas for the bot's model (400), then the Converse request it stands for."""
    check_key(request)
    version, given = check_headers(request)
    settings = request.app.state.settings
    raw = await read_json(request, settings.max_body_bytes, settings.body_timeout)
    if not isinstance(raw, dict):
        raise GatewayError(400, "The request body must be a JSON object.")
    body = kind.model_validate(raw)
    if version == SAMPLING_REMOVED and any(raw.get(name) is not None for name in ("temperature", "top_p", "top_k")):
        raise GatewayError(
            400, "temperature, top_p and top_k are removed in anthropic-version 2026-10-21; leave them out."
        )
    bot = authorized_bot(request, body.model)
    sent = [name for name, value in raw.items() if value is not None]
    betas = anthropic_betas.for_model(given, bot.config.model_id, sent, body.model)
    reader = AttachmentReader(bot.config, Fetcher.from_settings(settings))
    return body, bot, await converse_request(bot.config, body, reader, betas.forwarded), betas


def beta_headers(betas: Betas) -> dict[str, str]:
    return {BETAS_NOT_FORWARDED: ",".join(betas.not_forwarded)} if betas.not_forwarded else {}


@router.post("/v1/messages", response_model=None)
async def messages(request: Request) -> JSONResponse | StreamingResponse:
    started = time.monotonic()
    try:
        body, bot, call, betas = await translated(request, MessagesRequest)
        stream = await bot.send(call.request, started, reasoning=call.thinking)
        if body.stream:
            events = message_events(stream, body.model, call.stop_sequences)
            frames = coalesced(sse(name, data) async for name, data in events)
            headers = {**SSE_HEADERS, **beta_headers(betas)}
            return AnswerResponse(frames, media_type="text/event-stream", headers=headers)
        return JSONResponse(await message_body(stream, body.model, call.stop_sequences), headers=beta_headers(betas))
    except GatewayError as error:
        return anthropic_error(error)
    except ValidationError as error:
        return anthropic_error(invalid_body(error))
    except Exception:
        logger.exception("anthropic messages failed", path=request.url.path)
        return anthropic_error(internal_error())


@router.post("/v1/messages/count_tokens", response_model=None)
async def count_tokens(request: Request) -> JSONResponse:
    """``{"input_tokens": n}``: Bedrock's CountTokens on bots with ``token_counting``, else the gateway's documented
    estimate; the ``x-gateway-token-count`` header says which."""
    try:
        _, bot, call, betas = await translated(request, CountTokensRequest)
        count = await bot.count_tokens(call.request)
    except GatewayError as error:
        return anthropic_error(error)
    except ValidationError as error:
        return anthropic_error(invalid_body(error))
    except Exception:
        logger.exception("anthropic count_tokens failed", path=request.url.path)
        return anthropic_error(internal_error())
    headers = {"x-gateway-token-count": count.source, **beta_headers(betas)}
    return JSONResponse({"input_tokens": count.tokens}, headers=headers)


@router.api_route("/v1/messages/{rest:path}", methods=NOT_FOUND_METHODS, response_model=None)
async def not_found(rest: str, request: Request) -> JSONResponse:
    """Anything else under /v1/messages (Message Batches, a wrong method): Anthropic's ``not_found_error``."""
    return anthropic_error(GatewayError(404, f"Not found: {request.method} {request.url.path}"))


@router.api_route("/v1/messages", methods=["GET", "PUT", "PATCH", "DELETE"], response_model=None)
async def wrong_method(request: Request) -> JSONResponse:
    return anthropic_error(GatewayError(405, f"{request.method} /v1/messages is not served; use POST."))


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
