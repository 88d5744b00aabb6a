"""The Anthropic Messages API translation both ways (lambdas.gateway.anthropic): requests to Converse, answer events
to Anthropic's stream events and message, errors to Anthropic's types. No network: media come as data: URLs."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from lambdas.gateway.anthropic import (
    CountTokensRequest,
    MessagesRequest,
    Translated,
    converse_request,
    message_body,
    message_events,
)
from lambdas.gateway.attachments import AttachmentReader, Fetcher
from lambdas.gateway.config import BotConfig, load_bots
from lambdas.gateway.error_shapes import anthropic_error_type as error_type
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.events import Event, Finished, ReasoningDelta, TextDelta, ToolCallDelta, ToolCallStart
from lambdas.gateway.translate import ThinkingBlock, Usage

BOTS = load_bots()
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def translate(bot: str, body: dict[str, Any], kind: type[CountTokensRequest] = MessagesRequest) -> Translated:
    config: BotConfig = BOTS[bot]
    reader = AttachmentReader(config, Fetcher(max_bytes=1_000_000, timeout=1))
    return asyncio.run(converse_request(config, kind.model_validate({"model": bot, **body}), reader))


def user(content: Any) -> dict[str, Any]:
    return {"max_tokens": 100, "messages": [{"role": "user", "content": content}]}


def test_system_blocks_with_cache_control_become_cache_points_on_a_caching_bot() -> None:
    # GIVEN a system prompt in blocks, the first marked for caching, on a bot with prompt caching
    system = [
        {"type": "text", "text": "rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "more"},
    ]
    # WHEN it is translated
    request = translate("claude-sonnet-4", {**user("hi"), "system": system}).request
    # THEN a cachePoint (with its TTL) follows the marked block
    assert request["system"] == [{"text": "rules"}, {"cachePoint": {"type": "default", "ttl": "1h"}}, {"text": "more"}]


def test_cache_control_on_a_bot_without_caching_adds_no_cache_point() -> None:
    # GIVEN a marked message block on a bot without prompt caching (Bedrock refuses a cachePoint there)
    content = [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]
    # WHEN it is translated THEN the text goes alone
    request = translate("llama-3.1-8b", user(content)).request
    assert request["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]


def test_tools_choice_and_a_tool_loop_become_converse_tool_blocks() -> None:
    # GIVEN a tool, a forced choice and a finished tool call with an error result
    messages = [
        {"role": "user", "content": "Oslo?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "down", "is_error": True}],
        },
    ]
    body = {
        "max_tokens": 100,
        "messages": messages,
        "tools": [WEATHER],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    # WHEN it is translated
    request = translate("claude-sonnet-4", body).request
    # THEN Converse gets the spec, the forced tool, the toolUse and the toolResult with status error
    assert request["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": WEATHER["input_schema"]}
    assert request["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert request["messages"][1]["content"] == [
        {"toolUse": {"toolUseId": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}}}
    ]
    assert request["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "down"}], "status": "error"}}
    ]


def test_cache_control_inside_a_tool_result_puts_the_cache_point_after_the_result() -> None:
    # GIVEN a tool result whose last text part is marked for caching (as Claude Code marks the conversation's end)
    part = {"type": "text", "text": "sun", "cache_control": {"type": "ephemeral"}}
    messages = [
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": [part]}]},
    ]
    # WHEN translated for a caching bot THEN the cachePoint follows the toolResult (Converse takes none inside it)
    request = translate("claude-sonnet-4", {"max_tokens": 100, "messages": messages, "tools": [WEATHER]}).request
    assert request["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "sun"}]}},
        {"cachePoint": {"type": "default"}},
    ]


def test_tool_choice_none_sends_no_tools_and_the_history_as_text() -> None:
    # GIVEN tool_choice none with a tool call in the history
    messages = [
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": [{"type": "text", "text": "sun"}]}],
        },
    ]
    body = {"max_tokens": 100, "messages": messages, "tools": [WEATHER], "tool_choice": {"type": "none"}}
    # WHEN it is translated THEN no toolConfig goes, and the call and its result are text (Converse's rule)
    request = translate("claude-sonnet-4", body).request
    assert "toolConfig" not in request
    assert request["messages"][2]["content"] == [{"text": "[result of tool call tu_1]: sun"}]


@pytest.mark.parametrize(
    ("tool", "says"),
    [
        ({"type": "web_search_20250305", "name": "web_search"}, "server or client tool"),
        ({"name": "bad name", "input_schema": {}}, "not a valid tool name"),
        ({"name": "x"}, "input_schema"),
    ],
)
def test_tools_converse_cannot_take_are_refused_naming_the_field(tool: dict[str, Any], says: str) -> None:
    # GIVEN a tool Converse cannot take WHEN it is translated THEN a 400 names tools[0] and the fix
    with pytest.raises(GatewayError) as raised:
        translate("claude-sonnet-4", {**user("hi"), "tools": [tool]})
    assert raised.value.status == 400 and "tools[0]" in raised.value.message and says in raised.value.message


def test_thinking_and_top_k_go_to_claude_as_additional_fields_and_stop_sequences_ask_for_the_match() -> None:
    # GIVEN thinking with a budget, top_k and a stop sequence for a Claude model
    body = {**user("hi"), "max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2000}, "top_k": 5}
    translated = translate("claude-3.7-sonnet", {**body, "stop_sequences": ["END"]})
    # THEN they are Claude's additional request fields, thinking is shown, and the matched sequence is asked back
    fields = translated.request["additionalModelRequestFields"]
    assert fields == {"thinking": {"type": "enabled", "budget_tokens": 2000}, "top_k": 5}
    assert translated.thinking and translated.request["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    assert translated.request["inferenceConfig"]["stopSequences"] == ["END"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking: the model 'nova-lite' is not a Claude"),
        ({"top_k": 3}, "top_k: the model 'nova-lite'"),
        ({"metadata": {"user_id": "user|1"}}, "metadata.user_id"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences: 5 given"),
    ],
)
def test_what_a_model_cannot_take_is_a_400_naming_the_field(extra: dict[str, Any], says: str) -> None:
    # GIVEN a request field a non-Claude model (or Bedrock) cannot take WHEN translated THEN a 400 names it
    with pytest.raises(GatewayError) as raised:
        translate("nova-lite", {**user("hi"), **extra})
    assert raised.value.status == 400 and says in raised.value.message


def test_a_thinking_budget_over_the_bots_token_limit_is_refused_with_both_numbers() -> None:
    # GIVEN a budget under the asked max_tokens but over the bot's limit (4096 on Claude 3.7 Sonnet)
    body = {**user("hi"), "max_tokens": 30000, "thinking": {"type": "enabled", "budget_tokens": 8000}}
    # WHEN translated THEN the 400 says the budget must be under the limited max_tokens
    with pytest.raises(GatewayError, match=r"budget_tokens \(8000\) must be less than max_tokens \(4096"):
        translate("claude-3.7-sonnet", body)


def test_thinking_blocks_go_back_only_while_thinking_is_on() -> None:
    # GIVEN an assistant turn with a signed and a redacted thinking block
    turn = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "redacted_thinking", "data": base64.b64encode(b"secret").decode()},
        {"type": "text", "text": "hello"},
    ]
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": turn},
        {"role": "user", "content": "b"},
    ]
    body = {"max_tokens": 4000, "messages": messages}
    # WHEN translated with thinking on, and without
    on = translate("claude-3.7-sonnet", {**body, "thinking": {"type": "enabled", "budget_tokens": 1024}}).request
    off = translate("claude-3.7-sonnet", body).request
    # THEN thinking on sends both back unchanged (text and signature, redacted bytes); off leaves them out
    assert on["messages"][1]["content"][:2] == [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
        {"reasoningContent": {"redactedContent": b"secret"}},
    ]
    assert off["messages"][1]["content"] == [{"text": "hello"}]


def test_images_and_documents_are_read_by_the_bots_attachment_reader() -> None:
    # GIVEN a base64 PNG and a text document in a user message to a bot that reads both
    content = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()},
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "the notes"},
            "title": "notes",
        },
        {"type": "text", "text": "Summarise"},
    ]
    # WHEN translated
    blocks = translate("claude-sonnet-4", user(content)).request["messages"][0]["content"]
    # THEN Converse gets an image block with the bytes, a txt document and the text
    assert blocks[0] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert blocks[1]["document"]["format"] == "txt" and blocks[1]["document"]["source"] == {"bytes": b"the notes"}
    assert blocks[2] == {"text": "Summarise"}


def test_an_image_to_a_bot_without_vision_is_refused() -> None:
    # GIVEN a text-only bot WHEN an image is sent THEN the reader's 400 says what the bot takes
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(PNG).decode()},
    }
    with pytest.raises(GatewayError, match="cannot read images"):
        translate("nova-micro", user([image, {"type": "text", "text": "what is it"}]))


def test_metadata_user_id_becomes_request_metadata_and_count_tokens_needs_no_max_tokens() -> None:
    # GIVEN a user id WHEN translated THEN Bedrock's requestMetadata carries it
    request = translate("nova-lite", {**user("hi"), "metadata": {"user_id": "user-42"}}).request
    assert request["requestMetadata"] == {"user_id": "user-42"}
    # AND a count-tokens body (no max_tokens) translates without inferenceConfig
    counted = translate("nova-lite", {"messages": [{"role": "user", "content": "hi"}]}, CountTokensRequest).request
    assert "inferenceConfig" not in counted and counted["messages"] == [{"role": "user", "content": [{"text": "hi"}]}]


# ---------------------------------------------------------------- answers


async def _events(items: Sequence[Event]) -> AsyncIterator[Event]:
    for item in items:
        yield item


def finished(stop: str, **fields: Any) -> Finished:
    return Finished(stop, Usage(10, 5, 3, 2), 7, None, 0.0, **fields)


def frames(items: Sequence[Event], stops: Sequence[str] = ()) -> list[tuple[str, dict[str, Any]]]:
    async def collect() -> list[tuple[str, dict[str, Any]]]:
        return [frame async for frame in message_events(_events(items), "bot", stops)]

    return asyncio.run(collect())


ANSWER: list[Event] = [
    ReasoningDelta("let me "),
    ReasoningDelta("think"),
    ThinkingBlock("let me think", "sig-1"),
    TextDelta("Calling."),
    ToolCallStart(0, "tu_1", "get_weather"),
    ToolCallDelta(0, '{"city": '),
    ToolCallDelta(0, '"Oslo"}'),
    finished("tool_use"),
]


def test_answer_events_become_anthropic_stream_events_block_by_block() -> None:
    # GIVEN reasoning, its signed block, text and a tool call WHEN streamed as Anthropic events
    names = [(name, data.get("index"), (data.get("delta") or {}).get("type")) for name, data in frames(ANSWER)]
    # THEN each block opens, streams its deltas and closes in order, then the stop reason and usage come
    assert names == [
        ("message_start", None, None),
        ("ping", None, None),
        ("content_block_start", 0, None),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, None),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, None),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]


def test_the_answer_without_streaming_is_the_events_folded() -> None:
    # GIVEN the same answer WHEN folded into one message
    message = asyncio.run(message_body(_events(ANSWER), "bot"))
    # THEN its blocks, stop reason and usage (Converse's, cache writes as cache creation) are Anthropic's
    assert message["content"] == [
        {"type": "thinking", "thinking": "let me think", "signature": "sig-1"},
        {"type": "text", "text": "Calling."},
        {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {"city": "Oslo"}},
    ]
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None
    assert message["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 3,
    }


def test_redacted_thinking_is_its_own_block_with_the_data() -> None:
    # GIVEN a redacted reasoning block WHEN folded THEN it is a redacted_thinking block with the base64 data
    message = asyncio.run(
        message_body(_events([ThinkingBlock(redacted=b"xyz"), TextDelta("hi"), finished("end_turn")]), "bot")
    )
    assert message["content"][0] == {"type": "redacted_thinking", "data": base64.b64encode(b"xyz").decode()}


@pytest.mark.parametrize(
    ("stop", "fields", "stops", "reason", "sequence"),
    [
        ("stop_sequence", {"response_fields": {"stop_sequence": "END"}}, ["STOP", "END"], "stop_sequence", "END"),
        ("stop_sequence", {}, ["END"], "stop_sequence", "END"),
        ("stop_sequence", {}, ["A", "B"], "stop_sequence", None),
        ("content_filtered", {}, [], "refusal", None),
        ("model_context_window_exceeded", {}, [], "model_context_window_exceeded", None),
        ("max_tokens", {}, [], "max_tokens", None),
    ],
)
def test_stop_reasons_map_to_anthropics(
    stop: str, fields: dict[str, Any], stops: list[str], reason: str, sequence: str | None
) -> None:
    # GIVEN an answer ending with a Converse stop reason WHEN it ends THEN message_delta carries Anthropic's
    delta = frames([TextDelta("x"), finished(stop, **fields)], stops)[-2][1]["delta"]
    assert delta == {"stop_reason": reason, "stop_sequence": sequence}


def test_a_malformed_answer_is_an_error_event_when_streaming_and_an_error_otherwise() -> None:
    # GIVEN a malformed tool use WHEN streamed THEN an api_error event ends it (no message_stop)
    streamed = frames([finished("malformed_tool_use")])
    assert streamed[-1] == (
        "error",
        {"type": "error", "error": {"type": "api_error", "message": streamed[-1][1]["error"]["message"]}},
    )
    # AND without streaming the error is raised (an HTTP error for the route)
    with pytest.raises(GatewayError):
        asyncio.run(message_body(_events([finished("malformed_tool_use")]), "bot"))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, (400, "invalid_request_error")),
        (422, (400, "invalid_request_error")),
        (401, (401, "authentication_error")),
        (403, (403, "permission_error")),
        (404, (404, "not_found_error")),
        (413, (413, "request_too_large")),
        (429, (429, "rate_limit_error")),
        (500, (500, "api_error")),
        (502, (500, "api_error")),
        (503, (529, "overloaded_error")),
        (408, (408, "invalid_request_error")),
    ],
)
def test_gateway_statuses_map_to_anthropic_error_types(status: int, expected: tuple[int, str]) -> None:
    # GIVEN a gateway status WHEN answered on the Anthropic routes THEN it has Anthropic's status and type
    assert error_type(status) == expected
