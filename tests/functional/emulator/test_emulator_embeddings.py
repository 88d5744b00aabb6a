"""The emulator's embedding models over boto3 InvokeModel, as the gateway's ``/v1/embeddings`` calls them: vectors in
the order of the texts, the documented per-call limits, and no token-count headers (the stricter reading)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from local.emulator.families import embed

TEXTS = ["first text", "second text", "third text"]


@pytest.mark.parametrize(
    ("model_id", "body"),
    [
        ("amazon.titan-embed-text-v2:0", {"inputText": "first text"}),
        ("amazon.titan-embed-image-v1", {"inputText": "first text"}),
        ("cohere.embed-english-v3", {"texts": TEXTS, "input_type": "search_document"}),
    ],
)
def test_embedding_answers_carry_no_token_count_headers(
    runtime: BaseClient, model_id: str, body: dict[str, Any]
) -> None:
    # GIVEN an embedding model WHEN InvokeModel answers
    answer = runtime.invoke_model(modelId=model_id, body=json.dumps(body))
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    # THEN the answer has no token-count headers (botocore models none; a client must not count on them), only the
    # documented body (Titan counts its input there) and the latency
    assert "x-amzn-bedrock-input-token-count" not in headers
    assert "x-amzn-bedrock-output-token-count" not in headers
    assert int(headers["x-amzn-bedrock-invocation-latency"]) >= 1
    if model_id.startswith("amazon."):
        assert json.loads(answer["body"].read())["inputTextTokenCount"] == 2


def test_cohere_answers_one_vector_per_text_in_order(runtime: BaseClient) -> None:
    # GIVEN three texts WHEN Cohere Embed v3 embeds them in one call
    answer = runtime.invoke_model(
        modelId="cohere.embed-multilingual-v3", body=json.dumps({"texts": TEXTS, "input_type": "search_query"})
    )
    # THEN the i-th vector is the i-th text's
    vectors = json.loads(answer["body"].read())["embeddings"]
    for vector, text in zip(vectors, TEXTS, strict=True):
        assert vector == pytest.approx(embed(text, 1024))


@pytest.mark.parametrize(
    ("model_id", "body", "message"),
    [
        ("cohere.embed-english-v3", {"texts": ["x"] * 97, "input_type": "search_document"}, "maximum item count: 96"),
        ("cohere.embed-english-v3", {"texts": ["x"]}, "required key [input_type]"),
        ("amazon.titan-embed-text-v2:0", {"inputText": ["a", "b"]}, "#/inputText: expected type: String"),
        ("amazon.titan-embed-image-v1", {"inputText": "x", "embeddingConfig": {"outputEmbeddingLength": 512}}, "512"),
    ],
)
def test_bodies_bedrock_refuses_are_refused(
    runtime: BaseClient, model_id: str, body: dict[str, Any], message: str
) -> None:
    # GIVEN a body past a documented limit WHEN it is sent THEN a ValidationException says what is wrong
    with pytest.raises(ClientError) as raised:
        runtime.invoke_model(modelId=model_id, body=json.dumps(body))
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert message in raised.value.response["Error"]["Message"]
