"""Issue 5's acceptance, as a user runs it: ``python -m cli gateway`` started as its own process, then the fastapi_poe
client and the openai SDK over HTTP ask a text bot, an image bot, the video bot and a router bot, and a second
gateway whose emulator throttles every call answers with a retryable error, not a crash."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fastapi_poe as fp
import httpx
import openai
import pytest

from tests.poe_client import poe_responses

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
KEY = "acceptance-key-0123456789abcdef01"
PROMPT = "Tell me about lighthouses"


@dataclass(frozen=True)
class Served:
    url: str
    output: list[str]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def cli_gateway() -> Iterator[Served]:
    yield from _serve()


@pytest.fixture(scope="module")
def throttling_gateway() -> Iterator[Served]:
    # every inference call throttled, more than any retries absorb; one attempt per call keeps the test short (the
    # SDK's backoff between attempts is botocore's, not what this checks)
    yield from _serve("--faults", "runtime_throttle=1000", env={"GATEWAY_MAX_ATTEMPTS": "1"})


def _serve(*args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    port = free_port()
    env = os.environ | {"GATEWAY_ACCESS_KEY": KEY, "POWERTOOLS_METRICS_DISABLED": "true"} | (env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "gateway", "--port", str(port), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    # a generous bound: the start synthesizes the stacks (node) first, which takes minutes on a loaded 2-core machine
    deadline = time.monotonic() + 300
    while not any(line.startswith("OpenAI:") for line in output):  # the last line of the start banner
        line = process.stdout.readline()
        if line:
            output.append(line)
        if not line or time.monotonic() > deadline:
            process.kill()
            ended = "exited" if not line else "still starting after 300 s"
            raise RuntimeError(f"python -m cli gateway did not start ({ended}):\n" + "".join(output))
    url = re.search(r"Gateway:\s+(\S+)", "".join(output))
    assert url is not None
    try:
        yield Served(url.group(1), output)
    finally:
        process.terminate()
        process.wait(20)


async def poe(served: Served, bot: str, text: str = PROMPT) -> list[fp.PartialResponse]:
    return await poe_responses(f"{served.url}/poe/", bot, [fp.ProtocolMessage(role="user", content=text)], api_key=KEY)


def sdk(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_the_banner_tells_how_to_connect(cli_gateway: Served) -> None:
    banner = "".join(cli_gateway.output)
    assert f"Access key:  {KEY}" in banner and f"OPENAI_BASE_URL={cli_gateway.url}/v1" in banner


def test_both_clients_stream_a_text_bot(cli_gateway: Served) -> None:
    # WHEN the Poe client asks a text bot THEN meta comes first and the text streams (the emulator echoes)
    messages = asyncio.run(poe(cli_gateway, "claude-3-haiku"))
    assert isinstance(messages[0], fp.MetaResponse) and "".join(m.text for m in messages[1:]) == PROMPT
    # AND the openai SDK streams the same answer in chunks
    chunks = list(
        sdk(cli_gateway).chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    assert len(chunks) > 3 and "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == PROMPT


def test_both_clients_get_an_image_file(cli_gateway: Served) -> None:
    # WHEN the Poe client asks the Nova Canvas bot THEN a file event carries a PNG its URL serves
    messages = asyncio.run(poe(cli_gateway, "nova-canvas", "a red boat"))
    files = [m.attachment for m in messages if getattr(m, "attachment", None) is not None]
    assert len(files) == 1 and files[0] is not None and files[0].content_type == "image/png"
    assert httpx.get(files[0].url).content.startswith(b"\x89PNG")
    # AND the openai SDK gets a markdown image whose URL serves a PNG
    content = sdk(cli_gateway).chat.completions.create(
        model="stable-image-core", messages=[{"role": "user", "content": "a red boat"}]
    )
    text = content.choices[0].message.content or ""
    assert text.startswith("![") and httpx.get(text[text.index("(") + 1 : text.rindex(")")]).content[:4] == b"\x89PNG"


def test_both_clients_get_a_video_file(cli_gateway: Served) -> None:
    # WHEN the Poe client asks the Nova Reel bot THEN a file event carries an MP4 its URL serves
    messages = asyncio.run(poe(cli_gateway, "nova-reel", "waves on a beach"))
    files = [m.attachment for m in messages if getattr(m, "attachment", None) is not None]
    assert len(files) == 1 and files[0] is not None and files[0].content_type == "video/mp4"
    assert httpx.get(files[0].url).content[4:8] == b"ftyp"
    # AND the openai SDK gets a link to the MP4
    answer = sdk(cli_gateway).chat.completions.create(
        model="nova-reel", messages=[{"role": "user", "content": "waves on a beach"}]
    )
    text = answer.choices[0].message.content or ""
    assert httpx.get(text[text.index("(") + 1 : text.rindex(")")]).content[4:8] == b"ftyp"


def test_both_clients_see_the_model_a_router_picked(cli_gateway: Served) -> None:
    # WHEN the Poe client asks the Claude prompt router THEN a json event beside the answer names the routed model
    messages = asyncio.run(poe(cli_gateway, "router-claude"))
    data = [m.data for m in messages if m.data]
    assert "".join(m.text for m in messages[1:]) == PROMPT
    assert len(data) == 1 and data[0] is not None and "anthropic.claude" in data[0]["bedrock"]["invoked_model_id"]
    # AND the openai SDK finds it in the usage chunk's bedrock details
    chunks = list(
        sdk(cli_gateway).chat.completions.create(
            model="router-claude",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    details = chunks[-1].model_extra["bedrock"] if chunks[-1].model_extra else {}
    assert "anthropic.claude" in details["invoked_model_id"]


def test_throttling_is_a_retryable_error_for_both_clients(throttling_gateway: Served) -> None:
    # GIVEN a gateway whose emulator throttles every call
    # WHEN the Poe client asks THEN it gets a retryable error event (BotError, not BotErrorNoRetry), not a crash
    with pytest.raises(fp.BotError) as poe_error:
        asyncio.run(poe(throttling_gateway, "claude-3-haiku"))
    assert not isinstance(poe_error.value, fp.BotErrorNoRetry)
    # AND the openai SDK gets HTTP 429 (RateLimitError), which it would retry
    with pytest.raises(openai.RateLimitError):
        sdk(throttling_gateway).chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    # AND the gateway still serves health checks
    assert httpx.get(f"{throttling_gateway.url}/health").status_code == 200
