"""Where a streamed answer's time to first token goes inside the gateway's process (BENCH_GATEWAY_PHASES=1).

The gateway benchmark's added TTFT is one figure: the time the gateway's TTFT exceeds the direct client's. This splits
the gateway's side of it, per streamed answer, at four moments on one clock (``time.perf_counter``, the system-wide
CLOCK_MONOTONIC on Linux, so the load generator's and the gateway's processes read the same clock):

- ``sent``: the load generator sends the request (the ``x-bench-sent`` header it adds);
- ``received``: uvicorn's protocol starts parsing the request (the event loop ran the socket's read callback);
- ``entered``: the request reaches the app (its task, started by uvicorn, ran);
- ``calling``: the route has parsed, authorized and built the Converse request (``with_guardrail``, the last step
  before aiobotocore's ``converse_stream``);
- ``http_send`` and ``http_done``: aiobotocore hands the signed request to its HTTP session, and gets the response
  back with its headers read (``AioEndpoint._send``; the first attempt's, should botocore retry);
- ``headers``: ``converse_stream`` returned (the request built, signed and sent, Bedrock's response headers read);
- ``first_write``: the first body bytes holding text go to the server's ``send`` (the first token, framed; an OpenAI
  chunk with a non-empty ``content``, as the load generator counts it; the role chunk before it is not the token).

Beside them, the event loop's lateness: a task in the gateway's loop sleeps 1 to 5 ms at random, again and again,
and records how much later than asked it ran (``LAGS``): what any event (a request's read, a response's, a timer)
waits there behind the other streams' work, and for the core itself when other processes hold it. uvloop's timers
count whole milliseconds, so a lateness under ~1 ms reads as 0 to 1 ms.

Each interval holds the gateway's own work for that step and its wait behind the other streams' work on the event
loop; ``headers`` - ``calling`` also holds the emulator's time to answer, which the direct client pays as well
(its ``converse_stream`` is timed in the load generator, ``Direct.stream``). Installed in the gateway's process by
``install`` (bench only: ``lambdas/`` knows nothing of it); each step costs a ``perf_counter`` call, and the probe's
``send`` wrapper one coroutine call per write.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import re
import time
from collections.abc import Iterable
from typing import Any

from bench.timing import percentile

SENT_HEADER = b"x-bench-sent"
STEPS = ("sent", "received", "entered", "calling", "http_send", "http_done", "headers", "first_write")
RECEIVED = "bench.received"  # the scope key uvicorn's protocol is made to set (``install``)
# the intervals reported, each (name, from, to)
INTERVALS = (
    ("sent to read: the client's send, the gateway's loop reaching the read", "sent", "received"),
    ("read to the app: uvicorn's parse, the request's task started", "received", "entered"),
    ("route: parse, key, bot, request built", "entered", "calling"),
    ("converse_stream: built, signed, sent, headers read", "calling", "headers"),
    ("  of which botocore before the HTTP send", "calling", "http_send"),
    ("  of which the HTTP exchange to the response's headers", "http_send", "http_done"),
    ("  of which botocore after them", "http_done", "headers"),
    ("headers to the first token's write", "headers", "first_write"),
    ("the gateway's part: the app to the first write", "entered", "first_write"),
)

LATENESS = "the event loop's lateness"
_TEXT = re.compile(rb'"content": "[^"]')  # an OpenAI chunk with text (the gateway's chunks: json.dumps spacing)
RECORDS: list[dict[str, float]] = []  # one per streamed answer, in the gateway's process
LAGS: list[float] = []  # the event loop's lateness, seconds, one a sample
_CURRENT: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("bench_phase", default=None)


class PhaseProbe:
    """ASGI wrapper around the gateway's app: a record per HTTP request carrying ``x-bench-sent``, its moments filled
    by the request's own task (the context variable) and the first body message through ``send``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lag: asyncio.Task[None] | None = None

    def __getattr__(self, name: str) -> Any:  # uvicorn and the bench read the app's attributes (state, ...)
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._lag is None and scope["type"] == "http":  # the server's loop: its lateness sampled from now on
            self._lag = asyncio.get_running_loop().create_task(_sample_lateness())
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope["headers"] if name == SENT_HEADER), None)
        if sent is None:
            await self.app(scope, receive, send)
            return
        record = {"sent": float(sent), "entered": time.perf_counter()}
        if RECEIVED in scope:
            record["received"] = scope[RECEIVED]
        _CURRENT.set(record)

        async def first_write(message: dict[str, Any]) -> None:
            if "first_write" not in record and _TEXT.search(message.get("body") or b""):
                record["first_write"] = time.perf_counter()
            await send(message)

        await self.app(scope, receive, first_write)
        if "first_write" in record and "headers" in record:
            RECORDS.append(record)


