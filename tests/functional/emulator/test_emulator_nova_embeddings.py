"""Amazon Nova Multimodal Embeddings in the emulator over boto3 InvokeModel: the documented synchronous request
schema, checked strictly, and its ``embeddings`` answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from local.emulator.families import embed

MODEL = "amazon.nova-2-multimodal-embeddings-v1:0"


def body(text: Any = None, **params: Any) -> dict[str, Any]:
    single = {
        "embeddingPurpose": "GENERIC_INDEX",
        "embeddingDimension": 1024,
        "text": {"truncationMode": "NONE", "value": "a lighthouse at dusk"} if text is None else text,
    }
    return {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {**single, **params},
    }


def refused(runtime: BaseClient, request: dict[str, Any]) -> str:
    with pytest.raises(ClientError) as error:
        runtime.invoke_model(modelId=MODEL, body=json.dumps(request))
    assert error.value.response["Error"]["Code"] == "ValidationException"
    return str(error.value.response["Error"]["Message"])


@pytest.mark.parametrize("dimension", [256, 384, 1024, 3072])
def test_a_text_is_embedded_at_each_documented_dimension(runtime: BaseClient, dimension: int) -> None:
    # GIVEN a text request at one of the model's dimensions WHEN it is invoked
    answer = runtime.invoke_model(modelId=MODEL, body=json.dumps(body(embeddingDimension=dimension)))
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    # THEN one TEXT embedding of that length comes back, and no token-count header (none is documented)
    (embedding,) = json.loads(answer["body"].read())["embeddings"]
    assert embedding["embeddingType"] == "TEXT" and embedding["embedding"] == embed("a lighthouse at dusk", dimension)
    assert "x-amzn-bedrock-input-token-count" not in headers


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        ({**body(), "taskType": "SEGMENTED_EMBEDDING"}, "#/taskType: SEGMENTED_EMBEDDING is not a valid enum value"),
        ({**body(), "schemaVersion": "v2"}, "#/schemaVersion: v2 is not a valid enum value"),
        ({**body(), "inputText": "x"}, "#: extraneous key [inputText]"),
        (body(embeddingPurpose="SEARCH"), "embeddingPurpose: SEARCH is not a valid enum value"),
        (body(embeddingDimension=512), "embeddingDimension: 512 is not a valid enum value"),
        (body(image={"format": "png"}), "exactly one of [text, image, audio, video]"),
        (body({"value": "no mode"}), "required key [truncationMode]"),
        (body({"truncationMode": "MIDDLE", "value": "x"}), "truncationMode: MIDDLE is not a valid enum value"),
        (body({"truncationMode": "NONE", "value": " "}), "value: expected minLength: 1"),
        (body({"truncationMode": "NONE", "value": "word " * 8193}), "over the model's 8192"),
    ],
)
def test_a_body_outside_the_documented_schema_is_refused(
    runtime: BaseClient, request_body: dict[str, Any], words: str
) -> None:
    # GIVEN a body the documented schema does not allow WHEN it is invoked THEN a ValidationException names the field
    assert words in refused(runtime, request_body)


def test_a_missing_dimension_is_refused_the_stricter_reading(runtime: BaseClient) -> None:
    request = body()
    del request["singleEmbeddingParams"]["embeddingDimension"]
    assert "required key [embeddingDimension]" in refused(runtime, request)


def test_truncation_end_keeps_the_start_of_a_long_text(runtime: BaseClient) -> None:
    # GIVEN a text over 8K tokens with truncationMode END WHEN invoked THEN the vector is the first 8,192 tokens'
    words = [f"w{index}" for index in range(8200)]
    request = body({"truncationMode": "END", "value": " ".join(words)})
    (embedding,) = json.loads(runtime.invoke_model(modelId=MODEL, body=json.dumps(request))["body"].read())[
        "embeddings"
    ]
    assert embedding["embedding"] == embed(" ".join(words[:8192]), 1024)
