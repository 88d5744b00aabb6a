"""The gateway's own CPU per streamed frame, in one process and without sockets: ``python -m bench.gateway_path``.

The gateway benchmark (``bench/gateway_bench.py``) measures a frame's CPU through the whole gateway process: the
event loop, aiohttp reading Bedrock's response, uvicorn writing the answer, the system calls and the gateway's own
code. On a shared machine that figure moves by several microseconds between runs of the same code, more than most
changes to the gateway's code are worth. This measures only the gateway's code a text frame passes through, as an
OpenAI streamed answer takes it: ``converse_events`` (framing, the text delta's JSON) over aiobotocore's
``AioEventStream``, ``TextStream``, ``openai_chunks`` and ``coalesced``, the frames being the emulator's encoding of
ConverseStream messages, one message per read, each read a wake-up of the reading task (a future set by the event
loop, as a socket read sets aiohttp's). No HTTP, no sockets, no logging of the answer (the usage record is per
answer, not per frame).

Environment: BENCH_PATH_FRAMES (text frames per answer, default 1,000), BENCH_PATH_ANSWERS (answers per run, default
200, 50 at a time), BENCH_REPEAT (runs, default 5; the report gives each and the lowest).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import botocore.session
import uvloop
from aiobotocore.eventstream import AioEventStream
from aiobotocore.parsers import create_parser

from lambdas.gateway.app import GC_YOUNG_THRESHOLD, openai_chunks
from lambdas.gateway.events import Finished
from lambdas.gateway.eventstream import converse_events
from lambdas.gateway.factory import TextStream
from lambdas.gateway.streaming import coalesced
from lambdas.gateway.translate import Usage
from local.emulator.eventstream import event_frame

CONCURRENT = 50  # answers in flight at once


def answer_frames(words: int) -> list[bytes]:
    """A ConverseStream body as the emulator sends it: ``words`` text deltas between a start and a stop."""
    deltas = [
        event_frame("contentBlockDelta", {"delta": {"text": f" w{i}"}, "contentBlockIndex": 0}) for i in range(words)
    ]
    usage = {"usage": {"inputTokens": 3, "outputTokens": words, "totalTokens": words + 3}, "metrics": {"latencyMs": 7}}
    return [
        event_frame("messageStart", {"role": "assistant"}),
        *deltas,
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("messageStop", {"stopReason": "end_turn"}),
        event_frame("metadata", usage),
    ]


class _Content:
    """aiohttp's ``StreamReader`` as ``converse_events`` reads it: one message a read, each a wake-up."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames

    def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        loop = asyncio.get_running_loop()
        for frame in self._frames:
            ready = loop.create_future()
            loop.call_soon(ready.set_result, None)
            await ready
            yield frame, True


class _Raw:
    def __init__(self, frames: list[bytes]) -> None:
        self.content = _Content(frames)


class _Bot:
    """What ``TextStream`` asks of its bot: the reasoning switch, and the answer's end (its usage, no log or metric)."""

    class config:  # as BotHandler.config
        name = "bench"

        class capabilities:
            reasoning = False

    def finish(
        self, stop_reason: str | None, metadata: Any, count: Any, first_token_ms: int | None, _: Any
    ) -> Finished:
        return Finished(stop_reason, Usage(3, 0), 7, None, 0.0, first_token_ms=first_token_ms)

    def failed(self, error: BaseException) -> BaseException:
        return error


def converse_stream_shapes() -> tuple[Any, Any]:
    """The ConverseStream output's ``stream`` shape and the event-stream parser, as aiobotocore's client makes them."""
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    output = model.operation_model("ConverseStream").output_shape.members["stream"]
    return output, create_parser(model.metadata["protocol"]).EVENT_STREAM_PARSER_CLS()


def streamed_answer(frames: list[bytes], shapes: tuple[Any, Any]) -> AsyncIterator[bytes]:
    """The writes of an OpenAI streamed answer over ``frames``, through the gateway's code as the route builds it."""
    stream = AioEventStream(_Raw(frames), shapes[0], shapes[1], "ConverseStream")
    events = TextStream(_Bot(), converse_events(stream), None)  # type: ignore[arg-type]  # a stand-in bot
    return coalesced(openai_chunks(events, "bench", include_usage=False))


async def _run(frames: list[bytes], rounds: int) -> float:
    """CPU seconds of ``rounds`` x ``CONCURRENT`` answers of ``frames``."""
    shapes = converse_stream_shapes()

    async def answer() -> None:
        async for _ in streamed_answer(frames, shapes):
            pass

    started = time.process_time()
    for _ in range(rounds):
        await asyncio.gather(*(answer() for _ in range(CONCURRENT)))
    return time.process_time() - started


def main() -> None:
    words = int(os.environ.get("BENCH_PATH_FRAMES", "1000"))
    rounds = max(1, int(os.environ.get("BENCH_PATH_ANSWERS", "200")) // CONCURRENT)
    repeat = max(1, int(os.environ.get("BENCH_REPEAT", "5")))
    frames = answer_frames(words)
    gc.freeze()  # as the gateway's lifespan does (lambdas.gateway.app)
    gc.set_threshold(GC_YOUNG_THRESHOLD)
    per_frame = [uvloop.run(_run(frames, rounds)) / (rounds * CONCURRENT * words) * 1e6 for _ in range(repeat)]
    runs = ", ".join(f"{value:.2f}" for value in per_frame)
    print(
        f"gateway code per text frame (in-process, {words} frames an answer): {runs} us; lowest {min(per_frame):.2f} us"
    )
    print(f"   (load average {os.getloadavg()[0]:.2f}; pin it with taskset -c <core> for steadier figures)")


if __name__ == "__main__":
    main()
