"""The Poe client library (fastapi_poe) asking the gateway, for every test layer: in process (``app``) or over HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastapi_poe as fp
import httpx
from fastapi import FastAPI


async def poe_responses(
    base_url: str,
    bot: str,
    messages: Sequence[fp.ProtocolMessage],
    *,
    api_key: str,
    app: FastAPI | None = None,
    **options: Any,
) -> list[fp.PartialResponse]:
    """Every response ``fp.get_bot_response`` yields for ``messages`` to ``bot`` at ``base_url`` (``.../poe/``): over
    real HTTP, or in process through ``app``; ``options`` (``tools``, ``tool_executables``, ...) are passed on."""
    transport = httpx.ASGITransport(app=app) if app is not None else None
    async with httpx.AsyncClient(transport=transport, timeout=60) as session:
        return [
            message
            async for message in fp.get_bot_response(
                messages=list(messages), bot_name=bot, api_key=api_key, base_url=base_url, session=session, **options
            )
        ]


async def poe_responses_until_error(
    base_url: str,
    bot: str,
    messages: Sequence[fp.ProtocolMessage],
    *,
    api_key: str,
    app: FastAPI | None = None,
    **options: Any,
) -> tuple[list[fp.PartialResponse], fp.BotError | None]:
    """What ``fp.get_bot_response`` yields before it raises on an ``error`` event, and the error it raised
    (``fp.BotErrorNoRetry`` when the event forbids retries), or None when the answer ended normally."""
    transport = httpx.ASGITransport(app=app) if app is not None else None
    received: list[fp.PartialResponse] = []
    async with httpx.AsyncClient(transport=transport, timeout=60) as session:
        try:
            async for message in fp.get_bot_response(
                messages=list(messages), bot_name=bot, api_key=api_key, base_url=base_url, session=session, **options
            ):
                received.append(message)
        except fp.BotError as error:
            return received, error
    return received, None
