"""The emulator is at least as strict as Bedrock batch: what ``CreateModelInvocationJob`` refuses (reused tokens,
models without batch support), what fails a job in validation (recordIds), and which ``modelInput`` a model rejects
record by record. Through a real boto3 ``bedrock`` client over HTTP, with moto S3 (see ``test_emulator``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from lambdas.shared.model_families import resolve
from local.emulator import BedrockEmulator, ManualClock
from local.emulator.batch_models import BATCH_MODELS, batch_model
from stacks.config import DEFAULT_ALLOWED_MODEL_IDS, PROJECT_ROOT
from tests.functional.conftest import BUCKET
from tests.functional.emulator.conftest import CLAUDE, create_job, error_code


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


# ---------------------------------------------------------------- modelInput per model family


def anthropic(**change: Any) -> dict[str, Any]:
    return claude_input() | change


def nova(**config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    return body | ({"inferenceConfig": config} if config else {})


def converse(*messages: dict[str, Any], **config: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": list(messages or [{"role": "user", "content": [{"text": "hi"}]}])}
    return body | ({"inferenceConfig": config} if config else {})


def turn(role: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "content": list(blocks or [{"text": "hi"}])}


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
DOCUMENT = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
CONVERSE_IMAGE = {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
USER_TEXT = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
ASSISTANT_TEXT = {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}

# model id, invocation type, a valid modelInput, then (invalid modelInput, what the record's errorMessage says).
FAMILY_CASES: list[tuple[str, str, dict[str, Any], list[tuple[dict[str, Any], str]]]] = [
    (
        CLAUDE,
        "InvokeModel",
        claude_input(),
        [
            (
                anthropic(anthropic_version="bedrock-2023-06-01"),
                "#/anthropic_version: bedrock-2023-06-01 is not a valid",
            ),
            (
                anthropic(max_tokens=4097),
                "max_tokens: 4097 > 4096, which is the maximum allowed number of output tokens for "
                "claude-3-haiku-20240307",
            ),
            (anthropic(temperature=1.5), "#/temperature: 1.5 is not less or equal to 1"),
            (anthropic(top_p=-0.1), "#/top_p: -0.1 is not greater or equal to 0"),
            (anthropic(top_k=501), "#/top_k: 501 is not less or equal to 500"),
            (anthropic(system=[{"text": "be brief"}]), "system.0: a system block is {'type': 'text'"),
            (anthropic(system=7), "#/system: expected type: String or JSONArray"),
            (anthropic(messages=[ASSISTANT_TEXT, USER_TEXT]), 'messages: first message must use the "user" role'),
            (anthropic(messages=[USER_TEXT, USER_TEXT]), 'found multiple "user" roles in a row'),
            (
                anthropic(messages=[{"role": "user", "content": [{"type": "txt", "text": "hi"}]}]),
                "messages.0.content.0.type: Input tag 'txt' found using 'type' does not match any of the expected",
            ),
            (
                anthropic(messages=[{"role": "user", "content": [DOCUMENT, {"type": "text", "text": "x"}]}]),
                "#/messages/0/content/0: Anthropic Claude 3 Haiku does not accept document input",
            ),
        ],
    ),
    (
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "InvokeModel",
        claude_input(),
        [
            (
                anthropic(messages=[{"role": "user", "content": [IMAGE, {"type": "text", "text": "x"}]}]),
                "Anthropic Claude 3.5 Haiku does not accept image input",
            ),
            (anthropic(max_tokens=8193), "max_tokens: 8193 > 8192"),
        ],
    ),
    (
        "amazon.nova-micro-v1:0",
        "InvokeModel",
        nova(maxTokens=5000),
        [
            (nova(maxTokens=5001), "#/inferenceConfig/maxTokens: 5001 is not less or equal to 5000"),
            (nova(max_new_tokens=0), "#/inferenceConfig/max_new_tokens: 0 is not greater or equal to 1"),
            (nova(temperature=2), "#/inferenceConfig/temperature: 2 is not less or equal to 1"),
            (nova(topP=1.01), "#/inferenceConfig/topP: 1.01 is not less or equal to 1"),
            (
                nova() | {"messages": [turn("user", CONVERSE_IMAGE, {"text": "x"})]},
                "#/messages/0/content/0: Amazon Nova Micro does not accept image input",
            ),
            (nova() | {"messages": [turn("assistant"), turn("user")]}, "A conversation must start with a user message"),
        ],
    ),
    (
        "meta.llama3-1-8b-instruct-v1:0",
        "InvokeModel",
        {"prompt": "hi", "max_gen_len": 2048},
        [
            ({"prompt": "hi", "max_gen_len": 2049}, "#/max_gen_len: 2049 is not less or equal to 2048"),
            ({"prompt": "hi", "temperature": 1.1}, "#/temperature: 1.1 is not less or equal to 1"),
            ({"prompt": "hi", "images": ["iVBORw0KGgo="]}, "Meta Llama 3.1 8B Instruct does not accept image input"),
        ],
    ),
    (
        "mistral.mistral-small-2402-v1:0",
        "InvokeModel",
        {"prompt": "<s>[INST] hi [/INST]", "max_tokens": 8192},
        [
            ({"prompt": "<s>[INST] hi [/INST]", "max_tokens": 8193}, "#/max_tokens: 8193 is not less or equal to 8192"),
            ({"prompt": "<s>[INST] hi [/INST]", "top_k": 0}, "#/top_k: 0 is not greater or equal to 1"),
            ({"prompt": "<s>[INST] hi [/INST]", "top_k": 201}, "#/top_k: 201 is not less or equal to 200"),
        ],
    ),
    (
        "mistral.mistral-large-2407-v1:0",
        "InvokeModel",
        {"messages": [{"role": "user", "content": "hi"}]},
        [
            (
                {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8193},
                "8193 is not less or equal to 8192",
            ),
            ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, "-1 is not greater or equal to 0"),
        ],
    ),
    (
        "meta.llama3-1-8b-instruct-v1:0",
        "Converse",
        converse(maxTokens=2048),
        [
            (converse(turn("user"), turn("user")), "A conversation must alternate between user and assistant roles"),
            (converse(maxTokens=2049), "#/inferenceConfig/maxTokens: 2049 is not less or equal to 2048"),
            (converse(topP=-1), "#/inferenceConfig/topP: -1 is not greater or equal to 0"),
            (
                converse(turn("user", CONVERSE_IMAGE)),
                "#/messages/0/content/0: Meta Llama 3.1 8B Instruct does not accept image input",
            ),
        ],
    ),
    (
        "amazon.titan-embed-text-v2:0",
        "InvokeModel",
        {"inputText": "x" * 50_000, "dimensions": 256, "normalize": False},
        [
            ({"inputText": "x" * 50_001}, "#/inputText: expected maxLength: 50000, actual: 50001"),
            ({"inputText": "x", "dimensions": 300}, "#/dimensions: 300 is not a valid enum value"),
            ({"inputText": "x", "normalize": "yes"}, "#/normalize: expected type: Boolean"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("model_id", "invocation_type", "valid", "invalid"),
    FAMILY_CASES,
    ids=[f"{model_id}-{kind}" for model_id, kind, _, _ in FAMILY_CASES],
)
def test_a_model_input_the_model_rejects_is_a_record_error_not_a_job_failure(
    bedrock: BaseClient,
    s3: BaseClient,
    clock: ManualClock,
    model_id: str,
    invocation_type: str,
    valid: dict[str, Any],
    invalid: list[tuple[dict[str, Any], str]],
) -> None:
    # GIVEN a job of 100 records for the model: the invalid inputs first, then valid ones
    lines = [{"recordId": f"BAD{i:08d}", "modelInput": model_input} for i, (model_input, _) in enumerate(invalid)]
    lines += [{"recordId": f"GOOD{i:07d}", "modelInput": valid} for i in range(100 - len(invalid))]
    arn = create_job(
        bedrock, "family", put_lines(s3, "inputs/family.jsonl", lines), model_id, modelInvocationType=invocation_type
    )
    # WHEN the job runs
    job = run_to_end(bedrock, clock, arn)
    # THEN it completes; each invalid record has a 400 error line saying what the model rejects, the others an answer
    assert (job["status"], job["errorRecordCount"], job["successRecordCount"]) == (
        "Completed",
        len(invalid),
        100 - len(invalid),
    )
    key = f"outputs/{arn.rsplit('/', 1)[-1]}/family.jsonl.out"
    out = {
        line["recordId"]: line for line in map(json.loads, s3.get_object(Bucket=BUCKET, Key=key)["Body"].iter_lines())
    }
    for index, (_, expected) in enumerate(invalid):
        error = out[f"BAD{index:08d}"]["error"]
        assert error["errorCode"] == 400 and expected in error["errorMessage"], (index, error)
    assert all("modelOutput" in line for rid, line in out.items() if rid.startswith("GOOD"))


def test_the_project_registry_has_the_emulator_ceiling_of_every_batch_text_model() -> None:
    # GIVEN every text model of the emulator's batch list
    text_models = [model for model in BATCH_MODELS if model.max_output_tokens is not None]
    # WHEN the project's registry resolves it (through a US profile id, which every family accepts)
    ceilings = {model.prefix: resolve(f"us.{model.prefix}:0").max_output_tokens for model in text_models}
    # THEN it refuses the same max_tokens the emulator refuses: no run builds records the model rejects
    assert ceilings == {model.prefix: model.max_output_tokens for model in text_models}
