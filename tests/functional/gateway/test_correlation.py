"""Correlation ids: every log line of a request carries its id, concurrent requests keep their own, and the id comes
back in ``x-gateway-request-id``; on AWS it is API Gateway's request id (the adapter's ``x-amzn-request-context``)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lambdas.gateway.correlation import request_id
from tests.functional.gateway.conftest import KEY

pytestmark = pytest.mark.anyio


def usage_lines(log: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "gateway usage"]


async def ask(client: httpx.AsyncClient, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": "nova-lite", "messages": [{"role": "user", "content": text}]}
    return await client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}", **(headers or {})}
    )


async def test_concurrent_requests_log_under_their_own_ids(app: FastAPI, log_lines: io.StringIO) -> None:
    # GIVEN three requests in flight at once, each in its own task (as uvicorn runs them)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:

        async def one(text: str) -> httpx.Response:
            return await asyncio.create_task(ask(client, text))

        responses = await asyncio.gather(*(one(f"question number {i}") for i in range(3)))
    # THEN each answer names its id, the ids differ, and each usage log line carries its request's id
    ids = [r.headers["x-gateway-request-id"] for r in responses]
    assert all(r.status_code == 200 for r in responses) and len(set(ids)) == 3
    logged = {line["request_id"] for line in usage_lines(log_lines)}
    assert logged == set(ids)


async def test_api_gateways_request_id_is_used_and_a_client_id_is_not(app: FastAPI, log_lines: io.StringIO) -> None:
    context = json.dumps({"requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "stage": "prod"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        # WHEN the adapter passes API Gateway's request context
        from_api = await ask(client, "hello", {"x-amzn-request-context": context})
        # AND a client sends its own x-request-id (never reflected)
        from_client = await ask(client, "hello", {"x-request-id": "client-chosen"})
    assert from_api.headers["x-gateway-request-id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert from_client.headers["x-gateway-request-id"] != "client-chosen"
    assert usage_lines(log_lines)[0]["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


@pytest.mark.parametrize(
    "header",
    [b"not json", b'{"requestId": "a\\nb"}', b'{"requestId": 5}', b"[1]", b'{"requestId": "' + b"x" * 65 + b'"}'],
)
def test_a_malformed_request_context_gets_a_new_id(header: bytes) -> None:
    rid = request_id([(b"x-amzn-request-context", header)])
    assert len(rid) == 32 and rid.isalnum()


async def test_a_request_never_looks_up_opentelemetry(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN OpenTelemetry's global provider look-ups made to fail (FastAPI's native telemetry calls them per request)
    from opentelemetry import _logs, metrics, trace

    def consulted() -> None:
        raise AssertionError("OpenTelemetry looked up during a request")

    for module, name in (
        (trace, "get_tracer_provider"),
        (metrics, "get_meter_provider"),
        (_logs, "get_logger_provider"),
    ):
        monkeypatch.setattr(module, name, consulted)
    # WHEN a streamed answer and a health check go through the app
    health = await client.get("/health")
    body = {"model": "nova-lite", "stream": True, "messages": [{"role": "user", "content": "hello there"}]}
    streamed = await client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    # THEN both succeed: the app's telemetry is off, so FastAPI never asks OpenTelemetry for a provider
    assert health.status_code == 200 and streamed.status_code == 200
    assert streamed.text.rstrip().endswith("data: [DONE]")


async def test_a_started_app_lets_young_objects_die_before_the_collector_runs(app: FastAPI) -> None:
    # GIVEN the gateway app whose lifespan has started (the fixture runs it, as uvicorn does)
    import gc

    from lambdas.gateway.app import GC_YOUNG_THRESHOLD

    # WHEN the garbage collector's thresholds are read
    young, *older = gc.get_threshold()
    # THEN young collections wait for GC_YOUNG_THRESHOLD allocations (each streamed frame's short-lived containers
    # mostly die first), the older generations keep CPython's own thresholds
    assert young == GC_YOUNG_THRESHOLD == 10_000
    assert older == [10, 10]
