"""ConverseStream events as aiobotocore parses them, with a short way for the event most of an answer is made of.

aiobotocore parses every event-stream message with botocore's generic, shape-driven parser behind two async
generators; for a text delta (``contentBlockDelta`` whose ``delta`` is ``{"text": ...}``) that walk is most of the
CPU a streamed frame costs the gateway. ``converse_events`` frames the messages with botocore's own
``EventStreamBuffer`` (prelude and message CRCs checked, headers parsed as before) and builds a text delta from its
JSON payload directly: the same dict botocore builds (the shape's two members, unknown keys such as padding dropped).
Every other message (other events, other deltas, errors and exceptions) goes through the stream's own parser, so its
result and its errors are exactly aiobotocore's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from botocore.eventstream import EventStreamBuffer, EventStreamMessage

TEXT_DELTA = "contentBlockDelta"


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
    buffer = EventStreamBuffer()
    async for chunk, _ in content.iter_chunks():  # as AioEventStream._create_raw_event_generator reads it
        buffer.add_data(chunk)
        for message in buffer:
            event = text_delta(message)
            if event is None:
                event = await parse(message)  # raises EventStreamError for an error or exception message
            if event:  # an unknown event type parses to {} and is skipped, as AioEventStream does
                yield event
