"""Read pacing over TLS, as the gateway reads real Bedrock: aiohttp's connection over an SSL transport (asyncio's and
uvloop's) paused and resumed by ``ReadPacer``, the body whole and in order. A local TLS server (a self-signed
certificate made with ``cryptography``, which moto pins in the dev requirements) sends a chunked body."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lambdas.gateway.pacing import ReadPacer

PIECES = [f"piece {i:03d};".encode() for i in range(40)]


def server_context(directory: Path) -> ssl.SSLContext:
    """A TLS server context on a fresh self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


async def read_paced(context: ssl.SSLContext) -> tuple[bytes, list[str]]:
    """The body a TLS server sends in ``PIECES`` (one HTTP chunk each, the first alone, the rest once the client has
    read it), read as ``converse_events`` reads it with a pacer; and what the pacer saw of the transport."""
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

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    pacer = ReadPacer(0.01)
    seen: list[str] = []
    body = b""
    async with (
        server,
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{port}/", ssl=False) as response,
    ):
        transport = response.connection.transport if response.connection else None
        assert transport is not None and transport.get_extra_info("sslcontext") is not None  # TLS indeed
        while True:
            data = await response.content.readany()
            if not data:
                break
            body += data
            first_read.set()
            connection = response.connection
            if not response.content.is_eof() and connection is not None and connection.transport is not None:
                pacer.pause(connection.transport, connection.protocol)
                if len(pacer):
                    seen.append("paused" if not connection.transport.is_reading() else "still reading")
        seen.append(f"left paused: {len(pacer)}")
    return body, seen


Runner = Callable[[Coroutine[Any, Any, tuple[bytes, list[str]]]], tuple[bytes, list[str]]]


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_tls_connection_is_paused_resumed_and_read_whole(run: Runner, tmp_path: Path) -> None:
    # GIVEN a TLS server sending a chunked body piece by piece
    context = server_context(tmp_path)
    # WHEN aiohttp reads it over TLS, the pacer pausing the connection after each read
    body, seen = run(read_paced(context))
    # THEN the SSL transport was paused (it reports not reading) and resumed by the pacer's rounds,
    assert seen[0] == "paused" and "still reading" not in seen
    # AND the body is whole and in order, and nothing is left paused
    assert body == b"".join(PIECES)
    assert seen[-1] == "left paused: 0"
