"""Read pacing: once an answer's first token is on its way, its Bedrock connection is read at most every interval.

A streamed answer's events arrive one at a time (a token or a few every tens of milliseconds per stream), and each
costs the process a wake-up, a read, aiohttp's ``data_received`` and parser, a pass through the gateway's generators
and a write to the client, whatever its size. With hundreds of streams open that per-read cost fills a core. After an
answer's first text delta has been handed on (its time to first token is never touched), ``converse_events`` pauses
reading the answer's connection (``transport.pause_reading()``) after each read; ``ReadPacer`` resumes every paused
connection about ``interval`` seconds after its pause, with one timer for all of them that ticks ``SLOTS`` times an
interval, each tick resuming the connections paused one interval before it (spread, not all at once).
Meanwhile the kernel keeps what arrives (over TLS too: see below), so the next read takes
several events at once: one read, one parse, one write for all of them. Nothing is dropped or reordered (the bytes
are the same, read in fewer pieces), and no event waits more than about one interval (more when the event loop runs
late: see ``ReadPacer``), the answer's end included.

aiohttp pauses the same transport for its own flow control (``BaseProtocol._reading_paused`` when its buffer is full,
``_buffer_paused``): a connection aiohttp holds is neither paused nor resumed here, so a resume here never undoes
aiohttp's pause. aiohttp resuming a connection paused here (its ``StreamReader`` resumes on every read) only reads it
early. A connection is resumed at once when its answer ends for any reason (``release``: the end, an error, the
client leaving), so no paused transport outlives its answer or goes back to the connection pool paused.

Over TLS (``uvloop``'s and asyncio's SSL transports) ``pause_reading`` stops the decrypted data reaching aiohttp but
not the socket's reads into the SSL protocol's buffer: alone, it would leave the socket's wake-up, read and
decryption per event. So the transport under the SSL one, which reads the socket (``socket_transport``), is paused
too: the kernel keeps the encrypted records, and a resumed connection reads and decrypts several at once. The SSL
protocol pauses that transport itself when its incoming buffer is over its high-water mark (``_control_ssl_reading``
in both loops, resuming it under the low-water mark); the pacer pauses it only while it reads, so never one the SSL
protocol holds, and while it is paused here nothing reaches that buffer, so the SSL protocol cannot come to hold it
meanwhile and a resume here undoes no pause of its own.

``interval`` 0 turns pacing off (the Lambda option: one stream per execution environment, nothing to group).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any, Protocol


class _Loop(Protocol):
    def call_later(self, delay: float, callback: Any, /) -> Any: ...


SLOTS = 10  # rounds per interval: each resumes the connections paused one interval before it


class ReadPacer:
    """Connections paused after a read, each resumed about ``interval`` seconds later by one timer for all of them.

    The timer ticks every ``interval / slots`` while anything is paused; a connection paused between two ticks is
    resumed ``slots`` ticks after the first of them, so it waits a little less than ``interval`` on an idle loop.
    Each tick is scheduled when the one before it runs, so a loop running its timer late lengthens every pause by
    ``slots`` times that lateness (at 500 streams on a loaded machine, "50 ms" paused ~60 ms: a loaded process reads
    less often; docs/gateway-streaming-cpu.md has the runs, and why ticks on a grid were not kept). One
    round for every connection at once (``slots=1``) would make the process's work come in bursts: at 500 streams
    every round resumed ~500 connections, whose reads and writes then ran back to back (~20 ms of CPU), and a new
    request or a first token that arrived meanwhile waited for the whole burst (the bench's added time to first
    token). Spread over ``slots`` rounds, each burst is a tenth of that. ``loop``: where the timer runs (the running
    loop at the first pause, unless given)."""

    def __init__(self, interval: float, loop: _Loop | None = None, slots: int = SLOTS) -> None:
        self.interval = interval
        self._loop = loop
        self._tick = interval / slots
        # per slot: transport -> (its aiohttp protocol, the transport under it that this pacer paused too, or None)
        self._slots: list[dict[Any, tuple[Any, Any]]] = [{} for _ in range(slots)]
        self._slot = 0  # where pauses go now; resumed when the ticks come round to it again
        self._armed = False

    def __len__(self) -> int:
        """Connections paused here now."""
        return sum(map(len, self._slots))

    def pause(self, transport: Any, protocol: Any, underneath: Any = None) -> None:
        """Stop reading ``transport`` until about one interval from now, unless it is closing, already not reading,
        or aiohttp's flow control holds it (``protocol``'s flags). ``underneath``: the transport reading the socket
        under an SSL ``transport`` (``socket_transport``), paused too unless its SSL protocol holds it already."""
        if (
            transport is None
            or transport.is_closing()
            or not transport.is_reading()
            or getattr(protocol, "_reading_paused", False)
            or getattr(protocol, "_buffer_paused", False)
        ):
            return
        transport.pause_reading()
        if underneath is not None and not underneath.is_closing() and underneath.is_reading():
            underneath.pause_reading()
        else:  # none, or the SSL protocol's own flow control holds it (its buffer over the high-water mark)
            underneath = None
        self._slots[self._slot][transport] = (protocol, underneath)
        if not self._armed:
            self._arm()

    def release(self, transport: Any) -> None:
        """Resume ``transport`` now if it is paused here (its answer ended, failed or was left)."""
        for slot in self._slots:
            held = slot.pop(transport, None)
            if held is not None:
                _resume(transport, *held)
                return

    def _round(self) -> None:
        """One tick: the next slot's connections (paused one interval ago) read again; new pauses go there."""
        self._slot = (self._slot + 1) % len(self._slots)
        due, self._slots[self._slot] = self._slots[self._slot], {}
        for transport, (protocol, underneath) in due.items():
            _resume(transport, protocol, underneath)
        self._armed = False
        if any(self._slots):
            self._arm()

    def _arm(self) -> None:
        """The next tick, one ``interval / slots`` from now."""
        self._armed = True
        (self._loop or asyncio.get_running_loop()).call_later(self._tick, self._round)


