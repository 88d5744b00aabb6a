"""Pure tool-use translation both ways (OpenAI/Poe <-> Converse), reasoning_effort budgets, text parameter controls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import fastapi_poe as fp
import pytest

from lambdas.gateway.app import PoeRequest, openai_chunks, openai_completion
from lambdas.gateway.config import BotConfig, load_bots
from lambdas.gateway.errors import GatewayError
from lambdas.gateway.events import Event, Finished, ReasoningDelta, TextDelta, ToolCallDelta, ToolCallStart
from lambdas.gateway.factory import TextBot, TextStream, _replay
from lambdas.gateway.openai_chat import OpenAIChatRequest
from lambdas.gateway.parameters import apply_text_parameters, effort_budget, text_parameter_controls
from lambdas.gateway.tokens import estimate_tokens
from lambdas.gateway.tools import ToolCall, ToolResult
from lambdas.gateway.translate import (
    ChatMessage,
    ChatRequest,
    ThinkingBlock,
    Usage,
    continues_tool_loop,
    converse_request,
    thinking_off_reason,
)

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL: Any = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}


def parse_call() -> ToolCall:
    return ToolCall("call_1", "get_weather", '{"city": "Oslo"}')


def bot(**fields: Any) -> BotConfig:
    return BotConfig.model_validate({"name": "b", "model_id": HAIKU, "capabilities": {"tools": True}, **fields})


def openai_chat(messages: list[Any], **fields: Any) -> ChatRequest:
    return OpenAIChatRequest.model_validate({"model": "b", "messages": messages, **fields}).chat()


# ---------------------------------------------------------------- request: OpenAI / Poe -> Converse


def test_openai_tools_become_a_converse_tool_config() -> None:
    # GIVEN an OpenAI request with a tool and no tool_choice
    chat = openai_chat([{"role": "user", "content": "Oslo?"}], tools=[WEATHER])
    # WHEN it is translated
    config = converse_request(bot(), chat)["toolConfig"]
    # THEN the tool is a toolSpec with its JSON schema, and auto (Converse's default) sends no toolChoice
    assert config == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},
                }
            }
        ]
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", None),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_maps_to_converse(choice: Any, expected: dict[str, Any] | None) -> None:
    chat = openai_chat([{"role": "user", "content": "x"}], tools=[WEATHER], tool_choice=choice)
    assert converse_request(bot(), chat)["toolConfig"].get("toolChoice") == expected


def test_tool_calls_and_results_become_tool_blocks_with_results_merged() -> None:
    # GIVEN an assistant turn with text and two calls, then the two tool results
    second = {**CALL, "id": "call_2"}
    messages = [
        {"role": "user", "content": "Oslo and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [CALL, second]},
        {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "warm"}]},
    ]
    # WHEN it is translated
    converse = converse_request(bot(), openai_chat(messages, tools=[WEATHER]))["messages"]
    # THEN the calls are toolUse blocks after the text, and both results share one user message
    assert converse[1] == {
        "role": "assistant",
        "content": [
            {"text": "Checking."},
            {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}},
            {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {"city": "Oslo"}}},
        ],
    }
    assert converse[2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": "cold"}]}},
            {"toolResult": {"toolUseId": "call_2", "content": [{"text": "warm"}]}},
        ],
    }


def test_without_a_tool_config_the_tool_history_is_text() -> None:
    # GIVEN a tool history and tool_choice "none"
    messages = [
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": ""},
    ]
    request = converse_request(bot(), openai_chat(messages, tools=[WEATHER], tool_choice="none"))
    # THEN there is no toolConfig and no tool block (Converse would refuse them), only text
    assert "toolConfig" not in request
    assert [list(block) for m in request["messages"] for block in m["content"]] == [["text"]] * 3
    assert request["messages"][2]["content"][0]["text"] == "[result of tool call call_1]: (no output)"


def test_poe_tool_fields_follow_the_query() -> None:
    # GIVEN a Poe follow-up query as fastapi_poe's tool loop sends it
    body = PoeRequest.model_validate(
        {
            "type": "query",
            "query": [{"role": "user", "content": "Oslo?"}],
            "tools": [WEATHER],
            "tool_calls": [CALL],
            "tool_results": [{"role": "tool", "name": "get_weather", "tool_call_id": "call_1", "content": '"cold"'}],
        }
    )
    # WHEN it is translated THEN the calls and their results come after the query
    messages = converse_request(bot(), body.chat())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[2]["content"][0]["toolResult"]["toolUseId"] == "call_1"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tools": [{"type": "code_interpreter"}]}, "only tools of type 'function'"),
        ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]}, "1 to 64"),
        ({"tools": [WEATHER, WEATHER]}, "used twice"),
        ({"tool_choice": "required"}, "needs 'tools'"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "f"}}}, "not in 'tools'"),
    ],
)
def test_bad_tool_fields_are_400s(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(GatewayError) as error:
        openai_chat([{"role": "user", "content": "x"}], **fields)
    assert error.value.status == 400 and expected in error.value.message


def test_a_tool_message_needs_its_call_id() -> None:
    with pytest.raises(GatewayError) as error:
        openai_chat([{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}])
    assert "tool_call_id" in error.value.message


def test_tools_on_a_bot_without_tool_use_name_the_field_the_bot_and_the_fix() -> None:
    chat = openai_chat([{"role": "user", "content": "x"}], tools=[WEATHER])
    with pytest.raises(GatewayError) as error:
        apply_text_parameters(bot(capabilities={}), chat)
    assert error.value.code == "tools_not_supported"
    assert all(word in error.value.message for word in ("'tools'", "Bot 'b'", "capabilities.tools"))


# ---------------------------------------------------------------- answer: Converse -> OpenAI


class _Bot:
    """What TextStream needs of a TextBot."""

    config = bot()

    def failed(self, error: BaseException) -> GatewayError:
        raise error

    def finish(self, stop_reason: str | None, metadata: Mapping[str, Any], *_: Any) -> Finished:
        return Finished(stop_reason, Usage(), None, None, 0.0)


async def _events(items: list[Any]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


def stream_of(events: list[Any]) -> TextStream:
    return TextStream(cast(TextBot, _Bot()), _events(events))


async def _collect(stream: TextStream) -> list[Event]:
    return [event async for event in stream]


def test_converse_stream_tool_use_becomes_tool_call_events() -> None:
    # GIVEN ConverseStream events: text, then a toolUse block whose input arrives in two pieces
    start = {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}
    events = [
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}},
        {"contentBlockStart": {"contentBlockIndex": 1, "start": start}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}}},
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Oslo"}'}}}},
        {"messageStop": {"stopReason": "tool_use"}},
    ]
    # WHEN the stream is read THEN the call is announced and its argument pieces follow, indexed from 0
    out = asyncio.run(_collect(stream_of(events)))
    assert out[:4] == [
        TextDelta("Let me check."),
        ToolCallStart(0, "tooluse_1", "get_weather"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Oslo"}'),
    ]


def test_a_converse_answer_with_tool_use_replays_as_stream_events() -> None:
    # GIVEN a (not streamed) Converse answer with a toolUse block
    response = {
        "output": {"message": {"content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}]}},
        "stopReason": "tool_use",
    }
    # WHEN it is replayed and read THEN it gives the same events as a stream would
    out = asyncio.run(_collect(TextStream(cast(TextBot, _Bot()), _replay(response))))
    assert out[:2] == [ToolCallStart(0, "t1", "f"), ToolCallDelta(0, '{"a": 1}')]


async def _answer(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event


TOOL_ANSWER: list[Event] = [
    ToolCallStart(0, "t1", "get_weather"),
    ToolCallDelta(0, '{"city":'),
    ToolCallDelta(0, ' "Oslo"}'),
    Finished("tool_use", Usage(), None, None, 0.0),
]


def test_tool_calls_as_openai_chunks() -> None:
    async def chunks() -> list[Any]:
        return [chunk async for chunk in openai_chunks(_answer(TOOL_ANSWER), "b", False)]

    body = [json.loads(line[len(b"data: ") :]) for line in asyncio.run(chunks())[:-1]]
    deltas = [c["choices"][0]["delta"] for c in body]
    assert deltas[1] == {
        "tool_calls": [
            {"index": 0, "id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        ]
    }
    assert deltas[2] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}
    assert body[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_calls_in_an_openai_completion() -> None:
    response = asyncio.run(openai_completion(_answer(TOOL_ANSWER), "b"))
    message = json.loads(bytes(response.body))["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    ]


# ---------------------------------------------------------------- reasoning_effort and text parameter controls


@pytest.mark.parametrize(
    ("effort", "answer_tokens", "budget"),
    [("none", 4096, 0), ("minimal", 4096, 1024), ("low", 4096, 1024), ("medium", 4096, 2048), ("high", 4096, 3072)],
)
def test_reasoning_effort_budgets_leave_room_for_the_answer(effort: str, answer_tokens: int, budget: int) -> None:
    assert effort_budget(effort, answer_tokens) == budget


def test_reasoning_effort_sets_the_thinking_budget_or_turns_thinking_off() -> None:
    # GIVEN the shipped Claude thinking bot
    thinking = load_bots()["claude-3.7-sonnet-thinking"]
    messages = (ChatMessage("user", "hi"),)
    # WHEN reasoning_effort is "medium" THEN the thinking budget is half the answer's max tokens
    medium = converse_request(
        thinking, apply_text_parameters(thinking, ChatRequest(messages, reasoning_effort="medium"))
    )
    assert medium["additionalModelRequestFields"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    # AND "none" sends no thinking at all
    off = converse_request(thinking, apply_text_parameters(thinking, ChatRequest(messages, reasoning_effort="none")))
    assert "thinking" not in off.get("additionalModelRequestFields", {})


def test_reasoning_effort_and_thinking_budget_together_are_a_400() -> None:
    thinking = load_bots()["claude-3.7-sonnet-thinking"]
    chat = ChatRequest((ChatMessage("user", "hi"),), reasoning_effort="low", parameters={"thinking_budget": 2048})
    with pytest.raises(GatewayError, match="either 'reasoning_effort' or 'thinking_budget'"):
        apply_text_parameters(thinking, chat)


def test_text_parameter_controls_validate_as_poe_settings() -> None:
    # GIVEN every shipped text bot WHEN its controls are built THEN Poe's own types accept them
    for config in load_bots().values():
        if config.modality == "text":
            fp.SettingsResponse.model_validate({"parameter_controls": text_parameter_controls(config)})
    # AND a bot's own temperature is the control's default
    controls = text_parameter_controls(bot(inference={"temperature": 0.3, "max_tokens": 512}))["sections"][0][
        "controls"
    ]
    assert controls[0]["default_value"] == 0.3 and controls[1]["max_value"] == 512


def test_the_token_estimate_counts_tools_calls_and_results() -> None:
    # GIVEN the same question with and without a tool, a call and its result
    plain = converse_request(bot(), openai_chat([{"role": "user", "content": "Oslo?"}]))
    messages = [
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "cold and windy all week"},
    ]
    with_tools = converse_request(bot(), openai_chat(messages, tools=[WEATHER]))
    # WHEN both are estimated THEN the tool parts count
    assert estimate_tokens(with_tools) > estimate_tokens(plain) + 20


# ---------------------------------------------------------------- Claude thinking with tools

THINKING_BOT = "claude-3.7-sonnet-thinking"
LOOP: list[Any] = [
    {"role": "user", "content": "Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
]


def thinking_request(messages: list[Any], **fields: Any) -> dict[str, Any]:
    thinking = load_bots()[THINKING_BOT]
    return converse_request(thinking, apply_text_parameters(thinking, openai_chat(messages, **fields)))


def test_the_shipped_thinking_bot_has_tool_use() -> None:
    assert load_bots()[THINKING_BOT].capabilities.tools


def test_a_new_turn_keeps_thinking_with_tools_and_leaves_temperature_to_claude() -> None:
    # GIVEN the thinking bot, tools and a temperature WHEN a new turn starts (no tool results pending)
    request = thinking_request([{"role": "user", "content": "Oslo?"}], tools=[WEATHER], temperature=0.2, top_p=0.5)
    # THEN thinking stays on beside the tools, and the temperature and topP thinking refuses are not sent
    assert request["additionalModelRequestFields"]["thinking"]["type"] == "enabled"
    assert request["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
    assert "temperature" not in request["inferenceConfig"] and "topP" not in request["inferenceConfig"]
    # AND the values thinking accepts stay
    kept = thinking_request([{"role": "user", "content": "x"}], tools=[WEATHER], temperature=1.0, top_p=0.96)
    assert kept["inferenceConfig"]["temperature"] == 1.0 and kept["inferenceConfig"]["topP"] == 0.96


def test_continuing_a_tool_loop_turns_thinking_off_and_the_temperature_applies() -> None:
    # GIVEN the thinking bot's earlier tool call and its result, sent back without its thinking_blocks
    request = thinking_request(LOOP, tools=[WEATHER], temperature=0.2)
    # THEN thinking is off for this request, the tool blocks go as such, and the request's temperature applies
    assert "thinking" not in request.get("additionalModelRequestFields", {})
    assert [list(block) for block in request["messages"][1]["content"]] == [["toolUse"]]
    assert request["inferenceConfig"]["temperature"] == 0.2
    thinking = load_bots()[THINKING_BOT]
    reason = thinking_off_reason(thinking, openai_chat(LOOP, tools=[WEATHER]))
    assert reason is not None and "tool loop" in reason


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}], ids=["required", "named"]
)
def test_a_forced_tool_choice_turns_thinking_off(choice: Any) -> None:
    request = thinking_request([{"role": "user", "content": "Oslo?"}], tools=[WEATHER], tool_choice=choice)
    assert "thinking" not in request.get("additionalModelRequestFields", {}) and "toolChoice" in request["toolConfig"]


def test_thinking_stays_when_the_tool_history_goes_as_text() -> None:
    # GIVEN a tool loop sent with tool_choice "none" (no toolConfig: calls and results become text)
    request = thinking_request(LOOP, tools=[WEATHER], tool_choice="none")
    # THEN there are no tool blocks for thinking to conflict with, so it stays on
    assert "toolConfig" not in request and request["additionalModelRequestFields"]["thinking"]["type"] == "enabled"


def test_a_bot_without_thinking_is_not_touched() -> None:
    request = converse_request(bot(), openai_chat(LOOP, tools=[WEATHER], temperature=0.2))
    assert "additionalModelRequestFields" not in request and request["inferenceConfig"]["temperature"] == 0.2
    assert thinking_off_reason(bot(), openai_chat(LOOP, tools=[WEATHER])) is None


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([ChatMessage("user", "hi")], False),
        (
            [ChatMessage("user", "hi"), ChatMessage("assistant", "", tool_calls=(parse_call(),))],
            True,
        ),
        (
            [
                ChatMessage("user", "hi"),
                ChatMessage("assistant", "", tool_calls=(parse_call(),)),
                ChatMessage("user", "", tool_results=(ToolResult("call_1", "rain"),)),
                ChatMessage("system", "be brief"),
            ],
            True,
        ),
        (
            [
                ChatMessage("user", "hi"),
                ChatMessage("assistant", "", tool_calls=(parse_call(),)),
                ChatMessage("user", "", tool_results=(ToolResult("call_1", "rain"),)),
                ChatMessage("assistant", "It rains."),
                ChatMessage("user", "And tomorrow?"),
            ],
            False,
        ),
    ],
    ids=["plain", "calls-pending", "results-after-calls", "loop-finished"],
)
def test_continues_tool_loop(messages: list[ChatMessage], expected: bool) -> None:
    assert continues_tool_loop(messages) is expected


# ---------------------------------------------------------------- signed thinking blocks (LiteLLM's thinking_blocks)

SIGNED: Any = {"type": "thinking", "thinking": "Look up Oslo.", "signature": "c2lnbmVk"}
REDACTED: Any = {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}  # base64 of b"encrypted"
SIGNED_BLOCK = {"reasoningContent": {"reasoningText": {"text": "Look up Oslo.", "signature": "c2lnbmVk"}}}
REDACTED_BLOCK = {"reasoningContent": {"redactedContent": b"encrypted"}}


def loop_with(thinking_blocks: list[Any]) -> list[Any]:
    """LOOP with the assistant message sent back as the answer gave it (its thinking_blocks included)."""
    return [LOOP[0], {**LOOP[1], "thinking_blocks": thinking_blocks}, LOOP[2]]


def test_thinking_blocks_sent_back_keep_thinking_on_in_a_tool_loop() -> None:
    # GIVEN the thinking bot's tool loop whose assistant message carries its signed and redacted thinking blocks
    request = thinking_request(loop_with([SIGNED, REDACTED]), tools=[WEATHER], temperature=0.2)
    # THEN thinking stays on, and the blocks open that assistant turn as Converse reasoningContent, in order
    assert request["additionalModelRequestFields"]["thinking"]["type"] == "enabled"
    assert request["messages"][1]["content"] == [SIGNED_BLOCK, REDACTED_BLOCK, {"toolUse": ANY_TOOL_USE}]
    # AND the temperature thinking refuses is left out, as on a new turn
    assert "temperature" not in request["inferenceConfig"]
    thinking = load_bots()[THINKING_BOT]
    assert thinking_off_reason(thinking, openai_chat(loop_with([SIGNED]), tools=[WEATHER])) is None


ANY_TOOL_USE = {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}


def test_thinking_blocks_open_the_turn_when_assistant_messages_merge() -> None:
    # GIVEN two assistant messages in a row, the second (the tool call) with its thinking block
    messages = [
        LOOP[0],
        {"role": "assistant", "content": "Let me check."},
        {**LOOP[1], "thinking_blocks": [SIGNED]},
        LOOP[2],
    ]
    # WHEN they merge into one Converse turn THEN the reasoning block still comes first
    content = thinking_request(messages, tools=[WEATHER])["messages"][1]["content"]
    assert [next(iter(block)) for block in content] == ["reasoningContent", "text", "toolUse"]


def test_a_tool_loop_opened_without_thinking_blocks_still_turns_thinking_off() -> None:
    # GIVEN a loop whose first assistant message lost its thinking blocks (a later one kept them)
    messages = [
        *LOOP,
        {**LOOP[1], "tool_calls": [{**CALL, "id": "call_2"}], "thinking_blocks": [SIGNED]},
        {"role": "tool", "tool_call_id": "call_2", "content": "snow"},
    ]
    # THEN Claude could not take the turn with thinking: it is off, and no reasoning block is sent
    request = thinking_request(messages, tools=[WEATHER])
    assert "thinking" not in request.get("additionalModelRequestFields", {})
    assert not [b for m in request["messages"] for b in m["content"] if "reasoningContent" in b]
    reason = thinking_off_reason(load_bots()[THINKING_BOT], openai_chat(messages, tools=[WEATHER]))
    assert reason is not None and "thinking_blocks" in reason


@pytest.mark.parametrize(
    "fields",
    [{"reasoning_effort": "none"}, {"tool_choice": "required"}],
    ids=["reasoning-effort-none", "forced-tool-choice"],
)
def test_thinking_blocks_are_not_sent_when_thinking_is_off(fields: dict[str, Any]) -> None:
    # GIVEN thinking blocks sent back on a request that goes without thinking
    request = thinking_request(loop_with([SIGNED]), tools=[WEATHER], **fields)
    # THEN the turn holds no reasoning block (a turn without thinking must hold none)
    assert "thinking" not in request.get("additionalModelRequestFields", {})
    assert [next(iter(block)) for block in request["messages"][1]["content"]] == ["toolUse"]
    # AND a bot without thinking never sends them
    plain = converse_request(bot(), openai_chat(loop_with([SIGNED]), tools=[WEATHER]))
    assert [next(iter(block)) for block in plain["messages"][1]["content"]] == ["toolUse"]


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ([{"type": "thinking", "thinking": "x"}], "thinking_blocks[0] needs its 'thinking' text and 'signature'"),
        ([{"type": "redacted_thinking", "data": "not base64!"}], "thinking_blocks[0] needs its 'data' (base64)"),
        ([SIGNED, {"type": "reasoning"}], "thinking_blocks[1] must have type 'thinking' or 'redacted_thinking'"),
        (["text"], "thinking_blocks[0] must have type"),
    ],
    ids=["no-signature", "bad-data", "bad-type", "not-an-object"],
)
def test_malformed_thinking_blocks_are_a_400(blocks: list[Any], expected: str) -> None:
    with pytest.raises(GatewayError) as error:
        openai_chat(loop_with(blocks), tools=[WEATHER])
    assert error.value.status == 400 and error.value.code == "invalid_thinking_blocks"
    assert expected in error.value.message


class _ReasoningBot(_Bot):
    config = bot(capabilities={"tools": True, "reasoning": True})


def reasoning_stream(events: AsyncIterator[dict[str, Any]]) -> TextStream:
    return TextStream(cast(TextBot, _ReasoningBot()), events)


def test_converse_stream_reasoning_becomes_a_signed_thinking_block() -> None:
    # GIVEN ConverseStream reasoning as Bedrock delivers it: text pieces, then the signature, then the block's end;
    # then a redacted block, then a tool call
    def delta(index: int, reasoning: dict[str, Any]) -> dict[str, Any]:
        return {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"reasoningContent": reasoning}}}

    events = [
        delta(0, {"text": "Look up "}),
        delta(0, {"text": "Oslo."}),
        delta(0, {"signature": "c2lnbmVk"}),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        delta(1, {"redactedContent": b"encrypted"}),
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {"contentBlockStart": {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}},
        {"messageStop": {"stopReason": "tool_use"}},
    ]
    # WHEN the stream is read THEN the reasoning streams, and each block follows once complete, with its signature
    out = asyncio.run(_collect(reasoning_stream(_events(events))))
    assert out[:5] == [
        ReasoningDelta("Look up "),
        ReasoningDelta("Oslo."),
        ThinkingBlock("Look up Oslo.", "c2lnbmVk"),
        ThinkingBlock(redacted=b"encrypted"),
        ToolCallStart(0, "t1", "f"),
    ]
    # AND a bot that does not show reasoning gives neither
    assert not [e for e in asyncio.run(_collect(stream_of(events))) if isinstance(e, ReasoningDelta | ThinkingBlock)]


def test_a_converse_answer_with_reasoning_replays_its_thinking_blocks() -> None:
    # GIVEN a (not streamed) Converse answer: a signed reasoning block, a redacted one, then text
    content = [SIGNED_BLOCK, REDACTED_BLOCK, {"text": "Hi"}]
    response = {"output": {"message": {"content": content}}, "stopReason": "end_turn"}
    # WHEN it is replayed and read THEN the blocks come as a stream would give them
    out = asyncio.run(_collect(reasoning_stream(_replay(response))))
    assert out[:4] == [
        ReasoningDelta("Look up Oslo."),
        ThinkingBlock("Look up Oslo.", "c2lnbmVk"),
        ThinkingBlock(redacted=b"encrypted"),
        TextDelta("Hi"),
    ]


THINKING_ANSWER: list[Event] = [
    ReasoningDelta("Look up Oslo."),
    ThinkingBlock("Look up Oslo.", "c2lnbmVk"),
    ThinkingBlock(redacted=b"encrypted"),
    *TOOL_ANSWER,
]


def test_thinking_blocks_as_openai_chunks_and_in_an_openai_completion() -> None:
    # GIVEN an answer with reasoning, its signed and redacted blocks and a tool call
    async def chunks() -> list[Any]:
        return [chunk async for chunk in openai_chunks(_answer(THINKING_ANSWER), "b", False)]

    # WHEN streamed THEN each complete block is a delta.thinking_blocks chunk after the reasoning_content
    deltas = [json.loads(line[len(b"data: ") :])["choices"][0]["delta"] for line in asyncio.run(chunks())[:-1]]
    assert deltas[1:4] == [
        {"reasoning_content": "Look up Oslo."},
        {"thinking_blocks": [SIGNED]},
        {"thinking_blocks": [REDACTED]},
    ]
    # WHEN not streamed THEN the message carries them beside reasoning_content (LiteLLM's shape)
    response = asyncio.run(openai_completion(_answer(THINKING_ANSWER), "b"))
    message = json.loads(bytes(response.body))["choices"][0]["message"]
    assert message["reasoning_content"] == "Look up Oslo." and message["thinking_blocks"] == [SIGNED, REDACTED]
    # AND sent back as they came, they parse to the same blocks
    chat = openai_chat(loop_with(message["thinking_blocks"]), tools=[WEATHER])
    assert chat.messages[1].thinking == (
        ThinkingBlock("Look up Oslo.", "c2lnbmVk"),
        ThinkingBlock(redacted=b"encrypted"),
    )
