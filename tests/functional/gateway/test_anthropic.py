"""``/v1/messages`` and ``/v1/messages/count_tokens`` end to end in process (httpx on the ASGI app) against the
emulator over HTTP: the Anthropic wire format as a client reads it, the shared governance, the error shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import httpx
import pytest

from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings, GuardrailSettings
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, TEAM_KEY, parse_sse
from tests.functional.gateway.test_guardrails import emf_records
from tests.functional.gateway.test_metrics import value

pytestmark = pytest.mark.anyio
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
PROMPT = "Tell me about the lighthouse keeper"
GUARDRAIL = GuardrailSettings(identifier="gr0abc123def", version="3")
LONG_SYSTEM = " ".join(f"rule{i}" for i in range(1100))  # over Claude 3.7 Sonnet's 1,024 tokens per checkpoint
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def body(model: str, text: str = PROMPT, **fields: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": text}], **fields}


async def ask(client: httpx.AsyncClient, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post("/v1/messages", json=payload, headers=HEADERS if headers is None else headers)


def error_of(response: httpx.Response) -> tuple[int, str]:
    payload = response.json()
    assert payload["type"] == "error" and isinstance(payload["error"]["message"], str)
    return response.status_code, payload["error"]["type"]


async def test_a_message_without_streaming_echoes_with_usage(client: httpx.AsyncClient) -> None:
    # GIVEN the gateway in front of the emulator WHEN a Nova model is asked without streaming
    response = await ask(client, body("nova-lite"))
    # THEN the answer is an Anthropic message holding the echo, ended normally, with Converse's usage
    message = response.json()
    assert response.status_code == 200 and message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": PROMPT}] and message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == len(PROMPT.split()) and message["model"] == "nova-lite"


async def test_a_streamed_message_has_anthropics_events_in_order(client: httpx.AsyncClient) -> None:
    # GIVEN a streamed request WHEN the SSE body is read
    response = await ask(client, body("claude-3-haiku", stream=True))
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    # THEN message_start and ping open it, one text block carries the echo word by word, then the stop and the end
    assert response.headers["content-type"].startswith("text/event-stream")
    assert names[:3] == ["message_start", "ping", "content_block_start"] and names[-3:] == [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == PROMPT and all(name == data["type"] for name, data in events)
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn" and events[-2][1]["usage"]["input_tokens"] > 0


async def test_a_bearer_token_works_as_the_api_key(client: httpx.AsyncClient) -> None:
    # GIVEN Claude Code's way to send the key (ANTHROPIC_AUTH_TOKEN: Authorization Bearer)
    headers = {"authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}
    # WHEN it asks THEN the answer comes
    assert (await ask(client, body("nova-lite"), headers)).status_code == 200


@pytest.mark.parametrize(
    ("headers", "payload", "expected"),
    [
        ({"anthropic-version": "2023-06-01"}, body("nova-lite"), (401, "authentication_error")),
        ({**HEADERS, "x-api-key": TEAM_KEY}, body("nova-lite"), (403, "permission_error")),
        (HEADERS, body("no-such-model"), (404, "not_found_error")),
        ({"x-api-key": KEY}, body("nova-lite"), (400, "invalid_request_error")),
        (
            {**HEADERS, "anthropic-beta": "some-future-beta-2030-01-01"},
            body("nova-lite"),
            (400, "invalid_request_error"),
        ),
        (
            HEADERS,
            {"model": "nova-lite", "messages": [{"role": "user", "content": "x"}]},
            (400, "invalid_request_error"),
        ),
        (HEADERS, {**body("nova-lite"), "unknown_field": 1}, (400, "invalid_request_error")),
        (HEADERS, body("nova-canvas"), (400, "invalid_request_error")),
    ],
    ids=[
        "no key",
        "another bot's key",
        "unknown model",
        "no version",
        "unknown beta",
        "no max_tokens",
        "extra field",
        "image bot",
    ],
)
async def test_refusals_come_in_anthropics_error_shape_with_their_status(
    client: httpx.AsyncClient, headers: dict[str, str], payload: dict[str, Any], expected: tuple[int, str]
) -> None:
    # GIVEN a request the gateway refuses WHEN it is sent THEN the status and error type are Anthropic's
    assert error_of(await ask(client, payload, headers)) == expected


async def test_a_known_beta_header_is_accepted(client: httpx.AsyncClient) -> None:
    # GIVEN the betas Claude Code and the SDK send for features the gateway serves WHEN sent THEN accepted
    headers = {**HEADERS, "anthropic-beta": "claude-code-20250219, prompt-caching-2024-07-31"}
    assert (await ask(client, body("nova-lite"), headers)).status_code == 200


async def test_unknown_paths_and_methods_under_v1_messages_answer_in_anthropics_shape(
    client: httpx.AsyncClient,
) -> None:
    # GIVEN the Message Batches path (not served) and a GET on /v1/messages
    batches = await client.post("/v1/messages/batches", json={}, headers=HEADERS)
    listing = await client.get("/v1/messages", headers=HEADERS)
    # THEN both are Anthropic errors
    assert error_of(batches) == (404, "not_found_error")
    assert error_of(listing) == (405, "invalid_request_error")


async def test_a_body_over_the_limit_is_request_too_large(emulator: BedrockEmulator, settings: GatewaySettings) -> None:
    # GIVEN a gateway taking bodies up to 2 KB
    application = create_app(replace(settings, max_body_bytes=2048))
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test") as small,
    ):
        # WHEN a bigger message is sent THEN it is a 413 request_too_large
        assert error_of(await ask(small, body("nova-lite", "word " * 1000))) == (413, "request_too_large")


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        ("ThrottlingException", (429, "rate_limit_error")),
        ("ServiceUnavailableException", (529, "overloaded_error")),
        ("InternalServerException", (500, "api_error")),
        ("ValidationException", (400, "invalid_request_error")),
    ],
)
async def test_bedrock_errors_before_the_stream_keep_their_meaning(
    client: httpx.AsyncClient, emulator: BedrockEmulator, exception: str, expected: tuple[int, str]
) -> None:
    # GIVEN Bedrock answers the next call with the exception
    emulator.state.faults["runtime_error"] = f"{exception}:1"
    # WHEN a streamed message is asked THEN the HTTP status and type are Anthropic's, with the retry hint
    response = await ask(client, body("nova-lite", stream=True))
    assert error_of(response) == expected
    assert response.headers.get("x-should-retry") == ("false" if exception == "ValidationException" else "true")


async def test_a_tool_loop_with_thinking_sends_the_signed_blocks_back(client: httpx.AsyncClient) -> None:
    # GIVEN thinking on Claude 3.7 Sonnet and a tool
    thinking = {"type": "enabled", "budget_tokens": 1024}
    first = (
        await ask(client, body("claude-3.7-sonnet", "Oslo", tools=[WEATHER], thinking=thinking, max_tokens=3000))
    ).json()
    # THEN the answer opens with a signed thinking block and calls the tool
    assert [block["type"] for block in first["content"]] == ["thinking", "tool_use"] and first[
        "stop_reason"
    ] == "tool_use"
    assert first["content"][0]["signature"]
    call = first["content"][1]
    # WHEN the assistant turn goes back unchanged with the tool's result (the emulator verifies the signature)
    messages = [
        {"role": "user", "content": "Oslo"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "Snow, -3 C"}]},
    ]
    payload = {
        "model": "claude-3.7-sonnet",
        "max_tokens": 3000,
        "messages": messages,
        "tools": [WEATHER],
        "thinking": thinking,
    }
    final = (await ask(client, payload)).json()
    # THEN the model answers from the result
    assert final["stop_reason"] == "end_turn" and final["content"][-1] == {"type": "text", "text": "Snow, -3 C"}


async def test_thinking_on_a_model_without_it_and_top_k_beside_thinking_are_400s(client: httpx.AsyncClient) -> None:
    # GIVEN thinking asked of Nova, and top_k beside thinking on Claude (Bedrock refuses it)
    thinking = {"type": "enabled", "budget_tokens": 1024}
    nova = await ask(client, body("nova-lite", thinking=thinking))
    claude = await ask(client, body("claude-3.7-sonnet", thinking=thinking, top_k=5, max_tokens=3000))
    # THEN both are invalid_request_error 400s saying why
    assert error_of(nova) == (400, "invalid_request_error") and "not a Claude model" in nova.json()["error"]["message"]
    assert error_of(claude) == (400, "invalid_request_error") and "top_k" in claude.json()["error"]["message"]


async def test_stop_sequences_report_the_one_that_matched(client: httpx.AsyncClient) -> None:
    # GIVEN two stop sequences, the second in the echo WHEN asked THEN Claude's matched sequence comes back
    message = (
        await ask(client, body("claude-sonnet-4.5", "one two STOP three", stop_sequences=["END", "STOP"]))
    ).json()
    assert message["stop_reason"] == "stop_sequence" and message["stop_sequence"] == "STOP"
    assert message["content"] == [{"type": "text", "text": "one two "}]


async def test_cache_control_reads_the_cached_prefix_the_second_time(client: httpx.AsyncClient) -> None:
    # GIVEN a long system prompt marked for caching on a caching bot
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    # WHEN the same prefix is sent twice
    first = (await ask(client, body("claude-3.7-sonnet", "first", system=system))).json()
    second = (await ask(client, body("claude-3.7-sonnet", "second", system=system))).json()
    # THEN the first writes the cache and the second reads it
    assert first["usage"]["cache_creation_input_tokens"] > 0 and first["usage"]["cache_read_input_tokens"] == 0
    assert second["usage"]["cache_read_input_tokens"] == first["usage"]["cache_creation_input_tokens"]


async def test_count_tokens_asks_bedrock_where_it_can_and_says_when_it_estimates(
    client: httpx.AsyncClient, emulator: BedrockEmulator
) -> None:
    # GIVEN a bot with token counting (Claude 3 Haiku) and one without (Nova Lite)
    payload = {"messages": [{"role": "user", "content": PROMPT}]}
    counted = await client.post(
        "/v1/messages/count_tokens", json={"model": "claude-3-haiku", **payload}, headers=HEADERS
    )
    estimated = await client.post("/v1/messages/count_tokens", json={"model": "nova-lite", **payload}, headers=HEADERS)
    # THEN the first is Bedrock's CountTokens (the emulator counts words), the second the documented estimate
    assert (
        counted.json() == {"input_tokens": len(PROMPT.split())}
        and counted.headers["x-gateway-token-count"] == "count_tokens"
    )
    assert emulator.calls().get("CountTokens") == 1
    assert (
        estimated.json() == {"input_tokens": -(-len(PROMPT) // 4)}
        and estimated.headers["x-gateway-token-count"] == "estimate"
    )


async def test_a_bots_own_key_reaches_it(client: httpx.AsyncClient) -> None:
    # GIVEN the bot on the team key WHEN the team key asks it THEN it answers (the same keys as the other routes)
    response = await ask(client, body("nova-micro"), {**HEADERS, "x-api-key": TEAM_KEY})
    assert response.status_code == 200


@pytest.fixture
async def guarded(emulator: BedrockEmulator, settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a guardrail on Nova Lite (the emulator's guardrail blocks prompts containing ``BLOCKME``)."""
    bots = dict(settings.bots)
    bots["nova-lite"] = bots["nova-lite"].model_copy(update={"guardrail": GUARDRAIL})
    application = create_app(replace(settings, bots=bots))
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test") as http,
    ):
        yield http


