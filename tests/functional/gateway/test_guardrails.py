"""Bedrock Guardrails on gateway bots, against the emulator's guardrail (it blocks prompts containing ``BLOCKME``):
the ``guardrailConfig`` sent, an intervention as a user-facing error on Poe and on the OpenAI API (never the blocked
answer as a normal one), its log line and metric; image bots check the prompt with ApplyGuardrail first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.config import Capabilities, GatewaySettings, GuardrailSettings
from lambdas.gateway.guardrails import BLOCKED_MESSAGE
from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, parse_sse, poe_query

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}
GUARDRAIL = GuardrailSettings(identifier="gr0abc123def", version="3")
BLOCKED = "Please tell me about BLOCKME in detail"


@pytest.fixture
def guarded(settings: GatewaySettings) -> GatewaySettings:
    """Three bots with the guardrail: streaming (sync), streaming async, not streaming; and an image bot."""
    bots = dict(settings.bots)
    bots["nova-lite"] = bots["nova-lite"].model_copy(update={"guardrail": GUARDRAIL})
    bots["nova-pro"] = bots["nova-pro"].model_copy(
        update={"guardrail": GUARDRAIL.model_copy(update={"stream_processing_mode": "async", "trace": False})}
    )
    bots["claude-3-haiku"] = bots["claude-3-haiku"].model_copy(
        update={"guardrail": GUARDRAIL, "capabilities": Capabilities(streaming=False)}
    )
    bots["nova-canvas"] = bots["nova-canvas"].model_copy(update={"guardrail": GUARDRAIL})
    return replace(settings, bots=bots, media_bucket="gateway-media")


@pytest.fixture
async def guarded_client(emulator: BedrockEmulator, guarded: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    application: FastAPI = create_app(guarded)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test") as http,
    ):
        yield http


@pytest.fixture
def sent(emulator: BedrockEmulator, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The Converse requests the emulator's guardrail saw (every Converse/ConverseStream goes through it)."""
    requests: list[dict[str, Any]] = []
    guard = emulator.runtime.guardrails.guard

    def recording(request: Mapping[str, Any], result: Any, **options: Any) -> Any:
        requests.append(dict(request))
        return guard(request, result, **options)

    monkeypatch.setattr(emulator.runtime.guardrails, "guard", recording)
    return requests


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    """The structured fields of the log records with ``message`` (Powertools passes them as ``extra``)."""
    return [vars(record) for record in caplog.records if record.getMessage() == message]


def emf_records(output: str) -> list[dict[str, Any]]:
    """Every EMF record Powertools printed (one JSON object a line with an ``_aws`` key)."""
    records = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "_aws" in record:
            records.append(record)
    return records


def emf_values(output: str, name: str) -> list[tuple[float, dict[str, Any]]]:
    """(value, record) of every EMF record of the metric ``name`` printed by Powertools (one value each)."""
    values = []
    for record in emf_records(output):
        if name in record:
            (value,) = record[name] if isinstance(record[name], list) else [record[name]]
            values.append((value, record))
    return values


async def test_text_bots_send_their_guardrail_config(guarded_client: httpx.AsyncClient, sent: list[dict[str, Any]]):
    # GIVEN bots with a guardrail: streamed in sync mode, streamed in async mode without trace, and not streamed
    # WHEN each answers a harmless prompt
    for bot in ("nova-lite", "nova-pro", "claude-3-haiku"):
        response = await guarded_client.post(f"/poe/{bot}", json=poe_query("hello there"), headers=AUTH)
        # THEN the answer is the normal echo
        texts = [data["text"] for name, data in parse_sse(response.text) if name == "text"]
        assert "".join(texts) == "hello there"
    # AND ConverseStream got guardrailConfig with its stream mode, Converse without one (its shape has none)
    assert [request["guardrailConfig"] for request in sent] == [
        {
            "guardrailIdentifier": "gr0abc123def",
            "guardrailVersion": "3",
            "trace": "enabled",
            "streamProcessingMode": "sync",
        },
        {
            "guardrailIdentifier": "gr0abc123def",
            "guardrailVersion": "3",
            "trace": "disabled",
            "streamProcessingMode": "async",
        },
        {"guardrailIdentifier": "gr0abc123def", "guardrailVersion": "3", "trace": "enabled"},
    ]


