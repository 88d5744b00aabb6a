"""``/v1/chat/completions`` against OpenAI's own contract: the defects found by fuzzing it with OpenAI's specification
(issue 12, item 5), every request parameter honoured or refused (item 6), and every answer checked against OpenAI's
published shapes (``tests.openai_schema``)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import fastapi_poe as fp
import httpx
import openai
import pytest
from fastapi import FastAPI
from openai.types.chat import completion_create_params

from lambdas.gateway import openai_parameters
from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings
from local.emulator.server import BedrockEmulator
from tests import openai_schema
from tests.functional.gateway.conftest import KEY, POE_URL, parse_sse
from tests.openai_schema import ChatCompletion, ChatCompletionChunk
from tests.poe_client import poe_responses

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "Tell me a short story about a lighthouse keeper"


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def with_image(url: str) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}],
        }
    ]


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=body, headers=AUTH)


# ---------------------------------------------------------------- item 5: attachment URLs


BAD_URLS = ["http://[::1", "http://[x]/a.png", "http://xn--/x.png", "http://a\x00b.example/x.png"]


@pytest.mark.parametrize("url", BAD_URLS)
async def test_an_attachment_url_the_parser_cannot_take_is_a_400_naming_it(client: httpx.AsyncClient, url: str) -> None:
    # GIVEN an image part whose URL no parser can take
    # WHEN it is sent to a bot that reads images
    response = await post(client, {"model": "claude-3-haiku", "messages": with_image(url)})
    # THEN the answer is a 400 in OpenAI's shape naming the attachment, and the connection serves the next request
    assert response.status_code == 400, response.text
    error = openai_schema.check_error(response.json())
    assert "'image1'" in error.message and error.code == "unsupported_attachment"
    assert (await post(client, {"model": "nova-lite", "messages": user("hi")})).status_code == 200


@pytest.mark.parametrize("url", BAD_URLS)
async def test_poe_gets_a_user_error_not_an_internal_one_for_a_bad_attachment_url(app: FastAPI, url: str) -> None:
    # GIVEN a Poe query whose attachment URL cannot be parsed
    message = fp.ProtocolMessage(
        role="user",
        content="what is this?",
        attachments=[fp.Attachment(url=url, content_type="image/png", name="cat.png")],
    )
    # WHEN the Poe client sends it THEN the bot answers with an error naming the attachment, not an internal error
    with pytest.raises(fp.BotError) as error:
        await poe_responses(POE_URL, "claude-3-haiku", [message], api_key=KEY, app=app)
    assert "'cat.png'" in str(error.value) and "failed to handle" not in str(error.value)


async def test_an_image_url_that_cannot_be_fetched_is_the_clients_400(
    settings: GatewaySettings, emulator: BedrockEmulator
) -> None:
    # GIVEN a gateway that may fetch local URLs, and an image URL on a port where nothing listens
    application = create_app(replace(settings, attachment_private_hosts=True))
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test") as client,
    ):
        # WHEN it is sent
        response = await post(client, {"model": "claude-3-haiku", "messages": with_image("http://127.0.0.1:9/x.png")})
    # THEN it is a 400 naming the attachment (the client's URL), not a 502
    assert response.status_code == 400
    error = openai_schema.check_error(response.json())
    assert "'image1'" in error.message and error.code == "attachment_unavailable"


# ---------------------------------------------------------------- item 5: roles, answer fields, errors


async def test_developer_messages_are_system_instructions(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN the same question with and without a developer message of four words
    plain = await sdk.chat.completions.create(model="nova-lite", messages=user(PROMPT))
    messages: Any = [{"role": "developer", "content": "Answer like a pirate."}, *user(PROMPT)]
    # WHEN both are asked
    instructed = await sdk.chat.completions.create(model="nova-lite", messages=messages)
    # THEN the developer message reached the model as system text (its four words are in the prompt's tokens)
    assert plain.usage is not None and instructed.usage is not None
    assert instructed.usage.prompt_tokens == plain.usage.prompt_tokens + 4


async def test_an_unknown_role_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    # GIVEN a message with the deprecated 'function' role WHEN it is sent
    messages = [*user("hi"), {"role": "function", "name": "f", "content": "x"}]
    response = await post(client, {"model": "nova-lite", "messages": messages})
    # THEN it is a 400 naming the field, not a message dropped in silence
    assert response.status_code == 400
    assert openai_schema.check_error(response.json()).param == "messages.1.role"


async def test_a_completion_matches_openais_schema_with_logprobs_and_refusal(client: httpx.AsyncClient) -> None:
    # GIVEN a plain question WHEN it is answered without streaming
    response = await post(client, {"model": "nova-lite", "messages": user(PROMPT)})
    # THEN the body matches OpenAI's ChatCompletion, with choices[].logprobs and message.refusal present (null)
    body = response.json()
    openai_schema.check(ChatCompletion, body)
    assert body["choices"][0]["logprobs"] is None and body["choices"][0]["message"]["refusal"] is None


async def test_every_stream_chunk_matches_openais_schema(client: httpx.AsyncClient) -> None:
    # GIVEN a streamed answer with usage, and one with tool calls
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    bodies = [
        {
            "model": "claude-3-haiku",
            "messages": user(PROMPT),
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {"model": "claude-3-haiku", "messages": user("weather?"), "stream": True, "tools": [weather]},
    ]
    for body in bodies:
        # WHEN each is read
        response = await post(client, body)
        chunks = [data for _, data in parse_sse(response.text)]
        # THEN every chunk before [DONE] matches OpenAI's ChatCompletionChunk
        assert chunks[-1] == "[DONE]" and len(chunks) > 2
        for chunk in chunks[:-1]:
            openai_schema.check(ChatCompletionChunk, chunk)


async def test_a_mid_stream_error_chunk_matches_openais_error_schema(
    client: httpx.AsyncClient, emulator: BedrockEmulator
) -> None:
    # GIVEN a stream that breaks after two deltas
    emulator.state.faults["stream_error_after"] = 2
    # WHEN it is read THEN the chunk before [DONE] is an error in OpenAI's shape
    response = await post(client, {"model": "nova-pro", "messages": user(PROMPT), "stream": True})
    chunks = [data for _, data in parse_sse(response.text)]
    assert chunks[-1] == "[DONE]"
    openai_schema.check_error(chunks[-2])


async def test_the_model_list_matches_openais_schema(client: httpx.AsyncClient) -> None:
    # GIVEN the gateway WHEN /v1/models is read THEN it matches ListModelsResponse
    response = await client.get("/v1/models", headers=AUTH)
    openai_schema.check_models(response.json())


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v1/nothing-here", 404),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/models", 405),
        ("GET", "/nothing", 404),
    ],
)
async def test_unknown_routes_and_wrong_methods_answer_openais_error_shape(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    # GIVEN a path no route serves, or a method its route does not take WHEN it is requested
    response = await client.request(method, path, headers=AUTH)
    # THEN the answer is OpenAI's error shape (never FastAPI's {"detail": ...}), a 405 saying what is allowed
    assert response.status_code == status
    error = openai_schema.check_error(response.json())
    if status == 405:
        assert response.headers["allow"] in error.message


async def test_poe_paths_keep_the_poe_error_shape(client: httpx.AsyncClient) -> None:
    # GIVEN a wrong method on a Poe bot's path WHEN it is requested THEN the error has the Poe routes' shape
    response = await client.get("/poe/claude-3-haiku")
    assert response.status_code == 405 and set(response.json()) == {"error", "code"}


async def test_stream_null_is_accepted_as_not_streamed(client: httpx.AsyncClient) -> None:
    # GIVEN "stream": null (valid in OpenAI's specification) WHEN it is sent
    response = await post(client, {"model": "nova-lite", "messages": user(PROMPT), "stream": None})
    # THEN the answer is a plain completion
    assert response.status_code == 200
    openai_schema.check(ChatCompletion, response.json())


async def test_a_validation_error_is_a_400_naming_the_field(client: httpx.AsyncClient) -> None:
    # GIVEN a temperature of the wrong type WHEN it is sent
    response = await post(client, {"model": "nova-lite", "messages": user("hi"), "temperature": "hot"})
    # THEN it is a 400 (OpenAI's status, not 422) whose param names the field
    assert response.status_code == 400
    assert openai_schema.check_error(response.json()).param == "temperature"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("max_tokens", 100_000, "at most 2048"),
        ("max_completion_tokens", 100_000, "at most 2048"),
        ("temperature", 1.5, "at most 1.0"),
        ("stop", ["a", "b", "c", "d", "e"], "at most 4"),
    ],
)
async def test_numeric_parameters_over_the_bots_limits_are_400s_never_clamped(
    client: httpx.AsyncClient, field: str, value: Any, words: str
) -> None:
    # GIVEN a value over the bot's limit (nova-lite: 2,048 tokens, temperature 1.0, 4 stop sequences)
    # WHEN it is sent
    response = await post(client, {"model": "nova-lite", "messages": user("hi"), field: value})
    # THEN it is a 400 naming the parameter and the limit
    assert response.status_code == 400
    error = openai_schema.check_error(response.json())
    assert error.param == ("max_tokens" if field == "max_completion_tokens" else field) and words in error.message


# ---------------------------------------------------------------- item 6: every parameter


def test_every_parameter_of_the_chat_completions_contract_has_a_rule() -> None:
    # GIVEN the parameters of the pinned openai package's chat completions request (and 'stream')
    contract = {*completion_create_params.CompletionCreateParamsBase.__annotations__, "stream"}
    # WHEN they are looked up in the gateway's table
    ruled = set(openai_parameters.HONOURED) | set(openai_parameters.REFUSED)
    # THEN each is honoured or refused (a new parameter in a newer SDK fails here until it gets a rule)
    assert contract - ruled == set()
    assert not set(openai_parameters.HONOURED) & set(openai_parameters.REFUSED)


# a value that asks for something Bedrock cannot give, per refused parameter
REFUSED_SAMPLES: dict[str, Any] = {
    "logprobs": True,
    "top_logprobs": 2,
    "logit_bias": {"50256": -100},
    "frequency_penalty": 0.5,
    "presence_penalty": -1,
    "audio": {"voice": "alloy", "format": "mp3"},
    "modalities": ["text", "audio"],
    "prediction": {"type": "content", "content": "x"},
    "web_search_options": {},
    "verbosity": "low",
    "moderation": {"model": "x"},
    "functions": [{"name": "f"}],
    "function_call": "auto",
    "store": True,
    "metadata": {"team": "a"},
    "prompt_cache_key": "k",
    "prompt_cache_retention": "24h",
    "prompt_cache_options": {},
    "service_tier": "flex",
    # honoured parameters with a value a text bot cannot honour
    "n": 2,
    "parallel_tool_calls": False,
    "seed": 7,
}


def test_every_refused_parameter_has_a_sample() -> None:
    # GIVEN the refused parameters THEN each is exercised below
    assert set(REFUSED_SAMPLES) == set(openai_parameters.REFUSED) | set(openai_parameters.REFUSED_VALUES)


@pytest.mark.parametrize("field", sorted(REFUSED_SAMPLES))
async def test_a_parameter_bedrock_cannot_honour_is_a_400_naming_it(client: httpx.AsyncClient, field: str) -> None:
    # GIVEN a request asking for something Bedrock cannot give WHEN it is sent
    response = await post(client, {"model": "nova-lite", "messages": user("hi"), field: REFUSED_SAMPLES[field]})
    # THEN it is a 400 whose param names the field and whose message says why
    assert response.status_code == 400, response.text
    error = openai_schema.check_error(response.json())
    assert error.param == field and "not supported:" in error.message


@pytest.mark.parametrize(
    "fields",
    [
        {"logprobs": False, "logit_bias": {}, "frequency_penalty": 0, "presence_penalty": 0.0, "n": 1},
        {"store": False, "metadata": {}, "service_tier": "auto", "parallel_tool_calls": True, "modalities": ["text"]},
        {"stream": False, "stream_options": None, "top_logprobs": None, "seed": None, "user": "u-1"},
    ],
)
async def test_values_that_ask_for_nothing_pass(client: httpx.AsyncClient, fields: dict[str, Any]) -> None:
    # GIVEN the defaults of the refused parameters, as SDKs and proxies send them WHEN they are sent
    response = await post(client, {"model": "nova-lite", "messages": user("hi"), **fields})
    # THEN the request is answered
    assert response.status_code == 200, response.text


async def test_an_unknown_parameter_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    # GIVEN a body field in no contract WHEN it is sent THEN it is a 400 naming it
    response = await post(client, {"model": "nova-lite", "messages": user("hi"), "temprature": 0.2})
    assert response.status_code == 400
    assert openai_schema.check_error(response.json()).param == "temprature"


async def test_stream_obfuscation_is_refused_and_its_absence_honoured(client: httpx.AsyncClient) -> None:
    # GIVEN a stream asking for obfuscation WHEN it is sent THEN it is a 400 naming the option
    body = {"model": "nova-lite", "messages": user("hi"), "stream": True}
    refused = await post(client, {**body, "stream_options": {"include_obfuscation": True}})
    assert refused.status_code == 400
    assert openai_schema.check_error(refused.json()).param == "stream_options.include_obfuscation"
    # AND asking for none is honoured: no chunk carries an obfuscation field
    answered = await post(client, {**body, "stream_options": {"include_obfuscation": False}})
    assert answered.status_code == 200 and "obfuscation" not in answered.text


async def test_text_parameters_sent_to_an_image_bot_are_400s(client: httpx.AsyncClient) -> None:
    # GIVEN an image bot and a temperature (which image generation cannot use) WHEN it is sent
    response = await post(client, {"model": "nova-canvas", "messages": user("a cat"), "temperature": 0.3})
    # THEN it is a 400 naming the parameter and the bot
    assert response.status_code == 400
    error = openai_schema.check_error(response.json())
    assert error.param == "temperature" and "nova-canvas" in error.message


async def test_the_end_user_is_logged_with_the_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a request naming its end user (OpenAI 'safety_identifier', or the older 'user')
    caplog.set_level(logging.INFO)
    # WHEN it is answered
    response = await post(client, {"model": "nova-lite", "messages": user("hi"), "safety_identifier": "hashed-42"})
    # THEN the gateway's log names the end user beside the bot (it is sent nowhere else)
    assert response.status_code == 200
    logged = [vars(record) for record in caplog.records if record.getMessage() == "openai end user"]
    assert logged and logged[0].get("end_user") == "hashed-42" and logged[0].get("bot") == "nova-lite"
    assert "hashed-42" not in json.dumps(response.json())
