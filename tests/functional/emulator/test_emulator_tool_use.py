"""The emulator's Converse / ConverseStream tool use, read by boto3 (real restJson1 and eventstream wire formats)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from tests.functional.emulator.conftest import user

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
LLAMA = "us.meta.llama3-1-8b-instruct-v1:0"
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer"},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
    },
    "required": ["city", "days", "unit", "where"],
}
WEATHER = {"toolSpec": {"name": "get_weather", "description": "Weather", "inputSchema": {"json": SCHEMA}}}
TIME = {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}}


def test_converse_answers_with_a_tool_call_built_from_the_schema(runtime: BaseClient) -> None:
    # GIVEN a tool and a user question WHEN Converse is called
    answer = runtime.converse(modelId=HAIKU, messages=[user("Oslo")], toolConfig={"tools": [WEATHER, TIME]})
    # THEN the model calls the first tool with every required property filled in, and stops for it
    (block,) = answer["output"]["message"]["content"]
    use = block["toolUse"]
    assert answer["stopReason"] == "tool_use" and use["name"] == "get_weather"
    assert use["input"] == {"city": "Oslo", "days": 1, "unit": "celsius", "where": {"lat": 1}}
    assert use["toolUseId"].startswith("tooluse_")
    # WHEN the result comes back THEN the model answers in text, echoing it
    history = [user("Oslo"), answer["output"]["message"]]
    result = {"toolResult": {"toolUseId": use["toolUseId"], "content": [{"text": "rain"}]}}
    final = runtime.converse(
        modelId=HAIKU, messages=[*history, {"role": "user", "content": [result]}], toolConfig={"tools": [WEATHER]}
    )
    assert final["stopReason"] == "end_turn"
    assert final["output"]["message"]["content"] == [{"text": "rain"}]


def test_converse_stream_sends_the_tool_input_in_pieces(runtime: BaseClient) -> None:
    # GIVEN a forced tool WHEN ConverseStream is called
    response = runtime.converse_stream(
        modelId=HAIKU,
        messages=[user("Oslo")],
        toolConfig={"tools": [TIME, WEATHER], "toolChoice": {"tool": {"name": "get_weather"}}},
    )
    events = list(response["stream"])
    # THEN the block starts with the tool's id and name, and its input JSON arrives in two or more pieces
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "get_weather"
    pieces = [e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e]
    assert len(pieces) >= 2 and json.loads("".join(pieces))["city"] == "Oslo"
    assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"


@pytest.mark.parametrize(
    ("model", "fields", "message"),
    [
        (
            HAIKU,
            {
                "messages": [
                    user("x"),
                    {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]},
                    user("y"),
                ]
            },  # noqa: E501
            "The toolConfig field must be defined",
        ),
        (HAIKU, {"toolConfig": {"tools": [WEATHER, WEATHER]}}, "duplicate tool names"),
        (HAIKU, {"toolConfig": {"tools": [{"toolSpec": {**TIME["toolSpec"], "name": "a b"}}]}}, "regular expression"),
        (HAIKU, {"toolConfig": {"tools": [TIME], "toolChoice": {"tool": {"name": "nope"}}}}, "'nope' not found"),
        (LLAMA, {"toolConfig": {"tools": [TIME], "toolChoice": {"any": {}}}}, "toolChoice.any field"),
        (
            HAIKU,
            {
                "toolConfig": {"tools": [TIME]},
                "messages": [
                    user("x"),
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "t9", "content": [{"text": "r"}]}}]},
                ],  # noqa: E501
            },
            "A conversation must alternate",
        ),
        (
            HAIKU,
            {
                "toolConfig": {"tools": [TIME]},
                "messages": [
                    user("x"),
                    {
                        "role": "assistant",
                        "content": [{"toolUse": {"toolUseId": "t1", "name": "get_time", "input": {}}}],
                    },  # noqa: E501
                    {"role": "user", "content": [{"toolResult": {"toolUseId": "t2", "content": [{"text": "r"}]}}]},
                ],
            },
            "unexpected `tool_use_id`",
        ),
    ],
)
def test_bad_tool_requests_are_validation_errors(
    runtime: BaseClient,
    model: str,
    fields: dict[str, Any],
    message: str,
) -> None:
    # GIVEN a tool request Bedrock refuses WHEN it is sent THEN it is a ValidationException in the service's words
    with pytest.raises(ClientError) as error:
        runtime.converse(**{"modelId": model, "messages": [user("x")], **fields})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert message in error.value.response["Error"]["Message"]
