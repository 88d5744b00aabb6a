"""ConverseStream events as aiobotocore parses them, with a short way for the event most of an answer is made of.

aiobotocore parses every event-stream message with botocore's generic, shape-driven parser behind two async
generators; for a text delta (``contentBlockDelta`` whose ``delta`` is ``{"text": ...}``) that walk is most of the
CPU a streamed frame costs the gateway. ``converse_events`` frames the messages with botocore's own
``EventStreamBuffer`` (prelude and message CRCs checked by botocore; string headers, all Bedrock sends, decoded in one
pass, any other header type by botocore's parser) and builds a text delta from its JSON payload directly: the same
dict botocore builds (the shape's two members, unknown keys such as padding dropped).
Every other message (other events, other deltas, errors and exceptions) goes through the stream's own parser, so its
result and its errors are exactly aiobotocore's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from botocore.eventstream import EventStreamBuffer, EventStreamMessage

TEXT_DELTA = "contentBlockDelta"
_PRELUDE_LENGTH = 12  # total length, headers length, prelude CRC: 4 bytes each
_STRING = 7  # header value type: 2-byte length, UTF-8
_KNOWN: dict[bytes, dict[str, Any]] = {}  # header blocks already decoded: a stream repeats a few (one per event type)
_KNOWN_MAX = 64


class MessageBuffer(EventStreamBuffer):
    """botocore's buffer, with headers that are all strings read without its per-byte parser (and a header block seen
    before not read again)."""

    def _parse_headers(self) -> dict[str, Any]:
        data = self._data[_PRELUDE_LENGTH : self._prelude.headers_end]
        known = _KNOWN.get(data)
        if known is not None:
            return dict(known)
        headers = self._strings(data)
        if headers is None:
            return super()._parse_headers()
        if len(_KNOWN) < _KNOWN_MAX:
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


def text_delta(message: EventStreamMessage) -> dict[str, Any] | None:
    """The parsed event of a text-delta message, or None for any other message (the generic parser's to handle)."""
    headers = message.headers
    if headers.get(":event-type") != TEXT_DELTA or headers.get(":message-type") != "event":
        return None
    try:
        body = json.loads(message.payload)
    except ValueError:
        return None
    if type(body) is not dict:
        return None
    delta, index = body.get("delta"), body.get("contentBlockIndex")
    # botocore: ContentBlockDeltaEvent {delta: ContentBlockDelta (union), contentBlockIndex: integer}, values as sent
    if type(delta) is not dict or len(delta) != 1 or type(delta.get("text")) is not str or type(index) is not int:
        return None
    return {TEXT_DELTA: {"delta": {"text": delta["text"]}, "contentBlockIndex": index}}


async def converse_events(stream: Any) -> AsyncIterator[dict[str, Any]]:
    """The events of aiobotocore's ConverseStream ``stream`` (an ``AioEventStream``), as iterating it yields them.
    A stream without aiobotocore's raw response (a test double) is iterated as it is."""
    raw, parse = getattr(stream, "_raw_stream", None), getattr(stream, "_parse_event", None)
    content = getattr(raw, "content", None)
    if content is None or parse is None:
        async for event in stream:
            yield event
        return
    buffer = MessageBuffer()
    async for chunk, _ in content.iter_chunks():  # as AioEventStream._create_raw_event_generator reads it
        buffer.add_data(chunk)
        for message in buffer:
            event = text_delta(message)
            if event is None:
                event = await parse(message)  # raises EventStreamError for an error or exception message
            if event:  # an unknown event type parses to {} and is skipped, as AioEventStream does
                yield event
