"""The gateway's Anthropic Messages API as ``python -m cli gateway`` serves it (uvicorn + emulator), driven over real
HTTP by the official ``anthropic`` SDK: messages streaming and not, a tool loop, thinking, count_tokens, and each
error status as the SDK's exception class."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from cli.gateway import RunningGateway, local_gateway
from tests.anthropic_client import anthropic_client, tool_loop

pytestmark = pytest.mark.slow
PROMPT = "Write a haiku about the sea"
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    with local_gateway(0, access_key="e2e-key-0123456789abcdef0123456") as running:
        yield running


def test_messages_create_without_streaming(gateway: RunningGateway) -> None:
    # GIVEN the SDK pointed at the gateway WHEN it asks a Claude model
    message = anthropic_client(gateway.url, gateway.access_key).messages.create(
        model="claude-sonnet-4.5", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
    )
    # THEN it reads the echo as a text block with the stop reason and usage
    assert message.content[0].type == "text" and message.content[0].text == PROMPT
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == len(PROMPT.split())


def test_messages_stream_with_a_bearer_token(gateway: RunningGateway) -> None:
    # GIVEN the SDK sending the key as Claude Code does (Authorization: Bearer) WHEN it streams a Nova answer
    client = anthropic_client(gateway.url, gateway.access_key, bearer=True)
    with client.messages.stream(
        model="nova-pro", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    # THEN the text arrives in pieces and the SDK's accumulated message holds it with the usage of message_delta
    assert "".join(pieces) == PROMPT and len(pieces) > 1
    assert final.content[0].type == "text" and final.content[0].text == PROMPT
    assert final.usage.input_tokens > 0 and final.usage.output_tokens == len(PROMPT.split())


def test_a_tool_loop_reaches_an_answer(gateway: RunningGateway) -> None:
    # GIVEN a tool WHEN the SDK loops: tool_use -> tool_result -> answer
    calls: list[Any] = []

    def run(name: str, arguments: Any) -> str:
        calls.append((name, arguments))
        return "Snow, -3 C"

    client = anthropic_client(gateway.url, gateway.access_key)
    answers = tool_loop(client, model="claude-haiku-4.5", prompt="Oslo", tools=[WEATHER], run=run, max_tokens=300)
    # THEN the model called the tool once with the city, then answered from the result
    assert calls == [("get_weather", {"city": "Oslo"})]
    assert [a.stop_reason for a in answers] == ["tool_use", "end_turn"]
    assert answers[-1].content[-1].type == "text" and answers[-1].content[-1].text == "Snow, -3 C"


def test_thinking_on_a_claude_model_streams_and_round_trips_its_signature(gateway: RunningGateway) -> None:
    # GIVEN extended thinking on Claude 3.7 Sonnet and a tool, streamed
    client = anthropic_client(gateway.url, gateway.access_key)
    options: Any = {"max_tokens": 3000, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    with client.messages.stream(
        model="claude-3.7-sonnet", messages=[{"role": "user", "content": "Oslo"}], tools=[WEATHER], **options
    ) as stream:
        kinds = [event.type for event in stream]
        first = stream.get_final_message()
    # THEN the thinking block streams with its signature before the tool call
    assert "thinking" in kinds and "signature" in kinds
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    # WHEN the SDK's tool loop sends the signed thinking back (the emulator verifies it) THEN Claude answers
    answers = tool_loop(
        client, model="claude-3.7-sonnet", prompt="Oslo", tools=[WEATHER], run=lambda *_: "Sunny", **options
    )
    assert answers[-1].stop_reason == "end_turn" and answers[-1].content[-1].text == "Sunny"  # type: ignore[union-attr]


def test_count_tokens(gateway: RunningGateway) -> None:
    # GIVEN a bot with Bedrock's CountTokens WHEN the SDK counts a prompt THEN it gets the model's count
    counted = anthropic_client(gateway.url, gateway.access_key).messages.count_tokens(
        model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}]
    )
    assert counted.input_tokens == len(PROMPT.split())


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"key": "not-a-key"}, anthropic.AuthenticationError),
        ({"model": "no-such-model"}, anthropic.NotFoundError),
        ({"max_tokens": 0}, anthropic.BadRequestError),
        ({"text": "x" * 1_100_000}, anthropic.ContentTooLargeError),
    ],
    ids=["401", "404", "400", "413"],
)
def test_request_errors_are_the_sdks_exception_classes(
    gateway: RunningGateway, change: dict[str, Any], error: type[Exception]
) -> None:
    # GIVEN a request the gateway refuses WHEN the SDK sends it THEN it raises the matching exception
    client = anthropic_client(gateway.url, change.get("key", gateway.access_key))
    with pytest.raises(error):
        client.messages.create(
            model=change.get("model", "nova-lite"),
            max_tokens=change.get("max_tokens", 100),
            messages=[{"role": "user", "content": change.get("text", PROMPT)}],
        )


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("ThrottlingException", anthropic.RateLimitError),
        ("ServiceUnavailableException", anthropic.OverloadedError),
        ("ModelErrorException", anthropic.InternalServerError),
    ],
    ids=["429", "529", "500"],
)
def test_bedrock_failures_are_the_sdks_exception_classes(
    monkeypatch: pytest.MonkeyPatch, fault: str, error: type[Exception]
) -> None:
    # GIVEN a gateway whose Bedrock fails every call with the fault (and no gateway-side retries)
    monkeypatch.setenv("GATEWAY_MAX_ATTEMPTS", "1")
    with local_gateway(0, access_key="e2e-key-0123456789abcdef0123456", faults={"runtime_error": f"{fault}:5"}) as gw:
        client = anthropic_client(gw.url, gw.access_key)
        # WHEN the SDK asks THEN it raises the exception class of the status
        with pytest.raises(error):
            client.messages.create(model="nova-lite", max_tokens=100, messages=[{"role": "user", "content": PROMPT}])


def test_a_key_of_another_bot_is_permission_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a gateway with a second key ref that no asked bot uses
    monkeypatch.setenv("GATEWAY_ACCESS_KEYS", '{"team": "team-key-0123456789abcdef01234567"}')
    key = "team-key-0123456789abcdef01234567"
    with (
        local_gateway(0, access_key="e2e-key-0123456789abcdef0123456") as gw,
        pytest.raises(anthropic.PermissionDeniedError),
    ):
        # WHEN the SDK uses that key on a default-ref bot THEN it raises PermissionDeniedError (403)
        anthropic_client(gw.url, key).messages.create(
            model="nova-lite", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
        )


# ---------------------------------------------------------------- Claude Code's betas, as it sends them by default

# the anthropic-beta values of Claude Code's requests with its default settings (as public gateway issue threads
# report them), and the body fields two of them open
CLAUDE_CODE_BETAS: Any = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "prompt-caching-scope-2026-01-05",
    "effort-2025-11-24",
    "fine-grained-tool-streaming-2025-05-14",
]
EDITS: Any = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
SYSTEM: Any = [
    {"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral", "scope": "global"}}
]


def test_claude_codes_default_betas_stream_a_tool_call_with_context_editing(gateway: RunningGateway) -> None:
    # GIVEN the SDK sending Claude Code's betas, a system prompt cached with a scope, a tool and context editing
    client = anthropic_client(gateway.url, gateway.access_key, bearer=True)
    # WHEN it streams a request to Claude Sonnet 4.5 (which takes interleaved thinking and context editing on Bedrock)
    with client.beta.messages.stream(
        model="claude-sonnet-4.5",
        max_tokens=300,
        betas=CLAUDE_CODE_BETAS,
        system=SYSTEM,
        tools=[WEATHER],
        context_management=EDITS,
        messages=[{"role": "user", "content": "Oslo"}],
    ) as stream:
        final = stream.get_final_message()
    # THEN the model calls the tool (the emulator refuses context_management without its beta, so it was forwarded)
    assert final.stop_reason == "tool_use" and final.content[-1].type == "tool_use"


@pytest.mark.parametrize(
    ("model", "not_forwarded"),
    [
        ("claude-sonnet-4.5", "effort-2025-11-24"),
        ("claude-3-haiku", "interleaved-thinking-2025-05-14,context-management-2025-06-27,effort-2025-11-24"),
        ("nova-pro", "interleaved-thinking-2025-05-14,context-management-2025-06-27,effort-2025-11-24"),
    ],
)
def test_claude_codes_betas_are_answered_on_any_bot_and_the_unforwarded_named(
    gateway: RunningGateway, model: str, not_forwarded: str
) -> None:
    # GIVEN Claude Code's betas WHEN the SDK asks a bot whose model takes some, none, or is no Claude model
    raw = anthropic_client(gateway.url, gateway.access_key).beta.messages.with_raw_response.create(
        model=model,
        max_tokens=100,
        betas=CLAUDE_CODE_BETAS,
        system=SYSTEM,
        messages=[{"role": "user", "content": PROMPT}],
    )
    # THEN it is answered, and the Bedrock betas the model does not take are named in a header (never in silence)
    assert raw.parse().content[0].text == PROMPT  # type: ignore[union-attr]
    assert raw.headers["x-gateway-betas-not-forwarded"] == not_forwarded


def test_a_betas_field_on_a_model_without_the_beta_and_an_unserved_beta_are_400s(gateway: RunningGateway) -> None:
    client = anthropic_client(gateway.url, gateway.access_key)
    ask: Any = {"max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]}
    # GIVEN context editing on Claude 3 Haiku (Bedrock has no context editing for it) WHEN sent THEN a 400 naming it
    with pytest.raises(anthropic.BadRequestError, match="context_management"):
        client.beta.messages.create(model="claude-3-haiku", betas=CLAUDE_CODE_BETAS, context_management=EDITS, **ask)
    # GIVEN a beta for a feature Bedrock's Converse lacks (the Files API) WHEN sent THEN a 400 naming the beta
    with pytest.raises(anthropic.BadRequestError, match="files-api-2025-04-14"):
        client.beta.messages.create(model="claude-sonnet-4.5", betas=["files-api-2025-04-14"], **ask)
