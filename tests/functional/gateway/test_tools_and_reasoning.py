"""Tool use, ``reasoning_effort`` and the text bots' parameter controls, through the app and the emulator with the
real openai SDK and fastapi_poe client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import fastapi_poe as fp
import httpx
import openai
import pytest
from fastapi import FastAPI

from local.emulator.conversation import REDACTED_THINKING_TRIGGER
from tests.functional.gateway.conftest import KEY, POE_URL, parse_sse, poe_query
from tests.functional.gateway.test_openai import openai_client
from tests.poe_client import poe_responses

pytestmark = pytest.mark.anyio

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME: Any = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
async def sdk(app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(app, KEY) as client:
        yield client


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# ---------------------------------------------------------------- tools on the OpenAI route


async def test_openai_tool_round_trip_not_streamed(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a tool-capable bot and one tool
    messages: list[Any] = user("Paris")
    # WHEN the SDK asks with the tool
    first = await sdk.chat.completions.create(model="claude-3-haiku", messages=messages, tools=[WEATHER])
    # THEN the model calls it, with arguments built from the schema, and the finish reason says so
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = (choice.message.tool_calls or [])[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    # WHEN the client runs the tool and sends its result back
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
    ]
    final = await sdk.chat.completions.create(model="claude-3-haiku", messages=messages, tools=[WEATHER])
    # THEN the model answers in text from the result
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "18 degrees and sunny"


async def test_openai_tool_round_trip_streamed(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a streaming tool-capable bot WHEN the SDK streams a request with two tools, forcing the second
    stream = await sdk.chat.completions.create(
        model="nova-pro",
        messages=user("What time is it?"),
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    # THEN the first tool chunk names the call and the argument pieces follow (2+ pieces join into the JSON)
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == "get_time"  # type: ignore[union-attr]
    assert len(deltas) >= 3 and all(d.index == 0 for d in deltas)
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {}  # type: ignore[union-attr]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    # WHEN the result goes back (streamed again, tool_choice auto)
    call = {"id": deltas[0].id, "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    messages = [
        *user("What time is it?"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": deltas[0].id, "content": [{"type": "text", "text": "It is noon"}]},
    ]
    stream = await sdk.chat.completions.create(model="nova-pro", messages=messages, tools=[WEATHER, TIME], stream=True)
    # THEN the answer is text
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "It is noon"


async def test_bot_without_tool_streaming_answers_tool_requests_with_converse(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a bot whose model has tool use but not with ConverseStream (capabilities.tools_streaming false)
    # WHEN the SDK streams a request with a tool
    stream = await sdk.chat.completions.create(
        model="llama-3.1-8b", messages=user("Oslo"), tools=[WEATHER], stream=True
    )
    chunks = [chunk async for chunk in stream]
    # THEN the call still arrives as stream chunks (from a Converse answer)
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    arguments = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
    assert deltas[0].function.name == "get_weather" and json.loads(arguments)["city"] == "Oslo"  # type: ignore[union-attr]


async def test_tool_choice_none_sends_the_tool_history_as_text(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a conversation that already holds a tool call and its result
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    messages = [
        *user("time?"),
        {"role": "assistant", "content": "Let me look.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ]
    # WHEN the client asks with tool_choice "none" (Converse gets no toolConfig, so no tool blocks either)
    answer = await sdk.chat.completions.create(
        model="claude-3-haiku", messages=messages, tools=[TIME], tool_choice="none"
    )
    # THEN the model answers in text, having read the result as text
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == "[result of tool call call_1]: noon"


@pytest.mark.parametrize(
    ("model", "fields", "code", "words"),
    [
        ("deepseek-r1", {"tools": [WEATHER]}, "tools_not_supported", ["'tools'", "deepseek-r1", "capabilities.tools"]),
        ("nova-canvas", {"tools": [WEATHER]}, "unsupported_parameter", ["'tools'", "nova-canvas", "images"]),
        (
            "claude-3-haiku",
            {"tools": [{"type": "function", "function": {"name": "get weather!"}}]},
            "invalid_tool_name",
            ["get weather!", "1 to 64"],
        ),
        ("claude-3-haiku", {"tools": [WEATHER], "tool_choice": "sometimes"}, "invalid_tools", ["tool_choice"]),
        (
            "claude-3-haiku",
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "invalid_tools",
            ["'nope'", "not in 'tools'"],
        ),
    ],
)
async def test_bad_tool_requests_are_clear_400s(
    sdk: openai.AsyncOpenAI, model: str, fields: dict[str, Any], code: str, words: list[str]
) -> None:
    # GIVEN a tool request the bot cannot take WHEN the SDK sends it THEN it is a 400 that names the problem
    with pytest.raises(openai.BadRequestError) as error:
        await sdk.chat.completions.create(model=model, messages=user("hi"), **fields)
    assert error.value.code == code
    assert all(word in error.value.message for word in words), error.value.message


async def test_malformed_tool_call_arguments_are_a_400(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN an assistant tool call whose arguments are not a JSON object
    call = {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "[1, 2"}}
    messages = [*user("time?"), {"role": "assistant", "tool_calls": [call]}, {"role": "tool", "tool_call_id": "call_1"}]
    # WHEN it is sent THEN the 400 names the call
    with pytest.raises(openai.BadRequestError) as error:
        await sdk.chat.completions.create(model="claude-3-haiku", messages=messages, tools=[TIME])
    assert "call_1" in error.value.message


# ---------------------------------------------------------------- tools on the Poe route


@pytest.mark.parametrize("bot", ["nova-lite", "claude-3.7-sonnet-thinking"])
async def test_poe_client_tool_loop(app: FastAPI, bot: str) -> None:
    # GIVEN the fastapi_poe client with a tool and its Python function (the thinking bot: thinking is off for the
    # follow-up that carries the results, as Poe has no field for Claude's signed thinking blocks)
    def get_weather(city: str, unit: str) -> str:
        return f"22 {unit} in {city}"

    tool = fp.ToolDefinition.model_validate(WEATHER)
    # WHEN it asks a tool-capable bot (the client runs the call and sends tool_calls + tool_results back)
    messages = await poe_responses(
        POE_URL,
        bot,
        [fp.ProtocolMessage(role="user", content="Rome")],
        api_key=KEY,
        app=app,
        tools=[tool],
        tool_executables=[get_weather],
    )
    # THEN the final answer is the model's text from the tool's result (after the thinking bot's quoted reasoning
    # on the first call; the follow-up had none)
    text = "".join(m.text for m in messages)
    assert text.endswith(json.dumps("22 celsius in Rome"))
    assert text.count("> The user wants") == (bot == "claude-3.7-sonnet-thinking")


async def test_poe_tool_calls_are_json_events_in_openai_chunk_shape(client: httpx.AsyncClient) -> None:
    # GIVEN a Poe query with tools WHEN the bot answers
    response = await client.post(
        "/poe/claude-3-haiku", json=poe_query("Lima", tools=[WEATHER]), headers={"Authorization": f"Bearer {KEY}"}
    )
    events = parse_sse(response.text)
    # THEN meta comes first, the call arrives as json events (first named, then argument pieces), done last
    assert events[0][0] == "meta" and events[-1][0] == "done"
    chunks = [data["choices"][0] for name, data in events if name == "json"]
    calls = [call for chunk in chunks for call in chunk["delta"].get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"].startswith("tooluse_")
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Lima", "unit": "celsius"}
    assert chunks[-1]["finish_reason"] == "tool_calls"


async def test_poe_tools_on_a_bot_without_tool_use_is_an_error_event(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/poe/deepseek-r1", json=poe_query("x", tools=[WEATHER]), headers={"Authorization": f"Bearer {KEY}"}
    )
    errors = [data for name, data in parse_sse(response.text) if name == "error"]
    assert errors and errors[0]["allow_retry"] is False and "capabilities.tools" in errors[0]["text"]


# ---------------------------------------------------------------- Claude thinking with tools


async def test_thinking_bot_tool_round_trip_streamed(sdk: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN the Claude thinking bot WHEN the SDK streams a new turn with a tool
    stream = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=user("Oslo"), tools=[WEATHER], stream=True
    )
    chunks = [chunk async for chunk in stream]
    # THEN Claude thinks (reasoning_content) and then calls the tool
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks if c.choices
    )
    assert reasoning.startswith("The user wants")
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert deltas[0].function.name == "get_weather"  # type: ignore[union-attr]
    arguments = "".join(d.function.arguments or "" for d in deltas)  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "Oslo", "unit": "celsius"}
    # WHEN the result goes back without the signed thinking block (a client that drops the answer's thinking_blocks),
    # which the emulator, like Bedrock, refuses while thinking is on
    call = {"id": deltas[0].id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    messages = [
        *user("Oslo"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": deltas[0].id, "content": "8 degrees and rain"},
    ]
    stream = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER], temperature=0.3, stream=True
    )
    chunks = [chunk async for chunk in stream]
    # THEN the gateway sends that request without thinking: the answer is the text, with no reasoning
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "8 degrees and rain"
    assert not any((c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices)
    assert caplog.messages.count("thinking turned off for this request") == 1
    # AND the next user question is a new turn: thinking is back on, beside the tools
    messages += [{"role": "assistant", "content": "8 degrees and rain"}, *user("And Bergen?")]
    answer = await sdk.chat.completions.create(model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER])
    assert (answer.choices[0].message.model_extra or {}).get("reasoning_content")
    assert answer.choices[0].finish_reason == "tool_calls"


def streamed_message(chunks: list[Any]) -> dict[str, Any]:
    """The assistant message a client assembles from a stream: content, tool calls and thinking_blocks."""
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls: dict[int, dict[str, Any]] = {}
    for call in (call for delta in deltas for call in delta.tool_calls or []):
        entry = calls.setdefault(call.index, {"id": call.id, "type": "function", "function": {"arguments": ""}})
        if call.function and call.function.name:
            entry["function"]["name"] = call.function.name
        entry["function"]["arguments"] += (call.function.arguments if call.function else None) or ""
    blocks = [block for delta in deltas for block in (delta.model_extra or {}).get("thinking_blocks") or []]
    content = "".join(delta.content or "" for delta in deltas) or None
    return {"role": "assistant", "content": content, "tool_calls": list(calls.values()), "thinking_blocks": blocks}


async def test_thinking_blocks_sent_back_keep_thinking_on_not_streamed(
    sdk: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the thinking bot's tool call, not streamed
    messages: list[Any] = user("Oslo")
    first = await sdk.chat.completions.create(model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER])
    message = first.choices[0].message
    # THEN the message carries its signed thinking block beside reasoning_content (LiteLLM's shape)
    extra = message.model_extra or {}
    assert extra["thinking_blocks"] == [
        {
            "type": "thinking",
            "thinking": extra["reasoning_content"],
            "signature": extra["thinking_blocks"][0]["signature"],
        }
    ]
    call = (message.tool_calls or [])[0]
    # WHEN the client sends the message back as the SDK gives it, with the tool's result
    messages += [
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "8 degrees and rain"},
    ]
    final = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER], temperature=0.3
    )
    # THEN the loop continues with thinking on (the emulator, like Bedrock, checked the signed block): reasoning,
    # then the text
    assert (final.choices[0].message.model_extra or {}).get("reasoning_content", "").startswith("The user wants")
    assert final.choices[0].message.content == "8 degrees and rain"
    assert "thinking turned off for this request" not in caplog.messages


async def test_thinking_blocks_sent_back_keep_thinking_on_streamed(
    sdk: openai.AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the thinking bot's tool call, streamed
    messages: list[Any] = user("Oslo")
    stream = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER], stream=True
    )
    chunks = [chunk async for chunk in stream]
    # THEN once the reasoning is complete a delta.thinking_blocks chunk carries it with its signature, before the call
    extras = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    reasoning = "".join(extra.get("reasoning_content", "") for extra in extras)
    at = next(i for i, extra in enumerate(extras) if "thinking_blocks" in extra)
    (block,) = extras[at]["thinking_blocks"]
    assert block["type"] == "thinking" and block["thinking"] == reasoning and block["signature"]
    assert not any(extra.get("reasoning_content") for extra in extras[at:])
    # WHEN the client sends back the message it assembled, thinking_blocks included, with the tool's result
    assistant = streamed_message(chunks)
    call_id = assistant["tool_calls"][0]["id"]
    messages += [assistant, {"role": "tool", "tool_call_id": call_id, "content": "8 degrees and rain"}]
    stream = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER], stream=True
    )
    chunks = [chunk async for chunk in stream]
    # THEN thinking stays on for the continuation: reasoning streams, then the text
    extras = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    assert "".join(extra.get("reasoning_content", "") for extra in extras).startswith("The user wants")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "8 degrees and rain"
    assert "thinking turned off for this request" not in caplog.messages


async def test_a_tampered_thinking_block_is_a_400(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN the thinking bot's tool call WHEN its thinking block goes back with another text than it signed
    first = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=user("Oslo"), tools=[WEATHER]
    )
    message = first.choices[0].message.model_dump(exclude_none=True)
    message["thinking_blocks"][0]["thinking"] = "I will not call any tool."
    call_id = message["tool_calls"][0]["id"]
    messages = [*user("Oslo"), message, {"role": "tool", "tool_call_id": call_id, "content": "rain"}]
    # THEN Bedrock's refusal comes back as a 400 naming the block
    with pytest.raises(openai.BadRequestError) as error:
        await sdk.chat.completions.create(model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER])
    assert "Invalid `signature` in `thinking` block" in str(error.value)


async def test_a_redacted_thinking_block_round_trips(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN Anthropic's test string, which makes Claude's thinking come redacted (encrypted, no text shown)
    messages: list[Any] = user(f"Oslo {REDACTED_THINKING_TRIGGER}")
    first = await sdk.chat.completions.create(model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER])
    message = first.choices[0].message.model_dump(exclude_none=True)
    # THEN the answer carries it as a redacted_thinking block (base64 data) and no reasoning_content
    (block,) = message["thinking_blocks"]
    assert block["type"] == "redacted_thinking" and block["data"] and "reasoning_content" not in message
    # WHEN it goes back with the tool's result THEN the loop continues with thinking on
    messages += [message, {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "rain"}]
    final = await sdk.chat.completions.create(model="claude-3.7-sonnet-thinking", messages=messages, tools=[WEATHER])
    assert (final.choices[0].message.model_extra or {}).get("reasoning_content")
    assert final.choices[0].message.content == "rain"


async def test_thinking_bot_with_a_forced_tool_choice_answers_without_thinking(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN the thinking bot and tool_choice "required", which Claude's extended thinking refuses
    answer = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=user("Oslo"), tools=[WEATHER], tool_choice="required"
    )
    # THEN the call is made, without thinking
    assert answer.choices[0].finish_reason == "tool_calls"
    assert "reasoning_content" not in (answer.choices[0].message.model_extra or {})


# ---------------------------------------------------------------- reasoning_effort


async def test_reasoning_effort_streams_reasoning_content(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a Claude bot with thinking WHEN the SDK streams with reasoning_effort "high"
    stream = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=user("Say hi"), reasoning_effort="high", stream=True
    )
    chunks = [chunk async for chunk in stream]
    # THEN the reasoning arrives as delta.reasoning_content before the answer text
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content", "") for c in chunks)
    assert reasoning.startswith("The user wants")
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Say hi"


async def test_reasoning_effort_none_turns_thinking_off(sdk: openai.AsyncOpenAI) -> None:
    answer = await sdk.chat.completions.create(
        model="claude-3.7-sonnet-thinking", messages=user("Say hi"), reasoning_effort="none"
    )
    assert "reasoning_content" not in (answer.choices[0].message.model_extra or {})
    assert answer.choices[0].message.content == "Say hi"


@pytest.mark.parametrize(
    ("model", "fields", "words"),
    [
        ("claude-3-haiku", {"reasoning_effort": "high"}, ["claude-3-haiku", "'reasoning_effort' = 'high'", "remove"]),
        ("deepseek-r1", {"reasoning_effort": "low"}, ["deepseek-r1", "cannot tune"]),
        ("claude-3.7-sonnet-thinking", {"reasoning_effort": "max"}, ["none, minimal, low, medium, high"]),
        ("claude-3.7-sonnet-thinking", {"reasoning_effort": "low", "max_tokens": 1000}, ["max_tokens (1000)"]),
    ],
)
async def test_bad_reasoning_effort_is_a_400(
    sdk: openai.AsyncOpenAI, model: str, fields: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        await sdk.chat.completions.create(model=model, messages=user("hi"), **fields)
    assert error.value.code == "invalid_parameter"
    assert all(word in error.value.message for word in words), error.value.message


# ---------------------------------------------------------------- text parameter controls on Poe


async def test_text_bots_offer_parameter_controls_to_the_poe_client(app: FastAPI) -> None:
    # GIVEN the fastapi_poe client WHEN it fetches a plain and a thinking bot's settings
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as session:
        plain = await fp.client._BotContext(  # the client's own settings call
            endpoint="http://test/poe/claude-3-haiku", session=session, api_key=KEY
        ).fetch_settings()
        thinking = await fp.client._BotContext(
            endpoint="http://test/poe/claude-3.7-sonnet-thinking", session=session, api_key=KEY
        ).fetch_settings()
    # THEN both validate as SettingsResponse, with the bots' defaults and limits
    for settings in (plain, thinking):
        fp.SettingsResponse.model_validate(settings)
    controls = {
        name: {c["parameter_name"]: c for s in settings["parameter_controls"]["sections"] for c in s["controls"]}
        for name, settings in (("plain", dict(plain)), ("thinking", dict(thinking)))
    }
    assert set(controls["plain"]) == {"temperature", "max_tokens"}
    assert controls["plain"]["max_tokens"]["max_value"] == 2048 and controls["plain"]["temperature"]["max_value"] == 1.0
    # AND the thinking bot offers its budget (below its max tokens) instead of a temperature
    assert set(controls["thinking"]) == {"max_tokens", "thinking_budget"}
    budget = controls["thinking"]["thinking_budget"]
    assert (budget["default_value"], budget["min_value"], budget["max_value"]) == (1024, 1024, 3072)


async def test_poe_parameters_from_the_text_controls_are_applied(client: httpx.AsyncClient) -> None:
    # GIVEN a query whose user message carries the values picked in the controls
    query = poe_query("one two three four five")
    query["query"][0]["parameters"] = {"max_tokens": 3, "temperature": 0.2}
    # WHEN it is asked THEN the answer is cut at the chosen max tokens
    response = await client.post("/poe/claude-3-haiku", json=query, headers={"Authorization": f"Bearer {KEY}"})
    assert "".join(data["text"] for name, data in parse_sse(response.text) if name == "text") == "one two three"
