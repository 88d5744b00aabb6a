"""``response_format`` on ``/v1/chat/completions`` (issue 12, item 4), driven by the openai SDK against the emulator:
Bedrock's structured output where the bot has it, a forced tool call otherwise, the JSON checked before it counts."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from local.emulator.server import BedrockEmulator
from tests import openai_schema
from tests.functional.gateway.conftest import KEY, parse_sse
from tests.openai_schema import ChatCompletionChunk

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}
CITY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "population": {"type": "integer", "minimum": 1000},
        "kind": {"type": "string", "enum": ["capital", "town"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
    },
    "required": ["city", "population", "kind", "tags"],
    "additionalProperties": False,
}
CITY_FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
FORCED_TOOL_BOTS = ["nova-lite", "claude-3-haiku", "mistral-large-2"]  # the last one answers without streaming


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def valid_city(text: str | None) -> dict[str, Any]:
    value = json.loads(text or "")
    assert value["population"] >= 1000 and value["kind"] == "capital" and len(value["tags"]) == 2
    assert len(value["city"]) <= 20 and set(value) == set(CITY["required"])
    return dict(value)


@pytest.mark.parametrize("model", [*FORCED_TOOL_BOTS, "claude-sonnet-4.5"])
async def test_a_json_schema_answer_is_json_matching_the_schema(
    sdk: openai.AsyncOpenAI, emulator: BedrockEmulator, model: str
) -> None:
    # GIVEN a bot with Bedrock's structured output (Claude Sonnet 4.5) or with forced tool use (the others)
    # WHEN the SDK asks for a city matching the schema, without streaming
    answer = await sdk.chat.completions.create(model=model, messages=user("Describe Oslo"), response_format=CITY_FORMAT)
    # THEN the content is JSON matching the schema, finished normally, with no tool call shown
    choice = answer.choices[0]
    valid_city(choice.message.content)
    assert choice.finish_reason == "stop" and not choice.message.tool_calls


@pytest.mark.parametrize("model", ["nova-lite", "claude-sonnet-4.5"])
async def test_a_streamed_json_answer_arrives_as_content_deltas(client: httpx.AsyncClient, model: str) -> None:
    # GIVEN a streamed json_schema request
    body = {"model": model, "messages": user("Describe Oslo"), "response_format": CITY_FORMAT, "stream": True}
    # WHEN the chunks are read
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    chunks = [data for _, data in parse_sse(response.text)]
    # THEN each chunk is an OpenAI chunk, the content deltas join into the JSON, and the finish reason is stop
    assert chunks[-1] == "[DONE]"
    for chunk in chunks[:-1]:
        openai_schema.check(ChatCompletionChunk, chunk)
    deltas = [c["choices"][0]["delta"] for c in chunks[:-1] if c["choices"]]
    valid_city("".join(d.get("content") or "" for d in deltas))
    assert not any("tool_calls" in d for d in deltas)
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"][0]["finish_reason"]] == ["stop"]


async def test_json_object_gives_a_json_object(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN json_object mode on a forced-tool bot WHEN asked
    answer = await sdk.chat.completions.create(
        model="nova-pro", messages=user("Describe Oslo as JSON"), response_format={"type": "json_object"}
    )
    # THEN the content is a JSON object
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


async def test_an_answer_that_breaks_the_schema_is_a_502_never_passed_off_as_json(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a model whose tool input breaks the schema (the emulator's EMULATOR_INVALID_JSON)
    # WHEN a json_schema answer is asked without streaming
    with pytest.raises(openai.APIStatusError) as error:
        await sdk.chat.completions.create(
            model="nova-lite", messages=user("Oslo EMULATOR_INVALID_JSON"), response_format=CITY_FORMAT
        )
    # THEN it is a 502 in OpenAI's error shape naming the schema and the first problem
    assert error.value.status_code == 502
    body = openai_schema.check_error(error.value.response.json())
    assert body.code == "invalid_structured_output" and "'city'" in body.message


async def test_a_streamed_answer_that_breaks_the_schema_ends_in_an_error_chunk(client: httpx.AsyncClient) -> None:
    # GIVEN a streamed request whose answer breaks the schema
    body = {
        "model": "nova-lite",
        "messages": user("Oslo EMULATOR_INVALID_JSON"),
        "response_format": CITY_FORMAT,
        "stream": True,
    }
    # WHEN it is read
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    chunks = [data for _, data in parse_sse(response.text)]
    # THEN the content streamed, then an error chunk instead of a finish chunk, then [DONE]
    assert chunks[-1] == "[DONE]"
    error = openai_schema.check_error(chunks[-2])
    assert error.code == "invalid_structured_output"
    assert not any(c["choices"][0]["finish_reason"] for c in chunks[:-2] if c.get("choices"))


async def test_the_sdk_raises_on_a_streamed_answer_that_breaks_the_schema(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a streamed answer that breaks the schema WHEN the SDK reads it THEN it raises the gateway's error
    stream = await sdk.chat.completions.create(
        model="nova-lite", messages=user("Oslo EMULATOR_INVALID_JSON"), response_format=CITY_FORMAT, stream=True
    )
    with pytest.raises(openai.APIError, match="not valid structured output"):
        async for _ in stream:
            pass


async def test_a_native_answer_cut_at_max_tokens_is_a_502(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN Bedrock's structured output and an answer limit shorter than the JSON
    # WHEN asked THEN the cut JSON is refused, saying to raise max_tokens
    with pytest.raises(openai.APIStatusError) as error:
        await sdk.chat.completions.create(
            model="claude-sonnet-4.5", messages=user("Describe Oslo"), response_format=CITY_FORMAT, max_tokens=3
        )
    assert error.value.status_code == 502 and "max_tokens" in error.value.message


@pytest.mark.parametrize(
    ("model", "fields", "param", "words"),
    [
        ("llama-3.1-8b", {"response_format": CITY_FORMAT}, "response_format", "cannot give structured output"),
        ("deepseek-v3", {"response_format": {"type": "json_object"}}, "response_format", "cannot give structured"),
        (
            "nova-lite",
            {"response_format": CITY_FORMAT, "tools": [{"type": "function", "function": {"name": "f"}}]},
            "response_format",
            "forced tool call",
        ),
        ("nova-lite", {"response_format": {"type": "xml"}}, "response_format.type", "'xml'"),
        (
            "nova-lite",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": CITY}}},
            "response_format.json_schema.name",
            "'a b'",
        ),
        (
            "nova-lite",
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}},
            "response_format.json_schema.schema",
            "root has type 'object'",
        ),
        (
            "nova-lite",
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": 5}}}},
                }
            },
            "response_format.json_schema.schema",
            "not a valid JSON Schema",
        ),
        ("nova-canvas", {"response_format": {"type": "json_object"}}, "response_format", "nova-canvas"),
    ],
)
async def test_structured_output_a_bot_cannot_give_is_a_400_naming_the_field(
    client: httpx.AsyncClient, model: str, fields: dict[str, Any], param: str, words: str
) -> None:
    # GIVEN a response_format the bot cannot honour, or a malformed one WHEN it is sent
    response = await client.post(
        "/v1/chat/completions", json={"model": model, "messages": user("Oslo"), **fields}, headers=AUTH
    )
    # THEN it is a 400 in OpenAI's shape whose param names the field
    assert response.status_code == 400, response.text
    error = openai_schema.check_error(response.json())
    assert error.param == param and words in error.message, error.message


async def test_bedrock_refuses_a_native_schema_outside_its_subset(client: httpx.AsyncClient) -> None:
    # GIVEN a native structured-output bot and a schema whose object allows additional properties
    loose = {**CITY, "additionalProperties": True}
    body = {
        "model": "claude-sonnet-4.5",
        "messages": user("Oslo"),
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": loose}},
    }
    # WHEN it is sent THEN Bedrock's ValidationException comes back as a 400 naming the schema's problem
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 400
    assert "additionalProperties" in openai_schema.check_error(response.json()).message
