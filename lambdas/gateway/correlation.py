"""A correlation id per request: in every log line the request causes and in the ``x-gateway-request-id`` response
header.

On AWS the id is API Gateway's ``requestId`` (the one in the API's access logs), which the Lambda Web Adapter passes
in the ``x-amzn-request-context`` header; elsewhere a new one. A client's own ``x-request-id`` is not taken (the
gateway never reflects request headers). The keys live in Powertools' context variable, so concurrent requests in one
process keep their own: each request runs in its own task, and the tasks it starts inherit the id.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from lambdas.shared.observability import logger

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_CONTEXT_HEADER = b"x-amzn-request-context"
RESPONSE_HEADER = b"x-gateway-request-id"
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """API Gateway's request id from the adapter's request-context header, or a new id."""
    for name, value in headers:
        if name == REQUEST_CONTEXT_HEADER:
            try:
                given = json.loads(value).get("requestId")
            except (ValueError, AttributeError):
                given = None
            if isinstance(given, str) and _ID.match(given):
                return given
    return uuid.uuid4().hex


class CorrelationIds:
    """Pure ASGI middleware (no per-chunk work beyond one call): sets the id, adds the response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope.get("headers") or ())
        logger.thread_safe_append_keys(request_id=rid)
        header = (RESPONSE_HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
