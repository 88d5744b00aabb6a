"""The HTTP side of the emulator: a threaded stdlib server that feeds a ``RouteTable``.

    state = EmulatorState(s3=boto3.client("s3"), step_seconds=0)
    with BedrockEmulator(state) as emulator:
        bedrock = boto3.client("bedrock", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
        runtime = boto3.client("bedrock-runtime", endpoint_url=emulator.endpoint_url, region_name="us-east-1")

One endpoint serves both: the batch control plane (``bedrock``) and the runtime (``bedrock-runtime``: Converse,
ConverseStream, CountTokens, InvokeModel, Start/Get/ListAsyncInvoke(s); see ``local.emulator.runtime``), and Service
Quotas' batch quotas per model (``service-quotas``; see ``local.emulator.quotas``).

Under moto's ``mock_aws`` the boto3 client above reaches this server for real: moto only intercepts URLs that match
an AWS hostname pattern (``bedrock.<region>.amazonaws.com`` ...), and ``http://127.0.0.1:<port>`` matches none.
(Do not list the emulator's host in ``MOTO_S3_CUSTOM_ENDPOINTS``: moto would then treat it as S3.)

A response body is sent whole (bytes), chunk by chunk from the request's thread (an iterable), or, for a paced body
(``PacedBody``: ConverseStream with ``stream_delay_seconds`` set), by ``_Pacer``: one asyncio loop in one thread for
every paced stream, producing each chunk when its wait is over, while the request's thread waits for the stream's
end. A thread per stream that sleeps between frames costs a wake-up and a GIL hand-off per frame: at 500 streams of
50 frames a second that kept a whole core busy.

``tls`` (an ``ssl.SSLContext``, see ``local.emulator.tls``): HTTPS instead of HTTP, as Bedrock's endpoints; each
connection's handshake runs in its request's thread, not in the one accepting connections.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from local.emulator.jobs import EmulatorState
from local.emulator.protocol import HttpRequest, HttpResponse, PacedBody, RouteTable
from local.emulator.quotas import ServiceQuotas
from local.emulator.runtime import RuntimeState

logger = logging.getLogger(__name__)


def control_plane_routes(state: EmulatorState) -> RouteTable:
    """The ``bedrock`` batch operations, served by ``state``. Other services add their operations to the table."""
    routes = RouteTable()
    routes.add_service(
        "bedrock",
        {
            "CreateModelInvocationJob": state.create_model_invocation_job,
            "GetModelInvocationJob": state.get_model_invocation_job,
            "ListModelInvocationJobs": state.list_model_invocation_jobs,
            "StopModelInvocationJob": state.stop_model_invocation_job,
        },
    )
    return routes


LAST_CHUNK = b"0\r\n\r\n"  # ends a body sent in HTTP/1.1 chunked transfer coding


def _chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a body in chunked transfer coding: its size in hex, CRLF, the bytes, CRLF."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40 ms delayed-ACK stall
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # here, in this connection's thread (see _Server.get_request)
        super().setup()

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = HttpRequest(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        self._send(self.server.routes.dispatch(request))

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if isinstance(response.body, PacedBody):
            self.server.pacer.send(self.connection, response.body)
            return
        for chunk in response.body:
            if chunk:
                self.wfile.write(_chunk(chunk))
                self.wfile.flush()
        self.wfile.write(LAST_CHUNK)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("%s - " + format, self.address_string(), *args)


class _Pacer:
    """Sends paced bodies: one asyncio loop, in a thread started with the first paced body, for all of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def send(self, connection: socket.socket, body: PacedBody) -> None:
        """Send ``body`` on ``connection`` in chunked encoding (its final empty chunk included), each chunk produced
        and sent once its wait is over; return when the last is sent, or raise what sending raised (the client gone).
        The socket is non-blocking meanwhile: a client that stops reading holds its own stream only."""
        timeout = connection.gettimeout()
        connection.setblocking(False)
        try:
            asyncio.run_coroutine_threadsafe(self._send(connection, body), self._running()).result()
        finally:
            connection.settimeout(timeout)

    @staticmethod
    async def _send(connection: socket.socket, body: PacedBody) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(connection, ssl.SSLSocket):  # HTTPS: asyncio's sock_sendall refuses an SSLSocket
            sendall = functools.partial(_send_tls, connection)
        else:
            sendall = functools.partial(loop.sock_sendall, connection)
        try:
            for wait, chunk in body.chunks:
                if wait > 0:
                    await asyncio.sleep(wait)
                if chunk:
                    await sendall(_chunk(chunk))
            await sendall(LAST_CHUNK)
        finally:
            close = getattr(body.chunks, "close", None)
            if close is not None:  # a generator cut short runs its cleanup now, as in the request's thread
                close()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="bedrock-emulator-pacer", daemon=True
                )
                self._thread.start()
            return self._loop

    def stop(self) -> None:
        """Cancel the streams still being sent (their requests' threads get ``CancelledError``) and end the loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return

        async def cancel_all() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def _send_tls(connection: ssl.SSLSocket, data: bytes) -> None:
    """``loop.sock_sendall`` for a non-blocking TLS socket (asyncio refuses an ``SSLSocket``): one TLS write, retried
    with the same bytes when the socket's buffer is full (OpenSSL's rule for a write that wants to wait)."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[connection.send(view) :]
        except (ssl.SSLWantWriteError, BlockingIOError):
            await _ready(loop, connection, write=True)
        except ssl.SSLWantReadError:
            await _ready(loop, connection, write=False)


