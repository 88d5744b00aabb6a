"""The gateway's own EMF metrics against the emulator: TimeToFirstToken, CostUSD and tokens per bot (one EMF record per
answer), BedrockErrors by error class."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from lambdas.gateway import metrics
from lambdas.gateway.app import create_app
from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.metrics import EmfAgent
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


@pytest.fixture
def agent_socket() -> Iterator[socket.socket]:
    """A UDP socket standing in for the CloudWatch agent's EMF listener."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(30)  # a guard against a hung test, not a timing assertion
    yield listener
    listener.close()
    metrics.use_agent(None)


async def test_with_an_agent_the_record_goes_to_it_and_is_not_printed(
    emulator: BedrockEmulator,
    settings: GatewaySettings,
    agent_socket: socket.socket,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the gateway configured as on Fargate: EMF records to the CloudWatch agent's listener, for one log group
    port = agent_socket.getsockname()[1]
    agent = EmfAgent.parse(f"udp://127.0.0.1:{port}", "gateway-metrics")
    app = create_app(replace(settings, emf_agent=agent))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # WHEN a bot answers
            await client.post("/poe/nova-lite", json=poe_query("three little words"), headers=AUTH)
    # THEN the agent receives the answer's one EMF record, with the log group it is to be written to
    data, _ = agent_socket.recvfrom(65_535)
    assert data.endswith(b"\n")
    record = json.loads(data)
    assert record["_aws"]["LogGroupName"] == "gateway-metrics"
    (definition,) = record["_aws"]["CloudWatchMetrics"]
    assert [m["Name"] for m in definition["Metrics"]] == ["TimeToFirstToken", "CostUSD", "InputTokens", "OutputTokens"]
    assert definition["Dimensions"] == [["bot", "service"]] and record["bot"] == "nova-lite"
    assert value(record, "OutputTokens") == 3
    # AND nothing was printed as EMF (a record both printed and sent could become two data points)
    assert emf_records(capfd.readouterr().out) == []


def test_with_an_agent_and_metrics_disabled_nothing_is_sent(
    agent_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an agent configured and POWERTOOLS_METRICS_DISABLED set (as flush_metrics honours it)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    metrics.use_agent(EmfAgent.parse(f"udp://127.0.0.1:{agent_socket.getsockname()[1]}", "group"))
    agent_socket.setblocking(False)
    # WHEN a metric is emitted
    metrics.emit(metrics.BEDROCK_ERRORS, 1, "Count", error_class="api_error")
    # THEN no datagram is waiting for the agent
    with pytest.raises(BlockingIOError):
        agent_socket.recvfrom(65_535)
