"""``/v1/chat/completions`` and ``/v1/models`` driven by the real openai SDK, against the emulator."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import Capabilities, GatewaySettings
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, TEAM_KEY, openai_client, parse_sse

pytestmark = pytest.mark.anyio
PROMPT = "Tell me a short story about a lighthouse keeper"
ROUTED_TO = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
LONG_SYSTEM = " ".join(f"rule{i}" for i in range(1100))  # over Claude 3.7 Sonnet's 1,024 tokens per checkpoint


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def test_completion_echoes_with_usage(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN the gateway in front of the emulator
    # WHEN the openai SDK asks Nova Lite without streaming
    answer = await sdk.chat.completions.create(model="nova-lite", messages=user(PROMPT))
    # THEN the answer is the echo, finished normally, with token usage
    assert answer.choices[0].message.content == PROMPT
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == len(PROMPT.split())


async def test_bots_without_streaming_use_converse(settings: GatewaySettings, emulator: BedrockEmulator) -> None:
    # GIVEN a bot whose capabilities say it does not stream
    bot = settings.bots["command-r"]
    bots = {**settings.bots, "command-r": bot.model_copy(update={"capabilities": Capabilities(streaming=False)})}
    application = create_app(replace(settings, bots=bots))
    # WHEN a streamed answer is asked for
    async with application.router.lifespan_context(application), openai_client(application, KEY) as client:
        stream = await client.chat.completions.create(model="command-r", messages=user(PROMPT), stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    # THEN the gateway called Converse (not ConverseStream) and still streamed the answer
    assert text == PROMPT
    assert emulator.calls().get("Converse") == 1 and not emulator.calls().get("ConverseStream")


async def test_streamed_completion_equals_the_echo_with_usage_last(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a streamed request asking for usage
    stream = await sdk.chat.completions.create(
        model="claude-3-haiku", messages=user(PROMPT), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    # WHEN the chunks are read
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # THEN the text is the echo, one chunk per word, and the last chunk has no choices but the usage
    assert text == PROMPT
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == len(PROMPT.split())
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


async def test_the_router_reports_the_model_it_invoked(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN the Anthropic default prompt router bot and a short prompt (the emulator routes it to Claude 3 Haiku)
    # WHEN asked without streaming
    answer = await sdk.chat.completions.create(model="router-claude", messages=user("Hi there"))
    # THEN the gateway reports the invoked model and prices the answer with Haiku's prices
    details = (answer.model_extra or {})["bedrock"]
    assert details["invoked_model_id"] == ROUTED_TO
    assert details["cost_usd"] > 0


async def test_a_repeated_system_prefix_is_read_from_the_prompt_cache(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a prompt-caching bot (a cache point closes the system prompt) and a long system message
    messages: list[Any] = [{"role": "system", "content": LONG_SYSTEM}, *user("first question")]
    # WHEN the same prefix is sent twice
    first = await sdk.chat.completions.create(model="claude-3.7-sonnet", messages=messages)
    messages[-1] = {"role": "user", "content": "second question"}
    second = await sdk.chat.completions.create(model="claude-3.7-sonnet", messages=messages)
    # THEN the first call writes the cache and the second reads it (reported as cached_tokens)
    assert first.usage is not None and second.usage is not None
    assert (first.model_extra or {})["bedrock"]["cache_write_tokens"] > 1100
    assert first.usage.prompt_tokens_details is not None and first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details is not None
    written = (first.model_extra or {})["bedrock"]["cache_write_tokens"]
    assert second.usage.prompt_tokens_details.cached_tokens == written
    assert second.usage.prompt_tokens == first.usage.prompt_tokens


async def test_throttling_before_the_stream_is_a_429(sdk: openai.AsyncOpenAI, emulator: BedrockEmulator) -> None:
    # GIVEN Bedrock throttles the next call
    emulator.state.faults["runtime_throttle"] = 1
    # WHEN a streamed request is made THEN the SDK gets HTTP 429 with a Retry-After header
    with pytest.raises(openai.RateLimitError) as error:
        await sdk.chat.completions.create(model="nova-lite", messages=user(PROMPT), stream=True)
    assert error.value.response.headers["retry-after"] == "1"
    assert "ThrottlingException" in error.value.message


async def test_a_model_error_before_the_stream_is_a_502(sdk: openai.AsyncOpenAI, emulator: BedrockEmulator) -> None:
    emulator.state.faults["model_error"] = 1
    with pytest.raises(openai.APIStatusError) as error:
        await sdk.chat.completions.create(model="nova-lite", messages=user(PROMPT))
    assert error.value.status_code == 502


async def test_a_mid_stream_error_is_an_error_chunk_then_done(
    sdk: openai.AsyncOpenAI, client: httpx.AsyncClient, emulator: BedrockEmulator
) -> None:
    # GIVEN ConverseStream breaks after 2 text deltas
    emulator.state.faults["stream_error_after"] = 2
    # WHEN the SDK reads the stream THEN it gets the first text, then an APIError
    stream = await sdk.chat.completions.create(model="nova-pro", messages=user(PROMPT), stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="ModelStreamErrorException"):
        async for chunk in stream:
            seen.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(seen) == " ".join(PROMPT.split()[:2])
    # AND on the wire the error chunk is followed by [DONE]
    body = {"model": "nova-pro", "messages": user(PROMPT), "stream": True}
    response = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    events = [data for _, data in parse_sse(response.text)]
    assert "error" in events[-2] and events[-1] == "[DONE]"


async def test_a_wrong_key_is_a_401(app: FastAPI) -> None:
    async with openai_client(app, "wrong") as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="nova-lite", messages=user("hi"))
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()


async def test_a_key_of_another_bot_is_a_401(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN nova-micro takes the team key only WHEN the default key asks it THEN 401
    with pytest.raises(openai.AuthenticationError):
        await sdk.chat.completions.create(model="nova-micro", messages=user("hi"))


async def test_the_team_key_reaches_its_bot(app: FastAPI) -> None:
    async with openai_client(app, TEAM_KEY) as team:
        answer = await team.chat.completions.create(model="nova-micro", messages=user("hi"))
    assert answer.choices[0].message.content == "hi"


async def test_an_unknown_model_is_a_404(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await sdk.chat.completions.create(model="gpt-17", messages=user("hi"))


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{oops", None),
        (b'{"model": "nova-lite"}', "messages"),
        (b'{"model": "nova-lite", "messages": []}', "messages"),
    ],
)
async def test_malformed_bodies(client: httpx.AsyncClient, content: bytes, param: str | None) -> None:
    # GIVEN a body that is no JSON, or misses its messages WHEN it is posted
    response = await client.post("/v1/chat/completions", content=content, headers={"Authorization": f"Bearer {KEY}"})
    # THEN it is a 400 (as OpenAI answers; never 422) naming the field at fault
    assert response.status_code == 400 and response.json()["error"]["message"]
    assert response.json()["error"]["param"] == param


async def test_media_bots_without_a_media_bucket_answer_503(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as error:
        await sdk.chat.completions.create(model="nova-reel", messages=user("a wave"))
    assert error.value.status_code == 503


async def test_models_lists_every_bot_with_its_modality(sdk: openai.AsyncOpenAI) -> None:
    # WHEN the SDK lists the models
    models = {model.id: (model.model_extra or {}).get("modality") async for model in sdk.models.list()}
    # THEN every bot is there with its modality
    assert len(models) >= 30
    assert (models["claude-3-haiku"], models["nova-canvas"], models["nova-reel"]) == ("text", "image", "video")


async def test_request_limits_reach_bedrock(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a request with max_tokens 3 WHEN answered THEN the answer is cut to 3 words, finish_reason length
    short = await sdk.chat.completions.create(model="nova-lite", messages=user(PROMPT), max_tokens=3)
    assert short.choices[0].message.content == " ".join(PROMPT.split()[:3])
    assert short.choices[0].finish_reason == "length"
    # AND a stop sequence cuts the answer before it, finish_reason stop
    stopped = await sdk.chat.completions.create(model="nova-lite", messages=user(PROMPT), stop=" lighthouse")
    assert stopped.choices[0].message.content == "Tell me a short story about a"
    assert stopped.choices[0].finish_reason == "stop"
