"""The emulator is at least as strict as Bedrock batch: what ``CreateModelInvocationJob`` refuses (reused tokens,
models without batch support), what fails a job in validation (recordIds), and which ``modelInput`` a model rejects
record by record. Through a real boto3 ``bedrock`` client over HTTP, with moto S3 (see ``test_emulator``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from local.emulator import BedrockEmulator, ManualClock
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


# ---------------------------------------------------------------- recordIds


def run_to_end(bedrock: BaseClient, clock: ManualClock, arn: str) -> dict[str, Any]:
    clock.advance(10)
    return dict(bedrock.get_model_invocation_job(jobIdentifier=arn))


@pytest.mark.parametrize(
    ("record_id", "expected"),
    [
        ("REC0000001", 'has recordId "REC0000001": a recordId is 11 letters or digits'),  # 10 characters
        ("REC-0000001", 'has recordId "REC-0000001"'),  # not alphanumeric
        ("", 'has recordId ""'),
        (7, "has recordId 7"),
    ],
)
def test_a_malformed_record_id_fails_the_job_in_validation(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, record_id: Any, expected: str
) -> None:
    # GIVEN 100 records, the 42nd with a malformed recordId
    lines = records(100)
    lines[41]["recordId"] = record_id
    arn = create_job(bedrock, "bad-id", put_lines(s3, "inputs/bad-id.jsonl", lines))
    # WHEN the job is validated
    job = run_to_end(bedrock, clock, arn)
    # THEN it fails with a message naming the line, the value and the fix, and writes no output
    assert job["status"] == "Failed"
    assert job["message"].startswith(f"Line 42 of s3://{BUCKET}/inputs/bad-id.jsonl {expected}")
    assert "leave it out" in job["message"]
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="outputs/")


def test_a_record_id_repeated_in_another_file_of_the_job_fails_it(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN two files of one job, the second reusing a recordId of the first
    put_lines(s3, "inputs/dup/a.jsonl", records(60))
    second = [{"recordId": f"SEC{i:08d}", "modelInput": claude_input()} for i in range(60)]
    second[9]["recordId"] = "REC00000005"
    put_lines(s3, "inputs/dup/b.jsonl", second)
    # WHEN the job is validated
    job = run_to_end(bedrock, clock, create_job(bedrock, "dup-id", f"s3://{BUCKET}/inputs/dup/"))
    # THEN it fails naming both places of the id
    assert job["status"] == "Failed"
    assert job["message"] == (
        f"The recordId REC00000005 of record 10 of s3://{BUCKET}/inputs/dup/b.jsonl is also the recordId of record 6 "
        f"of s3://{BUCKET}/inputs/dup/a.jsonl; recordIds must be unique within a job"
    )


def test_records_without_an_id_get_unique_11_character_ids(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN 100 records without recordId
    lines = [{"modelInput": claude_input(f"text {i}")} for i in range(100)]
    arn = create_job(bedrock, "no-ids", put_lines(s3, "inputs/no-ids.jsonl", lines))
    # WHEN the job completes
    assert run_to_end(bedrock, clock, arn)["status"] == "Completed"
    # THEN each output line has a recordId Bedrock-style: 11 letters or digits, all different
    key = f"outputs/{arn.rsplit('/', 1)[-1]}/no-ids.jsonl.out"
    ids = [json.loads(line)["recordId"] for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].iter_lines()]
    assert len(set(ids)) == 100 and all(len(rid) == 11 and rid.isalnum() for rid in ids)


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
