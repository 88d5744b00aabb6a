"""Reading a gateway request: its body (size, time and nesting limits) and its access key; shared by every route.

A body over ``GatewaySettings.max_body_bytes`` is refused with HTTP 413 as soon as that is known, one that does not
arrive within ``body_timeout`` with 408, and JSON nested over ``MAX_JSON_DEPTH`` levels with 400, before it is parsed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from typing import Any

from fastapi import Request

from lambdas.gateway.errors import GatewayError

UNAUTHORIZED = "Invalid or missing access key."

MAX_JSON_DEPTH = 64  # request bodies nest a few levels; deeper ones are refused before json.loads recurses
# a string to its closing quote, or to the end of an unterminated body: one linear pass, no backtracking
_JSON_STRINGS = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]+")
_OPENERS = frozenset(b"[{")
BOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # names echoed in an unknown-bot message


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects over ``limit`` levels (brackets inside strings do not count)."""
    depth = 0
    for byte in _NOT_BRACKETS.sub(b"", _JSON_STRINGS.sub(b"", body)):
        depth += 1 if byte in _OPENERS else -1
        if depth > limit:
            return True
    return False


def body_too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is over {limit} bytes.", code="request_too_large")


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body: HTTP 413 once it is over ``limit`` bytes (a declared Content-Length at once, a chunked body
    as soon as it passes the limit, never read whole), 408 when it has not all arrived within ``timeout`` seconds."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise body_too_large(limit)
    except TimeoutError:
        raise GatewayError(408, "The request body did not arrive in time.", code="request_timeout") from None
    return bytes(body)


async def read_json(request: Request, limit: int, timeout: float) -> Any:
    """The body as JSON: UTF-8 only, at most ``MAX_JSON_DEPTH`` levels deep (HTTP 400 otherwise)."""
    body = await read_body(request, limit, timeout)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise GatewayError(400, "The request body is not valid UTF-8.", code="invalid_json") from None
    if too_deep(body):
        raise GatewayError(400, f"The JSON nests over {MAX_JSON_DEPTH} levels.", code="invalid_json")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise GatewayError(400, "The request body is not valid JSON.", code="invalid_json") from None


def unknown_bot(name: str) -> str:
    """The unknown-bot message; a name that is no possible bot name (path characters, control bytes, very long) is
    not echoed."""
    return f"'{name}'" if BOT_NAME.fullmatch(name) else "(an invalid name)"


def bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def key_matches(given: str, expected: str | None) -> bool:
    return bool(given) and expected is not None and hmac.compare_digest(given.encode(), expected.encode())
