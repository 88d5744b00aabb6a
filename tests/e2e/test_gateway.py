"""The gateway as ``python -m cli gateway`` serves it (uvicorn + emulator + moto S3), over real HTTP, driven by the
fastapi_poe and openai clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import fastapi_poe as fp
import httpx
import openai
import pytest

from cli.__main__ import main
from cli.gateway import RunningGateway, local_gateway

pytestmark = pytest.mark.slow
PROMPT = "Write a haiku about the sea"


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    with local_gateway(0, access_key="e2e-key-0123456789abcdef0123456") as running:
        yield running


def test_poe_client_over_http(gateway: RunningGateway) -> None:
    # GIVEN the gateway served by uvicorn WHEN the Poe client library asks a bot over HTTP
    async def ask() -> list[fp.PartialResponse]:
        async with httpx.AsyncClient() as session:
            return [
                message
                async for message in fp.get_bot_response(
                    messages=[fp.ProtocolMessage(role="user", content=PROMPT)],
                    bot_name="claude-sonnet-4.5",
                    api_key=gateway.access_key,
                    base_url=f"{gateway.url}/poe/",
                    session=session,
                )
            ]

    messages = asyncio.run(ask())
    # THEN meta comes first and the streamed text is the emulator's echo
    assert isinstance(messages[0], fp.MetaResponse)
    assert "".join(m.text for m in messages[1:]) == PROMPT


def test_openai_sdk_over_http_streaming_with_usage(gateway: RunningGateway) -> None:
    # GIVEN the openai SDK pointed at the gateway
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.access_key, max_retries=0)
    # WHEN it streams a completion with usage
    chunks = list(
        client.chat.completions.create(
            model="nova-pro",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    # THEN the text is the echo and the last chunk carries the usage
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == PROMPT
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == len(PROMPT.split())
    # AND the model list has every modality
    assert {m.model_extra["modality"] for m in client.models.list() if m.model_extra} == {"text", "image", "video"}


def test_image_bot_over_http(gateway: RunningGateway) -> None:
    # GIVEN the local gateway (its media bucket in the moto S3) WHEN the OpenAI API asks the Nova Canvas bot
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.access_key, max_retries=0)
    answer = client.chat.completions.create(model="nova-canvas", messages=[{"role": "user", "content": "a boat"}])
    # THEN the answer links a PNG that its presigned URL serves
    content = answer.choices[0].message.content or ""
    assert httpx.get(content[content.index("(") + 1 : content.rindex(")")]).content.startswith(b"\x89PNG")


def test_health_over_http(gateway: RunningGateway) -> None:
    assert httpx.get(f"{gateway.url}/health").json()["status"] == "ok"


def test_cli_rejects_a_bad_fault_spec(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a fault spec the emulator does not know WHEN the CLI starts THEN it exits 2 with the reason
    assert main(["gateway", "--faults", "nope=1"]) == 2
    assert "--faults" in capsys.readouterr().err


def test_cli_ask_streams_one_answer_over_http(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the local gateway (emulator behind it) WHEN `python -m cli gateway --ask` runs
    from cli.__main__ import main

    code = main(["gateway", "--ask", "hello through the gateway", "--bot", "claude-3-haiku"])
    # THEN the streamed answer (the emulator's echo) is printed between meta and done
    out = capsys.readouterr().out
    assert code == 0
    assert "[meta] hello through the gateway\n[done]" in out
