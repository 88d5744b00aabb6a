"""``POST /poe/{bot}`` driven by the real Poe client library (fastapi_poe) and by raw HTTP, against the emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import fastapi_poe as fp
import httpx
import pytest
from fastapi import FastAPI

from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, POE_URL, TEAM_KEY, parse_sse, poe_messages, poe_query

pytestmark = pytest.mark.anyio
PROMPT = "Tell me a short story about a lighthouse keeper"


def text_of(messages: list[fp.PartialResponse]) -> str:
    return "".join(m.text for m in messages if not isinstance(m, fp.MetaResponse))


async def test_poe_client_gets_the_echo_streamed_after_meta(app: FastAPI) -> None:
    # GIVEN the gateway in front of the emulator (which echoes the last user message)
    # WHEN the Poe client library asks the Claude 3 Haiku bot
    messages = await poe_messages(app, "claude-3-haiku", PROMPT)
    # THEN meta comes first and the streamed text is the echo, in several text events
    assert isinstance(messages[0], fp.MetaResponse)
    assert text_of(messages) == PROMPT
    assert len(messages) > 2


async def test_raw_stream_sends_meta_first_text_per_delta_and_done_last(client: httpx.AsyncClient) -> None:
    # GIVEN a Poe query WHEN it is posted
    response = await client.post("/poe/nova-lite", json=poe_query(PROMPT), headers={"Authorization": f"Bearer {KEY}"})
    # THEN it is an SSE answer: meta first, one text event per word, done last
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert events[0][0] == "meta" and events[-1] == ("done", {})
    texts = [data["text"] for name, data in events if name == "text"]
    assert "".join(texts) == PROMPT and len(texts) == len(PROMPT.split())


async def test_reasoning_bot_shows_its_reasoning_as_a_quoted_block(app: FastAPI) -> None:
    # GIVEN the Claude 3.7 Sonnet bot configured with thinking and reasoning display
    # WHEN it is asked
    text = text_of(await poe_messages(app, "claude-3.7-sonnet-thinking", "Say hello"))
    # THEN the reasoning comes first as a quoted block, then the answer
    quoted, _, answer = text.partition("\n\n")
    assert quoted.startswith("> The user wants") and answer == "Say hello"


async def test_throttling_before_the_stream_is_a_retryable_poe_error(
    app: FastAPI, client: httpx.AsyncClient, emulator: BedrockEmulator
) -> None:
    # GIVEN Bedrock throttles the next two calls
    emulator.state.faults["runtime_throttle"] = 2
    # WHEN the Poe client asks
    # THEN it raises BotError (retry allowed), not BotErrorNoRetry
    with pytest.raises(fp.BotError) as error:
        await poe_messages(app, "claude-3-haiku", PROMPT)
    assert not isinstance(error.value, fp.BotErrorNoRetry) and "ThrottlingException" in str(error.value)
    # AND on the wire: meta, an error with allow_retry, then done
    response = await client.post("/poe/claude-3-haiku", json=poe_query("x"), headers={"Authorization": f"Bearer {KEY}"})
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["meta", "error", "done"]
    assert events[1][1]["allow_retry"] is True


async def test_a_mid_stream_error_is_an_error_event_after_the_text(
    client: httpx.AsyncClient, emulator: BedrockEmulator
) -> None:
    # GIVEN ConverseStream breaks after 3 text deltas
    emulator.state.faults["stream_error_after"] = 3
    # WHEN a Poe query is answered
    response = await client.post("/poe/nova-pro", json=poe_query(PROMPT), headers={"Authorization": f"Bearer {KEY}"})
    # THEN 3 text events, then a retryable error event, then done (never a hung stream)
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["meta", "text", "text", "text", "error", "done"]
    assert events[4][1]["allow_retry"] is True and "ModelStreamErrorException" in events[4][1]["text"]


async def test_bedrock_validation_errors_are_not_retryable(client: httpx.AsyncClient) -> None:
    # GIVEN a conversation with no user text WHEN it is posted THEN the error event forbids retries
    body = poe_query("   ")
    response = await client.post("/poe/nova-micro", json=body, headers={"Authorization": f"Bearer {TEAM_KEY}"})
    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["meta", "error", "done"] and events[1][1]["allow_retry"] is False


async def test_media_bots_without_a_media_bucket_say_so(client: httpx.AsyncClient) -> None:
    # GIVEN no media bucket configured WHEN the Nova Reel bot is queried THEN a clear error event, then done
    response = await client.post("/poe/nova-reel", json=poe_query("a wave"), headers={"Authorization": f"Bearer {KEY}"})
    events = parse_sse(response.text)
    assert events[1][0] == "error" and "GATEWAY_MEDIA_BUCKET" in events[1][1]["text"]
    assert events[-1][0] == "done"


@pytest.mark.parametrize(
    ("bot", "key"),
    [("claude-3-haiku", "wrong"), ("claude-3-haiku", ""), ("nova-micro", KEY)],  # nova-micro uses the team key
)
async def test_a_wrong_or_missing_key_is_a_401_that_does_not_say_why(
    client: httpx.AsyncClient, bot: str, key: str
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = await client.post(f"/poe/{bot}", json=poe_query("hi"), headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "Invalid or missing access key."


async def test_the_poe_client_reports_a_401_as_bot_error(app: FastAPI) -> None:
    with pytest.raises(fp.BotError):
        await poe_messages(app, "claude-3-haiku", "hi", key="wrong")


@pytest.mark.parametrize(
    ("path", "content", "status"),
    [
        ("/poe/no-such-bot", b'{"type": "query"}', 404),
        ("/poe/claude-3-haiku", b'{"type": "teleport"}', 501),
        ("/poe/claude-3-haiku", b"{not json", 400),
        ("/poe/claude-3-haiku", b'{"query": []}', 400),
        ("/poe/claude-3-haiku", b'{"type": "query", "query": "not a list"}', 400),
    ],
)
async def test_bad_requests(client: httpx.AsyncClient, path: str, content: bytes, status: int) -> None:
    # GIVEN a request the Poe route cannot serve WHEN it is posted THEN its status, in the Poe error shape
    response = await client.post(path, content=content, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == status and "error" in response.json()


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b'{"version": "1.2", "query": []}', "type"),
        (b'{"type": "query", "query": "not a list"}', "query"),
        (b'{"type": "query", "query": [{"content": "hi"}]}', "query.0.role"),
        (b'{"type": "query", "query": [{"role": "user", "content": ["not", "text"]}]}', "query.0.content"),
        (b'{"type": "query", "query": [], "temperature": "hot"}', "temperature"),
    ],
)
async def test_a_malformed_poe_body_is_a_400_in_the_poe_shape_naming_the_field(
    client: httpx.AsyncClient, content: bytes, field: str
) -> None:
    # GIVEN a JSON body that is no Poe request
    # WHEN it is posted to the Poe route over raw HTTP
    response = await client.post("/poe/claude-3-haiku", content=content, headers={"Authorization": f"Bearer {KEY}"})
    # THEN it is a 400 (never FastAPI's 422) in the Poe route's flat error shape, naming the field at fault
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"error", "code"} and body["code"] == "invalid_body"
    assert f"{field}:" in body["error"]


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the malformed message, on purpose
async def test_the_poe_client_sending_a_malformed_body_gets_a_bot_error(app: FastAPI) -> None:
    # GIVEN a query whose message content is a list (the client's model does not check what it is built with)
    message = fp.ProtocolMessage.model_construct(role="user", content=["not", "text"], content_type="text/markdown")  # type: ignore[arg-type]  # malformed on purpose
    request = fp.QueryRequest(
        version="1.2",
        type="query",
        query=[fp.ProtocolMessage(role="user", content="x")],
        user_id="u",
        conversation_id="c",
        message_id="m",
    )
    request.query = [message]
    statuses: list[int] = []

    async def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    # WHEN the fastapi_poe client sends it to the gateway
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, event_hooks={"response": [record]}) as session:
        with pytest.raises(fp.BotError):
            async for _ in fp.stream_request(
                request, "claude-3-haiku", KEY, base_url=POE_URL, session=session, retry_sleep_time=0
            ):
                pass
    # THEN every try was answered 400 (the client retried it, as it retries any answer that is no event stream)
    assert statuses and set(statuses) == {400}


async def test_a_body_over_the_limit_is_a_413(client: httpx.AsyncClient) -> None:
    # GIVEN a body over 1 MB, once with a Content-Length and once chunked (no length announced)
    big = json.dumps(poe_query("x" * 1_100_000)).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    # WHEN each is posted THEN each is refused with 413
    assert (await client.post("/poe/claude-3-haiku", content=big, headers=headers)).status_code == 413
    assert (await client.post("/poe/claude-3-haiku", content=chunked(), headers=headers)).status_code == 413


async def test_settings_come_from_the_bot_config(client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {"version": "1.2", "type": "settings"}
    response = await client.post("/poe/nova-canvas", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    settings = fp.SettingsResponse.model_validate(response.json())
    assert settings.introduction_message == "Describe the image you want."
    assert settings.enforce_author_role_alternation is False and settings.allow_attachments is False


@pytest.mark.parametrize("report", ["report_feedback", "report_reaction", "report_error"])
async def test_reports_are_accepted(client: httpx.AsyncClient, report: str) -> None:
    body = {"version": "1.2", "type": report, "message": "oops", "metadata": {}}
    response = await client.post("/poe/claude-3-haiku", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200 and response.json() == {}


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_poe_stop_sequences_reach_bedrock(client: httpx.AsyncClient) -> None:
    # GIVEN a Poe query with a stop sequence WHEN answered THEN the text stops before it
    body = poe_query(PROMPT, stop_sequences=[" about"], temperature=0.3)
    response = await client.post("/poe/claude-3-haiku", json=body, headers={"Authorization": f"Bearer {KEY}"})
    texts = [data["text"] for name, data in parse_sse(response.text) if name == "text"]
    assert "".join(texts) == "Tell me a short story"
