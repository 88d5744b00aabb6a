"""Read pacing on (``GATEWAY_STREAM_INTERVAL_MS``, the Fargate task's setting): with the official clients (the openai
SDK, fastapi_poe) against the emulator sending its text deltas apart, every byte of the answer arrives, in order, and
no connection to Bedrock is left paused when an answer ends, breaks or is left."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import fastapi_poe as fp
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.pacing import ReadPacer
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, openai_client, poe_messages

pytestmark = pytest.mark.anyio
# 60 words: the emulator echoes the last user message one word per text delta
PROMPT = " ".join(f"word{i}," for i in range(60))


@pytest.fixture(params=["asyncio", ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Each test on asyncio's loop and on uvloop, the loop uvicorn runs the gateway on (its transports pause)."""
    return request.param


@pytest.fixture
def settings(settings: GatewaySettings) -> GatewaySettings:
    return replace(settings, stream_interval_ms=5)


@pytest.fixture
def paced(emulator: BedrockEmulator) -> Iterator[list[ReadPacer]]:
    """The emulator sends its text deltas 2 ms apart (so reads are paused between them); the pacers that paused a
    connection, recorded."""
    emulator.runtime.stream_delay_seconds = 0.002
    used: list[ReadPacer] = []
    original = ReadPacer.pause

    def pause(self: ReadPacer, transport: Any, protocol: Any) -> None:
        used.append(self)
        original(self, transport, protocol)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ReadPacer, "pause", pause)
        yield used


async def test_the_openai_sdk_gets_every_byte_in_order(app: FastAPI, paced: list[ReadPacer]) -> None:
    # GIVEN the gateway with read pacing on, in front of the emulator sending deltas apart
    async with openai_client(app, KEY) as sdk:
        # WHEN the SDK streams an answer, and asks for the same answer unstreamed
        stream = await sdk.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        whole = await sdk.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}]
        )
    # THEN the streamed text is the whole answer, byte for byte, and reads were paced on the way
    assert "".join(pieces) == whole.choices[0].message.content == PROMPT
    assert paced
    # AND no connection is left paused once the answer ended
    assert all(len(pacer) == 0 for pacer in paced)


async def test_the_poe_client_gets_every_byte_in_order(app: FastAPI, paced: list[ReadPacer]) -> None:
    # GIVEN the gateway with read pacing on WHEN the Poe client library asks a bot
    messages = await poe_messages(app, "nova-lite", PROMPT)
    # THEN meta comes first and the text is the echo, whole and in order, read paced
    assert isinstance(messages[0], fp.MetaResponse)
    assert "".join(m.text for m in messages if not isinstance(m, fp.MetaResponse)) == PROMPT
    assert paced and all(len(pacer) == 0 for pacer in paced)


async def test_a_client_that_leaves_leaves_no_paused_connection(app: FastAPI, paced: list[ReadPacer]) -> None:
    # GIVEN the gateway with read pacing on
    async with openai_client(app, KEY) as sdk:
        stream = await sdk.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        # WHEN the client stops reading after some text and closes the stream
        seen = ""
        async for chunk in stream:
            seen += (chunk.choices[0].delta.content or "") if chunk.choices else ""
            if len(seen) > 40:
                break
        await stream.close()
    # THEN the text it got is the answer's beginning, and nothing stays paused
    assert PROMPT.startswith(seen) and paced
    assert all(len(pacer) == 0 for pacer in paced)


async def test_an_error_in_the_stream_leaves_no_paused_connection(
    app: FastAPI, emulator: BedrockEmulator, paced: list[ReadPacer]
) -> None:
    # GIVEN the emulator breaking the stream with an in-stream exception after 20 text deltas
    emulator.state.faults.update({"stream_error": "modelStreamErrorException", "stream_error_after": 20})
    # WHEN the SDK streams the answer
    async with openai_client(app, KEY) as sdk:
        stream = await sdk.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    # THEN the error reached the client and no connection stays paused
    assert paced and all(len(pacer) == 0 for pacer in paced)
