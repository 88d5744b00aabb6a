"""Abuse resistance of the gateway under uvicorn over real sockets (issue 6 item 6): oversized and slow bodies, path
tricks and header injection on the wire, and a load run of a few thousand Poe queries with flat memory."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cli.gateway import RunningGateway, local_gateway
from local.process import temporary_environment

LIMIT = 65_536
BODY_TIMEOUT = 4.0  # long enough for the fast queries of the slow-client test on a loaded machine
KEY = "e2e-abuse-key-0123456789abcdef012"


@pytest.fixture(scope="module")
def gateway() -> Iterator[RunningGateway]:
    env = {"GATEWAY_MAX_BODY_BYTES": str(LIMIT), "GATEWAY_BODY_TIMEOUT": str(BODY_TIMEOUT)}
    with temporary_environment(env), local_gateway(0, access_key=KEY) as running:
        yield running


def poe_body(text: str) -> bytes:
    query = [{"role": "user", "content": text, "content_type": "text/markdown"}]
    body = {
        "version": "1.2",
        "type": "query",
        "query": query,
        "user_id": "u",
        "conversation_id": "c",
        "message_id": "m",
    }
    return json.dumps(body).encode()


def address(gateway: RunningGateway) -> tuple[str, int]:
    url = urlsplit(gateway.url)
    return url.hostname or "127.0.0.1", url.port or 80


def exchange(gateway: RunningGateway, head: bytes, body: bytes = b"", timeout: float = 3) -> bytes:
    """Send raw bytes, read until the server closes or the response is complete; the raw response."""
    with socket.create_connection(address(gateway), timeout=timeout) as sock:
        sock.sendall(head + body)
        received = b""
        while True:
            try:
                data = sock.recv(65_536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            received += data
            if complete(received):
                break
        return received


def complete(received: bytes) -> bool:
    """Whether a raw response has its headers and its whole Content-Length body."""
    head_end = received.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    lines = received[:head_end].split(b"\r\n")
    length = [int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")]
    return bool(length) and len(received) >= head_end + 4 + length[0]


def request_head(path: bytes, extra: bytes = b"", length: int | None = None) -> bytes:
    framing = b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer " + KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\n" + framing + extra + b"\r\n"
    )


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_a_declared_gigabyte_is_413_without_sending_it(gateway: RunningGateway) -> None:
    # GIVEN headers declaring 1 GB and only 10 bytes sent WHEN the response is read THEN it is 413, not the 408 of a
    # body that never arrives: the gateway answered from the headers, without waiting for the body
    response = exchange(gateway, request_head(b"/poe/nova-pro", length=10**9), b"0123456789")
    assert status_of(response) == 413 and b"request_too_large" in response


def test_a_chunked_body_past_the_limit_is_413_before_it_ends(gateway: RunningGateway) -> None:
    # GIVEN a chunked body sent just past the limit and never terminated WHEN the response is read THEN 413 (a
    # gateway waiting for the body's end would answer the 408 of its body timeout instead)
    chunk = b" " * 8192
    body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(LIMIT // len(chunk) + 2))
    response = exchange(gateway, request_head(b"/poe/nova-pro"), body)
    assert status_of(response) == 413


@pytest.mark.parametrize(
    "path",
    [
        b"/poe/..%2f..%2fetc%2fpasswd",
        b"/poe/%2e%2e",
        b"/poe/nova-pro%00",
        b"/poe/../../etc/passwd",
        b"/poe/" + b"a" * 4000,
    ],
)
def test_bot_names_with_path_characters_on_the_wire(gateway: RunningGateway, path: bytes) -> None:
    body = poe_body("x")
    response = exchange(gateway, request_head(path, length=len(body)), body)
    assert status_of(response) in (400, 404) and b"passwd" not in response and b"root:" not in response


def test_header_injection_on_the_wire_is_refused_or_not_reflected(gateway: RunningGateway) -> None:
    body = poe_body("hi")
    for extra in (
        b"X-Request-Id: abc\rSet-Cookie: injected=1\r\n",  # a bare CR inside a value
        b"X-Request-Id: abc\r\n Set-Cookie: injected=1\r\n",  # an obsolete folded line
        b"X-Request-Id: abc%0d%0aSet-Cookie:%20injected=1\r\n",
    ):
        response = exchange(gateway, request_head(b"/poe/nova-pro", extra, len(body)), body)
        head = response.split(b"\r\n\r\n", 1)[0].lower()
        assert status_of(response) in (200, 400)
        assert b"set-cookie" not in head and b"injected" not in head and b"x-request-id" not in head


def test_a_slow_client_blocks_no_one_and_gets_408(gateway: RunningGateway) -> None:
    # GIVEN a raw connection dripping its body a byte every 50 ms / WHEN fast queries run meanwhile
    body = poe_body("slow")

    async def run() -> bytes:
        host, port = address(gateway)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request_head(b"/poe/nova-pro", length=len(body)))

        async def drip() -> bytes:  # the body a byte every 50 ms: about 8 s in all, over the 4 s body timeout
            for byte in body:
                if time.monotonic() - began > BODY_TIMEOUT + 0.5:  # the 408 is due: stop and read it
                    break
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.sleep(0.05)
            received = b""
            while not complete(received) and not reader.at_eof():
                received += await asyncio.wait_for(reader.read(65_536), 10)
            return received

        began = time.monotonic()
        slow = asyncio.create_task(drip())
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
            for _ in range(5):
                fast = await http.post("/poe/nova-pro", content=poe_body("quick"), timeout=5)
                assert fast.status_code == 200 and "quick" in fast.text
                assert not slow.done()  # the slow body is still arriving while the fast queries are answered
        response = await slow
        writer.close()
        return response

    response = asyncio.run(run())
    # THEN the slow one got the 408 of its body timeout (before the ~8 s its whole body would take)
    assert status_of(response) == 408 and b"request_timeout" in response


def rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


@pytest.mark.slow
def test_a_load_run_of_3000_poe_queries_has_no_error_and_flat_memory(gateway: RunningGateway) -> None:
    # GIVEN the gateway, the emulator and this client in one process, warmed up
    async def load(count: int, concurrency: int = 16) -> list[str]:
        failures: list[str] = []
        limit = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=gateway.url, limits=limits, timeout=30) as http:

            async def one(index: int) -> None:
                async with limit:
                    text = f"load-{index}"
                    response = await http.post(
                        "/poe/nova-pro", content=poe_body(text), headers={"Authorization": f"Bearer {KEY}"}
                    )
                    ok = response.status_code == 200 and text in response.text and "event: error" not in response.text
                    if not ok:
                        failures.append(f"{index}: {response.status_code} {response.text[:200]}")

            await asyncio.gather(*(one(index) for index in range(count)))
        return failures

    assert asyncio.run(load(300)) == []
    before = rss_kib()
    began = time.monotonic()
    # WHEN 3,000 Poe queries run, 16 at a time
    failures = asyncio.run(load(3000))
    elapsed = time.monotonic() - began
    growth_mib = (rss_kib() - before) / 1024
    print(f"3000 Poe queries in {elapsed:.1f} s; RSS {before / 1024:.1f} MiB -> growth {growth_mib:+.1f} MiB")
    # THEN none failed and the process grew by less than 50 MB
    assert failures == []
    assert growth_mib < 50
