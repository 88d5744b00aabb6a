"""Read pacing on (``GATEWAY_STREAM_INTERVAL_MS``, the Fargate task's setting): with the official clients (the openai
SDK, fastapi_poe) against the emulator sending its text deltas apart, every byte of the answer arrives, in order, and
no connection to Bedrock is left paused when an answer ends, breaks or is left. Each test on both loops, and over
plain HTTP and over TLS (the emulator on a throwaway certificate the gateway trusts through ``AWS_CA_BUNDLE``, as it
talks to Bedrock), where the pacer pauses the socket's transport under the SSL one too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import fastapi_poe as fp
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.pacing import ReadPacer
from local.emulator.jobs import EmulatorState
from local.emulator.server import BedrockEmulator
from local.emulator.tls import certificate, server_context
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


@pytest.fixture(params=["http", "tls"])
def emulator(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[BedrockEmulator]:
    """The emulator over plain HTTP, or over TLS with the gateway's clients trusting its certificate through
    ``AWS_CA_BUNDLE`` (botocore's CA bundle setting; verification on)."""
    tls = None
    if request.param == "tls":
        cert_file, key_file = certificate(tmp_path)
        tls = server_context(cert_file, key_file)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))
    s3 = boto3.client("s3", region_name="us-east-1")
    with BedrockEmulator(EmulatorState(s3=s3, step_seconds=0), tls=tls) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.endpoint_url)
        yield server


@dataclass
class Paced:
    """What the pacers did: the pacers that paused a connection, and the socket transports they paused under SSL
    ones (with whether each stopped reading)."""

    pacers: list[ReadPacer] = field(default_factory=list)
    sockets: list[tuple[Any, bool]] = field(default_factory=list)

    def left_paused(self) -> list[Any]:
        """Connections, and socket transports under SSL ones, still paused (an open socket transport not reading)."""
        held = [pacer for pacer in self.pacers if len(pacer)]
        return held + [s for s, _ in self.sockets if not s.is_closing() and not s.is_reading()]


@pytest.fixture
def paced(emulator: BedrockEmulator) -> Iterator[Paced]:
    """The emulator sends its text deltas 2 ms apart (so reads are paused between them); what the pacers did."""
    emulator.runtime.stream_delay_seconds = 0.002
    seen = Paced()
    original = ReadPacer.pause

    def pause(self: ReadPacer, transport: Any, protocol: Any, underneath: Any = None) -> None:
        seen.pacers.append(self)
        original(self, transport, protocol, underneath)
        if underneath is not None:
            seen.sockets.append((underneath, not underneath.is_reading()))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ReadPacer, "pause", pause)
        yield seen


def paced_as_expected(paced: Paced, emulator: BedrockEmulator) -> bool:
    """Reads were paced, over TLS the socket's transport too (it stopped reading at least once)."""
    over_tls = emulator.endpoint_url.startswith("https://")
    return bool(paced.pacers) and (not over_tls or any(stopped for _, stopped in paced.sockets))


async def test_the_openai_sdk_gets_every_byte_in_order(app: FastAPI, emulator: BedrockEmulator, paced: Paced) -> None:
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
    # THEN the streamed text is the whole answer, byte for byte, and reads were paced on the way (over TLS the
    # socket's transport too)
    assert "".join(pieces) == whole.choices[0].message.content == PROMPT
    assert paced_as_expected(paced, emulator)
    # AND no connection, nor socket transport, is left paused once the answer ended
    assert paced.left_paused() == []


async def test_the_poe_client_gets_every_byte_in_order(app: FastAPI, emulator: BedrockEmulator, paced: Paced) -> None:
    # GIVEN the gateway with read pacing on WHEN the Poe client library asks a bot
    messages = await poe_messages(app, "nova-lite", PROMPT)
    # THEN meta comes first and the text is the echo, whole and in order, read paced
    assert isinstance(messages[0], fp.MetaResponse)
    assert "".join(m.text for m in messages if not isinstance(m, fp.MetaResponse)) == PROMPT
    assert paced_as_expected(paced, emulator) and paced.left_paused() == []


async def test_a_client_that_leaves_leaves_no_paused_connection(
    app: FastAPI, emulator: BedrockEmulator, paced: Paced
) -> None:
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
    assert PROMPT.startswith(seen) and paced_as_expected(paced, emulator)
    assert paced.left_paused() == []


async def test_an_error_in_the_stream_leaves_no_paused_connection(
    app: FastAPI, emulator: BedrockEmulator, paced: Paced
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
    assert paced_as_expected(paced, emulator) and paced.left_paused() == []
