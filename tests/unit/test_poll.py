"""The poll logic when the job's status cannot be read: keep following the job, give up only after many polls."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from lambdas.poll_job.logic import MAX_UNREADABLE_POLLS, poll
from lambdas.shared.models import JobState

JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"


@pytest.fixture
def bedrock() -> Iterator[tuple[BaseClient, Stubber]]:
    client = boto3.client(
        "bedrock", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield client, stubber


def running_job() -> JobState:
    return JobState.model_validate(
        {
            "run": {
                "run_id": "run-1",
                "bucket": "b",
                "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
                "family": "anthropic",
                "output_kind": "text",
                "job_name_prefix": "jokes",
                "total_records": 100,
                "num_jobs": 1,
                "records_key": "runs/run-1/records.parquet",
                "manifest_key": "runs/run-1/jobs.json",
            },
            "job": {
                "index": 0,
                "input_key": "runs/run-1/jobs/0000.jsonl",
                "first_row": 0,
                "record_count": 100,
                "size_bytes": 1,
            },
            "job_arn": JOB_ARN,
            "status": "InProgress",
        }
    )


def job_description(status: str) -> dict[str, object]:
    return {
        "jobArn": JOB_ARN,
        "jobName": "jokes-run-1-0000",
        "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
        "roleArn": "arn:aws:iam::123456789012:role/r",
        "status": status,
        "submitTime": "2026-11-26T10:00:00Z",
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://b/in.jsonl"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://b/out/"}},
        "totalRecordCount": 100,
    }


def test_an_unreadable_status_keeps_the_job_followed_and_a_readable_one_resets_the_count(
    bedrock: tuple[BaseClient, Stubber],
) -> None:
    client, stubber = bedrock
    # GIVEN a running job whose status read fails twice with a 5xx, then succeeds
    stubber.add_client_error("get_model_invocation_job", "InternalServerException", http_status_code=500)
    stubber.add_client_error("get_model_invocation_job", "InternalServerException", http_status_code=500)
    stubber.add_response("get_model_invocation_job", job_description("InProgress"))
    state = running_job()
    # WHEN polled three times
    first = poll(state, bedrock=client, timeout_hours=24)
    second = poll(first, bedrock=client, timeout_hours=24)
    third = poll(second, bedrock=client, timeout_hours=24)
    # THEN the failed polls keep the last known status, not terminal, so the state machine waits and polls again
    assert (first.status, first.terminal, first.unreadable_polls) == ("InProgress", False, 1)
    assert (second.status, second.terminal, second.unreadable_polls) == ("InProgress", False, 2)
    # AND the readable one resets the count
    assert (third.status, third.unreadable_polls, third.polls) == ("InProgress", 0, 3)


def test_throttling_is_raised_at_once_for_the_state_machine_retry(bedrock: tuple[BaseClient, Stubber]) -> None:
    client, stubber = bedrock
    stubber.add_client_error("get_model_invocation_job", "ThrottlingException", http_status_code=429)
    with pytest.raises(ClientError, match="ThrottlingException"):
        poll(running_job(), bedrock=client, timeout_hours=24)


def test_a_status_unreadable_for_too_long_goes_to_the_state_machine_catch(bedrock: tuple[BaseClient, Stubber]) -> None:
    client, stubber = bedrock
    # GIVEN a job whose status has been unreadable for all but one of the allowed polls
    stubber.add_client_error("get_model_invocation_job", "AccessDeniedException", http_status_code=403)
    state = running_job().model_copy(update={"unreadable_polls": MAX_UNREADABLE_POLLS - 1})
    # WHEN polled once more and it fails again THEN the error is raised (the Catch sends the job to postprocess)
    with pytest.raises(ClientError, match="AccessDeniedException"):
        poll(state, bedrock=client, timeout_hours=24)
