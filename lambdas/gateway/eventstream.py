"""ConverseStream events as aiobotocore parses them, with a short way for the event most of an answer is made of.

aiobotocore parses every event-stream message with botocore's generic, shape-driven parser behind two async
generators; for a text delta (``contentBlockDelta`` whose ``delta`` is ``{"text": ...}``) that walk is most of the
CPU a streamed frame costs the gateway. ``converse_events`` frames the messages itself (``MessageBuffer.frames``: the
prelude and message CRCs and botocore's length limits checked as botocore checks them; string headers, all Bedrock
sends, decoded in one pass) and builds a text delta from its JSON payload directly: the same dict botocore builds (the
shape's two members, unknown keys such as padding dropped). Anything unusual (a bad CRC, a length over botocore's
limits, a header of another type) is handed to botocore's own ``EventStreamBuffer`` code, so its result and its errors
are botocore's. Every other message (other events, other deltas, errors and exceptions) goes through the stream's own
parser, so its result and its errors are exactly aiobotocore's.
"""

from __future__ import annotations

import json
import struct
from binascii import crc32
from collections.abc import AsyncGenerator, Iterator
from typing import Any

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, MessagePrelude

from lambdas.gateway.pacing import ReadPacer, socket_transport

TEXT_DELTA = "contentBlockDelta"
_PRELUDE_LENGTH = 12  # total length, headers length, prelude CRC: 4 bytes each
_PRELUDE = struct.Struct(">III")
_CRC = struct.Struct(">I")
_MAX_HEADERS_LENGTH = 128 * 1024  # botocore.eventstream's limits: a message over them is botocore's error to raise
_MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024
_STRING = 7  # header value type: 2-byte length, UTF-8
_KNOWN: dict[bytes, dict[str, Any]] = {}  # header blocks already decoded: a stream repeats a few (one per event type)
_KNOWN_MAX = 64
_JSON = json.JSONDecoder()
# a message framed here: headers, payload, (total length, headers length, prelude CRC, message CRC)
Frame = tuple[dict[str, Any], bytes, tuple[int, int, int, int]]


class MessageBuffer(EventStreamBuffer):
    """botocore's buffer, with headers that are all strings read without its per-byte parser (and a header block seen
    before not read again), and ``frames`` for the messages of a stream without a message object each."""

    def frames(self) -> Iterator[Frame | EventStreamMessage]:
        """The complete messages in the buffer, in order: ``(headers, payload, prelude and CRC)`` for a well-formed
        message whose headers are all strings, else botocore's ``EventStreamMessage`` (its ``next``: its checks, its
        errors)."""
        while True:
            data: bytes = self._data  # type: ignore[has-type]  # botocore is untyped
            if len(data) < _PRELUDE_LENGTH:
                return
            total, headers_length, prelude_crc = _PRELUDE.unpack_from(data)
            headers_end = _PRELUDE_LENGTH + headers_length
            payload_end = total - 4
            if (
                self._prelude is not None  # botocore's own parse is under way
                or headers_length > _MAX_HEADERS_LENGTH
                or payload_end - headers_end > _MAX_PAYLOAD_LENGTH
                or payload_end < headers_end
                or crc32(data[:8]) != prelude_crc
            ):
                message = self._botocore_next()
                if message is None:
                    return
                yield message
                continue
            if len(data) < total:
                return
            headers = self._string_headers(data[_PRELUDE_LENGTH:headers_end])
            message_crc = _CRC.unpack_from(data, payload_end)[0]
            if headers is None or crc32(data[:payload_end]) != message_crc:
                message = self._botocore_next()
                if message is None:
                    return
                yield message
                continue
            self._data = data[total:]
            yield headers, data[headers_end:payload_end], (total, headers_length, prelude_crc, message_crc)

    def _botocore_next(self) -> EventStreamMessage | None:
        """The next message as botocore's ``next`` reads it (it raises for a malformed one), None if incomplete."""
        try:
            return self.next()
        except StopIteration:
            return None

    def _parse_headers(self) -> dict[str, Any]:
        headers = self._string_headers(self._data[_PRELUDE_LENGTH : self._prelude.headers_end])
        return super()._parse_headers() if headers is None else headers

    @classmethod
    def _string_headers(cls, data: bytes) -> dict[str, Any] | None:
        """The headers of the block ``data`` in a dict of their own if all are well-formed strings, else None."""
        known = _KNOWN.get(data)
        if known is not None:
            return dict(known)
        headers = cls._strings(data)
        if headers is not None and len(_KNOWN) < _KNOWN_MAX:
            _KNOWN[data] = dict(headers)
        return headers

    @staticmethod
    def _strings(data: bytes) -> dict[str, Any] | None:
        """The headers of ``data`` if all are well-formed strings, else None (botocore's parser decides)."""
        headers: dict[str, Any] = {}
        at, end = 0, len(data)
        try:
            while at < end:
                name_end = at + 1 + data[at]
                name = data[at + 1 : name_end].decode("utf-8")
                value_at = name_end + 3
                if data[name_end] != _STRING or value_at > end:
                    return None
                value_end = value_at + int.from_bytes(data[name_end + 1 : value_at], "big")
                if value_end > end:
                    return None
                headers[name] = data[value_at:value_end].decode("utf-8")
                at = value_end
        except (IndexError, UnicodeDecodeError):  # malformed: botocore's parser raises its own error
            return None
        return headers


