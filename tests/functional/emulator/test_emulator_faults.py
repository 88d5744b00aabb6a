"""Injected faults in the Bedrock emulator (through a real boto3 client over HTTP, moto S3). Stops and deadlines,
the job_stopped fault among them, are in ``test_emulator_stop_deadline``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from local.emulator import BedrockEmulator, EmulatorState, ManualClock
from local.emulator.faults import FAULTS, FaultSpecError, parse_faults
from local.emulator.jobs import fault_code
from tests.functional.conftest import BUCKET
from tests.functional.emulator.conftest import CLAUDE, create_job, error_code

TIMEOUT_HOURS = 72  # JOB_TIMEOUT_HOURS in the functional conftest


# ---------------------------------------------------------------- helpers


def claude_input(index: int) -> dict[str, Any]:
    content = [{"type": "text", "text": f"prompt {index}"}]
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": content}],
    }


def put_records(s3: BaseClient, key: str, count: int) -> str:
    lines = [json.dumps({"recordId": f"{i:011d}", "modelInput": claude_input(i)}) for i in range(count)]
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return f"s3://{BUCKET}/{key}"


def output_objects(s3: BaseClient, arn: str) -> dict[str, bytes]:
    prefix = f"outputs/{arn.rsplit('/', 1)[-1]}/"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        item["Key"].removeprefix(prefix): s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        for item in listed
    }


def parsed_lines(body: bytes) -> tuple[list[dict[str, Any]], int]:
    """(valid JSON lines, number of invalid ones)."""
    valid, invalid = [], 0
    for line in body.splitlines():
        try:
            valid.append(json.loads(line))
        except ValueError:
            invalid += 1
    return valid, invalid


# ---------------------------------------------------------------- the --faults spec


def test_a_fault_spec_parses_to_typed_values() -> None:
    # GIVEN a spec with every kind of value, spaces and a trailing comma
    spec = (
        "record_error_rate=0.05, job_partial=1,job_failed=2,record_error_seed=abc,corrupt_output_lines=5,"
        "runtime_error= ModelNotReadyException : 3,"
    )
    # WHEN parsed THEN each value has its type; an empty spec is no faults
    assert parse_faults(spec) == {
        "record_error_rate": 0.05,
        "job_partial": 1,
        "job_failed": 2,
        "record_error_seed": "abc",
        "corrupt_output_lines": 5,
        "runtime_error": "ModelNotReadyException:3",
    }
    assert parse_faults("") == {}
    assert parse_faults("record_error_codes=429:500") == {"record_error_codes": "429:500"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("job_exploded=1", "unknown fault 'job_exploded'; known faults: " + ", ".join(FAULTS)),
        ("record_error_rate=1.5", "expected a fraction from 0 to 1"),
        ("record_error_rate=lots", "expected a fraction from 0 to 1"),
        ("job_failed=-1", "expected a whole number of jobs >= 0"),
        ("submit_throttle=2.5", "expected a whole number of calls >= 0"),
        ("corrupt_output_lines=", "expected a whole number of lines >= 0"),
        ("job_failed", "'job_failed' is not name=value"),
        ("job_failed=1,job_failed=2", "given twice"),
        ("record_error_codes=404", "expected HTTP codes joined by ':' from 400/408/429/500/503"),
        ("record_error_codes=429,500", "'500' is not name=value"),
        ("record_error_codes=429:", "expected HTTP codes joined by ':'"),
        ("runtime_error=ModelExplodedException:1", "expected <ExceptionName>:<calls>, e.g. runtime_error="),
        ("runtime_error=ThrottlingException", "with one of AccessDeniedException, ConflictException"),
        ("runtime_error=ThrottlingException:-2", "expected <ExceptionName>:<calls>"),
    ],
)
def test_a_bad_fault_spec_says_what_is_expected(spec: str, expected: str) -> None:
    # GIVEN a spec with one mistake WHEN parsed THEN one line says what is wrong and what is expected
    with pytest.raises(FaultSpecError) as error:
        parse_faults(spec)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_the_emulator_refuses_a_bad_faults_dict(s3: BaseClient) -> None:
    # GIVEN faults given in code WHEN one is unknown or out of range THEN the emulator refuses to start
    with pytest.raises(ValueError, match="known faults"):
        EmulatorState(s3=s3, faults={"poll_throttel": 1})
    with pytest.raises(ValueError, match="between|fraction"):
        EmulatorState(s3=s3, faults={"record_error_rate": 2})
    # AND valid values given as text are converted
    faults: dict[str, Any] = {"job_failed": "2"}
    EmulatorState(s3=s3, faults=faults)
    assert faults == {"job_failed": 2}


# ---------------------------------------------------------------- call faults


def test_submit_faults_fail_the_next_calls_and_create_nothing(
    bedrock: BaseClient, s3: BaseClient, state: EmulatorState, emulator: BedrockEmulator
) -> None:
    # GIVEN two throttled and one quota-refused create calls to come
    state.faults.update(submit_throttle=2, submit_quota=1)
    uri = put_records(s3, "in/calls.jsonl", 100)
    # WHEN the same request (same token) is sent four times
    errors = []
    for _ in range(3):
        with pytest.raises(ClientError) as error:
            create_job(bedrock, "faulty-submit", uri, clientRequestToken="token1")
        errors.append((error_code(error), error.value.response["ResponseMetadata"]["HTTPStatusCode"]))
    arn = create_job(bedrock, "faulty-submit", uri, clientRequestToken="token1")
    # THEN the first two are throttled (429), the third refused for quota (400), the fourth creates the only job
    assert errors == [
        ("ThrottlingException", 429),
        ("ThrottlingException", 429),
        ("ServiceQuotaExceededException", 400),
    ]
    assert [job["jobArn"] for job in emulator.jobs()] == [arn]
    assert emulator.jobs_created_per_model() == {CLAUDE: 1}
    assert emulator.calls() == {"CreateModelInvocationJob": 4}
    assert emulator.faults_injected() == {"submit_throttle": 2, "submit_quota": 1}


def test_poll_throttle_fails_the_next_get_calls(bedrock: BaseClient, s3: BaseClient, state: EmulatorState) -> None:
    # GIVEN a job and two throttled GetModelInvocationJob calls to come
    arn = create_job(bedrock, "polled", put_records(s3, "in/poll.jsonl", 100))
    state.faults["poll_throttle"] = 2
    # WHEN the job is read three times
    codes = []
    for _ in range(2):
        with pytest.raises(ClientError) as error:
            bedrock.get_model_invocation_job(jobIdentifier=arn)
        codes.append(error_code(error))
    # THEN two are throttled and the third answers
    assert codes == ["ThrottlingException", "ThrottlingException"]
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Submitted"


# ---------------------------------------------------------------- job faults


def test_job_faults_hit_the_first_jobs_created_one_fault_each(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState, emulator: BedrockEmulator
) -> None:
    # GIVEN one partial, two failed and one expired job fault, and five jobs of 150 records
    state.faults.update(job_partial=1, job_failed=2, job_expired=1)
    uri = put_records(s3, "in/jobs.jsonl", 150)
    arns = [create_job(bedrock, f"job-{n}", uri) for n in range(5)]
    # WHEN the clock moves one status step at a time
    seen: list[list[str]] = [[] for _ in arns]
    for _ in range(5):
        for history, arn in zip(seen, arns, strict=True):
            status = bedrock.get_model_invocation_job(jobIdentifier=arn)["status"]
            if not history or history[-1] != status:
                history.append(status)
        clock.advance(1)
    jobs = [bedrock.get_model_invocation_job(jobIdentifier=arn) for arn in arns]
    # THEN the jobs are hit in creation order: partial, failed (Validating), failed (InProgress), expired, none
    assert seen == [
        ["Submitted", "Validating", "Scheduled", "InProgress", "PartiallyCompleted"],
        ["Submitted", "Validating", "Failed"],
        ["Submitted", "Validating", "Scheduled", "InProgress", "Failed"],
        ["Submitted", "Validating", "Scheduled", "Expired"],
        ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"],
    ]
    assert [job["fault"] for job in emulator.jobs()] == ["job_partial", "job_failed", "job_failed", "job_expired", None]
    assert emulator.faults_injected() == {"job_partial": 1, "job_failed": 2, "job_expired": 1}
    # AND each job that did not complete says why
    assert "75 of 150 records were not processed" in jobs[0]["message"]
    assert "failed while Validating" in jobs[1]["message"] and "failed while InProgress" in jobs[2]["message"]
    assert "not started within its timeout" in jobs[3]["message"]
    assert jobs[4].get("message") is None
    # AND failed and expired jobs wrote nothing, not even a manifest
    assert [output_objects(s3, arn) for arn in arns[1:4]] == [{}, {}, {}]


def test_a_partial_job_writes_lines_for_processed_records_only_and_a_matching_manifest(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState
) -> None:
    # GIVEN a partial job fault and a job of 150 records
    state.faults["job_partial"] = 1
    arn = create_job(bedrock, "partial", put_records(s3, "in/partial.jsonl", 150))
    # WHEN it ends
    clock.advance(10)
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    # THEN it is PartiallyCompleted: the first 75 records have a line, the others none
    files = output_objects(s3, arn)
    lines, invalid = parsed_lines(files["partial.jsonl.out"])
    assert job["status"] == "PartiallyCompleted" and invalid == 0
    assert sorted(line["recordId"] for line in lines) == [f"{i:011d}" for i in range(75)]
    # AND the manifest and the job's counters say the same
    manifest = json.loads(files["manifest.json.out"])
    assert (manifest["totalRecordCount"], manifest["processedRecordCount"], manifest["successRecordCount"]) == (
        150,
        75,
        75,
    )
    assert (job["totalRecordCount"], job["processedRecordCount"]) == (150, 75)


def test_corrupt_lines_spread_over_jobs_up_to_the_total(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState, emulator: BedrockEmulator
) -> None:
    # GIVEN 3 corrupt lines to write and three jobs of 150 records (each may take one per started 100 lines)
    state.faults["corrupt_output_lines"] = 3
    uri = put_records(s3, "in/corrupt.jsonl", 150)
    arns = [create_job(bedrock, f"corrupt-{n}", uri) for n in range(3)]
    # WHEN the jobs run, one after the other
    invalid_per_job, valid_per_job, missing_ids = [], [], []
    for arn in arns:
        clock.advance(10)
        assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed"
        lines, invalid = parsed_lines(output_objects(s3, arn)["corrupt.jsonl.out"])
        invalid_per_job.append(invalid)
        valid_per_job.append(len(lines))
        missing_ids.append(sorted({f"{i:011d}" for i in range(150)} - {line["recordId"] for line in lines}))
    # THEN the 3 lines are spread 2 + 1 + 0, each job still has one line per record
    assert invalid_per_job == [2, 1, 0]
    assert valid_per_job == [148, 149, 150]
    assert [job["corruptOutputLines"] for job in emulator.jobs()] == [2, 1, 0]
    # AND the emulator records whose lines it garbled: exactly the records without a valid line
    assert [sorted(job["corruptRecordIds"]) for job in emulator.jobs()] == missing_ids
    # AND the manifest counts the records processed (their lines were written, garbled)
    manifest = json.loads(output_objects(s3, arns[0])["manifest.json.out"])
    assert manifest["processedRecordCount"] == manifest["successRecordCount"] == 150


# ---------------------------------------------------------------- record error codes


def read_output_lines(s3: BaseClient, arn: str, name: str) -> list[dict[str, Any]]:
    key = f"outputs/{arn.rsplit('/', 1)[-1]}/{name}"
    return [json.loads(line) for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()]


def test_record_error_codes_strike_400s_every_time_and_retryable_codes_once(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState
) -> None:
    # GIVEN 40% faulty records with codes 400, 429 and 503, and the same 200 records sent in two jobs one after the
    # other (as a resubmission sends them again)
    state.faults.update(record_error_rate=0.4, record_error_codes="400:429:503")
    uri = put_records(s3, "in/codes.jsonl", 200)
    expected = {f"{i:011d}": fault_code(f"{i:011d}", 0.4, "", (400, 429, 503)) for i in range(200)}
    first = create_job(bedrock, "codes-1", uri)
    clock.advance(10)
    second = create_job(bedrock, "codes-2", uri)  # brings the first job to its end first
    clock.advance(10)
    # WHEN both jobs are read
    assert bedrock.get_model_invocation_job(jobIdentifier=second)["status"] == "Completed"
    lines = [read_output_lines(s3, arn, "codes.jsonl.out") for arn in (first, second)]
    codes = [{line["recordId"]: line.get("error", {}).get("errorCode") for line in job} for job in lines]
    # THEN the first job fails each faulty record with the code the hash picks, all three codes occurring
    assert codes[0] == expected and set(expected.values()) == {None, 400, 429, 503}
    # AND each error line carries a service-like message for its code
    messages = {line["error"]["errorCode"]: line["error"]["errorMessage"] for line in lines[0] if "error" in line}
    assert messages[429].startswith("Too many requests") and messages[400].startswith("Malformed input request")
    # AND the second job fails the 400s again but answers the records a transient error struck the first time
    assert codes[1] == {rid: code if code == 400 else None for rid, code in expected.items()}
    job = bedrock.get_model_invocation_job(jobIdentifier=second)
    assert (job["status"], job["errorRecordCount"]) == ("Completed", sum(c == 400 for c in expected.values()))
    assert state.faults_injected()["record_error_rate"] == sum(c is not None for c in expected.values()) + sum(
        c == 400 for c in expected.values()
    )


def test_record_error_codes_default_to_400(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState
) -> None:
    # GIVEN a record error rate without codes
    state.faults["record_error_rate"] = 0.5
    arn = create_job(bedrock, "default-code", put_records(s3, "in/default.jsonl", 100))
    # WHEN the job completes
    clock.advance(10)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed"
    # THEN every error line has errorCode 400
    errors = [line["error"] for line in read_output_lines(s3, arn, "default.jsonl.out") if "error" in line]
    assert errors and {error["errorCode"] for error in errors} == {400}
