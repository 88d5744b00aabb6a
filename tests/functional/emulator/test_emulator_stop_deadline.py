"""Stops and deadlines: the emulator's ``Stopping -> Stopped`` (partial output first), its own deadline
(``jobExpirationTime``, ``Expired`` / ``PartiallyCompleted``) and the ``job_stopped`` fault, through a real boto3
client over HTTP on moto S3; and the Poll and Postprocess handlers on top: Bedrock ends a late job itself, Poll stops
only a job the service failed to end, follows it to ``Stopped`` and its processed records are results."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from lambdas.poll_job import logic as poll_logic
from lambdas.postprocess import handler as postprocess_handler
from lambdas.shared import aws
from lambdas.shared.models import JobState
from lambdas.submit_job import handler as submit_handler
from local.emulator import BedrockEmulator, EmulatorState, ManualClock
from tests.functional.conftest import BUCKET
from tests.functional.emulator.test_emulator_faults import CLAUDE, create_job, output_objects, put_records

HOUR = 3600


def get(bedrock: BaseClient, arn: str) -> dict[str, Any]:
    return bedrock.get_model_invocation_job(jobIdentifier=arn)


def output_record_ids(s3: BaseClient, arn: str, name: str = "stop.jsonl.out") -> list[str]:
    body = output_objects(s3, arn).get(name, b"")
    return sorted(json.loads(line)["recordId"] for line in body.splitlines())


# ---------------------------------------------------------------- the emulator: stop


def test_a_stopped_job_stays_stopping_until_read_and_writes_what_it_processed_before_stopped(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState, emulator: BedrockEmulator
) -> None:
    # GIVEN a job of 100 records in progress
    arn = create_job(bedrock, "to-stop", put_records(s3, "inputs/stop.jsonl", 100))
    clock.advance(3)
    assert get(bedrock, arn)["status"] == "InProgress"
    # WHEN it is stopped, and time passes (statuses now last 0 s) before anyone reads it
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    state.step_seconds = 0
    clock.advance(60)
    # THEN it is still Stopping, has written nothing yet, and a second stop is a ConflictException
    assert emulator.jobs()[0]["status"] == "Stopping" and output_objects(s3, arn) == {}
    with pytest.raises(bedrock.exceptions.ConflictException):
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    # AND a listing shows it Stopping, and does not count as the read it waits for
    listed = bedrock.list_model_invocation_jobs()["invocationJobSummaries"]
    assert [job["status"] for job in listed] == ["Stopping"]
    # AND the first Get reports Stopping, the next one Stopped, with half of the records processed
    first, second = get(bedrock, arn), get(bedrock, arn)
    assert (first["status"], second["status"]) == ("Stopping", "Stopped")
    assert (second["processedRecordCount"], second["successRecordCount"], second["totalRecordCount"]) == (50, 50, 100)
    # AND the output holds those 50 records (the first in input order) and the manifest counts them
    assert output_record_ids(s3, arn) == [f"{i:011d}" for i in range(50)]
    manifest = json.loads(output_objects(s3, arn)["manifest.json.out"])
    assert (manifest["totalRecordCount"], manifest["processedRecordCount"]) == (100, 50)
    assert manifest["inputTokenCount"] > 0
    # AND stopping the Stopped job is a ValidationException
    with pytest.raises(bedrock.exceptions.ValidationException):
        bedrock.stop_model_invocation_job(jobIdentifier=arn)


def test_a_job_stopped_before_it_started_processed_nothing(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN a validated job waiting in Scheduled
    arn = create_job(bedrock, "early-stop", put_records(s3, "inputs/stop.jsonl", 100))
    clock.advance(2)
    assert get(bedrock, arn)["status"] == "Scheduled"
    # WHEN it is stopped and followed to its end
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    stopping = get(bedrock, arn)["status"]
    clock.advance(1)
    stopped = get(bedrock, arn)
    # THEN it went Stopping -> Stopped with nothing processed: no output file, a manifest of zero
    assert (stopping, stopped["status"], stopped["processedRecordCount"]) == ("Stopping", "Stopped", 0)
    assert sorted(output_objects(s3, arn)) == ["manifest.json.out"]


# ---------------------------------------------------------------- the emulator: the service's deadline


def test_job_expiration_time_appears_once_validated_as_submit_time_plus_the_timeout(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock
) -> None:
    # GIVEN a job with a 30-hour timeout
    arn = create_job(bedrock, "expiring", put_records(s3, "inputs/stop.jsonl", 100), timeoutDurationInHours=30)
    # WHEN read while Submitted, then once Scheduled
    submitted = get(bedrock, arn)
    clock.advance(2)
    scheduled = get(bedrock, arn)
    # THEN the optional jobExpirationTime is absent at first, then submission plus the timeout
    assert submitted["status"] == "Submitted" and "jobExpirationTime" not in submitted
    assert scheduled["status"] == "Scheduled"
    assert scheduled["jobExpirationTime"] == scheduled["submitTime"] + timedelta(hours=30)


@pytest.mark.parametrize(
    ("step_hours", "ends_as", "processed"),
    [
        (7, "PartiallyCompleted", 50),  # InProgress from hour 21 to 28: started before the 24-hour deadline
        (10, "Expired", 0),  # Scheduled from hour 20 to 30: not started by the deadline
    ],
)
def test_a_job_still_running_at_its_deadline_ends_on_its_own(
    bedrock: BaseClient,
    s3: BaseClient,
    clock: ManualClock,
    state: EmulatorState,
    step_hours: int,
    ends_as: str,
    processed: int,
) -> None:
    # GIVEN a job with a 24-hour timeout on an emulator whose statuses last ``step_hours`` each
    state.step_seconds = step_hours * HOUR
    arn = create_job(bedrock, "late", put_records(s3, "inputs/stop.jsonl", 100), timeoutDurationInHours=24)
    # WHEN a day and a half passes
    clock.advance(36 * HOUR)
    job = get(bedrock, arn)
    # THEN the job ended at its deadline, as the status says for a job started or not, with a message
    assert (job["status"], job["endTime"]) == (ends_as, job["jobExpirationTime"])
    assert "timeout of 24 hours" in job["message"]
    # AND a started job wrote what it processed (first half, input order) and a manifest; an expired one nothing
    assert output_record_ids(s3, arn) == [f"{i:011d}" for i in range(processed)]
    assert ("manifest.json.out" in output_objects(s3, arn)) is (ends_as == "PartiallyCompleted")


def test_the_job_stopped_fault_stops_a_job_half_way_as_a_user_would(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState, emulator: BedrockEmulator
) -> None:
    # GIVEN job_stopped=1 and two jobs of 100 records
    state.faults["job_stopped"] = 1
    uri = put_records(s3, "inputs/stop.jsonl", 100)
    arns = [create_job(bedrock, f"stopped-{i}", uri) for i in range(2)]
    # WHEN they run past InProgress
    clock.advance(4)
    stopping = get(bedrock, arns[0])
    clock.advance(1)
    stopped, other = get(bedrock, arns[0]), get(bedrock, arns[1])
    # THEN the first was stopped from outside: Stopping (with a message), then Stopped with half of its records
    assert stopping["status"] == "Stopping" and "job_stopped" in stopping["message"]
    assert (stopped["status"], stopped["processedRecordCount"]) == ("Stopped", 50)
    assert output_record_ids(s3, arns[0]) == [f"{i:011d}" for i in range(50)]
    # AND the second, not hit, completed; the fault is counted once
    assert (other["status"], other["processedRecordCount"]) == ("Completed", 100)
    assert [job["fault"] for job in emulator.jobs()] == ["job_stopped", None]
    assert emulator.faults_injected() == {"job_stopped": 1}


# ---------------------------------------------------------------- the handlers: Poll and Postprocess


def stage_run(s3: BaseClient, count: int) -> dict[str, Any]:
    """records.parquet, the job's JSONL and the state Submit receives, for one job of ``count`` rows."""
    run_id = "run-deadline"
    table = pa.table({"id": list(range(count)), "record_id": [f"{i:011d}" for i in range(count)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3.put_object(Bucket=BUCKET, Key=f"runs/{run_id}/records.parquet", Body=buffer.getvalue())
    input_key = f"runs/{run_id}/jobs/0000.jsonl"
    put_records(s3, input_key, count)
    run = {
        "run_id": run_id,
        "bucket": BUCKET,
        "model_id": CLAUDE,
        "family": "anthropic",
        "output_kind": "text",
        "job_name_prefix": "deadline",
        "total_records": count,
        "num_jobs": 1,
        "records_key": f"runs/{run_id}/records.parquet",
        "manifest_key": f"runs/{run_id}/jobs.json",
    }
    job = {"index": 0, "input_key": input_key, "first_row": 0, "record_count": count, "size_bytes": 1}
    return {"run": run, "job": job}


def postprocessed(s3: BaseClient, state: JobState, lambda_context: Any) -> tuple[dict[str, Any], pa.Table]:
    result = postprocess_handler.lambda_handler(state.model_dump(mode="json"), lambda_context)
    body = s3.get_object(Bucket=BUCKET, Key=result["output_key"])["Body"].read()
    return result, pq.read_table(io.BytesIO(body))


def test_poll_stops_only_a_job_the_service_failed_to_end_and_its_processed_records_are_results(
    s3: BaseClient, clock: ManualClock, emulator: BedrockEmulator, lambda_context: Any
) -> None:
    # GIVEN a job of 120 rows in progress that the service fails to end (held InProgress however long we wait)
    submitted = JobState.model_validate(submit_handler.lambda_handler(stage_run(s3, 120), lambda_context))
    assert submitted.job_arn
    clock.advance(3)
    assert emulator.jobs()[0]["status"] == "InProgress"  # validated and started
    emulator.set_job_status(submitted.job_arn, "InProgress", hold=True)
    clock.advance(100 * HOUR)
    deadline = emulator.jobs()[0]["jobExpirationTime"] + poll_logic.DEADLINE_MARGIN
    bedrock, timeout = aws.bedrock(), 72

    # WHEN Poll runs at the service's deadline plus the margin, just after, and twice more as the clock moves
    at_margin = poll_logic.poll(submitted, bedrock=bedrock, timeout_hours=timeout, now=deadline)
    stopped = poll_logic.poll(at_margin, bedrock=bedrock, timeout_hours=timeout, now=deadline + timedelta(seconds=1))
    stopping = poll_logic.poll(stopped, bedrock=bedrock, timeout_hours=timeout, now=deadline + timedelta(seconds=2))
    clock.advance(1)
    ended = poll_logic.poll(stopping, bedrock=bedrock, timeout_hours=timeout, now=deadline + timedelta(seconds=3))

    # THEN at the margin the job is left running; after it, Stop is sent once and the job is followed, not ended
    assert (at_margin.status, at_margin.terminal, at_margin.stop_requested_at) == ("InProgress", False, None)
    assert (stopped.status, stopped.terminal) == ("InProgress", False) and stopped.stop_requested_at
    assert (stopping.status, stopping.terminal) == ("Stopping", False)
    assert (ended.status, ended.terminal, ended.counters["processedRecordCount"]) == ("Stopped", True, 60)
    assert emulator.calls()["StopModelInvocationJob"] == 1
    assert ended.message and "stopped by the orchestrator" in ended.message
    # AND Postprocess keeps the 60 records Bedrock processed as results; only the 60 others are JOB_STOPPED
    result, table = postprocessed(s3, ended, lambda_context)
    assert table.column("id").to_pylist() == list(range(120))
    codes = table.column("error_code").to_pylist()
    assert codes == [None] * 60 + ["JOB_STOPPED"] * 60
    assert table.column("response").null_count == 60
    assert (result["status"], result["succeeded"], result["failed"]) == ("Stopped", 60, 60)


def test_poll_lets_bedrock_end_a_late_job_itself_without_a_stop(
    s3: BaseClient, clock: ManualClock, state: EmulatorState, emulator: BedrockEmulator, lambda_context: Any
) -> None:
    # GIVEN a job (72-hour timeout) whose statuses last 20 hours each: InProgress from hour 60 to 80
    state.step_seconds = 20 * HOUR
    submitted = JobState.model_validate(submit_handler.lambda_handler(stage_run(s3, 120), lambda_context))
    # WHEN Poll runs at hour 73, an hour past the service's deadline (within our margin)
    clock.advance(73 * HOUR)
    out = poll_logic.poll(submitted, bedrock=aws.bedrock(), timeout_hours=72, now=clock())
    # THEN Bedrock has ended it PartiallyCompleted on its own and no Stop was sent
    assert (out.status, out.terminal, out.stop_requested_at) == ("PartiallyCompleted", True, None)
    assert "StopModelInvocationJob" not in emulator.calls()
    # AND its processed half are results, the rest NOT_PROCESSED
    result, table = postprocessed(s3, out, lambda_context)
    assert table.column("error_code").to_pylist() == [None] * 60 + ["NOT_PROCESSED"] * 60
    assert (result["succeeded"], result["failed"]) == (60, 60)


class StaleFirstRead:
    """The emulator's bedrock client, whose first GetModelInvocationJob answer was read a moment earlier; it notes
    the error code of each refused StopModelInvocationJob."""

    def __init__(self, client: BaseClient, stale: dict[str, Any]) -> None:
        self._client, self._stale = client, [stale]
        self.refusals: list[str] = []

    def get_model_invocation_job(self, **params: Any) -> dict[str, Any]:
        return self._stale.pop() if self._stale else self._client.get_model_invocation_job(**params)

    def stop_model_invocation_job(self, **params: Any) -> dict[str, Any]:
        try:
            return self._client.stop_model_invocation_job(**params)
        except ClientError as error:
            self.refusals.append(str(error.response["Error"]["Code"]))
            raise


@pytest.mark.parametrize(
    ("ended_as", "refusal"), [("Completed", "ValidationException"), ("Stopping", "ConflictException")]
)
def test_a_stop_racing_the_end_of_the_job_is_not_an_error(
    s3: BaseClient,
    clock: ManualClock,
    emulator: BedrockEmulator,
    lambda_context: Any,
    ended_as: str,
    refusal: str,
) -> None:
    # GIVEN a job past its deadline plus margin, read InProgress just before it completed (or a user stopped it)
    submitted = JobState.model_validate(submit_handler.lambda_handler(stage_run(s3, 120), lambda_context))
    assert submitted.job_arn
    clock.advance(3)
    stale = aws.bedrock().get_model_invocation_job(jobIdentifier=submitted.job_arn)
    assert stale["status"] == "InProgress"
    if ended_as == "Stopping":
        aws.bedrock().stop_model_invocation_job(jobIdentifier=submitted.job_arn)
    else:
        clock.advance(1)
    late = stale["jobExpirationTime"] + poll_logic.DEADLINE_MARGIN + timedelta(hours=1)
    # WHEN Poll sends its Stop on the stale read, and Bedrock refuses it
    bedrock = StaleFirstRead(aws.bedrock(), stale)
    out = poll_logic.poll(submitted, bedrock=bedrock, timeout_hours=72, now=late)
    # THEN Bedrock refused the stop, and the job is followed as Bedrock reports it now, with no stop recorded
    assert bedrock.refusals == [refusal]
    assert (out.status, out.terminal, out.stop_requested_at) == (ended_as, ended_as == "Completed", None)
