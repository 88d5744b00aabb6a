"""``coalesced``: an answer's chunks, joined per write, none lost, none held back, errors and cancellation kept;
``ContentLines``: an OpenAI content chunk with only its text encoded per frame, byte for byte the whole chunk;
``AnswerResponse``: the server gets the messages Starlette's response sends, the body past the middlewares' wrappers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.types import Message

from lambdas.gateway.app import ContentLines, _chunk, data_line, sse, text_event
from lambdas.gateway.streaming import SERVER_SEND, AnswerResponse, coalesced


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


def test_chunks_ready_together_leave_in_one_write_and_in_order() -> None:
    # GIVEN an answer that produces three chunks without waiting in between (one network read held them all)
    async def answer() -> AsyncIterator[bytes]:
        for chunk in (b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"):
            yield chunk

    # WHEN it is written through coalesced
    writes = asyncio.run(collect(coalesced(answer())))
    # THEN the three go out as one write, in order, nothing lost
    assert writes == [b"data: 1\n\ndata: 2\n\ndata: 3\n\n"]


def test_a_chunk_that_arrives_alone_is_written_at_once() -> None:
    # GIVEN an answer whose second chunk comes only after the writer has written the first
    written: list[bytes] = []
    first_written = asyncio.Event()

    async def answer() -> AsyncIterator[bytes]:
        yield b"first"
        await first_written.wait()  # the second chunk exists only once the first is out: it cannot be waited for
        yield b"second"

    async def write() -> None:
        async for chunk in coalesced(answer()):
            written.append(chunk)
            first_written.set()

    # WHEN it is written THEN each chunk is its own write: the first was not held back for the second (held back, it
    # would wait for ever: the guard turns that into a failure instead of a hung test)
    asyncio.run(asyncio.wait_for(write(), 30))
    assert written == [b"first", b"second"]


def test_an_error_is_raised_after_the_chunks_before_it() -> None:
    # GIVEN an answer that fails after two chunks
    async def answer() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        raise RuntimeError("upstream broke")

    written: list[bytes] = []

    async def write() -> None:
        async for chunk in coalesced(answer()):
            written.append(chunk)

    # WHEN it is written THEN both chunks went out and then the error is raised, not swallowed
    with pytest.raises(RuntimeError, match="upstream broke"):
        asyncio.run(write())
    assert b"".join(written) == b"ab"


def test_closing_the_writer_closes_the_answer() -> None:
    # GIVEN an answer that would stream forever, and records when it is closed
    closed = asyncio.Event()

    async def answer() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x"
                await asyncio.sleep(0)
        finally:
            closed.set()

    async def leave_after_one_write() -> bool:
        stream = coalesced(answer())
        await anext(stream)
        # WHEN the client leaves (the response closes its body iterator)
        await stream.aclose()
        return closed.is_set()

    # THEN the answer was closed too (its Bedrock stream is released), not left running
    assert asyncio.run(leave_after_one_write()) is True


@pytest.mark.parametrize(
    "text", ["", "hello", ' "quoted" \\ back\nslash\t', "été 東京 🙂", "\u2028\x00\x1f", "\ue000content\ue000"]
)
def test_a_content_line_is_the_whole_chunk_encoded(text: str) -> None:
    # GIVEN an answer's id, model and time, and a text delta (escapes, non-ASCII, control characters, the mark itself)
    lines = ContentLines("chatcmpl-abc", "claude-3-haiku", 1700000000)
    # WHEN its data line is made with only the text encoded
    line = lines(text)
    # THEN it is, byte for byte, the data line of the whole chunk encoded
    assert line == data_line(_chunk("chatcmpl-abc", "claude-3-haiku", 1700000000, {"content": text}, None))


@pytest.mark.parametrize(
    "text", ["", "hello", ' "quoted" \\ back\nslash\t', "été 東京 🙂", "\u2028\x00\x1f\x7f", "\ud800 lone surrogate"]
)
def test_a_poe_text_event_is_the_whole_event_encoded(text: str) -> None:
    # GIVEN a text delta (escapes, non-ASCII, control characters, a lone surrogate)
    # WHEN its Poe text event is made with only the text encoded
    # THEN it is, byte for byte, the event with its whole data encoded by json.dumps
    assert text_event(text) == sse("text", {"text": text})


def test_a_model_name_holding_the_mark_still_gets_the_whole_chunk() -> None:
    # GIVEN a model name that holds the mark the template is cut at
    model = "odd\ue000content\ue000model"
    # WHEN a content line is made THEN it is still the whole chunk, encoded whole
    line = ContentLines("chatcmpl-abc", model, 1)("hi")
    assert line == data_line(_chunk("chatcmpl-abc", model, 1, {"content": "hi"}, None))
    assert json.loads(line.decode().removeprefix("data: "))["choices"][0]["delta"] == {"content": "hi"}


def _messages_through_a_middleware(scope_send: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An ``AnswerResponse`` of three chunks behind one wrapping middleware: (what the middleware's wrapper saw, what
    the server got). ``scope_send``: the scope holds the server's ``send`` as ``GatewayApp`` puts it there."""
    wrapped: list[dict[str, Any]] = []
    server: list[dict[str, Any]] = []

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"):
            yield chunk

    async def server_send(message: Message) -> None:
        server.append(dict(message))

    async def wrapper(message: Message) -> None:
        wrapped.append(dict(message))
        await server_send(message)

    async def receive() -> Message:
        await asyncio.Event().wait()  # no disconnect while the answer is written
        return {"type": "http.disconnect"}

    scope: dict[str, Any] = {"type": "http", "asgi": {"spec_version": "2.3"}}
    if scope_send:
        scope[SERVER_SEND] = server_send
    response = AnswerResponse(chunks(), media_type="text/event-stream")
    asyncio.run(response(scope, receive, wrapper))
    return wrapped, server


