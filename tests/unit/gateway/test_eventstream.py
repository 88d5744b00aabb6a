"""``converse_events``: the events aiobotocore's own ConverseStream iteration yields, from the same bytes, with text
deltas built without botocore's generic parser."""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import botocore.session
import pytest
from aiobotocore.eventstream import AioEventStream
from aiobotocore.parsers import create_parser
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import EventStreamError

from lambdas.gateway.eventstream import MessageBuffer, converse_events
from local.emulator.eventstream import event_frame, exception_frame

REDACTED = base64.b64encode(b"\x00opaque").decode()
FRAMES = [
    event_frame("messageStart", {"role": "assistant"}),
    event_frame("contentBlockDelta", {"delta": {"text": "Hello"}, "contentBlockIndex": 0}),
    event_frame("contentBlockDelta", {"delta": {"text": " world"}, "contentBlockIndex": 3}, padding=40),
    event_frame("contentBlockDelta", {"delta": {"text": ""}, "contentBlockIndex": 0}),
    # every delta that is not text alone takes botocore's own parse: reasoning (text, signature, a base64 blob),
    # tool input, a member this botocore does not know, values of the wrong type
    event_frame("contentBlockDelta", {"delta": {"reasoningContent": {"text": "hmm"}}, "contentBlockIndex": 1}),
    event_frame("contentBlockDelta", {"delta": {"reasoningContent": {"signature": "sig"}}, "contentBlockIndex": 1}),
    event_frame("contentBlockDelta", {"delta": {"reasoningContent": {"redactedContent": REDACTED}}}),
    event_frame("contentBlockDelta", {"delta": {"toolUse": {"input": '{"a": 1}'}}, "contentBlockIndex": 2}),
    event_frame("contentBlockDelta", {"delta": {"somethingNew": {"x": 1}}, "contentBlockIndex": 0}),
    event_frame("contentBlockDelta", {"delta": {"text": 5}, "contentBlockIndex": 0}),
    event_frame("contentBlockDelta", {"delta": {"text": "no index"}}),
    event_frame("contentBlockDelta", {"delta": {"text": "index not an int"}, "contentBlockIndex": True}),
    event_frame("contentBlockStop", {"contentBlockIndex": 0}),
    event_frame("someFutureEvent", {"x": 1}),
    event_frame("messageStop", {"stopReason": "end_turn"}),
    event_frame(
        "metadata", {"usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5}, "metrics": {"latencyMs": 7}}
    ),
]


class Content:
    """aiohttp's ``StreamReader`` as aiobotocore reads it: ``iter_chunks()`` of (bytes, end of HTTP chunk)."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        for start in range(0, len(self.data), self.size):
            yield self.data[start : start + self.size], False


class Raw:
    def __init__(self, data: bytes, size: int) -> None:
        self.content = Content(data, size)


def stream(data: bytes, size: int) -> AioEventStream:
    """An ``AioEventStream`` as aiobotocore builds it for ConverseStream, over ``data`` read ``size`` bytes a time."""
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    output = model.operation_model("ConverseStream").output_shape.members["stream"]
    parser = create_parser(model.metadata["protocol"]).EVENT_STREAM_PARSER_CLS()  # as the client's parser makes it
    return AioEventStream(Raw(data, size), output, parser, "ConverseStream")


async def events(iterator: AsyncIterator[dict[str, Any]]) -> tuple[list[dict[str, Any]], BaseException | None]:
    out: list[dict[str, Any]] = []
    try:
        async for event in iterator:
            out.append(event)
    except Exception as error:  # noqa: BLE001 - compared below
        return out, error
    return out, None


@pytest.mark.parametrize("size", [7, 64, 1 << 20])
def test_the_events_are_aiobotocores_from_the_same_bytes(size: int) -> None:
    # GIVEN a ConverseStream body with every kind of event and delta, read in chunks that split messages or not
    data = b"".join(FRAMES)
    # WHEN it is read through converse_events and through aiobotocore's own iteration
    ours, our_error = asyncio.run(events(converse_events(stream(data, size))))
    theirs, their_error = asyncio.run(events(aiter(stream(data, size))))
    # THEN both yield the same events (the unknown event skipped by both) and neither raises
    assert ours == theirs and our_error is None and their_error is None
    assert len(ours) == len(FRAMES) - 1
    assert ours[1] == {"contentBlockDelta": {"delta": {"text": "Hello"}, "contentBlockIndex": 0}}  # padding dropped
    assert ours[6]["contentBlockDelta"]["delta"]["reasoningContent"]["redactedContent"] == b"\x00opaque"


def test_an_exception_in_the_stream_raises_as_aiobotocore_raises_it() -> None:
    # GIVEN a stream that fails after one text delta
    body = {"message": "The model stream failed", "originalStatusCode": 500}
    data = FRAMES[1] + exception_frame("modelStreamErrorException", body)
    # WHEN both read it
    ours, our_error = asyncio.run(events(converse_events(stream(data, 16))))
    theirs, their_error = asyncio.run(events(aiter(stream(data, 16))))
    # THEN the delta comes first, then the same EventStreamError (code and message)
    assert ours == theirs and len(ours) == 1
    assert isinstance(our_error, EventStreamError) and isinstance(their_error, EventStreamError)
    assert our_error.response == their_error.response
    assert our_error.response["Error"]["Code"] == "modelStreamErrorException"


def test_a_delta_with_two_members_fails_as_botocore_fails_it() -> None:
    # GIVEN a delta that sets text and a citation (the union allows one member)
    data = FRAMES[1] + event_frame(
        "contentBlockDelta", {"delta": {"text": "a", "citation": {}}, "contentBlockIndex": 0}
    )
    # WHEN both read it
    ours, our_error = asyncio.run(events(converse_events(stream(data, 64))))
    theirs, their_error = asyncio.run(events(aiter(stream(data, 64))))
    # THEN both yield the first delta and then raise the same parser error
    assert ours == theirs and len(ours) == 1
    assert type(our_error) is type(their_error) and str(our_error) == str(their_error)
    assert "one and only one member" in str(our_error)


def test_a_stream_without_a_raw_response_is_iterated_as_it_is() -> None:
    # GIVEN an event iterator that is not aiobotocore's (a test double, a replayed Converse answer)
    async def double() -> AsyncIterator[dict[str, Any]]:
        yield {"messageStart": {"role": "assistant"}}

    # WHEN converse_events reads it THEN it yields its events unchanged
    assert asyncio.run(events(converse_events(double()))) == ([{"messageStart": {"role": "assistant"}}], None)


def message(headers: list[tuple[bytes, int, bytes]], payload: bytes = b"{}") -> bytes:
    """One event-stream message, encoded by hand: (name, value type, encoded value) per header, CRCs computed."""
    encoded = b"".join(bytes([len(name)]) + name + bytes([kind]) + value for name, kind, value in headers)
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


def string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">H", len(data)) + data


def parsed(buffer: EventStreamBuffer, data: bytes) -> tuple[list[Any], str | None]:
    """The headers and payloads a buffer parses from ``data``, and the error it raised (its type), if any."""
    buffer.add_data(data)
    out: list[Any] = []
    try:
        out.extend((m.headers, m.payload) for m in buffer)
    except Exception as error:  # noqa: BLE001 - compared below
        return out, type(error).__name__
    return out, None


@pytest.mark.parametrize(
    "headers",
    [
        [(b":event-type", 7, string("contentBlockDelta")), (b":message-type", 7, string("event"))],
        [(b"\xc3\xa9t\xc3\xa9", 7, string("東京")), (b"empty", 7, string(""))],
        [(b":message-type", 7, string("event")), (b"count", 4, struct.pack(">i", -5))],  # int32: botocore's parse
        [(b"flag", 0, b""), (b"other", 1, b""), (b"blob", 6, struct.pack(">H", 2) + b"\x00\xff")],
        [(b"when", 8, struct.pack(">q", 1700000000000)), (b"id", 9, bytes(range(16)))],
        [(b"bad", 7, struct.pack(">H", 2) + b"\xff\xfe")],  # not UTF-8: botocore's error
        [(b"short", 7, struct.pack(">H", 50) + b"abc")],  # a value past the headers: read as botocore reads it
    ],
)
def test_headers_are_botocores(headers: list[tuple[bytes, int, bytes]]) -> None:
    # GIVEN a message with these headers (string ones as Bedrock sends, other types, malformed ones)
    data = message(headers, b'{"x": 1}') + message([(b":event-type", 7, string("messageStop"))])
    # WHEN our buffer and botocore's parse it
    # THEN they give the same headers and payloads, or raise the same error
    assert parsed(MessageBuffer(), data) == parsed(EventStreamBuffer(), data)


def test_a_header_block_seen_before_gives_the_same_headers_in_a_dict_of_its_own() -> None:
    # GIVEN two messages with the same header block (as every text delta of a stream has)
    headers = [(b":event-type", 7, string("contentBlockDelta")), (b":message-type", 7, string("event"))]
    buffer = MessageBuffer()
    buffer.add_data(message(headers, b'{"a": 1}') + message(headers, b'{"a": 2}'))
    first, second = list(buffer)
    # WHEN the first message's headers are changed by whoever reads them
    first.headers["changed"] = "yes"
    # THEN the second still has exactly the headers it was sent with
    assert second.headers == {":event-type": "contentBlockDelta", ":message-type": "event"}
    assert (first.payload, second.payload) == (b'{"a": 1}', b'{"a": 2}')


def framed(data: bytes) -> tuple[list[Any], str | None]:
    """The headers and payloads ``MessageBuffer.frames`` gives for ``data``, and the error it raised (its type)."""
    buffer = MessageBuffer()
    buffer.add_data(data)
    out: list[Any] = []
    try:
        for frame in buffer.frames():
            out.append(frame[:2] if isinstance(frame, tuple) else (frame.headers, frame.payload))
    except Exception as error:  # noqa: BLE001 - compared below
        return out, type(error).__name__
    return out, None


def corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


DELTA = event_frame("contentBlockDelta", {"delta": {"text": "Hi"}, "contentBlockIndex": 0})
STRINGS = [(b":event-type", 7, string("contentBlockDelta")), (b":message-type", 7, string("event"))]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(DELTA + corrupt(DELTA, len(DELTA) - 1), id="message CRC wrong"),
        pytest.param(DELTA + corrupt(DELTA, 9), id="prelude CRC wrong"),
        pytest.param(DELTA + corrupt(DELTA, len(DELTA) - 10), id="payload changed"),
        pytest.param(DELTA + corrupt(DELTA, 5), id="headers length changed"),
        pytest.param(DELTA + corrupt(DELTA, 0), id="total length changed"),
        pytest.param(DELTA + message([(b"count", 4, struct.pack(">i", 1))]), id="a header not a string"),
        pytest.param(DELTA + message(STRINGS, b"x" * 10)[:-3], id="message incomplete"),
        pytest.param(DELTA + DELTA[:11], id="prelude incomplete"),
        pytest.param(
            DELTA
            + struct.pack(">II", 200_000, 140_000)
            + struct.pack(">I", zlib.crc32(struct.pack(">II", 200_000, 140_000))),
            id="headers over botocore's limit",
        ),
        pytest.param(
            DELTA + struct.pack(">II", 30 << 20, 0) + struct.pack(">I", zlib.crc32(struct.pack(">II", 30 << 20, 0))),
            id="payload over botocore's limit",
        ),
    ],
)
def test_frames_are_botocores_messages_or_its_errors(data: bytes) -> None:
    # GIVEN a good text delta followed by a malformed, unusual or incomplete message
    # WHEN MessageBuffer.frames and botocore's EventStreamBuffer read the same bytes
    # THEN they give the same headers and payloads, and raise the same error (or wait for more bytes) at the same point
    ours = framed(data)
    assert ours == parsed(EventStreamBuffer(), data)
    assert ours[0][0][0][":event-type"] == "contentBlockDelta"  # the good message first


@pytest.mark.parametrize("size", [1, 5, 13, 100])
def test_frames_read_in_pieces_are_the_messages_read_at_once(size: int) -> None:
    # GIVEN a stream of several messages (one with headers that are not all strings) arriving ``size`` bytes a time
    data = b"".join(FRAMES) + message([(b":message-type", 7, string("event")), (b"n", 4, struct.pack(">i", 7))])
    buffer, pieces = MessageBuffer(), list[Any]()
    # WHEN frames is read after each piece
    for start in range(0, len(data), size):
        buffer.add_data(data[start : start + size])
        pieces.extend(f[:2] if isinstance(f, tuple) else (f.headers, f.payload) for f in buffer.frames())
    # THEN every message comes out once, in order, as botocore frames them from the whole stream
    assert pieces == parsed(EventStreamBuffer(), data)[0]
    assert len(pieces) == len(FRAMES) + 1


def test_a_corrupt_message_in_a_stream_raises_as_aiobotocore_raises_it() -> None:
    # GIVEN a ConverseStream body whose second text delta has a wrong message CRC
    data = FRAMES[1] + corrupt(FRAMES[2], len(FRAMES[2]) - 1)
    # WHEN both read it
    ours, our_error = asyncio.run(events(converse_events(stream(data, 16))))
    theirs, their_error = asyncio.run(events(aiter(stream(data, 16))))
    # THEN both yield the first delta, then raise the same checksum error
    assert ours == theirs and len(ours) == 1
    assert type(our_error) is type(their_error) and str(our_error) == str(their_error)
    assert type(our_error).__name__ == "ChecksumMismatch"


@pytest.mark.parametrize(
    "payload",
    [
        b' {"delta": {"text": "a"}, "contentBlockIndex": 0}',
        b'{"delta": {"text": "b"}, "contentBlockIndex": 0}\n',
        b'{"delta": {"text": "c"}, "contentBlockIndex": 0} {}',
        b'{"delta": {"text": "\\u00e9t\\u00e9"}, "contentBlockIndex": 0}',
        b'\xff{"delta": {"text": "d"}, "contentBlockIndex": 0}',
    ],
    ids=["space before", "newline after", "data after", "escapes", "not UTF-8"],
)
def test_a_text_delta_payload_is_read_as_botocore_reads_it(payload: bytes) -> None:
    # GIVEN a text delta whose JSON payload has whitespace or data around it, escapes, or bytes that are not UTF-8
    data = FRAMES[1] + message(STRINGS, payload)
    # WHEN both read it
    ours, our_error = asyncio.run(events(converse_events(stream(data, 64))))
    theirs, their_error = asyncio.run(events(aiter(stream(data, 64))))
    # THEN they yield the same events, or raise the same error after the same events
    assert ours == theirs and type(our_error) is type(their_error) and str(our_error) == str(their_error)
