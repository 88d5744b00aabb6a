"""Writing a streamed answer: what the answer has ready goes out in one write.

An answer is forwarded frame by frame, and each frame written on its own costs a socket write and a trip through the
ASGI ``send`` chain: with hundreds of streams open that, not the text, is most of a process's CPU. ``coalesced`` reads
the answer in a task of its own and hands the writer everything produced since its last write at once, so that frames
that arrived together (one network read from Bedrock holds several when the process is busy) leave together. It never
waits for more: a frame that arrives alone is written alone, at once, so nothing is delayed, the first token included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

_END = object()  # the answer is complete


class _Failed:
    """The answer's iterator raised ``error``: raised again in the writer, after what came before it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def coalesced(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """``chunks`` joined per write: each item is every chunk produced since the previous one (in order, none
    dropped); an error of ``chunks`` is raised after the chunks before it. Closing this iterator (the client left)
    cancels the reading task, which closes ``chunks``.

    The hand-off is a list and one future the writer waits on when the list is empty (an ``asyncio.Queue`` does the
    same with more bookkeeping per item: counts of unfinished items, an event, a deque of waiters)."""
    ready: list[object] = []
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[None]] = []  # the writer's future while it waits for a chunk (at most one)

    def put(item: object) -> None:
        ready.append(item)
        if waiting and not waiting[0].done():
            waiting[0].set_result(None)

    async def read() -> None:
        try:
            async for chunk in chunks:
                put(chunk)
        except Exception as error:  # handed to the writer; cancellation is not an answer's error
            put(_Failed(error))
        put(_END)

    reader = asyncio.ensure_future(read())
    try:
        while True:
            if not ready:
                waiting.append(loop.create_future())
                try:
                    await waiting[0]
                finally:
                    waiting.clear()
            batch = ready[:]
            ready.clear()
            data: list[bytes] = []
            for item in batch:
                if isinstance(item, bytes):
                    data.append(item)
                    continue
                if data:  # what came before the end or the error
                    yield b"".join(data)
                if isinstance(item, _Failed):
                    raise item.error
                return
            yield data[0] if len(data) == 1 else b"".join(data)
    finally:
        if not reader.done():
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