def test_an_answers_body_goes_to_the_server_past_the_wrappers_start_and_end_through_them() -> None:
    # GIVEN a streamed answer behind a middleware's send wrapper, the server's send in the scope (GatewayApp)
    # WHEN it is written
    wrapped, server = _messages_through_a_middleware(scope_send=True)
    # THEN the server gets exactly what Starlette's StreamingResponse sends through the wrapper (the start, one body
    # message per chunk, an empty last one), and the wrapper sees the start and the last message, not the chunks
    plain_wrapped, plain_server = _messages_through_a_middleware(scope_send=False)
    assert server == plain_server == plain_wrapped
    assert [m["type"] for m in server] == ["http.response.start", *["http.response.body"] * 4]
    assert [m.get("body") for m in server[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b""]
    assert wrapped == [server[0], server[-1]]
    assert server[-1]["more_body"] is False and all(m["more_body"] for m in server[1:-1])


def test_the_app_refuses_a_middleware_not_known_to_pass_body_messages_on() -> None:
    # GIVEN the gateway app with one more middleware, which could change or count the body messages streamed
    # answers send past it
    from starlette.middleware.gzip import GZipMiddleware

    from lambdas.gateway.app import GatewayApp

    app = GatewayApp()
    app.add_middleware(GZipMiddleware)
    # WHEN its middleware stack is built (at its first request) THEN it refuses, naming the middleware and the fix
    with pytest.raises(RuntimeError, match="GZipMiddleware sits between the server and the routes.*PASS_THROUGH"):
        app.build_middleware_stack()


def test_the_gateway_apps_middlewares_all_pass_body_messages_on() -> None:
    # GIVEN the gateway app as deployed (its correlation ids and team keys, FastAPI's own layers)
    from lambdas.gateway.app import create_app
    from lambdas.gateway.config import GatewaySettings, load_bots

    app = create_app(GatewaySettings(bots=dict(load_bots()), access_keys={"default": "k" * 32}))
    # WHEN its middleware stack is built THEN it is accepted: each layer is one known to pass body messages on
    assert app.build_middleware_stack() is not None
