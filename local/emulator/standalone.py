"""The emulator on its own, with a moto S3 server beside it, for any boto3 client or SDK.

``serve()`` is what ``python -m cli emulator`` runs; ``standalone()`` is the same as a
context manager, for code and tests that need the endpoints.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import boto3
from botocore.config import Config

from local.emulator.faults import describe_faults
from local.emulator.jobs import EmulatorState
from local.emulator.server import BedrockEmulator
from local.process import wait_until_interrupted

FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _start_moto_s3(stack: ExitStack, host: str, port: int) -> str:
    if port:
        os.environ.setdefault("MOTO_PORT", str(port))  # read by moto at import time, for its own loopback calls
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    stack.callback(server.stop)
    actual_host, actual_port = server.get_host_and_port()
    return f"http://{actual_host}:{actual_port}"


@contextmanager
def standalone(
    port: int = 8090,
    *,
    host: str = "127.0.0.1",
    s3_port: int = 5000,
    s3_endpoint_url: str | None = None,
    region: str = "us-east-1",
    step_seconds: float = 5.0,
    faults: dict[str, Any] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[BedrockEmulator]:
    """A running emulator whose S3 is a moto server on ``s3_port`` (0: any free port), or ``s3_endpoint_url``.

    The S3 endpoint in use is ``emulator.state.s3.meta.endpoint_url``. ``faults``: see ``local.emulator.faults``.
    ``tls``: serve the emulator over HTTPS (``local.emulator.tls``; S3 stays plain HTTP).
    """
    with ExitStack() as stack:
        endpoint = s3_endpoint_url or _start_moto_s3(stack, host, s3_port)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            config=Config(s3={"addressing_style": "path"}),
            **FAKE_CREDENTIALS,
        )
        state = EmulatorState(s3=s3, region=region, step_seconds=step_seconds, faults=faults)
        yield stack.enter_context(BedrockEmulator(state, host=host, port=port, tls=tls))


def serve(port: int = 8090, **options: Any) -> None:
    """Serve the emulator (and a moto S3 server unless ``s3_endpoint_url`` is given) until Ctrl-C; ``options`` are
    those of ``standalone()``."""
    with standalone(port, **options) as emulator:
        s3_url = emulator.state.s3.meta.endpoint_url
        print(f"Bedrock emulator: {emulator.endpoint_url}  (each job status lasts {emulator.state.step_seconds} s)")
        print(f"S3:               {s3_url}")
        print(f"Faults:           {describe_faults(emulator.state.faults)}")
        print(f"  export AWS_ENDPOINT_URL_BEDROCK={emulator.endpoint_url} AWS_ENDPOINT_URL_S3={s3_url}")
        print(f"  export AWS_ENDPOINT_URL_SERVICE_QUOTAS={emulator.endpoint_url}  # per-model batch quotas")
        wait_until_interrupted()
