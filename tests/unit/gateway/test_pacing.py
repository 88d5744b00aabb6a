"""Read pacing (``lambdas.gateway.pacing``) and ``converse_events`` reading with it: what is paused and when, what
resumes it, and that the events are the same. A fake loop stands for the clock (its one timer fired by hand), a fake
transport records pauses and resumes, a fake aiohttp ``StreamReader`` hands out what was "received" since the last
read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lambdas.gateway.eventstream import converse_events
from lambdas.gateway.pacing import SLOTS, ReadPacer
from local.emulator.eventstream import event_frame
from tests.unit.gateway.test_eventstream import FRAMES, events, stream


class FakeLoop:
    """``call_later`` recorded, never run: the test fires the timer (the pacer's round) itself."""

    def __init__(self) -> None:
        self.timers: list[tuple[float, Any]] = []

    def call_later(self, delay: float, callback: Any) -> None:
        self.timers.append((delay, callback))

    def fire(self, ticks: int = 1) -> None:
        """Run the scheduled timer ``ticks`` times (each run may schedule the next)."""
        for _ in range(ticks):
            timers, self.timers = self.timers, []
            for _, callback in timers:
                callback()


class Transport:
    def __init__(self, log: list[str]) -> None:
        self.log, self.reading, self.closing = log, True, False

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # a plain TCP transport: no "ssl_object"

    def pause_reading(self) -> None:
        self.reading = False
        self.log.append("pause")

    def resume_reading(self) -> None:
        self.reading = True
        self.log.append("resume")


class Protocol:
    """aiohttp's ``ResponseHandler`` flags: its own flow control's pauses."""

    _reading_paused = False
    _buffer_paused = False


class Connection:
    def __init__(self, transport: Transport, protocol: Protocol) -> None:
        self.transport, self.protocol = transport, protocol


class Content:
    """aiohttp's ``StreamReader`` for ``readany``: each read returns the next batch of bytes the test "received"
    (a batch only while the transport reads), EOF after the last; ``fail`` raises instead of the next batch."""

    def __init__(self, batches: list[bytes], transport: Transport, log: list[str], fail: Exception | None = None):
        self.batches, self.transport, self.log, self.fail = list(batches), transport, log, fail

    async def readany(self) -> bytes:
        while not self.transport.reading:  # aiohttp's reader waits for data, and a paused connection brings none
            if self.fail is not None and not self.batches:
                raise self.fail  # the connection was lost meanwhile: aiohttp wakes the reader with the error
            await asyncio.sleep(0)
        if not self.batches:
            if self.fail is not None:
                raise self.fail
            return b""
        self.log.append("read")
        return self.batches.pop(0)

    def is_eof(self) -> bool:
        return not self.batches and self.fail is None


class Raw:
    def __init__(self, content: Content, connection: Connection) -> None:
        self.content, self.connection = content, connection


def paced_stream(batches: list[bytes], log: list[str], fail: Exception | None = None) -> tuple[Any, Transport]:
    """An aiobotocore ConverseStream stream whose raw response reads ``batches`` from one fake connection."""
    transport = Transport(log)
    event_stream = stream(b"", 1)  # aiobotocore's parser and shapes; its raw response replaced below
    event_stream._raw_stream = Raw(Content(batches, transport, log, fail), Connection(transport, Protocol()))
    return event_stream, transport


async def drive(iterator: AsyncIterator[dict[str, Any]], loop: FakeLoop, log: list[str]) -> list[dict[str, Any]]:
    """Read every event, firing the pacer's round whenever the reader waits on a paused connection."""
    out: list[dict[str, Any]] = []
    pending = asyncio.ensure_future(anext(iterator))
    while True:
        await asyncio.sleep(0)
        if not pending.done():
            if not loop.timers:
                raise AssertionError("the reader waits and no round is scheduled")
            log.append("round")
            loop.fire()
            continue
        try:
            event = pending.result()
        except StopAsyncIteration:
            return out
        log.append(f"event {next(iter(event))}")
        out.append(event)
        pending = asyncio.ensure_future(anext(iterator))


def text(event: dict[str, Any]) -> str:
    return str(event.get("contentBlockDelta", {}).get("delta", {}).get("text", ""))


START = event_frame("messageStart", {"role": "assistant"})
DELTAS = [event_frame("contentBlockDelta", {"delta": {"text": f" w{i}"}, "contentBlockIndex": 0}) for i in range(6)]
STOP = event_frame("messageStop", {"stopReason": "end_turn"})


def test_paced_reads_yield_the_same_events_in_order() -> None:
    # GIVEN every message of a varied answer, received a few bytes at a time
    data = b"".join(FRAMES)
    batches = [data[i : i + 37] for i in range(0, len(data), 37)]
    log: list[str] = []
    # WHEN it is read unpaced, and paced (the round fired whenever the reader waits)
    unpaced, unpaced_error = asyncio.run(events(converse_events(stream(data, 37))))
    loop = FakeLoop()
    paced_stream_, transport = paced_stream(batches, log)
    paced = asyncio.run(drive(converse_events(paced_stream_, ReadPacer(0.05, loop)), loop, log))
    # THEN the events are the same, in the same order, and reads were paused on the way
    assert unpaced_error is None and paced == unpaced
    assert "pause" in log and transport.reading


def test_the_first_token_is_never_held_and_nothing_before_it_is_paced() -> None:
    # GIVEN an answer whose start and first text delta arrive in reads of their own, then more deltas
    log: list[str] = []
    loop = FakeLoop()
    answer, _ = paced_stream([START, DELTAS[0], DELTAS[1], b"".join(DELTAS[2:]) + STOP], log)
    # WHEN it is read with pacing on
    got = asyncio.run(drive(converse_events(answer, ReadPacer(0.05, loop)), loop, log))
    # THEN no read is paused before the first text delta has been handed on: it leaves with its own read
    assert log[:4] == ["read", "event messageStart", "read", "event contentBlockDelta"]
    # AND only after it is the connection paused, for one interval: the pacer's SLOTS rounds, then it reads again
    assert log[4 : 6 + SLOTS] == ["pause", *["round"] * SLOTS, "resume"]
    assert "".join(map(text, got)) == "".join(f" w{i}" for i in range(6))


def test_no_event_waits_longer_than_one_round_the_end_included() -> None:
    # GIVEN an answer whose deltas arrive one a read, its stop in the last read
    log: list[str] = []
    loop = FakeLoop()
    answer, transport = paced_stream([START, *DELTAS, STOP], log)
    pacer = ReadPacer(0.05, loop)
    # WHEN it is read with pacing on
    got = asyncio.run(drive(converse_events(answer, pacer), loop, log))
    # THEN each pause lasts one interval (SLOTS rounds), and the connection is resumed before the next read
    assert log.count("pause") == len(DELTAS)
    for at, entry in enumerate(log):
        if entry == "pause":
            assert log[at + 1 : at + SLOTS + 3] == [*["round"] * SLOTS, "resume", "read"]
    # AND the answer's end came with the read after one round, and nothing is left paused
    assert next(iter(got[-1])) == "messageStop" and log[-2:] == ["read", "event messageStop"]
    assert transport.reading and len(pacer) == 0


def test_one_timer_resumes_each_connection_one_interval_after_its_pause_spread_over_the_rounds() -> None:
    # GIVEN a pacer and three connections, paused in three different rounds (two in the first)
    loop = FakeLoop()
    pacer = ReadPacer(0.04, loop)
    log: list[str] = []
    first, second, third = (Transport(log) for _ in range(3))
    pacer.pause(first, Protocol())
    pacer.pause(second, Protocol())
    # THEN one timer is scheduled, for one round of the SLOTS an interval holds
    assert [delay for delay, _ in loop.timers] == [0.04 / SLOTS] and len(pacer) == 2
    loop.fire()
    pacer.pause(third, Protocol())
    # WHEN the rounds of one interval after the first two pauses have run
    loop.fire(SLOTS - 1)
    # THEN those two read again, and the one paused a round later is still paused
    assert first.reading and second.reading and not third.reading and len(pacer) == 1
    # AND it reads again in the next round, one interval after its own pause; with nothing paused the timer stops
    assert len(loop.timers) == 1
    loop.fire()
    assert third.reading and len(pacer) == 0 and loop.timers == []
    # AND the next pause schedules the timer again
    pacer.pause(first, Protocol())
    assert [delay for delay, _ in loop.timers] == [0.04 / SLOTS]


@pytest.mark.parametrize("flag", ["_reading_paused", "_buffer_paused"])
def test_aiohttps_own_pause_is_neither_taken_over_nor_undone(flag: str) -> None:
    # GIVEN a connection aiohttp's flow control holds (its buffer is full)
    loop = FakeLoop()
    pacer = ReadPacer(0.05, loop)
    log: list[str] = []
    held, protocol = Transport(log), Protocol()
    setattr(protocol, flag, True)
    held.reading = False
    # WHEN the pacer is asked to pause it THEN it leaves it to aiohttp (no pause of its own, no round)
    pacer.pause(held, protocol)
    assert log == [] and len(pacer) == 0 and loop.timers == []
    # GIVEN a connection the pacer paused, which aiohttp then pauses for its own flow control
    paced, other = Transport(log), Protocol()
    pacer.pause(paced, other)
    setattr(other, flag, True)
    # WHEN its interval's rounds come THEN the pacer does not resume it: aiohttp resumes it when its buffer drains
    loop.fire(SLOTS)
    assert log == ["pause"] and not paced.reading


def test_a_closing_connection_is_neither_paused_nor_resumed() -> None:
    # GIVEN a closing connection, and one that closes while paused
    loop = FakeLoop()
    pacer = ReadPacer(0.05, loop)
    log: list[str] = []
    closing = Transport(log)
    closing.closing = True
    pacer.pause(closing, Protocol())
    paused = Transport(log)
    pacer.pause(paused, Protocol())
    paused.closing = True
    # WHEN its interval's rounds come THEN neither is touched but the first pause
    loop.fire(SLOTS)
    assert log == ["pause"] and len(pacer) == 0


def test_a_client_that_leaves_while_paused_leaves_no_paused_connection() -> None:
    # GIVEN an answer read with pacing on, paused after its first text delta
    log: list[str] = []
    loop = FakeLoop()
    answer, transport = paced_stream([START, DELTAS[0], DELTAS[1], STOP], log)
    pacer = ReadPacer(0.05, loop)

    async def leave() -> None:
        iterator = converse_events(answer, pacer)
        async for event in iterator:
            if "contentBlockDelta" in event:
                break
        reading = asyncio.ensure_future(anext(iterator))  # waits on the paused connection
        await asyncio.sleep(0)
        assert not transport.reading and len(pacer) == 1
        # WHEN the client leaves (the route's reader task is cancelled, the generator closed)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await iterator.aclose()

    asyncio.run(leave())
    # THEN the connection reads again at once, before any round, and the pacer holds nothing
    assert log[-2:] == ["pause", "resume"] and transport.reading and len(pacer) == 0


def test_an_upstream_error_while_paced_leaves_no_paused_connection() -> None:
    # GIVEN an answer whose connection breaks while paused after its first deltas, read with pacing on
    log: list[str] = []
    loop = FakeLoop()
    broken = ConnectionResetError("reset by peer")
    answer, transport = paced_stream([START, DELTAS[0]], log, fail=broken)
    pacer = ReadPacer(0.05, loop)
    # WHEN it is read
    with pytest.raises(ConnectionResetError):
        asyncio.run(drive(converse_events(answer, pacer), loop, log))
    # THEN the error reaches the reader, and the connection it broke while paused is resumed at once, before any round
    assert log[-2:] == ["pause", "resume"] and "round" not in log
    assert transport.reading and len(pacer) == 0


def test_over_tls_the_sockets_transport_is_paused_and_resumed_with_the_ssl_one() -> None:
    # GIVEN an SSL transport and the transport reading the socket under it (both reading)
    loop = FakeLoop()
    pacer = ReadPacer(0.05, loop)
    ssl_log: list[str] = []
    socket_log: list[str] = []
    ssl_transport, underneath = Transport(ssl_log), Transport(socket_log)
    # WHEN the pacer pauses the connection, then its interval's rounds come
    pacer.pause(ssl_transport, Protocol(), underneath)
    paused_both = not ssl_transport.reading and not underneath.reading
    loop.fire(SLOTS)
    # THEN both were paused (the kernel keeps the encrypted records) and both read again after one interval
    assert paused_both and ssl_log == socket_log == ["pause", "resume"] and len(pacer) == 0


def test_the_ssl_protocols_own_pause_of_the_socket_is_neither_taken_over_nor_undone() -> None:
    # GIVEN an SSL transport whose socket's transport its SSL protocol has paused (its buffer over its high-water mark)
    loop = FakeLoop()
    pacer = ReadPacer(0.05, loop)
    ssl_log: list[str] = []
    socket_log: list[str] = []
    ssl_transport, underneath = Transport(ssl_log), Transport(socket_log)
    underneath.reading = False
    # WHEN the pacer pauses the connection and its rounds come, and then again with an answer that ends (release)
    pacer.pause(ssl_transport, Protocol(), underneath)
    loop.fire(SLOTS)
    pacer.pause(ssl_transport, Protocol(), underneath)
    pacer.release(ssl_transport)
    # THEN the SSL transport was paced as usual, and the socket's transport left to the SSL protocol: never resumed
    assert ssl_log == ["pause", "resume"] * 2 and socket_log == [] and not underneath.reading


def test_the_sockets_transport_is_resumed_even_when_aiohttp_holds_the_ssl_one() -> None:
    # GIVEN a TLS connection the pacer paused, whose SSL transport aiohttp's flow control then holds
    loop = FakeLoop()
    pacer = ReadPacer(0.05, loop)
    ssl_log: list[str] = []
    socket_log: list[str] = []
    ssl_transport, underneath, protocol = Transport(ssl_log), Transport(socket_log), Protocol()
    pacer.pause(ssl_transport, protocol, underneath)
    protocol._reading_paused = True
    # WHEN its interval's rounds come
    loop.fire(SLOTS)
    # THEN the SSL transport stays aiohttp's to resume, and the socket's transport reads again (the SSL protocol's
    # own flow control governs it from now on)
    assert ssl_log == ["pause"] and socket_log == ["pause", "resume"] and underneath.reading


def test_a_client_that_leaves_resumes_the_sockets_transport_too() -> None:
    # GIVEN a TLS connection the pacer paused, and a socket's transport that closes while paused
    loop = FakeLoop()
    pacer = ReadPacer(0.05, loop)
    log: list[str] = []
    ssl_transport, underneath = Transport(log), Transport(log)
    pacer.pause(ssl_transport, Protocol(), underneath)
    closed_ssl, closed_underneath = Transport([]), Transport([])
    pacer.pause(closed_ssl, Protocol(), closed_underneath)
    closed_underneath.closing = True
    # WHEN both answers end (the client left) before any round
    pacer.release(ssl_transport)
    pacer.release(closed_ssl)
    # THEN the open one's transports both read again at once, the closed socket's transport is left alone
    assert log == ["pause", "pause", "resume", "resume"] and ssl_transport.reading and underneath.reading
    assert not closed_underneath.reading and len(pacer) == 0
