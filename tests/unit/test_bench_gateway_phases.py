"""bench/gateway_phases.py: the gateway's time to first token split into steps, timed in the gateway's process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import gateway_phases


@pytest.fixture(autouse=True)
def _no_records() -> None:
    gateway_phases.take()


def _request(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app streaming an answer as the gateway does: the route's marks, the role chunk, then text."""
    for step in ("calling", "http_send", "http_done", "headers"):
        gateway_phases._mark(step)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b'data: {"delta": {"role": "assistant", "content": ""}}\n\n'})
    await send({"type": "http.response.body", "body": b'data: {"delta": {"content": "Hi"}}\n\n', "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _serve(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_request_carrying_its_send_time_gets_every_step_the_first_write_being_the_first_text(monkeypatch) -> None:
    # GIVEN the probe around an app streaming a role chunk, then text, and a clock ticking 1 s a reading
    clock = iter(float(second) for second in range(100, 200))
    monkeypatch.setattr(gateway_phases.time, "perf_counter", lambda: next(clock))
    probe = gateway_phases.PhaseProbe(_answer)
    # WHEN a request sent at 99.5 s comes in
    sent = _serve(probe, _request([(gateway_phases.SENT_HEADER, b"99.5")]) | {gateway_phases.RECEIVED: 99.8})
    # THEN every message reached the server unchanged, and the record has each step in order: the first write is
    # the chunk with text (the sixth reading), not the role chunk before it
    assert [m.get("body") for m in sent][2] == b'data: {"delta": {"content": "Hi"}}\n\n' and len(sent) == 4
    assert gateway_phases.take()["records"] == [
        {
            "sent": 99.5,
            "received": 99.8,
            "entered": 100.0,
            "calling": 101.0,
            "http_send": 102.0,
            "http_done": 103.0,
            "headers": 104.0,
            "first_write": 105.0,
        }
    ]


def test_a_request_without_the_header_is_not_recorded() -> None:
    # GIVEN the probe around the app
    probe = gateway_phases.PhaseProbe(_answer)
    # WHEN a request without x-bench-sent comes in (the warm-up's health checks, another client)
    sent = _serve(probe, _request([(b"content-type", b"application/json")]))
    # THEN it is served as without the probe, and no record is kept
    assert len(sent) == 4 and gateway_phases.take()["records"] == []


def test_the_summary_takes_the_answers_sent_since_the_steady_state_and_gives_each_steps_p50_and_p99() -> None:
    # GIVEN two answers sent after 10 s, one before (the ramp), one without a first write (an error)
    records = [
        {"sent": 9.0, "received": 9.05, "entered": 9.1, "calling": 9.2, "http_send": 9.25, "http_done": 9.28}
        | {"headers": 9.3, "first_write": 9.4},
        {
            "sent": 10.0,
            "received": 10.0005,
            "entered": 10.001,
            "calling": 10.002,
            "http_send": 10.003,
            "http_done": 10.009,
            "headers": 10.010,
            "first_write": 10.011,
        },
        {
            "sent": 11.0,
            "received": 11.002,
            "entered": 11.003,
            "calling": 11.004,
            "http_send": 11.006,
            "http_done": 11.019,
            "headers": 11.020,
            "first_write": 11.022,
        },
        {"sent": 12.0, "entered": 12.001},
    ]
    # WHEN they are summarised from 10 s on
    summary = gateway_phases.summary(records, since=10.0)
    # THEN only the two complete answers after 10 s count, each step's p50 the lower and p99 the higher (ms)
    assert summary["answers"] == 2
    steps = {name: (round(v["p50_ms"], 6), round(v["p99_ms"], 6)) for name, v in summary.items() if name != "answers"}
    assert steps == {
        "sent to read: the client's send, the gateway's loop reaching the read": (0.5, 2.0),
        "read to the app: uvicorn's parse, the request's task started": (0.5, 1.0),
        "route: parse, key, bot, request built": (1.0, 1.0),
        "converse_stream: built, signed, sent, headers read": (8.0, 16.0),
        "  of which botocore before the HTTP send": (1.0, 2.0),
        "  of which the HTTP exchange to the response's headers": (6.0, 13.0),
        "  of which botocore after them": (1.0, 1.0),
        "headers to the first token's write": (1.0, 2.0),
        "the gateway's part: the app to the first write": (10.0, 19.0),
    }


def test_the_summary_gives_the_event_loops_lateness_in_ms() -> None:
    # GIVEN lateness samples of the gateway's loop (seconds), one answer's steps aside
    lags = [0.0002, 0.0011, 0.0009, 0.004, 0.0005]
    # WHEN they are summarised
    summary = gateway_phases.summary([], lags=lags)
    # THEN the lateness is reported in ms at p50, p90 and p99, with no answer counted
    lateness = summary[gateway_phases.LATENESS]
    assert summary["answers"] == 0
    assert (round(lateness["p50_ms"], 6), round(lateness["p90_ms"], 6), round(lateness["p99_ms"], 6)) == (0.9, 4.0, 4.0)
