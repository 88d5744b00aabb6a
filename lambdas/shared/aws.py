"""Cached boto3 clients, created on first use (never at import time, so moto can be active first).

Endpoints come from boto3's standard configuration (for example ``AWS_ENDPOINT_URL_BEDROCK``), so the runtime code
never knows whether it talks to AWS or to the local emulator.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()
_RETRIES = Config(retries={"mode": "adaptive", "max_attempts": 8}, connect_timeout=5, read_timeout=60)
# The on-demand runner retries throttling and 5xx itself, with backoff bounded by the time its invocation has left
# (lambdas/on_demand/logic.py): one attempt per call here; a model may take minutes to answer one record.
_ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=180)


@cache
def _client(service: str) -> Any:
    with _lock:  # boto3's default session is not thread-safe while creating clients
        return boto3.session.Session().client(service, config=_RETRIES)


def s3() -> Any:
    return _client("s3")


def bedrock() -> Any:
    return _client("bedrock")


def service_quotas() -> Any:
    return _client("service-quotas")


@cache
def bedrock_runtime() -> Any:
    with _lock:
        return boto3.session.Session().client("bedrock-runtime", config=_ONE_ATTEMPT)


def reset() -> None:
    """Forget cached clients (tests and the local runtime call this when they switch backends)."""
    _client.cache_clear()
    bedrock_runtime.cache_clear()
