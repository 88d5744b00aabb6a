"""Writing a streamed answer: what the answer has ready goes out in one write.

An answer is forwarded frame by frame, and each frame written on its own costs a socket write and a trip through the
ASGI ``send`` chain: with hundreds of streams open that, not the text, is most of a process's CPU. ``coalesced`` reads
the answer in a task of its own and hands the writer everything produced since its last write at once, so that frames
that arrived together (one network read from Bedrock holds several when the process is busy) leave together. It never
waits for more: a frame that arrives alone is written alone, at once, so nothing is delayed, the first token included.

``AnswerResponse`` writes the body of a streamed answer past the ASGI middlewares' ``send`` wrappers, to the server's
own ``send`` (``GatewayApp`` keeps it in the request's scope). Every wrapper between them acts on the response's start
(status and headers) or on its last body message only, so the answer's other body messages pass through them
unchanged; each wrapper is a coroutine call per write, for nothing. The start and the last message still go through
the whole chain. Which wrappers there are is fixed: ``lambdas.gateway.app.PASS_THROUGH_MIDDLEWARE`` names them, and
``GatewayApp`` refuses to serve with any other (one that may change or count body messages).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SERVER_SEND = "gateway.server_send"  # scope key: the server's own ``send``, set by ``GatewayApp`` (lambdas.gateway.app)

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


class AnswerResponse(StreamingResponse):
    """A streamed answer (``text/event-stream``) whose body messages, all but the last, go to the server's ``send``
    (``SERVER_SEND`` in the scope) instead of through the middlewares' wrappers, which pass them on unchanged (see
    the module). Without ``SERVER_SEND`` in the scope (an app that does not set it) it is Starlette's response."""

    _body_send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._body_send = scope.get(SERVER_SEND)
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        """Starlette's ``stream_response`` (the start, a body message per chunk, an empty last one), with the body
        messages before the last one sent to the server's ``send`` directly."""
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        body_send = self._body_send or send
        async for chunk in self.body_iterator:
            data: Any = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
            await body_send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
