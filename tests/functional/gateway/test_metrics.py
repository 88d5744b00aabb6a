"""The gateway's own EMF metrics against the emulator: TimeToFirstToken, CostUSD and tokens per bot, BedrockErrors by
error class."""

from __future__ import annotations

import httpx
import pytest

from local.emulator.server import BedrockEmulator
from tests.functional.gateway.conftest import KEY, poe_query
from tests.functional.gateway.test_guardrails import emf_values, logged

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}


async def test_streamed_answers_emit_time_to_first_token(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a streaming bot WHEN it answers
    await client.post("/poe/nova-lite", json=poe_query("hello there"), headers=AUTH)
    # THEN the answer's log line and a TimeToFirstToken metric (ms, by bot) carry the time to the first token
    ((value, record),) = emf_values(capfd.readouterr().out, "TimeToFirstToken")
    assert value >= 0 and record["bot"] == "nova-lite"
    (metric,) = record["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    assert metric == {"Name": "TimeToFirstToken", "Unit": "Milliseconds"}
    (usage,) = logged(caplog, "gateway usage")
    assert usage["first_token_ms"] == value


async def test_answers_emit_cost_and_tokens_per_bot(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a bot with prices WHEN it answers
    await client.post("/poe/nova-lite", json=poe_query("three little words"), headers=AUTH)
    out = capfd.readouterr().out
    (usage,) = logged(caplog, "gateway usage")
    # THEN cost, input and output tokens are metrics by bot, equal to the usage the answer's log line records
    ((cost, cost_record),) = emf_values(out, "CostUSD")
    ((tokens_in, in_record),) = emf_values(out, "InputTokens")
    ((tokens_out, _),) = emf_values(out, "OutputTokens")
    assert cost_record["bot"] == in_record["bot"] == "nova-lite"
    assert tokens_in == usage["input_tokens"] > 0 and tokens_out == usage["output_tokens"] == 3
    assert cost == pytest.approx(usage["cost_usd"]) and cost > 0


async def test_bedrock_errors_are_counted_by_class(
    client: httpx.AsyncClient, emulator: BedrockEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN Bedrock throttles the next call
    emulator.state.faults["runtime_throttle"] = 1
    # WHEN a completion is asked for THEN it is a 429
    body = {"model": "nova-lite", "messages": [{"role": "user", "content": "hello"}]}
    response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 429
    # AND one BedrockErrors metric counts it under its class, for all bots together
    ((value, record),) = emf_values(capfd.readouterr().out, "BedrockErrors")
    assert value == 1 and record["error_class"] == "rate_limit_error" and "bot" not in record