async def test_bots_without_a_guardrail_send_none(client: httpx.AsyncClient, sent: list[dict[str, Any]]) -> None:
    # GIVEN the shipped bots (no guardrail) WHEN one answers a prompt with the blocked word
    response = await client.post("/poe/nova-lite", json=poe_query(BLOCKED), headers=AUTH)
    # THEN no guardrailConfig is sent and the answer is the echo
    assert "guardrailConfig" not in sent[0]
    assert "".join(data["text"] for name, data in parse_sse(response.text) if name == "text") == BLOCKED


async def test_poe_gets_a_non_retryable_error_instead_of_the_blocked_answer(
    guarded_client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a guarded streaming bot WHEN the prompt trips the guardrail
    response = await guarded_client.post("/poe/nova-lite", json=poe_query(BLOCKED), headers=AUTH)
    events = parse_sse(response.text)
    # THEN whatever was streamed is withdrawn, then a user-caused, non-retryable error, then done
    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-3:] == ["replace_response", "error", "done"]
    assert events[-3][1] == {"text": ""}
    assert events[-2][1] == {"allow_retry": False, "text": BLOCKED_MESSAGE, "error_type": "user_caused_error"}
    # AND the intervention is logged with the guardrail, the Bedrock request id and the trace
    (line,) = logged(caplog, "guardrail intervened")
    assert line["bot"] == "nova-lite" and line["guardrail_id"] == "gr0abc123def"
    assert line["guardrail_version"] == "3" and line["bedrock_request_id"]
    words = line["guardrail_trace"]["inputAssessment"]["gr0abc123def"]["wordPolicy"]["customWords"]
    assert words == [{"match": "BLOCKME", "action": "BLOCKED", "detected": True}]
    # AND one GuardrailInterventions metric is emitted for the bot
    ((value, record),) = emf_values(capfd.readouterr().out, "GuardrailInterventions")
    assert value == 1 and record["bot"] == "nova-lite"


async def test_openai_gets_a_400_or_an_error_chunk(guarded_client: httpx.AsyncClient) -> None:
    # GIVEN a guarded bot, not streamed and streamed
    for bot in ("claude-3-haiku", "nova-lite"):
        body = {"model": bot, "messages": [{"role": "user", "content": BLOCKED}]}
        # WHEN a completion trips the guardrail THEN it is a 400 naming the guardrail, without the answer
        response = await guarded_client.post("/v1/chat/completions", json=body, headers=AUTH)
        assert response.status_code == 400
        assert response.json()["error"] == {
            "message": BLOCKED_MESSAGE,
            "type": "invalid_request_error",
            "param": None,
            "code": "guardrail_intervened",
        }
    # AND a streamed completion ends with the error chunk and [DONE], with no normal finish
    streamed: dict[str, Any] = {
        "model": "nova-lite",
        "messages": [{"role": "user", "content": BLOCKED}],
        "stream": True,
    }
    response = await guarded_client.post("/v1/chat/completions", json=streamed, headers=AUTH)
    events = [data for _, data in parse_sse(response.text)]
    assert events[-2]["error"]["code"] == "guardrail_intervened" and events[-1] == "[DONE]"
    finishes = [c["choices"][0]["finish_reason"] for c in events[:-2] if isinstance(c, dict) and c.get("choices")]
    assert set(finishes) == {None}


async def test_image_bots_check_the_prompt_with_apply_guardrail(
    guarded_client: httpx.AsyncClient,
    emulator: BedrockEmulator,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a guarded image bot WHEN the prompt trips the guardrail
    response = await guarded_client.post("/poe/nova-canvas", json=poe_query("a poster of BLOCKME"), headers=AUTH)
    # THEN the user gets the guardrail's error and no image was generated
    events = parse_sse(response.text)
    assert ("error", {"allow_retry": False, "text": BLOCKED_MESSAGE, "error_type": "user_caused_error"}) in events
    calls = emulator.calls()
    assert calls.get("ApplyGuardrail") == 1 and "InvokeModel" not in calls
    # AND the intervention is logged and counted
    (line,) = logged(caplog, "guardrail intervened")
    assert line["source"] == "apply_guardrail" and line["bot"] == "nova-canvas"
    assert [value for value, _ in emf_values(capfd.readouterr().out, "GuardrailInterventions")] == [1]
