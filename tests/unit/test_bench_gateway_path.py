"""``bench.gateway_path`` measures the path a streamed answer really takes: its stand-in response and bot give the
answer the gateway streams, not an error line."""

from __future__ import annotations

import asyncio
import json

from bench.gateway_path import answer_frames, converse_stream_shapes, streamed_answer


async def collect(frames: list[bytes]) -> bytes:
    return b"".join([chunk async for chunk in streamed_answer(frames, converse_stream_shapes())])


def test_the_measured_path_streams_every_word_and_a_finished_answer() -> None:
    # GIVEN the bench's ConverseStream body of three words
    frames = answer_frames(3)
    # WHEN it goes through the measured path
    body = asyncio.run(collect(frames)).decode()
    # THEN the client gets the role, each word as content, the stop and [DONE]: an answer, no error
    lines = [line.removeprefix("data: ") for line in body.split("\n\n") if line]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"content": " w0"},
        {"content": " w1"},
        {"content": " w2"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
