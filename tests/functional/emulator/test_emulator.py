"""The Bedrock emulator's batch control plane, through a real boto3 ``bedrock`` client over HTTP, with moto S3.

moto pass-through: under ``mock_aws`` botocore requests go through moto's ``BotocoreStubber``, which answers only URLs
matching an AWS hostname pattern (``https?://bedrock\\.(.+)\\.amazonaws\\.com``, ...) and lets every other URL go to
the network. ``http://127.0.0.1:<port>`` matches none, so the conftest's clients really talk to the emulator (the first
test proves it with the emulator's request counter). Nothing to configure; only never put the emulator's address in
``MOTO_S3_CUSTOM_ENDPOINTS``, which would make moto treat it as S3.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, ParamValidationError

from local.emulator import BedrockEmulator, EmulatorState, ManualClock, Quotas
from tests.functional.conftest import BUCKET
from tests.functional.emulator.conftest import CLAUDE, ROLE, create_job, emulator_client, error_code

TITAN = "amazon.titan-embed-text-v2:0"
STATUSES = ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]


# ---------------------------------------------------------------- helpers


def claude_record(index: int) -> dict[str, Any]:
    text = f"Tell me a joke about topic number {index}"
    content = [{"type": "text", "text": text}]
    model_input = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": content}],
    }
    return {"recordId": f"REC{index:08d}", "modelInput": model_input}


def put_jsonl(s3: BaseClient, key: str, records: list[dict[str, Any]]) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body="".join(json.dumps(r) + "\n" for r in records).encode())
    return f"s3://{BUCKET}/{key}"


def run_to_end(bedrock: BaseClient, clock: ManualClock, arn: str) -> dict[str, Any]:
    clock.advance(10)
    return bedrock.get_model_invocation_job(jobIdentifier=arn)


def read_jsonl(s3: BaseClient, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines()]


def output_key(arn: str, name: str) -> str:
    return f"outputs/{arn.rsplit('/', 1)[-1]}/{name}"


# ---------------------------------------------------------------- wire protocol


def test_requests_reach_the_emulator_under_mock_aws(bedrock: BaseClient, emulator: BedrockEmulator) -> None:
    # GIVEN moto's mock_aws is active (the s3 fixture) and a bedrock client points at the emulator
    # WHEN the client lists jobs
    answer = bedrock.list_model_invocation_jobs()
    # THEN the request reached the emulator's HTTP server instead of being answered by moto
    assert answer["invocationJobSummaries"] == []
    assert emulator.calls() == {"ListModelInvocationJobs": 1}


def test_unknown_operation_is_a_json_404(bedrock: BaseClient) -> None:
    # GIVEN an operation the emulator does not serve
    # WHEN a client calls it
    with pytest.raises(ClientError) as error:
        bedrock.list_foundation_models()
    # THEN it gets a modelled 404 error
    assert error_code(error) == "UnknownOperationException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# ---------------------------------------------------------------- happy path


def test_job_walks_every_status_and_writes_shuffled_outputs_and_manifest(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN 120 Claude records in one JSONL file
    records = [claude_record(i) for i in range(120)]
    arn = create_job(bedrock, "jokes-run1-0001", put_jsonl(s3, "inputs/run1/part-0.jsonl", records))
    # WHEN the clock moves one step at a time
    seen = [bedrock.get_model_invocation_job(jobIdentifier=arn)["status"]]
    for _ in range(4):
        clock.advance(1)
        seen.append(bedrock.get_model_invocation_job(jobIdentifier=arn)["status"])
    # THEN the job walks Submitted -> ... -> Completed, with its counters and an end time
    assert seen == STATUSES
    job = bedrock.get_model_invocation_job(jobIdentifier=arn.rsplit("/", 1)[-1])
    assert (job["totalRecordCount"], job["successRecordCount"], job["errorRecordCount"]) == (120, 120, 0)
    assert job["endTime"] > job["submitTime"] and job["jobExpirationTime"] > job["submitTime"]
    # AND the output holds every record once, in another order, each echoing its own prompt
    lines = read_jsonl(s3, output_key(arn, "part-0.jsonl.out"))
    assert [line["recordId"] for line in lines] != [r["recordId"] for r in records]
    assert sorted(line["recordId"] for line in lines) == [r["recordId"] for r in records]
    for line in lines:
        prompt = line["modelInput"]["messages"][0]["content"][0]["text"]
        assert line["modelOutput"]["content"][-1]["text"] == prompt
        assert line["modelOutput"]["stop_reason"] == "end_turn"
    # AND the manifest counts them
    manifest = read_jsonl(s3, output_key(arn, "manifest.json.out"))[0]
    assert manifest["totalRecordCount"] == manifest["successRecordCount"] == 120
    assert manifest["errorRecordCount"] == 0 and manifest["inputTokenCount"] > 0 and manifest["outputTokenCount"] > 0


def test_a_prefix_input_processes_every_jsonl_under_it(bedrock: BaseClient, s3: BaseClient, clock: ManualClock) -> None:
    # GIVEN two JSONL files and a non-JSONL file under one prefix
    put_jsonl(s3, "inputs/run2/a.jsonl", [claude_record(i) for i in range(60)])
    put_jsonl(s3, "inputs/run2/b.jsonl", [claude_record(i) for i in range(60, 110)])
    s3.put_object(Bucket=BUCKET, Key="inputs/run2/README.txt", Body=b"not input")
    # WHEN a job reads the prefix
    arn = create_job(bedrock, "prefix-job", f"s3://{BUCKET}/inputs/run2/")
    job = run_to_end(bedrock, clock, arn)
    # THEN both files are answered, one output file each
    assert job["status"] == "Completed" and job["totalRecordCount"] == 110
    assert len(read_jsonl(s3, output_key(arn, "a.jsonl.out"))) == 60
    assert len(read_jsonl(s3, output_key(arn, "b.jsonl.out"))) == 50


def test_titan_embeddings_are_unit_vectors_deterministic_per_text(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN 100 embedding records where two share a text and one asks for 256 dimensions
    records: list[dict[str, Any]] = [
        {"recordId": f"E{i:010d}", "modelInput": {"inputText": f"text {i}"}} for i in range(100)
    ]
    records[1]["modelInput"]["inputText"] = "text 0"
    records[2]["modelInput"]["dimensions"] = 256
    arn = create_job(bedrock, "embeddings", put_jsonl(s3, "inputs/emb.jsonl", records), model_id=f"us.{TITAN}")
    # WHEN the job completes
    assert run_to_end(bedrock, clock, arn)["status"] == "Completed"
    # THEN each embedding has the requested length, unit norm, and equal texts give equal vectors
    by_id = {line["recordId"]: line["modelOutput"] for line in read_jsonl(s3, output_key(arn, "emb.jsonl.out"))}
    assert len(by_id["E0000000000"]["embedding"]) == 1024 and len(by_id["E0000000002"]["embedding"]) == 256
    assert math.isclose(math.fsum(x * x for x in by_id["E0000000003"]["embedding"]), 1.0, rel_tol=1e-9)
    assert by_id["E0000000000"]["embedding"] == by_id["E0000000001"]["embedding"] != by_id["E0000000003"]["embedding"]
    assert by_id["E0000000000"]["inputTextTokenCount"] == 2


def test_converse_type_job_answers_in_converse_format(bedrock: BaseClient, s3: BaseClient, clock: ManualClock) -> None:
    # GIVEN Converse-type records for a Nova model
    records = [
        {"recordId": f"C{i:010d}", "modelInput": {"messages": [{"role": "user", "content": [{"text": f"hi {i}"}]}]}}
        for i in range(100)
    ]
    uri = put_jsonl(s3, "inputs/converse.jsonl", records)
    # WHEN the job runs with modelInvocationType Converse
    arn = create_job(bedrock, "converse", uri, model_id="amazon.nova-lite-v1:0", modelInvocationType="Converse")
    run_to_end(bedrock, clock, arn)
    # THEN every answer is a Converse response echoing the prompt
    line = next(x for x in read_jsonl(s3, output_key(arn, "converse.jsonl.out")) if x["recordId"] == "C0000000007")
    assert line["modelOutput"]["output"]["message"]["content"] == [{"text": "hi 7"}]
    assert line["modelOutput"]["usage"]["totalTokens"] == 4


def test_a_record_that_does_not_fit_the_model_gets_an_error_line(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN 100 Claude records, one without max_tokens
    records = [claude_record(i) for i in range(100)]
    del records[5]["modelInput"]["max_tokens"]
    arn = create_job(bedrock, "one-bad-record", put_jsonl(s3, "inputs/bad.jsonl", records))
    # WHEN the job completes
    job = run_to_end(bedrock, clock, arn)
    # THEN it is Completed, that record has a 400 error instead of modelOutput, and the counters show it
    assert (job["status"], job["successRecordCount"], job["errorRecordCount"]) == ("Completed", 99, 1)
    bad = next(x for x in read_jsonl(s3, output_key(arn, "bad.jsonl.out")) if x["recordId"] == "REC00000005")
    assert "modelOutput" not in bad and bad["error"]["errorCode"] == 400
    assert "max_tokens" in bad["error"]["errorMessage"]


def test_record_error_fault_fails_the_same_records_every_time(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState
) -> None:
    # GIVEN a 30% record error fault and the same input for two jobs
    state.faults["record_error_rate"] = 0.3
    uri = put_jsonl(s3, "inputs/faults.jsonl", [claude_record(i) for i in range(200)])
    arns = [create_job(bedrock, f"faulty-{n}", uri) for n in range(2)]
    # WHEN both jobs complete
    clock.advance(10)
    failed = [
        {x["recordId"] for x in read_jsonl(s3, output_key(arn, "faults.jsonl.out")) if "error" in x}
        for arn in arns
        if bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed"
    ]
    # THEN some but not all records failed, the same ones in both jobs
    assert len(failed) == 2 and failed[0] == failed[1]
    assert 0 < len(failed[0]) < 200


# ---------------------------------------------------------------- create: idempotency, conflicts, quota


def test_a_repeated_client_request_token_returns_the_same_job(
    bedrock: BaseClient, s3: BaseClient, emulator: BedrockEmulator
) -> None:
    # GIVEN a job created with a token
    uri = put_jsonl(s3, "inputs/idem.jsonl", [claude_record(i) for i in range(100)])
    first = create_job(bedrock, "idempotent", uri, clientRequestToken="run1-job0001")
    # WHEN the same request is sent again
    second = create_job(bedrock, "idempotent", uri, clientRequestToken="run1-job0001")
    # THEN it returns the same ARN and creates nothing
    assert second == first
    assert emulator.jobs_created_per_model() == {CLAUDE: 1}
    assert len(bedrock.list_model_invocation_jobs()["invocationJobSummaries"]) == 1


def test_a_reused_job_name_with_another_token_is_a_conflict(bedrock: BaseClient, s3: BaseClient) -> None:
    # GIVEN a job named "taken"
    uri = put_jsonl(s3, "inputs/name.jsonl", [claude_record(i) for i in range(100)])
    create_job(bedrock, "taken", uri, clientRequestToken="token1")
    # WHEN another request uses the name with another token
    with pytest.raises(bedrock.exceptions.ConflictException):
        create_job(bedrock, "taken", uri, clientRequestToken="token2")
    # THEN (above) ConflictException


def test_the_21st_job_in_flight_for_one_model_exceeds_the_quota(bedrock: BaseClient, s3: BaseClient) -> None:
    # GIVEN 20 jobs in flight for Claude
    uri = put_jsonl(s3, "inputs/quota.jsonl", [claude_record(i) for i in range(100)])
    for n in range(20):
        create_job(bedrock, f"quota-{n}", uri)
    # WHEN a 21st is submitted for the same model (via its inference profile)
    with pytest.raises(bedrock.exceptions.ServiceQuotaExceededException) as error:
        create_job(bedrock, "quota-20", uri, model_id=f"us.{CLAUDE}")
    # THEN it is refused with a 400, while another model still has room
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert create_job(bedrock, "other-model", uri, model_id=TITAN)


def test_finished_jobs_free_their_quota_slot(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState
) -> None:
    # GIVEN a quota of 2 and two jobs in flight
    state.quotas = Quotas(max_active_jobs_per_model=2)
    uri = put_jsonl(s3, "inputs/slots.jsonl", [claude_record(i) for i in range(100)])
    create_job(bedrock, "slot-1", uri)
    create_job(bedrock, "slot-2", uri)
    # WHEN they complete
    clock.advance(10)
    # THEN a third job is accepted
    assert create_job(bedrock, "slot-3", uri)


# ---------------------------------------------------------------- create: validation


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"jobName": "bad_name!"}, "jobName"),
        ({"jobName": "x" * 64}, "jobName"),
        ({"roleArn": "arn:aws:iam::123456789012:user/someone"}, "roleArn"),
        ({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://Bad_Bucket/in.jsonl"}}}, "s3Uri"),
        ({"outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://b/out put/"}}}, "s3Uri"),
        (
            {"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://bucket/in.jsonl", "s3InputFormat": "CSV"}}},
            "s3InputFormat",
        ),
        ({"timeoutDurationInHours": 12}, "timeoutDurationInHours"),
        ({"timeoutDurationInHours": 169}, "timeoutDurationInHours"),
        ({"clientRequestToken": "under_score"}, "clientRequestToken"),
        ({"modelInvocationType": "Batch"}, "modelInvocationType"),
    ],
)
def test_invalid_create_requests_are_rejected_by_the_server(
    emulator: BedrockEmulator, change: dict[str, Any], field: str
) -> None:
    # GIVEN a client without botocore's own checks (botocore already refuses e.g. a timeout below its min of 24)
    raw = emulator_client(emulator, parameter_validation=False)
    request = {
        "jobName": "valid-name",
        "roleArn": ROLE,
        "modelId": CLAUDE,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/in.jsonl"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/out/"}},
    }
    # WHEN a request breaks one constraint of the model
    with pytest.raises(raw.exceptions.ValidationException) as error:
        raw.create_model_invocation_job(**(request | change))
    # THEN the service-side ValidationException names the member and the constraint
    message = error.value.response["Error"]["Message"]
    assert f".{field}'" in message or f"'{field}'" in message
    assert "failed to satisfy constraint" in message
    assert emulator.jobs() == []


def test_botocore_itself_refuses_a_timeout_below_24_hours(bedrock: BaseClient) -> None:
    # GIVEN the default client WHEN the timeout is 12 h THEN botocore fails before sending anything
    with pytest.raises(ParamValidationError):
        create_job(bedrock, "short", f"s3://{BUCKET}/in.jsonl", timeoutDurationInHours=12)


# ---------------------------------------------------------------- validation of the input


def test_fewer_than_100_records_fail_the_job(bedrock: BaseClient, s3: BaseClient, clock: ManualClock) -> None:
    # GIVEN 99 records
    arn = create_job(bedrock, "too-small", put_jsonl(s3, "inputs/small.jsonl", [claude_record(i) for i in range(99)]))
    # WHEN the job is validated
    job = run_to_end(bedrock, clock, arn)
    # THEN it fails with a message that says why, and writes no output
    assert job["status"] == "Failed"
    assert "99 records" in job["message"] and "minimum of 100" in job["message"]
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="outputs/")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"recordId": "REC00000001", "modelInput": {}}\nnot json\n', "Line 2"),
        (b'{"recordId": "REC00000001", "input": {}}\n', "modelInput"),
    ],
)
def test_malformed_jsonl_fails_the_job(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, body: bytes, expected: str
) -> None:
    # GIVEN an input file with a malformed line
    s3.put_object(Bucket=BUCKET, Key="inputs/malformed.jsonl", Body=body)
    # WHEN the job is validated
    job = run_to_end(bedrock, clock, create_job(bedrock, "malformed", f"s3://{BUCKET}/inputs/malformed.jsonl"))
    # THEN it fails and the message points at the problem
    assert job["status"] == "Failed" and expected in job["message"]


def test_missing_input_and_record_quota_fail_the_job(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState
) -> None:
    # GIVEN a job over a (lowered) record quota and a job with no input
    state.quotas = Quotas(max_records_per_job=150)
    big = create_job(bedrock, "too-big", put_jsonl(s3, "inputs/big.jsonl", [claude_record(i) for i in range(200)]))
    missing = create_job(bedrock, "no-input", f"s3://{BUCKET}/inputs/nothing-here/")
    # WHEN they are validated
    clock.advance(10)
    # THEN both fail with their reason
    big_job = bedrock.get_model_invocation_job(jobIdentifier=big)
    missing_job = bedrock.get_model_invocation_job(jobIdentifier=missing)
    assert big_job["status"] == "Failed" and "over the limit of 150" in big_job["message"]
    assert missing_job["status"] == "Failed" and "No .jsonl input file" in missing_job["message"]


# ---------------------------------------------------------------- list, get (stop: test_emulator_stop_deadline)


def test_list_filters_sorts_and_paginates(bedrock: BaseClient, s3: BaseClient, clock: ManualClock) -> None:
    # GIVEN five jobs submitted one second apart, one of them forced to Completed
    uri = put_jsonl(s3, "inputs/list.jsonl", [claude_record(i) for i in range(100)])
    names = ["alpha-1", "alpha-2", "beta-1", "alpha-3", "beta-2"]
    times = []
    for name in names:
        arn = create_job(bedrock, name, uri)
        times.append(bedrock.get_model_invocation_job(jobIdentifier=arn)["submitTime"])
        clock.advance(0.2)
    # WHEN listing with filters
    listed = bedrock.list_model_invocation_jobs
    by_name = listed(nameContains="alpha")["invocationJobSummaries"]
    by_time = listed(submitTimeAfter=times[0], submitTimeBefore=times[4])["invocationJobSummaries"]
    ascending = listed(sortBy="CreationTime", sortOrder="Ascending")["invocationJobSummaries"]
    clock.advance(10)
    completed = listed(statusEquals="Completed")["invocationJobSummaries"]
    pages = list(bedrock.get_paginator("list_model_invocation_jobs").paginate(PaginationConfig={"PageSize": 2}))
    # THEN each filter keeps the right jobs, newest first unless asked otherwise, across pages
    assert [job["jobName"] for job in by_name] == ["alpha-3", "alpha-2", "alpha-1"]
    assert [job["jobName"] for job in by_time] == ["alpha-3", "beta-1", "alpha-2"]
    assert [job["jobName"] for job in ascending] == names
    assert len(completed) == 5 and {job["status"] for job in completed} == {"Completed"}
    assert [len(page["invocationJobSummaries"]) for page in pages] == [2, 2, 1]
    paged = [job["jobName"] for page in pages for job in page["invocationJobSummaries"]]
    assert paged == list(reversed(names))


def test_get_of_an_unknown_job(bedrock: BaseClient) -> None:
    # GIVEN no jobs WHEN asking for a well-formed id and an ARN THEN ResourceNotFoundException (404)
    for identifier in ("abcdef123456", "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456"):
        with pytest.raises(bedrock.exceptions.ResourceNotFoundException) as error:
            bedrock.get_model_invocation_job(jobIdentifier=identifier)
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # AND a malformed identifier is a ValidationException
    with pytest.raises(bedrock.exceptions.ValidationException):
        bedrock.get_model_invocation_job(jobIdentifier="not-a-job-id")


def test_set_job_status_hook_shows_through_the_api(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, emulator: BedrockEmulator
) -> None:
    # GIVEN a job the test forces to PartiallyCompleted with 3 errors
    arn = create_job(bedrock, "partial", put_jsonl(s3, "inputs/partial.jsonl", [claude_record(i) for i in range(100)]))
    emulator.set_job_status(
        arn, "PartiallyCompleted", message="timed out", total_records=100, success_records=90, error_records=3
    )
    # WHEN time passes and a client reads it
    clock.advance(10)
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    # THEN it stays as set, with its counters
    assert (job["status"], job["message"], job["errorRecordCount"], job["processedRecordCount"]) == (
        "PartiallyCompleted",
        "timed out",
        3,
        93,
    )
    assert emulator.jobs()[0]["status"] == "PartiallyCompleted"