async def _sample_lateness() -> None:
    """Forever: sleep 1-5 ms (whole milliseconds, uvloop's timer unit), record how late the sleep ended."""
    rng = random.Random(11)
    while True:
        delay = rng.randint(1, 5) / 1000
        asked = time.perf_counter()
        await asyncio.sleep(delay)
        LAGS.append(time.perf_counter() - asked - delay)


def _mark(step: str) -> None:
    record = _CURRENT.get()
    if record is not None and step not in record:
        record[step] = time.perf_counter()


def install() -> None:
    """In the gateway's process, before ``local_gateway`` builds the app: the probe around the app, a mark where the
    route hands the built request to aiobotocore and one where aiobotocore's response is handed to the reader."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    import lambdas.gateway.app as app_module
    import lambdas.gateway.factory as factory

    message_begin = HttpToolsProtocol.on_message_begin

    def marked_begin(self: Any) -> None:
        message_begin(self)
        self.scope[RECEIVED] = time.perf_counter()

    HttpToolsProtocol.on_message_begin = marked_begin  # type: ignore[method-assign]
    create_app, with_guardrail, converse_events = app_module.create_app, factory.with_guardrail, factory.converse_events

    def probed_app(*args: Any, **kwargs: Any) -> Any:
        return PhaseProbe(create_app(*args, **kwargs))

    def marked_guardrail(*args: Any, **kwargs: Any) -> Any:
        _mark("calling")
        return with_guardrail(*args, **kwargs)

    def marked_events(*args: Any, **kwargs: Any) -> Any:
        _mark("headers")
        return converse_events(*args, **kwargs)

    from aiobotocore.endpoint import AioEndpoint

    http_send = AioEndpoint._send

    async def marked_send(self: Any, request: Any) -> Any:
        _mark("http_send")
        response = await http_send(self, request)
        _mark("http_done")
        return response

    AioEndpoint._send = marked_send
    app_module.create_app = probed_app
    factory.with_guardrail = marked_guardrail
    factory.converse_events = marked_events


def take() -> dict[str, Any]:
    """The records and the lateness samples so far, and none kept."""
    taken = {"records": RECORDS[:], "lags": LAGS[:]}
    RECORDS.clear()
    LAGS.clear()
    return taken


def summary(records: Iterable[dict[str, float]], since: float = 0.0, lags: Iterable[float] = ()) -> dict[str, Any]:
    """p50 and p99 (ms) of each interval over the answers sent at or after ``since``, and of the loop's lateness."""
    chosen = [r for r in records if r["sent"] >= since and all(step in r for step in STEPS)]
    out: dict[str, Any] = {"answers": len(chosen)}
    late = [lag * 1000 for lag in lags]
    if late:
        out[LATENESS] = {"p50_ms": percentile(late, 50), "p90_ms": percentile(late, 90), "p99_ms": percentile(late, 99)}
    for name, start, end in INTERVALS:
        values = [(r[end] - r[start]) * 1000 for r in chosen]
        if values:
            out[name] = {"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}
    return out