def socket_transport(transport: Any) -> Any:
    """The transport reading the socket under ``transport`` when that is an SSL transport (asyncio's or uvloop's),
    else None: the one whose protocol is the SSL protocol. Neither loop exposes it: asyncio keeps it in private
    attributes (``_SSLProtocolTransport._ssl_protocol._transport``); uvloop gives its SSL protocol for the extra-info
    key ``"uvloop.sslproto"``, whose transport is a C field, found among the objects it refers to. Found once per
    answer. None, pacing as without this, if a loop's version no longer has them
    (``tests/unit/gateway/test_pacing_tls.py`` fails loudly then, on each loop)."""
    if transport is None or transport.is_closing() or transport.get_extra_info("ssl_object") is None:
        return None
    ssl_protocol = transport.get_extra_info("uvloop.sslproto") or getattr(transport, "_ssl_protocol", None)
    if ssl_protocol is None:
        return None
    underneath = getattr(ssl_protocol, "_transport", None)  # asyncio; uvloop's is a C field: among the referents
    candidates = [underneath] if underneath is not None else gc.get_referents(ssl_protocol)
    for candidate in candidates:
        get_protocol = getattr(candidate, "get_protocol", None)
        if candidate is not transport and get_protocol is not None and get_protocol() is ssl_protocol:
            return candidate
    return None


def _resume(transport: Any, protocol: Any, underneath: Any = None) -> None:
    """Resume a transport paused here, unless it closed or aiohttp's flow control paused it meanwhile (aiohttp then
    resumes it itself when its buffer drains). ``underneath``, the socket's transport this pacer paused, is resumed
    whatever aiohttp does: from then on the SSL protocol's own flow control governs it."""
    if underneath is not None and not underneath.is_closing():
        underneath.resume_reading()
    if (
        transport.is_closing()
        or getattr(protocol, "_reading_paused", False)
        or getattr(protocol, "_buffer_paused", False)
    ):
        return
    transport.resume_reading()
