"""Every way a Bedrock answer can end, through both routes with the official clients (fastapi_poe on the Poe route,
the openai SDK on ``/v1/chat/completions``), against the emulator: text and several tool calls in one answer, every
in-stream exception, every stop reason, guardrails on the model's output, prompt caching below the model's minimum,
and media a model cannot read."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import fastapi_poe as fp
import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.config import GatewaySettings, GuardrailSettings, load_bots
from local.emulator.conversation import STOP_REASONS, TRIGGERED_STOP_REASONS, route
from local.emulator.faults import STREAM_ERRORS
from local.emulator.guardrails import BLOCKED_OUTPUT_MESSAGE
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, POE_URL, openai_client, parse_sse, poe_query
from tests.poe_client import poe_responses, poe_responses_until_error

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}
PROMPT = "Tell me a short story about a lighthouse keeper"
GUARDRAIL = GuardrailSettings(identifier="gr0abc123def", version="1")
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")
PNG_URL = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"


def function(name: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {"type": "function", "function": {"name": name, "description": f"{name} of a city", "parameters": schema}}


TOOLS: Any = [function("get_weather"), function("get_time")]
BOTH_TOOLS = "Use get_weather and get_time for Lima"


@pytest.fixture
def settings(settings: GatewaySettings) -> GatewaySettings:
    """The shared bots, plus Nova Lite behind a guardrail (sync and async stream modes, and not streamed), and a
    Nova Micro whose bot config wrongly claims image input (so the emulator, not the gateway, refuses the image)."""
    bots = dict(settings.bots)
    lite = bots["nova-lite"]
    bots["guarded-sync"] = lite.model_copy(update={"name": "guarded-sync", "guardrail": GUARDRAIL})
    async_guardrail = GUARDRAIL.model_copy(update={"stream_processing_mode": "async"})
    bots["guarded-async"] = lite.model_copy(update={"name": "guarded-async", "guardrail": async_guardrail})
    micro = bots["nova-micro"]
    capabilities = micro.capabilities.model_copy(update={"images_in": True})
    bots["micro-claims-vision"] = micro.model_copy(
        update={"name": "micro-claims-vision", "access_key_ref": "default", "capabilities": capabilities}
    )
    return replace(settings, bots=bots)


@pytest.fixture
async def sdk(app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(app, KEY) as client:
        yield client


async def poe(app: FastAPI, bot: str, text: str, **options: Any) -> tuple[list[fp.PartialResponse], fp.BotError | None]:
    message = fp.ProtocolMessage(role="user", content=text, parameters=options.pop("parameters", {}))
    return await poe_responses_until_error(POE_URL, bot, [message], api_key=KEY, app=app, **options)


def poe_text(messages: list[fp.PartialResponse]) -> str:
    """The answer as Poe shows it: text appended, ``replace_response`` replacing everything before."""
    shown = ""
    for message in messages:
        if isinstance(message, fp.MetaResponse):
            continue
        shown = message.text if message.is_replace_response else shown + message.text
    return shown


@dataclass
class Streamed:
    """What the openai SDK got from a streamed completion."""

    text: str = ""
    finish_reason: str | None = None
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    error: openai.APIError | None = None


async def openai_stream(sdk: openai.AsyncOpenAI, model: str, text: str, **options: Any) -> Streamed:
    got = Streamed()
    stream = await sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], stream=True, **options
    )
    try:
        async for chunk in stream:
            for choice in chunk.choices:
                got.text += choice.delta.content or ""
                got.finish_reason = choice.finish_reason or got.finish_reason
                for call in choice.delta.tool_calls or []:
                    entry = got.tool_calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                    if call.id:
                        entry["id"], entry["name"] = call.id, call.function.name if call.function else None
                    entry["arguments"] += (call.function.arguments if call.function else None) or ""
    except openai.APIError as error:
        got.error = error
    return got


# ---------------------------------------------------------------- text and several tool calls in one answer


@pytest.mark.parametrize("bot", ["nova-lite", "llama-3.1-70b", "claude-3.7-sonnet-thinking"])
async def test_openai_streams_the_text_and_each_tool_call_with_its_own_index(sdk: openai.AsyncOpenAI, bot: str) -> None:
    # GIVEN two tools on a bot that streams them, one without streaming tool use (Converse, replayed as a stream) and
    # one whose answer starts with a reasoning block (so the blocks are numbered from 1)
    # WHEN the user names both tools (the model answers a text block, then one call each)
    got = await openai_stream(sdk, bot, BOTH_TOOLS, tools=TOOLS)
    # THEN the text streams as content, each call under its own index with its own id and complete arguments
    assert got.error is None and got.text == "Calling get_weather, get_time."
    assert sorted(got.tool_calls) == [0, 1]
    assert [got.tool_calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    assert got.tool_calls[0]["id"] != got.tool_calls[1]["id"]
    assert all(json.loads(call["arguments"]) == {"city": BOTH_TOOLS} for call in got.tool_calls.values())
    assert got.finish_reason == "tool_calls"


async def test_openai_round_trip_with_two_calls_not_streamed(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN an answer with text and two calls, not streamed
    first = await sdk.chat.completions.create(
        model="nova-lite", messages=[{"role": "user", "content": BOTH_TOOLS}], tools=TOOLS
    )
    message = first.choices[0].message
    assert message.content == "Calling get_weather, get_time." and message.tool_calls is not None
    assert [call.function.name for call in message.tool_calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    # WHEN both results are sent back
    results: list[Any] = [
        {"role": "tool", "tool_call_id": call.id, "content": f"result {number}"}
        for number, call in enumerate(message.tool_calls)
    ]
    history: list[Any] = [{"role": "user", "content": BOTH_TOOLS}, message.model_dump(exclude_none=True), *results]
    second = await sdk.chat.completions.create(model="nova-lite", messages=history, tools=TOOLS)
    # THEN Bedrock took the turn (each result answers a call of the message before) and answered in text
    assert second.choices[0].message.content == "result 0\nresult 1"
    assert second.choices[0].finish_reason == "stop"


async def test_poe_client_runs_both_calls_and_gets_the_answer(app: FastAPI) -> None:
    # GIVEN the fastapi_poe client with both tools and their Python functions
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    def get_time(city: str) -> str:
        return f"noon in {city}"

    tools = [fp.ToolDefinition.model_validate(tool) for tool in TOOLS]
    # WHEN it asks for both (the client runs each call, then sends tool_calls + tool_results back)
    messages = await poe_responses(
        POE_URL,
        "nova-lite",
        [fp.ProtocolMessage(role="user", content=BOTH_TOOLS)],
        api_key=KEY,
        app=app,
        tools=tools,
        tool_executables=[get_weather, get_time],
    )
    # THEN the final answer holds both results
    text = "".join(m.text for m in messages)
    assert text.endswith(f"{json.dumps('sunny in ' + BOTH_TOOLS)}\n{json.dumps('noon in ' + BOTH_TOOLS)}")


async def test_poe_json_events_carry_each_call_under_its_own_index(client: httpx.AsyncClient) -> None:
    # GIVEN a Poe query naming both tools WHEN the bot answers
    response = await client.post("/poe/nova-lite", json=poe_query(BOTH_TOOLS, tools=TOOLS), headers=AUTH)
    events = parse_sse(response.text)
    # THEN the text comes as text events and the calls as json events, one index per call, tool_calls last
    assert "".join(data["text"] for name, data in events if name == "text") == "Calling get_weather, get_time."
    chunks = [data["choices"][0] for name, data in events if name == "json"]
    calls = [call for chunk in chunks for call in chunk["delta"].get("tool_calls", [])]
    named = {call["index"]: call["function"]["name"] for call in calls if "id" in call}
    assert named == {0: "get_weather", 1: "get_time"}
    for index in (0, 1):
        arguments = "".join(call["function"]["arguments"] for call in calls if call["index"] == index)
        assert json.loads(arguments) == {"city": BOTH_TOOLS}
    assert chunks[-1]["finish_reason"] == "tool_calls" and events[-1] == ("done", {})


# ---------------------------------------------------------------- in-stream exceptions

# exception -> (retry allowed, HTTP status of a non-streamed answer, OpenAI error type)
STREAM_ERROR_OUTCOMES = {
    "internalServerException": (True, 502, "upstream_error"),
    "modelStreamErrorException": (True, 502, "upstream_error"),
    "validationException": (False, 400, "invalid_request_error"),
    "throttlingException": (True, 429, "rate_limit_error"),
    "serviceUnavailableException": (True, 503, "service_unavailable"),
}


def test_every_in_stream_exception_has_an_expected_outcome() -> None:
    # GIVEN the exceptions ConverseStream can send WHEN the table below is compared THEN it covers each one
    assert set(STREAM_ERROR_OUTCOMES) == set(STREAM_ERRORS)


@pytest.mark.parametrize("name", STREAM_ERRORS)
async def test_poe_gets_the_text_then_an_error_event_per_exception(
    app: FastAPI, client: httpx.AsyncClient, emulator: BedrockEmulator, name: str
) -> None:
    # GIVEN ConverseStream breaks with <name> after two text deltas
    emulator.state.faults.update({"stream_error": name, "stream_error_after": 2})
    retry = STREAM_ERROR_OUTCOMES[name][0]
    code = name[0].upper() + name[1:]
    # WHEN the Poe client asks
    messages, error = await poe(app, "nova-pro", PROMPT)
    # THEN it got the first two words, then the error: retryable or not as the exception is
    assert poe_text(messages) == " ".join(PROMPT.split()[:2])
    assert error is not None and isinstance(error, fp.BotErrorNoRetry) is (not retry) and code in str(error)
    # AND on the wire the error event says so, and done still ends the answer
    events = parse_sse((await client.post("/poe/nova-pro", json=poe_query(PROMPT), headers=AUTH)).text)
    assert [name for name, _ in events[-2:]] == ["error", "done"] and events[-2][1]["allow_retry"] is retry


@pytest.mark.parametrize("name", STREAM_ERRORS)
async def test_openai_gets_the_text_then_an_error_per_exception(
    sdk: openai.AsyncOpenAI, emulator: BedrockEmulator, name: str
) -> None:
    # GIVEN ConverseStream breaks with <name> after two text deltas
    emulator.state.faults.update({"stream_error": name, "stream_error_after": 2})
    _, status, kind = STREAM_ERROR_OUTCOMES[name]
    # WHEN the SDK streams THEN it reads the first two words, then an APIError of the exception's type, no finish
    got = await openai_stream(sdk, "nova-pro", PROMPT)
    assert got.text == " ".join(PROMPT.split()[:2]) and got.finish_reason is None
    assert got.error is not None and got.error.type == kind and name[1:] in str(got.error)
    # AND not streamed, the answer is the HTTP error the exception maps to
    with pytest.raises(openai.APIStatusError) as error:
        await sdk.chat.completions.create(model="nova-pro", messages=[{"role": "user", "content": PROMPT}])
    assert error.value.status_code == status


# ---------------------------------------------------------------- every stop reason


@dataclass(frozen=True)
class StopCase:
    bot: str
    prompt: str
    openai: dict[str, Any] = field(default_factory=dict)  # extra create() arguments
    poe: dict[str, Any] = field(default_factory=dict)  # extra get_bot_response() arguments
    finish: str | None = None  # OpenAI finish_reason; None: an error instead
    poe_error: str | None = None  # "retry" / "no_retry"; None: a normal answer


STOP_CASES: dict[str, StopCase] = {
    "end_turn": StopCase("nova-lite", "hello there", finish="stop"),
    "max_tokens": StopCase(
        "claude-3-haiku", "one two three four", {"max_tokens": 2}, {"parameters": {"max_tokens": 2}}, "length"
    ),
    "stop_sequence": StopCase(
        "nova-lite", "one two HALT three", {"stop": ["HALT"]}, {"stop_sequences": ["HALT"]}, "stop"
    ),
    "tool_use": StopCase(
        "nova-lite",
        "Lima",
        {"tools": TOOLS[:1]},
        {"tools": [fp.ToolDefinition.model_validate(TOOLS[0])]},
        "tool_calls",
    ),
    "guardrail_intervened": StopCase("guarded-sync", "say BLOCKOUTPUT now", poe_error="no_retry"),
    "content_filtered": StopCase(
        "nova-lite", "a story EMULATOR_STOP_REASON=content_filtered", finish="content_filter", poe_error="no_retry"
    ),
    "malformed_model_output": StopCase(
        "nova-lite", "a story EMULATOR_STOP_REASON=malformed_model_output", poe_error="retry"
    ),
    "malformed_tool_use": StopCase(
        "nova-lite",
        "a story EMULATOR_STOP_REASON=malformed_tool_use",
        {"tools": TOOLS[:1]},
        {"tools": [fp.ToolDefinition.model_validate(TOOLS[0])]},
        poe_error="retry",
    ),
    "model_context_window_exceeded": StopCase(
        "nova-lite", "a story EMULATOR_STOP_REASON=model_context_window_exceeded", finish="length", poe_error="no_retry"
    ),
}


def test_every_stop_reason_has_a_case() -> None:
    # GIVEN botocore's StopReason enum (as the emulator reads it) WHEN compared with the cases THEN each has one
    assert set(STOP_CASES) == set(STOP_REASONS)
    assert set(TRIGGERED_STOP_REASONS) <= set(STOP_CASES)


@pytest.mark.parametrize("reason", list(STOP_CASES))
async def test_openai_maps_each_stop_reason(sdk: openai.AsyncOpenAI, reason: str) -> None:
    case = STOP_CASES[reason]
    # GIVEN a request Bedrock answers with <reason> WHEN the SDK streams it
    got = await openai_stream(sdk, case.bot, case.prompt, **case.openai)
    # THEN it ends with the mapped finish_reason, or (no usable answer) with an error instead of a finish
    if case.finish is None:
        assert got.error is not None and got.finish_reason is None and got.error.code == reason
    else:
        assert got.error is None and got.finish_reason == case.finish
    # AND not streamed: the same finish_reason, or an HTTP error
    messages: Any = [{"role": "user", "content": case.prompt}]
    if case.finish is None:
        with pytest.raises(openai.APIStatusError) as error:
            await sdk.chat.completions.create(model=case.bot, messages=messages, **case.openai)
        assert error.value.status_code == (400 if reason == "guardrail_intervened" else 502)
    else:
        answer = await sdk.chat.completions.create(model=case.bot, messages=messages, **case.openai)
        assert answer.choices[0].finish_reason == case.finish


@pytest.mark.parametrize("reason", list(STOP_CASES))
async def test_poe_maps_each_stop_reason(app: FastAPI, reason: str) -> None:
    case = STOP_CASES[reason]
    # GIVEN a request Bedrock answers with <reason> WHEN the Poe client asks
    options = dict(case.poe)
    _, error = await poe(app, case.bot, case.prompt, **options)
    # THEN a normal answer, or an error event that allows a retry or not
    if case.poe_error is None:
        assert error is None
    else:
        assert error is not None and isinstance(error, fp.BotErrorNoRetry) is (case.poe_error == "no_retry")


@pytest.mark.parametrize(
    ("reason", "error_type"),
    [
        ("content_filtered", "user_caused_error"),
        ("model_context_window_exceeded", "user_message_too_long"),
        ("malformed_model_output", None),
    ],
)
async def test_poe_error_events_of_stop_reasons_carry_their_error_type(
    client: httpx.AsyncClient, reason: str, error_type: str | None
) -> None:
    # GIVEN a prompt Bedrock stops with <reason> WHEN posted on the Poe route
    events = parse_sse(
        (await client.post("/poe/nova-lite", json=poe_query(STOP_CASES[reason].prompt), headers=AUTH)).text
    )
    # THEN the text before the stop came, then an error event with the Poe error_type, then done
    errors = [data for name, data in events if name == "error"]
    assert "".join(data["text"] for name, data in events if name == "text") == "a story"
    assert len(errors) == 1 and errors[0].get("error_type") == error_type and events[-1] == ("done", {})


# ---------------------------------------------------------------- guardrails on the model's output


@pytest.mark.parametrize(("bot", "leaked"), [("guarded-sync", "say"), ("guarded-async", "say BLOCKOUTPUT now")])
async def test_a_blocked_answer_is_withdrawn_on_poe(
    client: httpx.AsyncClient, app: FastAPI, bot: str, leaked: str
) -> None:
    # GIVEN a guardrailed bot WHEN its answer would contain the output-blocked word
    events = parse_sse((await client.post(f"/poe/{bot}", json=poe_query("say BLOCKOUTPUT now"), headers=AUTH)).text)
    # THEN what the stream mode let through was streamed, then withdrawn, then a non-retryable error
    streamed = "".join(data["text"] for name, data in events if name == "text")
    assert streamed == f"{leaked} {BLOCKED_OUTPUT_MESSAGE}"
    names = [name for name, _ in events]
    assert names[-3:] == ["replace_response", "error", "done"] and events[-3][1] == {"text": ""}
    assert events[-2][1]["allow_retry"] is False and events[-2][1]["error_type"] == "user_caused_error"
    # AND the Poe client ends with nothing shown and BotErrorNoRetry
    messages, error = await poe(app, bot, "say BLOCKOUTPUT now")
    assert poe_text(messages) == "" and isinstance(error, fp.BotErrorNoRetry)


@pytest.mark.parametrize(("bot", "leaked"), [("guarded-sync", "say"), ("guarded-async", "say BLOCKOUTPUT now")])
async def test_a_blocked_answer_is_an_error_on_openai(sdk: openai.AsyncOpenAI, bot: str, leaked: str) -> None:
    # GIVEN a guardrailed bot WHEN the SDK streams an answer that would contain the output-blocked word
    got = await openai_stream(sdk, bot, "say BLOCKOUTPUT now")
    # THEN only what the stream mode let through arrived (sync: never the word), then an error, no finish
    assert got.text == f"{leaked} {BLOCKED_OUTPUT_MESSAGE}" and got.finish_reason is None
    assert got.error is not None and "blocked by the bot's content guardrail" in str(got.error)
    # AND not streamed it is a 400 with the guardrail's code
    with pytest.raises(openai.BadRequestError) as error:
        await sdk.chat.completions.create(model=bot, messages=[{"role": "user", "content": "say BLOCKOUTPUT now"}])
    assert error.value.code == "guardrail_intervened"


# ---------------------------------------------------------------- prompt caching below the minimum


async def test_a_short_cached_prefix_is_neither_written_nor_read_nor_billed(sdk: openai.AsyncOpenAI) -> None:
    # GIVEN a prompt-caching bot whose cache point closes a prefix under Claude 3.7 Sonnet's 1,024 tokens
    messages: list[Any] = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "hi"}]
    # WHEN it is sent twice
    first = await sdk.chat.completions.create(model="claude-3.7-sonnet", messages=messages)
    second = await sdk.chat.completions.create(model="claude-3.7-sonnet", messages=messages)
    # THEN nothing was cached: no cached tokens, no cache writes, and the cost is input + output at their rates
    for answer in (first, second):
        details = (answer.model_extra or {})["bedrock"]
        assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
        assert answer.usage.prompt_tokens_details.cached_tokens == 0 and details["cache_write_tokens"] == 0
        expected = (answer.usage.prompt_tokens * 0.003 + answer.usage.completion_tokens * 0.015) / 1000
        assert details["cost_usd"] == pytest.approx(expected)


# ---------------------------------------------------------------- media a model cannot read


def test_bot_capabilities_agree_with_the_models() -> None:
    # GIVEN every shipped text bot (routers resolved to each of their models)
    for name, bot in load_bots().items():
        if bot.modality != "text":
            continue
        targets = {route(bot.model_id, prompt, {}) for prompt in (1, 10_000)}
        caps = bot.capabilities
        # WHEN its capabilities are compared with what the emulator's model accepts
        # THEN a bot never claims images, documents or prompt caching its model refuses
        for target in targets:
            assert not caps.images_in or target.accepts("image"), name
            assert not caps.documents or target.accepts("document"), name
            assert not caps.prompt_caching or target.supports_caching, name


async def test_an_image_the_model_cannot_read_is_a_user_error_on_both_routes(
    sdk: openai.AsyncOpenAI, app: FastAPI
) -> None:
    # GIVEN a bot whose config wrongly claims image input for Nova Micro (the gateway lets the image through)
    parts: Any = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG_URL}}]
    # WHEN the SDK sends an image THEN Bedrock's ValidationException is a 400 naming the image block
    with pytest.raises(openai.BadRequestError) as error:
        await sdk.chat.completions.create(model="micro-claims-vision", messages=[{"role": "user", "content": parts}])
    assert "image content block" in str(error.value)
    # AND the Poe client gets a non-retryable error
    attachment = fp.Attachment(url=PNG_URL, content_type="image/png", name="dot.png")
    message = fp.ProtocolMessage(role="user", content="What is this?", attachments=[attachment])
    _, poe_error = await poe_responses_until_error(POE_URL, "micro-claims-vision", [message], api_key=KEY, app=app)
    assert isinstance(poe_error, fp.BotErrorNoRetry) and "image content block" in str(poe_error)
