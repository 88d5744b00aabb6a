"""Issue 13's acceptance, cancel: a batch cancelled while it runs ends ``cancelled`` and still delivers one line per
request, an answer for each record processed and ``batch_cancelled`` for the rest (its own module: it needs a local
runtime whose emulator keeps each job a while in each status, and one runtime runs per process at a time)."""

from __future__ import annotations

import pytest

from tests.e2e.test_openai_batch import BATCH_MODEL, SMALL_MODEL, answered_once, upload
from tests.openai_batch import batch_gateway, chat_lines, wait_for

pytestmark = pytest.mark.slow


def test_a_cancelled_batch_delivers_a_line_for_every_request() -> None:
    # GIVEN a gateway whose emulator keeps each job a while in each status, and a chat batch of two jobs' worth
    with batch_gateway(step_seconds=1.0) as gateway:
        client = gateway.client()
        lines = chat_lines(150, BATCH_MODEL, prefix="c") + chat_lines(120, SMALL_MODEL, prefix="d")
        created = client.batches.create(
            input_file_id=upload(client, lines), endpoint="/v1/chat/completions", completion_window="24h"
        )
        # WHEN it is cancelled while it runs
        cancelling = client.batches.cancel(created.id)
        assert cancelling.status == "cancelling"
        done = wait_for(client, created.id)
        # THEN it ends cancelled, and every request has exactly one line: an answer or the cancel's error
        assert done.status == "cancelled", done
        assert done.cancelling_at is not None and done.cancelled_at is not None
        answers, errors = answered_once(client, done, lines)
        assert errors, "a batch cancelled as it started has requests that never ran"
        assert {line["error"]["code"] for line in errors.values()} <= {"batch_cancelled"}
        assert all(line["response"]["status_code"] == 200 for line in answers.values())