async def _ready(loop: asyncio.AbstractEventLoop, connection: socket.socket, *, write: bool) -> None:
    """Until ``connection`` can be written (``write``) or read."""
    ready = loop.create_future()

    def done() -> None:
        if not ready.done():
            ready.set_result(None)

    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    add(connection.fileno(), done)
    try:
        await ready
    finally:
        remove(connection.fileno())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], routes: RouteTable, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(address, _Handler)
        self.routes = routes
        self.pacer = _Pacer()
        self.tls = tls

    def get_request(self) -> tuple[Any, Any]:
        """An accepted connection, wrapped in TLS when the emulator serves HTTPS; its handshake is left to the
        request's thread (``_Handler.setup``), so that one slow client does not hold the accepting thread."""
        connection, address = super().get_request()
        if self.tls is None:
            return connection, address
        return self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False), address

    def server_close(self) -> None:
        super().server_close()
        self.pacer.stop()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its answer was written (a cancelled run, a timed-out read: BrokenPipe,
        ConnectionReset) is logged at debug level; the stdlib printed a traceback on stderr for each, which a local
        run showed its user. Any other error keeps the stdlib's traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            logger.debug("client %s hung up before its answer was written", client_address)
            return
        super().handle_error(request, client_address)


class BedrockEmulator:
    """Serves ``state`` over HTTP on ``host:port`` (port 0: any free port) from a background thread; over HTTPS with
    ``tls`` (see ``local.emulator.tls``)."""

    def __init__(
        self, state: EmulatorState, *, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.state = state
        self.runtime = RuntimeState(state)
        self.routes = control_plane_routes(state)
        self.routes.add_service("bedrock-runtime", self.runtime.handlers())
        # Service Quotas for service code bedrock: clients reach it with AWS_ENDPOINT_URL_SERVICE_QUOTAS.
        self.service_quotas = ServiceQuotas(state)
        self.routes.add_json_service("service-quotas", self.service_quotas.handlers())
        self._address = (host, port)
        self._tls = tls
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> BedrockEmulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._server = _Server(self._address, self.routes, self._tls)
        # stop() waits until the serving loop next looks at its shutdown flag, up to one poll interval: 10 ms, not
        # 50 (the tests start and stop an emulator per test, about a thousand a run; an idle poll costs nothing)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="bedrock-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server, self._thread = None, None

    def __enter__(self) -> BedrockEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("start() the emulator first")
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://{self._address[0]}:{self._server.server_port}"

    # Hooks for tests and progress displays.

    def set_job_status(self, job: str, status: str, **kwargs: Any) -> None:
        """See ``EmulatorState.set_job_status``."""
        self.state.set_job_status(job, status, **kwargs)

    def jobs(self) -> list[dict[str, Any]]:
        return self.state.jobs()

    def hold_new_jobs(self, hold: bool = True) -> None:
        """See ``EmulatorState.hold_new_jobs``."""
        self.state.hold_new_jobs(hold)

    def jobs_created_per_model(self) -> dict[str, int]:
        return self.state.jobs_created_per_model()

    def peak_active_jobs_per_model(self) -> dict[str, int]:
        return self.state.peak_active_jobs_per_model()

    def calls(self) -> dict[str, int]:
        """Requests received per operation name (e.g. ``{"GetModelInvocationJob": 12}``), faulted ones included."""
        return self.routes.call_counts()

    def faults_injected(self) -> dict[str, int]:
        """See ``EmulatorState.faults_injected`` (runtime faults included)."""
        return self.state.faults_injected()

    def add_prompt_router(self, router: str, models: list[str] | tuple[str, ...]) -> None:
        """Serve a custom prompt router (its ARN, or the id after ``prompt-router/``) routing to ``models``, smallest
        first: short prompts go to the first, longer ones to the last (see ``local.emulator.conversation``)."""
        self.runtime.prompt_routers[router] = tuple(models)

    def async_invokes(self) -> list[dict[str, Any]]:
        """Every async invocation as GetAsyncInvoke describes it (advanced to now), oldest first."""
        return self.runtime.videos.all()
