"""The OpenAI batch flow over HTTP with the official openai SDK, end to end on the local runtime: upload, create,
poll until completed, download. The run is real: the synthesized state machine in moto's Step Functions, the
handlers in-process, the Bedrock emulator running the batch job (``python -m cli gateway`` serves the same)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from local.emulator.media import png
from tests.openai_batch import BatchGateway, chat_lines, jsonl, read_lines, wait_for

MODEL = "claude-3-haiku"  # a chat bot of the default key; Converse batch records
LINES = 120  # one job of one model: over Bedrock's 100-record minimum per batch job
PNG = png(4, 4, (10, 200, 30))
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


@pytest.mark.slow
def test_a_chat_batch_runs_to_completed_and_answers_every_request(batch_gateway: BatchGateway) -> None:
    # GIVEN an input file of 120 chat requests for one model, uploaded through the Files API
    client = batch_gateway.client()
    lines = chat_lines(LINES, MODEL)
    uploaded = client.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    # WHEN a batch is created from it and polled until it ends
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert created.status in ("validating", "in_progress")
    batch = wait_for(client, created.id)
    # THEN it completed, its counts add up, and it has an output file
    assert batch.status == "completed", batch.errors
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (
        LINES,
        LINES,
        0,
    )
    assert batch.usage is not None and batch.usage.input_tokens > 0
    # AND every request has exactly one answer, a complete chat.completion (the emulator echoes the question)
    output = read_lines(client, batch.output_file_id)
    errors = read_lines(client, batch.error_file_id)
    assert sorted(line["custom_id"] for line in output + errors) == sorted(line["custom_id"] for line in lines)
    assert errors == []
    by_id = {line["custom_id"]: line["response"] for line in output}
    first = by_id["req-0"]
    assert first["status_code"] == 200 and first["body"]["object"] == "chat.completion"
    assert "question 0" in first["body"]["choices"][0]["message"]["content"]
    # AND the list shows the batch to its key
    assert created.id in [b.id for b in client.batches.list(limit=5).data]


def with_attachment(line: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """The line with its question as a text part followed by ``part``."""
    message = line["body"]["messages"][0]
    parts = [{"type": "text", "text": message["content"]}, part]
    return {**line, "body": {**line["body"], "messages": [{"role": "user", "content": parts}]}}


@pytest.mark.slow
def test_inline_images_and_documents_run_in_a_batch_job_and_on_demand(batch_gateway: BatchGateway) -> None:
    # GIVEN 110 chat requests with an inline PNG for a bot that reads images (one batch job), and 5 with an inline PDF
    # for a bot that reads documents (under the batch minimum: answered on demand through Converse)
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{base64.b64encode(PNG).decode()}"}}
    pdf = {"type": "file", "file": {"filename": "r.pdf", "file_data": base64.b64encode(PDF).decode()}}
    lines = [with_attachment(line, image) for line in chat_lines(110, MODEL, prefix="img")]
    lines += [with_attachment(line, pdf) for line in chat_lines(5, "nova-premier", prefix="pdf")]
    client = batch_gateway.client()
    uploaded = client.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    # WHEN the batch runs to its end
    created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    batch = wait_for(client, created.id)
    # THEN every request was answered (the emulator checks each record's image and document blocks, base64 bytes
    # included, in the batch job as in the on-demand runner's Converse calls), none failed
    assert batch.status == "completed", batch.errors
    errors = read_lines(client, batch.error_file_id)
    assert errors == []
    output = read_lines(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in output) == sorted(line["custom_id"] for line in lines)
    by_id = {line["custom_id"]: line["response"]["body"] for line in output}
    assert "question 3" in by_id["img-3"]["choices"][0]["message"]["content"]
    assert "question 2" in by_id["pdf-2"]["choices"][0]["message"]["content"]
