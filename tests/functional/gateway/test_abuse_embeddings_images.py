"""Abuse resistance of ``/v1/embeddings`` and ``/v1/images/generations`` (the body tests of ``test_abuse.py`` run on
them too): bad keys, model names with path characters, malformed bodies - each refused alike, never a 500."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from lambdas.gateway.app import UNAUTHORIZED
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}
BODIES: dict[str, dict[str, Any]] = {
    "/v1/embeddings": {"model": "titan-embed-v2", "input": "hi"},
    "/v1/images/generations": {"model": "nova-canvas", "prompt": "hi", "response_format": "b64_json"},
}


@pytest.mark.parametrize("path", list(BODIES))
async def test_bad_keys_are_401_alike_never_logged_and_never_reach_bedrock(
    client: httpx.AsyncClient, emulator: BedrockEmulator, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    # GIVEN 200 wrong keys, some a near miss of the right one
    caplog.set_level(logging.DEBUG)
    keys = [f"bad-key-{index:03d}" if index % 2 else KEY[:-1] + str(index % 10) for index in range(200)]
    # WHEN each is presented
    responses = [await client.post(path, json=BODIES[path], headers={"Authorization": f"Bearer {k}"}) for k in keys]
    # THEN every answer is the same 401, no key is logged, and Bedrock was never called
    assert {response.status_code for response in responses} == {401}
    assert len({response.content for response in responses}) == 1 and UNAUTHORIZED in responses[0].text
    assert not [key for key in keys if key in caplog.text]
    assert not emulator.calls().get("InvokeModel")


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize("model", ["../../etc/passwd", "%2e%2e", "titan-embed-v2\x00", "a" * 100_000, "bots.json"])
async def test_model_names_with_path_characters_are_404(client: httpx.AsyncClient, path: str, model: str) -> None:
    # GIVEN a model name that is no bot WHEN it is asked for THEN a short 404 that does not echo it
    response = await client.post(path, json={**BODIES[path], "model": model}, headers=AUTH)
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert len(response.content) < 300


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"model": "titan-embed-v2"}',
        b'{"model": "nova-canvas", "prompt": 12, "input": {"a": 1}}',
        b'{"model": 1, "input": "x", "prompt": "x"}',
        b'{"model": "titan-embed-v2", "input": "x", "encoding_format": "int8", "n": 0, "prompt": "x"}',
    ],
)
async def test_malformed_bodies_are_4xx_in_openais_shape(client: httpx.AsyncClient, path: str, body: bytes) -> None:
    # GIVEN a body that is no valid request WHEN it is posted THEN a 400/422 with an OpenAI error, never a 500
    response = await client.post(path, content=body, headers=AUTH)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["message"]
