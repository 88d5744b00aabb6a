"""Issue 12 item 4, as a client runs it: the official openai SDK over HTTP against the gateway that ``python -m cli
gateway`` serves (uvicorn + emulator), asking for structured output: a JSON schema through Bedrock's own structured
output (a bot with ``structured_output``) and through a forced tool (a bot without it), streamed and not, and an
answer that breaks the schema refused instead of passed off as JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from cli.gateway import RunningGateway, local_gateway

pytestmark = pytest.mark.slow
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "population": {"type": "integer", "minimum": 0},
        "coastal": {"type": "boolean"},
    },
    "required": ["city", "population", "coastal"],
    "additionalProperties": False,
}
FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {"name": "city", "schema": SCHEMA, "strict": True},
}
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Describe a harbour city as JSON."}]


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    with local_gateway(0, access_key="e2e-key-structured-0123456789abcd") as running:
        yield running


@pytest.fixture(scope="module")
def sdk(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.access_key, max_retries=0, timeout=60)


@pytest.mark.parametrize("bot", ["claude-sonnet-4.5", "claude-3-haiku"])  # Bedrock's structured output; a forced tool
def test_a_json_schema_answer_validates_against_the_schema(sdk: openai.OpenAI, bot: str) -> None:
    # GIVEN the SDK over HTTP WHEN it asks for an answer matching a JSON schema, without streaming
    answer = sdk.chat.completions.create(model=bot, messages=ASK, response_format=FORMAT, max_tokens=512)
    # THEN the content is JSON that validates against the schema, and the answer is an ordinary finished message
    content = answer.choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), SCHEMA)
    assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].message.tool_calls


def test_a_streamed_json_schema_answer_arrives_as_content_that_validates(sdk: openai.OpenAI) -> None:
    # GIVEN the SDK over HTTP WHEN it streams an answer matching a JSON schema from a forced-tool bot
    stream = sdk.chat.completions.create(
        model="nova-lite",
        messages=ASK,
        response_format=FORMAT,
        max_tokens=512,
        stream=True,
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    # THEN the content deltas join into JSON that validates against the schema
    jsonschema.validate(json.loads("".join(pieces)), SCHEMA)


def test_json_object_gives_a_json_object(sdk: openai.OpenAI) -> None:
    # GIVEN the SDK over HTTP WHEN it asks for any JSON object
    answer = sdk.chat.completions.create(
        model="claude-3-haiku",
        messages=ASK,
        response_format={"type": "json_object"},
        max_tokens=512,
    )
    # THEN the content is a JSON object
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


def test_an_answer_that_breaks_the_schema_is_an_error_not_json(sdk: openai.OpenAI) -> None:
    # GIVEN a model that answers JSON breaking the schema (the emulator's trigger)
    broken: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Describe a harbour city as JSON. EMULATOR_INVALID_JSON"}
    ]
    # WHEN the SDK asks for the schema THEN it gets a server error naming the failed check, never the answer as JSON
    with pytest.raises(openai.APIStatusError) as refused:
        sdk.chat.completions.create(model="claude-3-haiku", messages=broken, response_format=FORMAT, max_tokens=512)
    assert refused.value.status_code == 502
    assert refused.value.code == "invalid_structured_output"


def test_a_bot_that_cannot_give_structured_output_is_a_400_naming_the_field(sdk: openai.OpenAI) -> None:
    # GIVEN a bot with neither structured output nor forced tool use WHEN the SDK asks it for a schema
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="llama-3.1-8b", messages=ASK, response_format=FORMAT, max_tokens=64)
    # THEN 400 naming response_format
    assert refused.value.param == "response_format" or "response_format" in refused.value.message
