"""What every OpenAI-style route that names a bot in ``model`` does first, in one order: the caller's key (401), the
body (400 naming the field), a team key's bot list (403 whether the bot exists or not), the bot (404), the bot's own
key (401)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel

from lambdas.gateway.bodies import UNAUTHORIZED, read_json, unknown_bot
from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.factory import BotHandler
from lambdas.gateway.key_guard import require_bot

Body = TypeVar("Body", bound=BaseModel)


async def model_request(
    request: Request,
    model: type[Body],
    bots: Mapping[str, BotHandler],
    settings: GatewaySettings,
    authenticated: Callable[[Request], bool],
    authorized: Callable[[Request, BotHandler], bool],
) -> tuple[Body, BotHandler]:
    """The validated body and its bot, or the GatewayError to answer (pydantic's ValidationError for a bad body)."""
    if not authenticated(request):
        raise GatewayError(401, UNAUTHORIZED, openai_type="authentication_error")
    body = model.model_validate(await read_json(request, settings.max_body_bytes, settings.body_timeout))
    name = str(getattr(body, "model", ""))
    require_bot(name)  # a team key: 403 for a bot it may not use, whether the bot exists or not
    bot = bots.get(name)
    if bot is None:
        raise GatewayError(404, f"The model {unknown_bot(name)} does not exist.", code="model_not_found")
    if not authorized(request, bot):
        raise GatewayError(401, UNAUTHORIZED, openai_type="authentication_error")
    return body, bot
