"""The emulator is at least as strict as Bedrock batch: what ``CreateModelInvocationJob`` refuses (reused tokens,
models without batch support), what fails a job in validation (recordIds), and which ``modelInput`` a model rejects
record by record. Through a real boto3 ``bedrock`` client over HTTP, with moto S3 (see ``test_emulator``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from local.emulator import BedrockEmulator
from local.emulator.batch_models import BATCH_MODELS, batch_model
from stacks.config import DEFAULT_ALLOWED_MODEL_IDS, PROJECT_ROOT
from tests.functional.conftest import BUCKET
from tests.functional.emulator.conftest import error_code

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
ROLE = "arn:aws:iam::123456789012:role/BedrockBatch"


def claude_input(text: str = "hello") -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
    }


def put_lines(s3: BaseClient, key: str, lines: list[dict[str, Any]]) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body="".join(json.dumps(line) + "\n" for line in lines).encode())
    return f"s3://{BUCKET}/{key}"


def records(count: int, model_input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"recordId": f"REC{i:08d}", "modelInput": model_input or claude_input(f"text {i}")} for i in range(count)]


def create_job(bedrock: BaseClient, name: str, uri: str, model_id: str = CLAUDE, **extra: Any) -> str:
    return bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE,
        modelId=model_id,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/outputs/"}},
        **extra,
    )["jobArn"]


def refused(error: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    """(error code, HTTP status, message) of a refused call."""
    response = error.value.response
    return error_code(error), response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


# ---------------------------------------------------------------- clientRequestToken


def test_a_reused_client_request_token_with_other_parameters_is_a_validation_error(
    bedrock: BaseClient, s3: BaseClient, emulator: BedrockEmulator
) -> None:
    # GIVEN a job created with a token
    uri = put_lines(s3, "inputs/token.jsonl", records(100))
    first = create_job(bedrock, "token-job", uri, clientRequestToken="run1-job0001")
    # WHEN the same token comes with another input
    with pytest.raises(ClientError) as error:
        create_job(bedrock, "token-job", f"s3://{BUCKET}/inputs/other.jsonl", clientRequestToken="run1-job0001")
    # THEN it is a ValidationException (HTTP 400) naming the token, the job and what differs; nothing is created
    code, status, message = refused(error)
    assert (code, status) == ("ValidationException", 400)
    assert "run1-job0001" in message and first in message and "inputDataConfig" in message
    assert len(emulator.jobs()) == 1
    # AND the unchanged request still answers the first job
    assert create_job(bedrock, "token-job", uri, clientRequestToken="run1-job0001") == first


# ---------------------------------------------------------------- models


@pytest.mark.parametrize(
    ("model_id", "invocation_type", "expected"),
    [
        ("anthropic.claude-9-imaginary-v1:0", "InvokeModel", "unknown or does not support batch inference"),
        ("cohere.embed-english-v3", "InvokeModel", "unknown or does not support batch inference"),
        ("mistral.mistral-7b-instruct-v0:2", "InvokeModel", "unknown or does not support batch inference"),
        ("amazon.nova-premier-v1:0", "InvokeModel", "only through a cross-Region inference profile"),
        ("amazon.titan-embed-text-v2:0", "Converse", "does not support the Converse invocation type"),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-multilingual-v3",
            "InvokeModel",
            "unknown or does not support batch inference",
        ),
    ],
)
def test_a_model_without_batch_support_is_refused_at_create(
    bedrock: BaseClient, emulator: BedrockEmulator, model_id: str, invocation_type: str, expected: str
) -> None:
    # GIVEN a model id batch inference cannot run (unknown, not in the batch list, profile only, no Converse)
    # WHEN a job is created for it
    with pytest.raises(ClientError) as error:
        create_job(bedrock, "no-batch", f"s3://{BUCKET}/in.jsonl", model_id, modelInvocationType=invocation_type)
    # THEN CreateModelInvocationJob answers ValidationException (HTTP 400) naming the model and why; no job exists
    code, status, message = refused(error)
    assert (code, status) == ("ValidationException", 400)
    assert model_id in message and expected in message
    assert emulator.jobs() == []


@pytest.mark.parametrize(
    ("model_id", "invocation_type"),
    [
        ("us.amazon.nova-premier-v1:0", "InvokeModel"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "Converse",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:custom-model/anthropic.claude-3-haiku-20240307-v1:0/abcdefghij12",
            "InvokeModel",
        ),
        ("meta.llama3-1-8b-instruct-v1:0", "Converse"),
    ],
)
def test_batch_models_profiles_and_custom_models_are_accepted(
    bedrock: BaseClient, model_id: str, invocation_type: str
) -> None:
    # GIVEN a batch model by profile id or ARN, or a custom model (its ARN names no model: checked by shape only)
    # WHEN a job is created THEN it exists
    assert create_job(bedrock, "accepted", f"s3://{BUCKET}/in.jsonl", model_id, modelInvocationType=invocation_type)


def deployed_model_ids() -> set[str]:
    context = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    return set(context["allowedModelIds"]) | set(DEFAULT_ALLOWED_MODEL_IDS)


def test_every_model_the_deployment_allows_is_a_batch_model_of_the_emulator() -> None:
    # GIVEN the allowedModelIds of cdk.json and the stack's defaults
    # WHEN each is looked up in the emulator's batch list (the service's "Supported Regions and models for batch
    # inference")
    missing = sorted(model_id for model_id in deployed_model_ids() if batch_model(model_id) is None)
    # THEN none would be refused at CreateModelInvocationJob
    assert missing == []


def test_the_batch_list_has_one_entry_per_model() -> None:
    # GIVEN the emulator's batch list WHEN prefixes are compared THEN none repeats or hides another
    prefixes = [model.prefix for model in BATCH_MODELS]
    assert len(set(prefixes)) == len(prefixes)
    assert [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)] == []
