"""Read pacing over TLS, as the gateway reads real Bedrock: aiohttp's connection over an SSL transport (asyncio's and
uvloop's) paused and resumed by ``ReadPacer``, the socket's transport under it too (``socket_transport``), the body
whole and in order. A local TLS server on a throwaway certificate (``local.emulator.tls``), which the client trusts
as its CA bundle, sends a chunked body.

``socket_transport`` reaches each loop's private parts (asyncio's attributes, uvloop's C field): the tests here fail
loudly when a loop's new version no longer has them (the gateway then paces the SSL transport alone, as before)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop

from lambdas.gateway.pacing import ReadPacer, socket_transport
from local.emulator.tls import certificate, server_context

PIECES = [f"piece {i:03d};".encode() for i in range(40)]
LOOPS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
Runner = Callable[[Coroutine[Any, Any, Any]], Any]


def contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A TLS server context on a fresh certificate for 127.0.0.1, and a client context trusting it (checks on)."""
    cert_file, key_file = certificate(directory)
    return server_context(cert_file, key_file), ssl.create_default_context(cafile=str(cert_file))


async def read_paced(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> tuple[bytes, list[str]]:
    """The body a TLS server sends in ``PIECES`` (one HTTP chunk each, the first alone, the rest once the client has
    read it), read as ``converse_events`` reads it with a pacer; and what the pacer did to the SSL transport and the
    socket's transport under it."""
    first_read = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n")
        for index, piece in enumerate(PIECES):
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            if index == 0:
                await first_read.wait()  # the rest only once the first piece was read: a pause follows for sure
            else:
                await asyncio.sleep(0.001)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    pacer = ReadPacer(0.01)
    seen: list[str] = []
    body = b""
    underneath: Any = None
    async with (
        server,
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{port}/", ssl=client_context) as response,
    ):
        transport = response.connection.transport if response.connection else None
        assert transport is not None and transport.get_extra_info("sslcontext") is not None  # TLS indeed
        underneath = socket_transport(transport)
        while True:
            data = await response.content.readany()
            if not data:
                break
            body += data
            first_read.set()
            connection = response.connection
            if not response.content.is_eof() and connection is not None and connection.transport is not None:
                pacer.pause(connection.transport, connection.protocol, underneath)
                if len(pacer):
                    ssl_state = "paused" if not connection.transport.is_reading() else "still reading"
                    socket_state = "socket paused" if not underneath.is_reading() else "socket still reading"
                    seen.append(f"{ssl_state}, {socket_state}")
        seen.append(f"left paused: {len(pacer)}")
        seen.append("socket reading" if underneath.is_closing() or underneath.is_reading() else "socket paused")
    return body, seen


@LOOPS
def test_the_socket_transport_under_an_ssl_one_is_found_on_each_loop(run: Runner, tmp_path: Path) -> None:
    # GIVEN a TLS connection and a plain one on the loop
    server_side, client_side = contexts(tmp_path)

    async def find() -> tuple[bool, bool]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.close()

        tls_server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_side)
        plain_server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with tls_server, plain_server:
            _, tls = await asyncio.open_connection("127.0.0.1", tls_server.sockets[0].getsockname()[1], ssl=client_side)
            _, plain = await asyncio.open_connection("127.0.0.1", plain_server.sockets[0].getsockname()[1])
            # WHEN socket_transport looks under each transport
            found = socket_transport(tls.transport)
            # THEN under the SSL transport it finds the socket's transport, the one whose protocol is the SSL
            # protocol (not the SSL transport's own), with the same socket; under the plain one nothing
            ok = (
                found is not None
                and found is not tls.transport
                and found.get_protocol() is not tls.transport.get_protocol()
                and found.get_extra_info("sockname") == tls.transport.get_extra_info("sockname")
                and found.is_reading()
            )
            none_under_plain = socket_transport(plain.transport) is None
            for writer in (tls, plain):
                writer.write(b"x")
                writer.close()
            return ok, none_under_plain

    assert run(find()) == (True, True)


@LOOPS
def test_a_tls_connection_is_paused_to_the_socket_resumed_and_read_whole(run: Runner, tmp_path: Path) -> None:
    # GIVEN a TLS server sending a chunked body piece by piece
    server_side, client_side = contexts(tmp_path)
    # WHEN aiohttp reads it over TLS, the pacer pausing the connection after each read
    body, seen = run(read_paced(server_side, client_side))
    # THEN the SSL transport and the socket's transport under it were paused (both report not reading) and resumed
    # by the pacer's rounds,
    assert seen[0] == "paused, socket paused" and not any("still reading" in state for state in seen)
    # AND the body is whole and in order, and nothing is left paused, the socket's transport included
    assert body == b"".join(PIECES)
    assert seen[-2:] == ["left paused: 0", "socket reading"]
