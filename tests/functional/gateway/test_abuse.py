"""Abuse resistance of the gateway app in-process (issue 6 item 6): oversized, deep, non-UTF-8 and slow bodies, bot
names with path characters, header injection, and a thousand bad keys (constant-time comparison, keys never logged)."""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import sys
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI

from lambdas.gateway import app as gateway_app
from lambdas.gateway.app import UNAUTHORIZED, create_app
from lambdas.gateway.bodies import MAX_JSON_DEPTH
from lambdas.gateway.config import GatewaySettings
from lambdas.shared.observability import logger
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, poe_query

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}
ROUTES = ("/poe/nova-pro", "/v1/chat/completions", "/v1/embeddings", "/v1/images/generations")
LIMIT = 65_536
CHUNK = 16_384
ALLOWED_HEADERS = {
    "content-type",
    "content-length",
    "cache-control",
    "x-accel-buffering",
    "retry-after",
    "x-gateway-request-id",  # the id the gateway made for the request (lambdas/gateway/correlation.py)
}


@pytest.fixture
async def small_app(emulator: BedrockEmulator, settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    """A 64 KiB body limit and a 0.5 s body timeout."""
    application = create_app(replace(settings, max_body_bytes=LIMIT, body_timeout=0.5))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def small(small_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small_app), base_url="http://test") as http:
        yield http


class Source:
    """A request body that counts the bytes the app pulled from it."""

    def __init__(self, total: int, chunk: int = CHUNK, delay: float = 0.0) -> None:
        self.total, self.chunk, self.delay, self.pulled = total, chunk, delay, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            if self.delay:
                await asyncio.sleep(self.delay)
            piece = b" " * min(self.chunk, self.total - self.pulled)
            self.pulled += len(piece)
            yield piece


async def raw_asgi(
    app: FastAPI, raw_path: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"", method: str = "POST"
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request straight into the ASGI app, headers and path bytes exactly as given (as a server decodes them)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    sent: list[MutableMapping[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.sleep(3600)
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], start["headers"], content


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize("path", ROUTES)
async def test_declared_oversized_body_is_413_before_a_byte_is_read(small: httpx.AsyncClient, path: str) -> None:
    # GIVEN a body declaring a gigabyte WHEN it is posted
    source = Source(10**9)
    headers = {**AUTH, "Content-Length": str(10**9), "Content-Type": "application/json"}
    response = await small.post(path, content=source, headers=headers)
    # THEN 413, and the app pulled nothing of it
    assert response.status_code == 413 and "request_too_large" in response.text
    assert source.pulled == 0


@pytest.mark.parametrize("path", ROUTES)
async def test_chunked_oversized_body_is_413_once_past_the_limit(small: httpx.AsyncClient, path: str) -> None:
    # GIVEN a chunked body (no Content-Length) of 100 MB WHEN it is posted
    source = Source(100 * 2**20)
    response = await small.post(path, content=source, headers=AUTH)
    # THEN 413 as soon as the limit is passed: the app read at most one chunk more than the limit
    assert response.status_code == 413
    assert "content-length" not in response.request.headers
    assert source.pulled <= LIMIT + CHUNK


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("deep", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000])
async def test_deeply_nested_json_is_400(client: httpx.AsyncClient, path: str, deep: bytes) -> None:
    # GIVEN 100k nested arrays (or objects) WHEN posted THEN 400 invalid_json, no RecursionError / 500
    response = await client.post(path, content=deep, headers=AUTH)
    assert response.status_code == 400 and "invalid_json" in response.text


async def test_json_nesting_up_to_the_limit_is_parsed(client: httpx.AsyncClient) -> None:
    # GIVEN a query whose parameters nest to the limit, with brackets inside a string THEN it is answered
    nested: Any = 1
    for _ in range(MAX_JSON_DEPTH - 5):
        nested = [nested]
    body = poe_query("[[[[{{{{ hello")
    body["query"][0]["parameters"] = {"x": nested}
    response = await client.post("/poe/nova-pro", json=body, headers=AUTH)
    assert response.status_code == 200 and "[[[[{{{{" in response.text and "event: error" not in response.text


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "query", "model": "nova-pro", "query": [{"role": "user", "content": "\xff\xfe bad"}]}',
        b'{"type": "query", "model": "nova-pro", "messages": "\xc3\x28"}',
        json.dumps(poe_query("hi")).encode("utf-16"),
        b"\xed\xa0\x80",  # an encoded surrogate
    ],
)
async def test_invalid_utf8_is_400(client: httpx.AsyncClient, path: str, body: bytes) -> None:
    response = await client.post(path, content=body, headers=AUTH)
    assert response.status_code == 400 and "not valid UTF-8" in response.text


