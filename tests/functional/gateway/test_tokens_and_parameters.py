"""Token counting before the call (CountTokens or the estimate, against ``context_tokens``) and user parameters
(Poe ``parameters``, OpenAI extra body fields) for image and text bots, driven by fastapi_poe and openai."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import fastapi_poe as fp
import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import Capabilities, GatewaySettings
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, POE_URL, parse_sse, poe_query
from tests.functional.gateway.test_media import media_app, s3_server  # noqa: F401 - fixtures
from tests.functional.gateway.test_openai import openai_client
from tests.poe_client import poe_responses

pytestmark = pytest.mark.anyio
LONG = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
async def small_app(emulator: BedrockEmulator, settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    """Claude 3 Haiku (CountTokens) and Nova Lite (estimate) limited to 30 tokens; Claude 3.7 Sonnet (an inference
    profile, which CountTokens refuses) with token counting on; all small enough that a prompt might not fit (the
    gateway asks CountTokens only then)."""
    bots = dict(settings.bots)
    for name in ("claude-3-haiku", "nova-lite", "claude-3.7-sonnet", "claude-sonnet-4.5"):
        bots[name] = bots[name].model_copy(update={"context_tokens": 30})
    sonnet = bots["claude-3.7-sonnet"]
    caps = Capabilities(**(sonnet.capabilities.model_dump() | {"token_counting": True}))
    bots["claude-3.7-sonnet"] = sonnet.model_copy(update={"capabilities": caps})
    application = create_app(replace(settings, bots=bots))
    async with application.router.lifespan_context(application):
        yield application


async def poe_ask(app: FastAPI, bot: str, text: str, **fields: Any) -> list[fp.PartialResponse]:
    message = fp.ProtocolMessage(role="user", content=text, **fields)
    return await poe_responses(POE_URL, bot, [message], api_key=KEY, app=app)


# ---------------------------------------------------------------- token counting


async def test_a_prompt_over_the_context_limit_is_refused_before_the_call(
    small_app: FastAPI, emulator: BedrockEmulator
) -> None:
    # GIVEN Claude 3 Haiku limited to 30 tokens and a 40-word prompt
    # WHEN the Poe client asks THEN it gets a non-retryable error, typed user_message_too_long
    with pytest.raises(fp.BotErrorNoRetry) as error:
        await poe_ask(small_app, "claude-3-haiku", LONG)
    assert "40 tokens, over this bot's limit of 30" in str(error.value)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small_app), base_url="http://test") as client:
        response = await client.post(
            "/poe/claude-3-haiku", json=poe_query(LONG), headers={"Authorization": f"Bearer {KEY}"}
        )
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["meta", "error", "done"]
    assert events[1][1]["error_type"] == "user_message_too_long" and events[1][1]["allow_retry"] is False
    # AND the model was never called, only CountTokens
    assert "ConverseStream" not in emulator.calls() and emulator.calls()["CountTokens"] >= 2


async def test_openai_over_the_limit_is_a_400_context_length_exceeded(small_app: FastAPI) -> None:
    # GIVEN Nova Lite (no CountTokens: the characters/4 estimate) limited to 30 tokens
    async with openai_client(small_app, KEY) as sdk:
        with pytest.raises(openai.BadRequestError) as error:
            await sdk.chat.completions.create(model="nova-lite", messages=[{"role": "user", "content": LONG}])
        assert error.value.code == "context_length_exceeded" and "about" in error.value.message
        # AND a short prompt passes, with the estimate reported
        answer = await sdk.chat.completions.create(
            model="nova-lite", messages=[{"role": "user", "content": "hi there"}]
        )
    bedrock: dict[str, Any] = answer.model_extra["bedrock"]  # type: ignore[index]
    assert bedrock["token_count_source"] == "estimate" and bedrock["counted_input_tokens"] == math.ceil(8 / 4)


async def test_count_tokens_refusing_a_profile_id_falls_back_to_the_estimate(small_app: FastAPI) -> None:
    # GIVEN Claude 3.7 Sonnet by inference profile with token counting on (CountTokens takes bare ids only)
    async with openai_client(small_app, KEY) as sdk:
        answer = await sdk.chat.completions.create(
            model="claude-3.7-sonnet", messages=[{"role": "user", "content": "hello"}]
        )
    # THEN the answer comes, counted with the estimate (system prompt included)
    bedrock: dict[str, Any] = answer.model_extra["bedrock"]  # type: ignore[index]
    assert answer.choices[0].message.content == "hello" and bedrock["token_count_source"] == "estimate"


async def test_a_count_tokens_model_id_counts_for_a_profile_bot(small_app: FastAPI) -> None:
    # GIVEN Claude Sonnet 4.5 (global profile) counting with its bare foundation-model id
    async with openai_client(small_app, KEY) as sdk:
        answer = await sdk.chat.completions.create(
            model="claude-sonnet-4.5", messages=[{"role": "user", "content": "one two three"}]
        )
    bedrock: dict[str, Any] = answer.model_extra["bedrock"]  # type: ignore[index]
    assert bedrock["token_count_source"] == "count_tokens"
    assert answer.usage is not None and bedrock["counted_input_tokens"] == answer.usage.prompt_tokens == 3


async def test_a_prompt_that_fits_whatever_its_count_skips_count_tokens(
    app: FastAPI, emulator: BedrockEmulator
) -> None:
    # GIVEN Claude 3 Haiku (token counting on) with its full context and a short prompt
    async with openai_client(app, KEY) as sdk:
        answer = await sdk.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": "one two three"}]
        )
    # THEN no CountTokens round trip delayed the answer: the prompt fits on any tokenizer, the estimate is recorded
    bedrock: dict[str, Any] = answer.model_extra["bedrock"]  # type: ignore[index]
    assert bedrock["token_count_source"] == "estimate" and "CountTokens" not in emulator.calls()
    assert answer.choices[0].message.content == "one two three"


# ---------------------------------------------------------------- image parameters


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_poe_parameters_choose_size_count_and_quality_for_nova_canvas(media_app: FastAPI) -> None:  # noqa: F811
    # GIVEN Poe parameters from the bot's controls WHEN Nova Canvas is asked
    parameters = {"size": "1280x720", "number_of_images": 2, "quality": "premium", "seed": 7, "negative_prompt": "fog"}
    messages = await poe_ask(media_app, "nova-canvas", "a lighthouse", parameters=parameters)
    # THEN two images arrive, each 16:9
    files = [m.attachment for m in messages if m.attachment is not None]
    assert len(files) == 2
    for file in files:
        width, height = png_size(httpx.get(file.url).content)
        assert abs(width / height - 1280 / 720) < 0.05


@pytest.mark.parametrize(
    ("bot", "parameters", "expected"),
    [
        ("nova-canvas", {"size": "999x999"}, "must be one of 1024x1024"),
        ("nova-canvas", {"number_of_images": 9}, "between 1 and 4"),
        ("nova-canvas", {"seed": -1}, "between 0 and 858993459"),
        ("nova-canvas", {"quality": "ultra"}, "must be one of standard, premium"),
        ("sd3.5-large", {"aspect_ratio": "7:3"}, "must be one of 1:1, 16:9"),
        ("sd3.5-large", {"size": "1024x1024"}, "no 'size' choice"),
    ],
)
async def test_bad_image_parameters_are_user_caused_poe_errors(
    media_app: FastAPI,  # noqa: F811
    bot: str,
    parameters: dict[str, Any],
    expected: str,
) -> None:
    with pytest.raises(fp.BotErrorNoRetry) as error:
        await poe_ask(media_app, bot, "a cat", parameters=parameters)
    assert expected in str(error.value)


async def test_openai_extra_body_picks_the_stability_aspect_ratio(media_app: FastAPI) -> None:  # noqa: F811
    async with openai_client(media_app, KEY) as sdk:
        answer = await sdk.chat.completions.create(
            model="sd3.5-large",
            messages=[{"role": "user", "content": "a wide valley"}],
            extra_body={"aspect_ratio": "16:9", "seed": 42, "negative_prompt": "people"},
        )
        content = answer.choices[0].message.content or ""
        width, height = png_size(httpx.get(content[content.index("(") + 1 : content.rindex(")")]).content)
        assert width > height
        # AND a value the bot does not allow is a 400
        with pytest.raises(openai.BadRequestError) as error:
            await sdk.chat.completions.create(
                model="sd3.5-large", messages=[{"role": "user", "content": "x"}], extra_body={"aspect_ratio": "7:3"}
            )
        assert error.value.code == "invalid_parameter"


@pytest.mark.parametrize(
    ("bot", "names"),
    [
        ("nova-canvas", ["size", "quality", "number_of_images", "negative_prompt", "seed"]),
        ("sd3.5-large", ["aspect_ratio", "negative_prompt", "seed"]),
    ],
)
async def test_image_bots_expose_their_parameter_controls(
    client: httpx.AsyncClient, bot: str, names: list[str]
) -> None:
    response = await client.post(
        f"/poe/{bot}", json={"version": "1.2", "type": "settings"}, headers={"Authorization": f"Bearer {KEY}"}
    )
    controls = fp.SettingsResponse.model_validate(response.json()).parameter_controls
    assert controls is not None and controls.api_version == "2"
    assert [c.parameter_name for s in controls.sections for c in s.controls or []] == names  # type: ignore[union-attr]


# ---------------------------------------------------------------- text parameters


async def test_poe_thinking_budget_within_the_limits_is_used(app: FastAPI) -> None:
    messages = await poe_ask(app, "claude-3.7-sonnet-thinking", "Say hi", parameters={"thinking_budget": 2048})
    assert "".join(m.text for m in messages).endswith("Say hi")


@pytest.mark.parametrize(
    ("bot", "parameters", "expected"),
    [
        ("claude-3.7-sonnet-thinking", {"thinking_budget": 100}, "from 1024 to 4095"),
        ("claude-3.7-sonnet-thinking", {"thinking_budget": 2048, "max_tokens": 2000}, "from 1024 to 1999"),
        ("claude-3-haiku", {"thinking_budget": 2048}, "no 'thinking_budget'"),
        ("claude-3-haiku", {"temperature": 1.5}, "between 0 and 1.0"),
        ("claude-3-haiku", {"max_tokens": 99999}, "between 1 and 2048"),
    ],
)
async def test_bad_text_parameters_are_user_caused_poe_errors(
    app: FastAPI, bot: str, parameters: dict[str, Any], expected: str
) -> None:
    with pytest.raises(fp.BotErrorNoRetry) as error:
        await poe_ask(app, bot, "hello", parameters=parameters)
    assert expected in str(error.value)


async def test_poe_max_tokens_parameter_shortens_the_answer(app: FastAPI) -> None:
    messages = await poe_ask(app, "claude-3-haiku", "one two three four", parameters={"max_tokens": 2})
    assert "".join(m.text for m in messages) == "one two"


async def test_openai_thinking_budget_extra_field_is_checked(app: FastAPI) -> None:
    async with openai_client(app, KEY) as sdk:
        with pytest.raises(openai.BadRequestError) as error:
            await sdk.chat.completions.create(
                model="claude-3.7-sonnet-thinking",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"thinking_budget": 10},
            )
    assert error.value.code == "invalid_parameter"
