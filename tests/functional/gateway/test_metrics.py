"""The gateway's own EMF metrics against the emulator: TimeToFirstToken, CostUSD and tokens per bot (one EMF record per
answer), BedrockErrors by error class."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest

from local.emulator.server import BedrockEmulator
from stacks.constructs.observability import GATEWAY_COST, GATEWAY_INPUT_TOKENS, GATEWAY_OUTPUT_TOKENS, GATEWAY_TTFT
from tests.functional.gateway.conftest import KEY, poe_query
from tests.functional.gateway.test_guardrails import emf_records, emf_values, logged

pytestmark = pytest.mark.anyio
AUTH = {"Authorization": f"Bearer {KEY}"}


def value(record: dict[str, Any], name: str) -> float:
    """The one value of metric ``name`` in an EMF record (a number or, as Powertools writes it, a one-item list)."""
    (single,) = record[name] if isinstance(record[name], list) else [record[name]]
    return float(single)


async def test_a_streamed_answer_emits_its_usage_as_one_emf_record(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a streaming bot with prices WHEN it answers
    await client.post("/poe/nova-lite", json=poe_query("three little words"), headers=AUTH)
    # THEN the answer leaves exactly one EMF record, not one per metric
    (record,) = emf_records(capfd.readouterr().out)
    (definition,) = record["_aws"]["CloudWatchMetrics"]
    # AND it holds the four usage metrics with their units, under the bot and the Powertools service dimensions
    assert definition["Metrics"] == [
        {"Name": "TimeToFirstToken", "Unit": "Milliseconds"},
        {"Name": "CostUSD", "Unit": "Count"},
        {"Name": "InputTokens", "Unit": "Count"},
        {"Name": "OutputTokens", "Unit": "Count"},
    ]
    assert definition["Dimensions"] == [["bot", "service"]]
    assert record["bot"] == "nova-lite" and record["service"] == os.environ["POWERTOOLS_SERVICE_NAME"]
    assert definition["Namespace"] == os.environ["POWERTOOLS_METRICS_NAMESPACE"]
    # AND its values are the usage the answer's log line records
    (usage,) = logged(caplog, "gateway usage")
    assert value(record, "TimeToFirstToken") == usage["first_token_ms"] >= 0
    assert value(record, "InputTokens") == usage["input_tokens"] > 0
    assert value(record, "OutputTokens") == usage["output_tokens"] == 3
    assert value(record, "CostUSD") == pytest.approx(usage["cost_usd"]) and value(record, "CostUSD") > 0


async def test_the_usage_record_carries_the_metrics_the_dashboard_reads(
    client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the names the gateway dashboard graphs per bot, with the bot and service dimensions
    # (stacks/constructs/observability.py; the gateway has no alarm on its EMF metrics)
    dashboard = {GATEWAY_TTFT, GATEWAY_COST, GATEWAY_INPUT_TOKENS, GATEWAY_OUTPUT_TOKENS}
    # WHEN a bot answers
    await client.post("/poe/nova-lite", json=poe_query("hello there"), headers=AUTH)
    # THEN its one usage record publishes each of them under exactly those dimensions
    (record,) = emf_records(capfd.readouterr().out)
    (definition,) = record["_aws"]["CloudWatchMetrics"]
    assert {metric["Name"] for metric in definition["Metrics"]} == dashboard
    assert definition["Dimensions"] == [["bot", "service"]]
    # AND the earlier helper, one value per metric name, still reads it
    ((ttft, _),) = emf_values(json.dumps(record), GATEWAY_TTFT)
    assert ttft == value(record, GATEWAY_TTFT)


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
