"""The emulator served over HTTPS (``local.emulator.tls``), as the gateway benchmark runs it: boto3 and aiobotocore
trust its throwaway certificate through a CA bundle (botocore's ``verify``), with certificate and host name checks on;
paced and unpaced streams carry the same events as over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import SSLError

from local.emulator import BedrockEmulator, EmulatorState
from local.emulator.tls import certificate, server_context
from tests.functional.emulator.conftest import REGION, user

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
PROMPT = "Tell me a short story about a lighthouse keeper"


@pytest.fixture
def tls_emulator(state: EmulatorState, tmp_path: Path) -> Iterator[tuple[BedrockEmulator, Path]]:
    cert_file, key_file = certificate(tmp_path)
    with BedrockEmulator(state, tls=server_context(cert_file, key_file)) as server:
        yield server, cert_file


def client(endpoint: str, verify: Path | bool) -> Any:
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=endpoint,
        region_name=REGION,
        verify=str(verify) if isinstance(verify, Path) else verify,
        config=Config(retries={"total_max_attempts": 1}),
    )


def texts(events: list[dict[str, Any]]) -> str:
    return "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)


def test_a_tls_emulator_streams_to_a_client_trusting_its_certificate(
    tls_emulator: tuple[BedrockEmulator, Path],
) -> None:
    # GIVEN the emulator over HTTPS and a boto3 client trusting its certificate as its CA bundle
    emulator, cert_file = tls_emulator
    runtime = client(emulator.endpoint_url, cert_file)
    request = {"modelId": HAIKU, "messages": [user(PROMPT)]}
    # WHEN it streams an answer unpaced, then paced (the pacer's thread writing TLS records), on the same connection
    unpaced = list(runtime.converse_stream(**request)["stream"])
    emulator.runtime.stream_delay_seconds = 0.001
    paced = list(runtime.converse_stream(**request)["stream"])
    # THEN the endpoint is HTTPS and both streams echo the prompt whole, with the same events
    assert emulator.endpoint_url.startswith("https://127.0.0.1:")
    assert texts(unpaced) == texts(paced) == PROMPT
    assert [next(iter(e)) for e in unpaced] == [next(iter(e)) for e in paced]


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_emulator: tuple[BedrockEmulator, Path]) -> None:
    # GIVEN the emulator over HTTPS and a client with the system's CA bundle only
    emulator, _ = tls_emulator
    runtime = client(emulator.endpoint_url, True)
    # WHEN it calls Converse, THEN certificate verification fails (nothing turns verification off)
    with pytest.raises(SSLError):
        runtime.converse(modelId=HAIKU, messages=[user(PROMPT)])


def test_a_paced_tls_stream_parses_in_aiobotocore(tls_emulator: tuple[BedrockEmulator, Path]) -> None:
    # GIVEN the emulator over HTTPS pacing its text frames, and aiobotocore (the gateway's client) trusting it
    from aiobotocore.session import get_session

    emulator, cert_file = tls_emulator
    emulator.runtime.stream_delay_seconds = 0.001

    async def stream() -> str:
        async with get_session().create_client(
            "bedrock-runtime", endpoint_url=emulator.endpoint_url, region_name=REGION, verify=str(cert_file)
        ) as runtime:
            response = await runtime.converse_stream(modelId=HAIKU, messages=[user(PROMPT)])
            return texts([event async for event in response["stream"]])

    # WHEN it reads a stream, THEN the text is whole
    assert asyncio.run(stream()) == PROMPT
