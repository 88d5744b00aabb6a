"""Issue 13's acceptance: the OpenAI Batch API with the official ``openai`` SDK over HTTP, end to end on the local
runtime (``python -m cli gateway``: the synthesized state machine in moto's Step Functions, the handlers in-process,
the Bedrock emulator answering as the batch and on-demand services).

A 250-line chat batch mixes two models: 200 lines of one run as a Bedrock batch job, the other model's 50 lines are
under Bedrock's 100-record minimum and run on demand. A 20-line embeddings batch runs on demand. Each rule an input
line breaks fails the batch before anything runs, naming the line. (Cancel: test_openai_batch_cancel.py.)
"""

from __future__ import annotations

import base64
import struct
from collections import Counter
from typing import Any

import openai
import pytest

from tests.openai_batch import BatchGateway, chat_lines, jsonl, read_lines, wait_for

BATCH_MODEL = "claude-3-haiku"  # 200 lines: one Bedrock batch job (Converse records)
SMALL_MODEL = "claude-3.5-haiku"  # 50 lines: under the 100-record minimum, answered on demand
EMBEDDING_MODEL = "titan-embed-v2"

pytestmark = pytest.mark.slow


def upload(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    return client.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch").id


def answered_once(
    client: openai.OpenAI, batch: Any, lines: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The output and error files hold each custom_id of the input exactly once, and the counts say the same."""
    output = read_lines(client, batch.output_file_id)
    errors = read_lines(client, batch.error_file_id)
    seen = Counter(line["custom_id"] for line in output + errors)
    assert sorted(seen) == sorted(line["custom_id"] for line in lines)
    assert set(seen.values()) == {1}
    counts = batch.request_counts
    assert (counts.total, counts.completed, counts.failed) == (len(lines), len(output), len(errors))
    return {line["custom_id"]: line for line in output}, {line["custom_id"]: line for line in errors}


def test_a_chat_batch_of_two_models_and_an_embeddings_batch_complete_with_every_request_answered(
    batch_gateway: BatchGateway,
) -> None:
    # GIVEN a chat batch of 250 lines mixing two models, and an embeddings batch of 20 lines, uploaded as files
    client = batch_gateway.client()
    chats = chat_lines(200, BATCH_MODEL, prefix="big") + chat_lines(50, SMALL_MODEL, prefix="small")
    texts = [f"text number {n}" for n in range(20)]
    embeddings: list[dict[str, Any]] = [
        {
            "custom_id": f"emb-{n}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": EMBEDDING_MODEL, "input": text, "encoding_format": "base64" if n % 2 else "float"},
        }
        for n, text in enumerate(texts)
    ]
    chat_file, embedding_file = upload(client, chats), upload(client, embeddings)

    # WHEN both batches are created and polled until they end
    chat_batch = client.batches.create(
        input_file_id=chat_file, endpoint="/v1/chat/completions", completion_window="24h", metadata={"team": "qa"}
    )
    embedding_batch = client.batches.create(
        input_file_id=embedding_file, endpoint="/v1/embeddings", completion_window="24h"
    )
    chat_done = wait_for(client, chat_batch.id)
    embedding_done = wait_for(client, embedding_batch.id)

    # THEN both completed, with every request answered exactly once and counts that add up
    assert chat_done.status == "completed", chat_done.errors
    assert embedding_done.status == "completed", embedding_done.errors
    assert chat_done.metadata == {"team": "qa"}
    answers, chat_errors = answered_once(client, chat_done, chats)
    assert chat_errors == {}
    assert chat_done.usage is not None and chat_done.usage.input_tokens > 0 and chat_done.usage.output_tokens > 0
    # AND each answer is a complete chat.completion of its own model that answers its own question (the emulator
    # echoes the prompt, so a request joined to another's answer shows)
    for line in chats:
        response = answers[line["custom_id"]]["response"]
        assert response["status_code"] == 200
        completion = openai.types.chat.ChatCompletion.model_validate(response["body"])
        assert completion.model == line["body"]["model"]
        question = line["body"]["messages"][0]["content"]
        assert question in (completion.choices[0].message.content or "")
        assert completion.usage is not None and completion.usage.prompt_tokens > 0
    # AND each embedding is a complete embeddings list in the asked encoding, the same vector for the same text
    vectors, embedding_errors = answered_once(client, embedding_done, embeddings)
    assert embedding_errors == {}
    for n, line in enumerate(embeddings):
        body = vectors[line["custom_id"]]["response"]["body"]
        assert body["object"] == "list" and body["model"] == EMBEDDING_MODEL and body["usage"]["prompt_tokens"] > 0
        vector = body["data"][0]["embedding"]
        if n % 2:  # base64: little-endian float32 (the SDK's type declares the float list it decodes it into)
            raw = base64.b64decode(vector)
            assert len(raw) % 4 == 0 and len(raw) > 0
            assert all(value == value for value in struct.unpack(f"<{len(raw) // 4}f", raw))
        else:
            assert openai.types.CreateEmbeddingResponse.model_validate(body).data[0].embedding
    # AND the list shows both batches to their key, newest first
    listed = [batch.id for batch in client.batches.list(limit=10).data]
    assert listed.index(embedding_batch.id) < listed.index(chat_batch.id)


def _good(n: int) -> dict[str, Any]:
    return chat_lines(n + 1, BATCH_MODEL, prefix="ok")[n]


def _broken(change: dict[str, Any]) -> dict[str, Any]:
    line = _good(1)
    body = {**line["body"], **change.pop("body", {})}
    return {**line, **change, "body": body}


BAD_LINES: dict[str, Any] = {
    "invalid_json_line": b"{not json",
    "missing_custom_id": {"custom_id": None},
    "duplicate_custom_id": {"custom_id": "ok-0"},
    "invalid_method": {"method": "GET"},
    "mismatched_url": {"url": "/v1/embeddings"},
    "model_not_found": {"body": {"model": "no-such-bot"}},
    "wrong_endpoint": {"body": {"model": EMBEDDING_MODEL}},
    "stream_not_supported": {"body": {"stream": True}},
    "tools_not_supported": {
        "body": {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}
    },
    "invalid_request_error": {"body": {"temperature": 5}},
}


@pytest.mark.parametrize("code", sorted(BAD_LINES))
def test_a_file_with_a_bad_line_fails_the_batch_naming_the_line(batch_gateway: BatchGateway, code: str) -> None:
    # GIVEN a file whose second line breaks one rule
    client = batch_gateway.client()
    bad = BAD_LINES[code]
    second = bad if isinstance(bad, bytes) else jsonl([_broken(dict(bad))]).rstrip(b"\n")
    content = jsonl([_good(0)]) + second + b"\n" + jsonl([_good(2)])
    if code == "invalid_json_line":
        # WHEN it is uploaded THEN the upload itself is refused naming the line (no file is kept)
        with pytest.raises(openai.BadRequestError, match="Line 2"):
            client.files.create(file=("bad.jsonl", content), purpose="batch")
        return
    file_id = client.files.create(file=("bad.jsonl", content), purpose="batch").id
    # WHEN a batch is created from it
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    # THEN the batch failed before anything ran, and its error names line 2, the rule and a fix
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data
    error = batch.errors.data[0]
    assert error.line == 2
    assert error.message and "2" in error.message
    if code == "model_not_found":  # a key limited to some bots hears model_not_allowed, never which bots exist
        assert error.code in ("model_not_found", "model_not_allowed")
    elif code != "invalid_request_error":
        assert error.code == code
    else:
        assert error.param is not None and "temperature" in error.param
    assert batch.output_file_id is None and batch.request_counts is not None