@pytest.fixture
async def patient(emulator: BedrockEmulator, settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """An app with a 3 s body timeout: long enough for a few fast requests to finish before it, even on a loaded
    machine, so the order of the answers shows whether the slow body blocked them."""
    application = create_app(replace(settings, body_timeout=3.0))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_a_body_that_does_not_arrive_in_time_is_408_and_blocks_nothing(patient: httpx.AsyncClient) -> None:
    # GIVEN a client dripping a body one byte every 50 ms (1,000 bytes: 50 s if nothing cut it; the body timeout is
    # 3 s)
    drip = Source(1000, chunk=1, delay=0.05)
    slow = asyncio.create_task(patient.post("/poe/nova-pro", content=drip, headers=AUTH))
    while drip.pulled == 0:  # the slow body has started to arrive
        await asyncio.sleep(0.01)
    # WHEN fast requests run meanwhile THEN they are answered while the slow body is still arriving
    for _ in range(3):
        fast = await patient.post("/poe/nova-pro", json=poe_query("quick"), headers=AUTH)
        assert fast.status_code == 200 and "quick" in fast.text
        assert not slow.done()
    # AND the slow one gets 408 when its body timeout passes, long before all of its body could arrive
    response = await slow
    assert response.status_code == 408 and "request_timeout" in response.text
    assert drip.pulled < 1000 // 4


# ---------------------------------------------------------------- bot names


ATTACK_PATHS = [
    b"/poe/..",
    b"/poe/%2e%2e",
    b"/poe/%2E%2E%2Fbots.json",
    b"/poe/..%2f..%2f..%2fetc%2fpasswd",
    b"/poe/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"/poe/..%5c..%5cwindows%5cwin.ini",
    b"/poe/bots.json",
    b"/poe/nova-pro%00",
    b"/poe/%00",
    b"/poe/nova-pro%0d%0aSet-Cookie:%20x=1",
    b"/poe/" + b"a" * 100_000,
    b"/poe/" + b"%2e%2e%2f" * 5_000,
]


async def test_bot_names_with_path_characters_are_404_without_file_access(app: FastAPI) -> None:
    opened: list[str] = []
    recording = False

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if recording and event == "open":
            opened.append(str(args[0]))

    sys.addaudithook(audit)  # audit hooks stay for the process: this one only records while ``recording``
    await raw_asgi(app, b"/poe/unknown-bot", [(b"authorization", AUTH["Authorization"].encode())], b"{}")  # warm-up
    recording = True
    try:
        for raw_path in ATTACK_PATHS:
            status, headers, body = await raw_asgi(
                app, raw_path, [(b"authorization", AUTH["Authorization"].encode())], json.dumps(poe_query("x")).encode()
            )
            # THEN 404 (or 400), never a 500; the invalid name is not echoed
            assert status in (400, 404), raw_path[:80]
            assert len(body) < 200 and b"passwd" not in body and b"\x00" not in body
            assert {name.decode().lower() for name, _ in headers} <= ALLOWED_HEADERS
    finally:
        recording = False
    # AND no file was opened while they were handled
    assert opened == []


@pytest.mark.parametrize("model", ["../../etc/passwd", "%2e%2e", "nova-pro\x00", "a" * 100_000, "bots.json"])
async def test_openai_model_names_with_path_characters_are_404(client: httpx.AsyncClient, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert len(response.content) < 300


# ---------------------------------------------------------------- header injection


async def test_header_values_with_cr_lf_are_never_reflected(app: FastAPI) -> None:
    # GIVEN requests whose headers (a request id, the user agent, the key) and path carry CR/LF and a header line
    payload = b"abc\r\nSet-Cookie: injected=1\r\nX-Injected: yes"
    injections = [(b"x-request-id", payload), (b"user-agent", payload), (b"x-amzn-trace-id", payload)]
    cases = [
        (b"/poe/nova-pro", [(b"authorization", AUTH["Authorization"].encode()), *injections]),
        (b"/poe/nova-pro", [(b"authorization", b"Bearer " + payload), *injections]),
        (b"/poe/nova%0d%0aX-Injected:%20yes", [(b"authorization", AUTH["Authorization"].encode()), *injections]),
        (b"/v1/chat/completions", [(b"authorization", AUTH["Authorization"].encode()), *injections]),
        (b"/v1/chat/completions", [(b"authorization", b"Bearer " + payload), *injections]),
    ]
    bodies = [json.dumps(poe_query("hi")).encode(), b"[" * 1000, b'{"model": "nova-pro", "messages": []}']
    for raw_path, headers in cases:
        for body in bodies:
            status, response_headers, _ = await raw_asgi(app, raw_path, headers, body)
            # THEN only the gateway's own headers come back, none carrying the payload or a line break
            assert status < 500
            for name, value in response_headers:
                assert name.decode().lower() in ALLOWED_HEADERS
                assert b"\r" not in value and b"\n" not in value and b"injected" not in value.lower()
    status, response_headers, _ = await raw_asgi(app, b"/health", injections, method="GET")
    assert status == 200 and {n.decode() for n, _ in response_headers} <= ALLOWED_HEADERS


# ---------------------------------------------------------------- bad keys


def test_keys_are_compared_in_constant_time() -> None:
    source = inspect.getsource(gateway_app.key_matches)
    assert "hmac.compare_digest" in source and "==" not in source


async def test_a_thousand_bad_keys_are_401_alike_and_never_logged(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: Any
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    presented: list[str] = []
    bodies: dict[str, set[bytes]] = {path: set() for path in ROUTES[:2]}  # the Poe and chat front ends
    statuses: set[int] = set()
    try:
        for index in range(1000):
            key = f"bad-key-{index:04d}-" + "x" * (index % 50)
            if index % 4 == 1:
                key = KEY[:-1] + f"{index % 10}"  # a near miss: the right key's prefix
            presented.append(key)
            scheme = ("Bearer", "bearer", "Basic", "Token")[index % 4]
            headers = {"Authorization": f"{scheme} {key}", "X-Api-Key": key}
            path = ROUTES[index % 2]
            body = poe_query("hi") if path.startswith("/poe") else {"model": "nova-pro", "messages": [{"role": "user"}]}
            response = await client.post(path, json=body, headers=headers)
            statuses.add(response.status_code)
            bodies[path].add(response.content)
    finally:
        logger.setLevel(logging.INFO)
    # THEN all 401 with one body per front end
    assert statuses == {401}
    assert all(len(found) == 1 for found in bodies.values()) and UNAUTHORIZED.encode() in bodies[ROUTES[0]].pop()
    # AND every bearer key went through hmac.compare_digest (Basic/Token schemes present no key)
    compared = {given for given, _ in calls}
    bearer = {key.encode() for index, key in enumerate(presented) if index % 4 in (0, 1)}
    assert bearer <= compared
    # AND no log line holds a presented key
    captured = capfd.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert not [key for key in presented if key in logged]
