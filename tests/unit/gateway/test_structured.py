"""Structured output, pure: parsing ``response_format``, how a bot is asked (Converse request), checking the JSON;
and the emulator's schema rules and JSON answers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from lambdas.gateway.config import BotConfig, load_bots
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.events import Event, Finished, TextDelta, ToolCallDelta, ToolCallStart
from lambdas.gateway.structured import answer_events, check_answer, parse_response_format, prepare
from lambdas.gateway.translate import ChatRequest, Usage, chat_messages, converse_request
from local.emulator import structured_output
from local.emulator.conversation import route
from local.emulator.errors import ApiError
from local.emulator.tool_use import forced_choice_allowed

SONNET_45 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "us.amazon.nova-lite-v1:0"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 9}, "s": {"type": "string", "maxLength": 3}},
    "required": ["n", "s"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True}}


def bot(model_id: str, **capabilities: bool) -> BotConfig:
    return BotConfig.model_validate({"name": "b", "model_id": model_id, "capabilities": capabilities})


def chat(response_format: Any) -> ChatRequest:
    return ChatRequest(messages=chat_messages([("user", "hi")]), response_format=parse_response_format(response_format))


def test_a_native_bot_is_asked_through_outputconfig_with_the_schema_as_json_text() -> None:
    # GIVEN a bot with Bedrock's structured output
    config = bot(SONNET_45, tools=True, forced_tool=True, structured_output=True)
    # WHEN a json_schema request is prepared and translated
    request = converse_request(config, prepare(config, chat(FORMAT)))
    # THEN Converse gets outputConfig.textFormat (botocore OutputConfig: the schema is a string) and no tool
    definition = request["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert request["outputConfig"]["textFormat"]["type"] == "json_schema" and definition["name"] == "thing"
    assert json.loads(definition["schema"]) == SCHEMA and "toolConfig" not in request


def test_a_forced_tool_bot_gets_one_tool_with_the_schema_and_tool_choice_any() -> None:
    # GIVEN a bot with forced tool use only
    config = bot(NOVA, tools=True, forced_tool=True)
    # WHEN json_schema and json_object requests are prepared and translated
    schema_request = converse_request(config, prepare(config, chat(FORMAT)))
    object_request = converse_request(config, prepare(config, chat({"type": "json_object"})))
    # THEN each gets one tool whose input schema is the schema ({"type": "object"} for json_object), forced with any
    spec = schema_request["toolConfig"]["tools"][0]["toolSpec"]
    assert spec["name"] == "thing" and spec["inputSchema"]["json"] == SCHEMA and spec["description"]
    assert schema_request["toolConfig"]["toolChoice"] == {"any": {}} and "outputConfig" not in schema_request
    assert object_request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"] == {"type": "object"}


def test_json_object_goes_by_forced_tool_even_on_a_native_bot() -> None:
    # GIVEN a native bot (Bedrock's textFormat takes a JSON schema, not "any object") WHEN json_object is asked
    config = bot(SONNET_45, tools=True, forced_tool=True, structured_output=True)
    request = converse_request(config, prepare(config, chat({"type": "json_object"})))
    # THEN it goes by forced tool
    assert "toolConfig" in request and "outputConfig" not in request


@pytest.mark.parametrize(("value", "text"), [(None, None), ({"type": "text"}, None)])
def test_text_formats_ask_for_nothing(value: Any, text: Any) -> None:
    # GIVEN no or a text response_format THEN nothing is asked
    assert parse_response_format(value) is text


@pytest.mark.parametrize(
    ("text", "stop", "words"),
    [
        ('{"n": 5, "s": "abc"}', "end_turn", None),
        ('{"n": 5, "s": "abcd"}', "end_turn", "at s"),
        ('{"n": 5}', "end_turn", "'s' is a required property"),
        ('{"n": 5, "s": "a"', "end_turn", "not JSON"),
        ('{"n": 5, "s": "a"}', "max_tokens", "max_tokens"),
        ("", "end_turn", "no JSON"),
        ("Sure! Here it is", "end_turn", "not JSON"),
    ],
)
def test_an_answer_is_checked_against_the_schema(text: str, stop: str, words: str | None) -> None:
    # GIVEN a json_schema format WHEN an answer is checked
    fmt = parse_response_format(FORMAT)
    assert fmt is not None
    if words is None:
        check_answer(fmt, text, stop)
        return
    # THEN an answer that is no valid JSON for the schema is a 502 saying why
    with pytest.raises(GatewayError) as error:
        check_answer(fmt, text, stop)
    assert error.value.status == 502 and words in error.value.message, error.value.message


def test_json_object_needs_an_object() -> None:
    fmt = parse_response_format({"type": "json_object"})
    assert fmt is not None
    with pytest.raises(GatewayError, match="not an object"):
        check_answer(fmt, "[1, 2]", "end_turn")


def test_a_forced_tools_input_becomes_the_content_and_the_call_disappears() -> None:
    # GIVEN a forced-tool answer: a call whose input arrives in pieces, stop reason tool_use
    parsed = parse_response_format(FORMAT)
    assert parsed is not None
    fmt = replace(parsed, via="tool")
    events: list[Event] = [
        ToolCallStart(0, "tooluse_1", "thing"),
        ToolCallDelta(0, '{"n": 5, '),
        ToolCallDelta(0, '"s": "ab"}'),
        Finished("tool_use", Usage(), None, None, 0.0),
    ]

    async def source() -> Any:
        for event in events:
            yield event

    async def collect() -> list[Event]:
        return [event async for event in answer_events(source(), fmt)]

    # WHEN it is read as a structured answer
    out = asyncio.run(collect())
    # THEN the pieces are text deltas, no call shows, and the answer finishes as a normal stop
    assert out[:2] == [TextDelta('{"n": 5, '), TextDelta('"s": "ab"}')]
    assert isinstance(out[2], Finished) and out[2].stop_reason == "end_turn" and len(out) == 3


# ---------------------------------------------------------------- the emulator


def test_the_emulators_json_answers_match_their_schema_unless_asked_to_break_it() -> None:
    # GIVEN a schema with bounds, lengths, enums, nested objects and arrays
    schema = {
        **SCHEMA,
        "properties": {
            **SCHEMA["properties"],
            "e": {"enum": ["x", "y"]},
            "o": {
                "type": "object",
                "properties": {"t": {"type": ["string", "null"], "minLength": 4}},
                "required": ["t"],
                "additionalProperties": False,
            },
            "a": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 2}, "minItems": 2},
        },
        "required": ["n", "s", "e", "o", "a"],
    }
    validator = Draft202012Validator(schema)
    # WHEN the emulator answers for it, normally and with its trigger
    valid = structured_output.answer_value(schema, "hi")
    broken = structured_output.answer_value(schema, f"hi {structured_output.INVALID_TRIGGER}")
    # THEN the first validates and the second does not
    assert list(validator.iter_errors(valid)) == []
    assert list(validator.iter_errors(broken)) != []


@pytest.mark.parametrize(
    ("model_id", "schema", "words"),
    [
        ("anthropic.claude-3-haiku-20240307-v1:0", SCHEMA, "doesn't support the outputConfig.textFormat"),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", {**SCHEMA, "additionalProperties": True}, "additionalProp"),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", {"type": "array"}, "root schema"),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", {"type": "object", "minProperties": "x"}, "valid JSON Schema"),
    ],
)
def test_the_emulator_refuses_structured_output_bedrock_would_refuse(model_id: str, schema: Any, words: str) -> None:
    # GIVEN a textFormat on a model without structured output, or a schema outside the subset
    request = {
        "outputConfig": {
            "textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(schema)}}}
        }
    }
    # WHEN it is checked THEN it is a ValidationException saying why
    with pytest.raises(ApiError, match=words):
        structured_output.output_schema(request, "anthropic", model_id)


def test_structured_output_capabilities_agree_with_the_emulators_models() -> None:
    # GIVEN every shipped text bot that claims forced tool use or Bedrock's structured output
    request = {
        "outputConfig": {
            "textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": json.dumps(SCHEMA)}}}
        }
    }
    claiming = {name: bot for name, bot in load_bots().items() if bot.modality == "text"}
    for name, config in claiming.items():
        caps = config.capabilities
        target = route(config.model_id, 10, {})
        # WHEN the claim is checked against what the emulator's model accepts
        # THEN forced_tool bots have tools and take toolChoice any; structured_output bots take textFormat
        if caps.forced_tool:
            assert caps.tools and forced_choice_allowed("any", target.family, target.model_id), name
        if caps.structured_output:
            assert structured_output.output_schema(request, target.family, target.model_id) == SCHEMA, name
    assert any(bot.capabilities.structured_output for bot in claiming.values())
