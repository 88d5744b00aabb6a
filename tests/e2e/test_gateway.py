"""The gateway as ``python -m cli gateway`` serves it (uvicorn + emulator + moto S3), over real HTTP, driven by the
fastapi_poe and openai clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import fastapi_poe as fp
import httpx
import openai
import pytest

from cli.__main__ import main
from cli.gateway import RunningGateway, local_gateway
from tests.poe_client import poe_responses

pytestmark = pytest.mark.slow
PROMPT = "Write a haiku about the sea"


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    with local_gateway(0, access_key="e2e-key-0123456789abcdef0123456") as running:
        yield running


def test_poe_client_over_http(gateway: RunningGateway) -> None:
    # GIVEN the gateway served by uvicorn WHEN the Poe client library asks a bot over HTTP
    ask = poe_responses(
        f"{gateway.url}/poe/",
        "claude-sonnet-4.5",
        [fp.ProtocolMessage(role="user", content=PROMPT)],
        api_key=gateway.access_key,
    )
    messages = asyncio.run(ask)
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
    modalities = {m.model_extra["modality"] for m in client.models.list() if m.model_extra}
    assert modalities == {"text", "image", "video", "embedding"}


def test_image_bot_over_http(gateway: RunningGateway) -> None:
    # GIVEN the local gateway (its media bucket in the moto S3) WHEN the OpenAI API asks the Nova Canvas bot
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.access_key, max_retries=0)
    answer = client.chat.completions.create(model="nova-canvas", messages=[{"role": "user", "content": "a boat"}])
    # THEN the answer links a PNG that its presigned URL serves
    content = answer.choices[0].message.content or ""
    assert httpx.get(content[content.index("(") + 1 : content.rindex(")")]).content.startswith(b"\x89PNG")


WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_openai_sdk_tool_round_trip_over_http(gateway: RunningGateway) -> None:
    # GIVEN the openai SDK and a tool WHEN it asks a tool-capable bot (not streamed)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.access_key, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Oslo"}]
    first = client.chat.completions.create(model="claude-sonnet-4.5", messages=messages, tools=[WEATHER])
    # THEN it gets a tool call
    assert first.choices[0].finish_reason == "tool_calls"
    call = (first.choices[0].message.tool_calls or [])[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
    # WHEN it sends the tool's result THEN the final answer is text built from it
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Snow, -3 C"},
    ]
    final = client.chat.completions.create(model="claude-sonnet-4.5", messages=messages, tools=[WEATHER])
    assert final.choices[0].message.content == "Snow, -3 C"


def test_openai_sdk_streamed_tool_round_trip_over_http(gateway: RunningGateway) -> None:
    # GIVEN the openai SDK WHEN it streams a request with a tool
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.access_key, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Lisbon"}]
    chunks = list(client.chat.completions.create(model="nova-pro", messages=messages, tools=[WEATHER], stream=True))
    # THEN the tool call arrives as deltas: id and name first, then the arguments in pieces
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    call_id, name = deltas[0].id, deltas[0].function.name  # type: ignore[union-attr]
    arguments = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
    assert name == "get_weather" and json.loads(arguments) == {"city": "Lisbon"} and len(deltas) >= 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    # WHEN the result goes back, streamed again
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "Sunny, 24 C"},
    ]
    final = client.chat.completions.create(model="nova-pro", messages=messages, tools=[WEATHER], stream=True)
    # THEN the answer is text
    assert "".join(c.choices[0].delta.content or "" for c in final if c.choices) == "Sunny, 24 C"


def test_openai_sdk_tool_round_trip_on_the_thinking_bot_over_http(gateway: RunningGateway) -> None:
    # GIVEN the openai SDK and the Claude extended-thinking bot WHEN it asks with a tool (not streamed)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.access_key, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Oslo"}]
    first = client.chat.completions.create(model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER])
    # THEN Claude thinks, then calls the tool
    assert first.choices[0].finish_reason == "tool_calls"
    assert (first.choices[0].message.model_extra or {}).get("reasoning_content")
    call = (first.choices[0].message.tool_calls or [])[0]
    # WHEN the SDK sends the message back as it got it (its thinking_blocks carry the signed reasoning) with the
    # result, streamed this time
    assert (first.choices[0].message.model_extra or {}).get("thinking_blocks")
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Snow, -3 C"},
    ]
    final = list(
        client.chat.completions.create(
            model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER], stream=True
        )
    )
    # THEN the gateway continues the tool loop with thinking on (the emulator, like Bedrock, checks the signed block):
    # reasoning, then the text
    assert "".join(c.choices[0].delta.content or "" for c in final if c.choices) == "Snow, -3 C"
    assert any((c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in final if c.choices)


def test_health_over_http(gateway: RunningGateway) -> None:
    assert httpx.get(f"{gateway.url}/health").json()["status"] == "ok"


def test_cli_rejects_a_bad_fault_spec(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a fault spec the emulator does not know WHEN the CLI starts THEN it exits 2 with the reason
    assert main(["gateway", "--faults", "nope=1"]) == 2
    assert "--faults" in capsys.readouterr().err


def test_cli_ask_streams_one_answer_over_http(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the local gateway (emulator behind it) WHEN `python -m cli gateway --ask` runs
    from cli.__main__ import main

    for name in ("POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_LOG_LEVEL"):  # --ask quiets these: undone after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
        monkeypatch.delenv(name)

    code = main(["gateway", "--ask", "hello through the gateway", "--bot", "claude-3-haiku"])
    # THEN the streamed answer (the emulator's echo) is printed between meta and done
    out = capsys.readouterr().out
    assert code == 0
    assert "[meta] hello through the gateway\n[done]" in out
    # AND asking a prompt router also prints the model it picked
    assert main(["gateway", "--ask", "hello router", "--bot", "router-claude"]) == 0
    assert re.search(r"\[meta\] hello router\n\[routed to \S*anthropic\.claude\S*\]\n\[done\]", capsys.readouterr().out)


def test_cli_ask_in_a_fresh_process_prints_the_answer_and_no_log_line() -> None:
    # GIVEN a fresh process, as a user runs it (the shared logger is created by whatever imports it first)
    # WHEN `python -m cli gateway --ask` runs
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "gateway", "--ask", "hello fresh", "--bot", "claude-3-haiku"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    # THEN stdout holds the answer between meta and done, and none of the gateway's JSON log or metric lines
    assert done.returncode == 0, done.stderr
    assert "[meta] hello fresh\n[done]" in done.stdout
    assert '"level"' not in done.stdout and '"_aws"' not in done.stdout


def test_a_guardrail_blocks_over_http_for_both_clients(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the shipped bots with a guardrail in defaults (the emulator's guardrail blocks "BLOCKME")
    from lambdas.gateway.config import BOTS_FILE
    from lambdas.gateway.guardrails import BLOCKED_MESSAGE

    document = json.loads(BOTS_FILE.read_text())
    document["defaults"]["guardrail"] = {"identifier": "gr0e2e", "version": "1"}
    path = tmp_path / "bots.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv("GATEWAY_BOTS_FILE", str(path))
    with local_gateway(0, access_key="e2e-key-0123456789abcdef0123456") as running:
        # WHEN the Poe client asks with the blocked word
        async def ask(text: str) -> list[fp.PartialResponse]:
            messages = [fp.ProtocolMessage(role="user", content=text)]
            return await poe_responses(f"{running.url}/poe/", "nova-lite", messages, api_key=running.access_key)

        # THEN it gets a non-retryable bot error with the guardrail's text, a harmless prompt the echo
        with pytest.raises(fp.client.BotErrorNoRetry, match="content guardrail"):
            asyncio.run(ask("say BLOCKME"))
        assert "".join(m.text for m in asyncio.run(ask(PROMPT))[1:]) == PROMPT
        # AND the OpenAI SDK gets a 400 naming the guardrail, or an error while streaming
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key=running.access_key, max_retries=0)
        blocked = [{"role": "user", "content": "say BLOCKME"}]
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model="nova-lite", messages=blocked)  # type: ignore[arg-type]
        assert error.value.code == "guardrail_intervened" and BLOCKED_MESSAGE in str(error.value)
        with pytest.raises(openai.APIError, match="content guardrail"):
            list(client.chat.completions.create(model="nova-lite", messages=blocked, stream=True))  # type: ignore[arg-type]
