"""The OpenAI batch flow with the official ``openai`` SDK, over HTTP, and a gateway wired to a local runtime to run it
on: one helper for every test of the Batch API end to end (``batch_gateway`` is also the pytest fixture of
``tests/conftest.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import openai

TERMINAL = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class BatchGateway:
    """A running gateway whose Batch API runs on a local runtime: its base URL (``.../v1`` is the SDK's base URL) and
    an access key of it."""

    url: str
    key: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0)


@contextmanager
def batch_gateway(step_seconds: float = 0.05) -> Iterator[BatchGateway]:
    """``python -m cli gateway``'s local gateway with the Batch API (``cli.gateway.local_gateway(batch=True)``)."""
    from cli.gateway import local_gateway

    with local_gateway(0, access_key="batch-key-0123456789abcdef012345", batch=True, step_seconds=step_seconds) as gw:
        yield BatchGateway(gw.url, gw.access_key)


def chat_lines(count: int, model: str, prefix: str = "req") -> list[dict[str, Any]]:
    """``count`` chat requests, ``custom_id`` ``<prefix>-<n>``, each asking its own question."""
    return [
        {
            "custom_id": f"{prefix}-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"question {n}"}], "max_tokens": 64},
        }
        for n in range(count)
    ]


def jsonl(lines: Sequence[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def wait_for(client: openai.OpenAI, batch_id: str, *, give_up_after: float = 600.0) -> Any:
    """Retrieve the batch until it ends; raises (naming the last status) if it has not after ``give_up_after``
    seconds, so a stuck run fails the test instead of hanging it."""
    deadline = time.monotonic() + give_up_after
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in TERMINAL:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {batch.status} after {give_up_after} s: {batch}")
        time.sleep(0.5)


def read_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """An output or error file's lines (none without a file)."""
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines() if line.strip()]
