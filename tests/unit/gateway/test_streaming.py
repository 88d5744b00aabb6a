"""``coalesced``: an answer's chunks, joined per write, none lost, none held back, errors and cancellation kept;
``ContentLines``: an OpenAI content chunk with only its text encoded per frame, byte for byte the whole chunk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from lambdas.gateway.app import ContentLines, _chunk, data_line, sse, text_event
from lambdas.gateway.streaming import coalesced


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