async def test_the_bots_guardrail_and_metadata_reach_bedrock_and_an_intervention_is_an_error(
    guarded: httpx.AsyncClient, emulator: BedrockEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the Converse requests the emulator receives are recorded
    requests: list[dict[str, Any]] = []
    guard = emulator.runtime.guardrails.guard

    def recording(request: Mapping[str, Any], result: Any, **options: Any) -> Any:
        requests.append(dict(request))
        return guard(request, result, **options)

    monkeypatch.setattr(emulator.runtime.guardrails, "guard", recording)
    # WHEN a blocked prompt is streamed with a user id, and asked again without streaming
    streamed = await ask(guarded, body("nova-lite", "tell me about BLOCKME", stream=True, metadata={"user_id": "u-1"}))
    whole = await ask(guarded, body("nova-lite", "tell me about BLOCKME"))
    # THEN Bedrock got the bot's guardrail and the user id as request metadata
    assert requests[0]["guardrailConfig"]["guardrailIdentifier"] == GUARDRAIL.identifier
    assert requests[0]["requestMetadata"] == {"user_id": "u-1"}
    # AND the stream ends with an Anthropic error event instead of message_stop; the whole answer is a 400
    events = parse_sse(streamed.text)
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "invalid_request_error"
    assert "message_stop" not in [name for name, _ in events]
    assert error_of(whole) == (400, "invalid_request_error")


async def test_an_answer_leaves_the_bots_usage_metrics_and_a_correlation_id(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a streamed Anthropic message to a bot with prices
    response = await ask(client, body("nova-lite", "three little words", stream=True))
    # THEN the answer leaves the bot's one usage record (tokens and cost), as on the other routes
    (record,) = emf_records(capfd.readouterr().out)
    assert record["bot"] == "nova-lite" and value(record, "OutputTokens") == 3 and value(record, "CostUSD") > 0
    # AND the response carries the gateway's correlation id
    assert response.headers["x-gateway-request-id"]