def text_delta(headers: dict[str, Any], payload: bytes) -> dict[str, Any] | None:
    """The parsed event of a text-delta message, or None for any other message (the generic parser's to handle)."""
    if headers.get(":event-type") != TEXT_DELTA or headers.get(":message-type") != "event":
        return None
    try:
        text = payload.decode("utf-8")  # as botocore reads a JSON payload: UTF-8, then the JSON text
        body, end = _JSON.raw_decode(text)  # json.loads without its whitespace scans, for what Bedrock sends
    except ValueError:  # UnicodeDecodeError too
        return None
    if end != len(text) or type(body) is not dict:  # whitespace around it (or data after it): botocore decides
        return None
    delta, index = body.get("delta"), body.get("contentBlockIndex")
    # botocore: ContentBlockDeltaEvent {delta: ContentBlockDelta (union), contentBlockIndex: integer}, values as sent
    if type(delta) is not dict or len(delta) != 1 or type(delta.get("text")) is not str or type(index) is not int:
        return None
    return {TEXT_DELTA: {"delta": {"text": delta["text"]}, "contentBlockIndex": index}}


async def converse_events(stream: Any, pacer: ReadPacer | None = None) -> AsyncGenerator[dict[str, Any], None]:
    """The events of aiobotocore's ConverseStream ``stream`` (an ``AioEventStream``), as iterating it yields them.
    A stream without aiobotocore's raw response (a test double) is iterated as it is.

    ``pacer`` (``lambdas.gateway.pacing``): once a text delta has been yielded, the connection is paused after each
    read until the pacer's next round (over TLS the socket's transport too), and each read then takes everything
    buffered since (``readany``); the same bytes in fewer pieces. Without it the body is read as aiobotocore reads
    it, an HTTP chunk at a time."""
    raw: Any = getattr(stream, "_raw_stream", None)
    parse = getattr(stream, "_parse_event", None)
    content = getattr(raw, "content", None)
    if content is None or parse is None:
        async for event in stream:
            yield event
        return
    buffer = MessageBuffer()
    paused: Any = None  # the transport the pacer holds for this answer, released when the answer ends in any way
    underneath: Any = None  # over TLS, the transport reading the socket under it (``pacing.socket_transport``)
    texting = False  # a text delta has been yielded: reads may be paced from now on
    try:
        # unpaced: as AioEventStream._create_raw_event_generator reads it (an HTTP chunk at a time)
        reads = content.iter_chunks() if pacer is None else _Buffered(content)
        async for chunk, _ in reads:
            buffer.add_data(chunk)
            for frame in buffer.frames():
                if type(frame) is tuple:
                    headers, payload, (total, headers_length, prelude_crc, message_crc) = frame
                    event = text_delta(headers, payload)
                    if event is None:  # as botocore's buffer builds the message
                        prelude = MessagePrelude(total, headers_length, prelude_crc)
                        event = await parse(EventStreamMessage(prelude, headers, payload, message_crc))
                    else:
                        texting = True
                else:  # botocore framed it
                    assert isinstance(frame, EventStreamMessage)
                    event = text_delta(frame.headers, frame.payload)
                    if event is None:
                        event = await parse(frame)  # raises EventStreamError for an error or exception message
                    else:
                        texting = True
                if event:  # an unknown event type parses to {} and is skipped, as AioEventStream does
                    yield event
            if texting and pacer is not None and not content.is_eof():
                connection = raw.connection  # None once aiohttp released it (the response is complete)
                if connection is not None:
                    transport = connection.transport  # None once the connection closed
                    if transport is not None and transport is not paused:  # the first pause: over TLS, the
                        paused, underneath = transport, socket_transport(transport)  # socket's transport too
                    pacer.pause(transport, connection.protocol, underneath)
    finally:
        if paused is not None and pacer is not None:
            pacer.release(paused)


class _Buffered:
    """``iter_chunks``' shape over aiohttp's ``readany``: each item everything buffered at the time of the read."""

    def __init__(self, content: Any) -> None:
        self._content = content

    def __aiter__(self) -> _Buffered:
        return self

    async def __anext__(self) -> tuple[bytes, bool]:
        data: bytes = await self._content.readany()
        if not data:
            raise StopAsyncIteration
        return data, False
