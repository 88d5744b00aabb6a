"""The gateway app in-process (httpx ASGITransport, lifespan run) against the Bedrock emulator over HTTP.

The app's aiobotocore clients reach the emulator through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` (boto's standard
endpoint configuration). Converse never touches S3, so the emulator gets a plain S3 client it never calls.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import boto3
import fastapi_poe as fp
import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings, load_bots
from local.emulator.jobs import EmulatorState
from local.emulator.server import BedrockEmulator
from tests.poe_client import poe_responses

KEY = "test-access-key-0123456789abcdef"
POE_URL = "http://test/poe/"  # the in-process app's Poe routes (httpx ASGITransport)
TEAM_KEY = "team-access-key-0123456789abcdef"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def unused_s3() -> Any:
    """The emulator's S3 client, which Converse never calls: one for the run (a client takes milliseconds to create,
    and most tests here start an emulator)."""
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def emulator(unused_s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockEmulator]:
    with BedrockEmulator(EmulatorState(s3=unused_s3, step_seconds=0)) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        yield server


@pytest.fixture
def settings() -> GatewaySettings:
    """The shipped bots; no SDK retries (and no adaptive rate limiting) so every injected fault reaches the gateway
    at once; one bot on its own key."""
    bots = dict(load_bots())
    bots["nova-micro"] = bots["nova-micro"].model_copy(update={"access_key_ref": "team"})
    return replace(
        GatewaySettings(bots=bots, access_keys={"default": KEY, "team": TEAM_KEY}),
        max_attempts=1,
        retry_mode="standard",
        read_timeout=30,
    )


@pytest.fixture
async def app(emulator: BedrockEmulator, settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


def openai_client(app: FastAPI, key: str) -> openai.AsyncOpenAI:
    """The SDK on an in-process transport. openai 3.x types ``http_client`` as an ``httpx2`` client but accepts an
    ``httpx`` one at runtime (``openai._httpx2.is_legacy_httpx_async_client``); httpx is what this project pins."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return openai.AsyncOpenAI(base_url="http://test/v1", api_key=key, http_client=http, max_retries=0)  # type: ignore[arg-type]


@pytest.fixture
async def sdk(app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    """The openai SDK on the app, with the default key."""
    async with openai_client(app, KEY) as client:
        yield client


def moto_server(*buckets: str) -> Iterator[str]:
    """A moto server over HTTP on a free port (its URL), with ``buckets`` created; stopped when the generator ends.
    Fixtures ``yield from`` it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    try:
        yield url
    finally:
        server.stop()


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of an SSE body; ``data`` parsed as JSON when it is JSON."""
    events: list[tuple[str, Any]] = []
    for frame in text.strip().split("\n\n"):
        name, data = "message", ""
        for line in frame.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        try:
            events.append((name, json.loads(data)))
        except ValueError:
            events.append((name, data))
    return events


async def poe_messages(app: FastAPI, bot: str, text: str, key: str = KEY) -> list[fp.PartialResponse]:
    """What the Poe client library (fastapi_poe) gets from ``app`` for one user message to ``bot``."""
    return await poe_responses(POE_URL, bot, [fp.ProtocolMessage(role="user", content=text)], api_key=key, app=app)


def poe_query(text: str, **fields: Any) -> dict[str, Any]:
    return {
        "version": "1.2",
        "type": "query",
        "query": [{"role": "user", "content": text, "content_type": "text/markdown"}],
        "user_id": "u-" + "a" * 32,
        "conversation_id": "c-" + "a" * 32,
        "message_id": "m-" + "a" * 32,
        **fields,
    }
