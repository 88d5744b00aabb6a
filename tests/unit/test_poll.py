"""The poll logic: a status that cannot be read (keep following the job, give up only after many polls), and the
service's deadline (stop a job only well past Bedrock's own deadline, follow it to Stopped, survive the stop race)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from lambdas.poll_job.logic import DEADLINE_MARGIN, MAX_UNREADABLE_POLLS, poll, service_deadline
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
        "submitTime": datetime.now(UTC),  # just submitted: far from its deadline
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


# ---------------------------------------------------------------- the service's deadline, stop and the stop race

SUBMITTED = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
EXPIRES = SUBMITTED + timedelta(hours=24)  # what Bedrock reports as jobExpirationTime for a 24-hour timeout


def described(status: str, *, expires: datetime | None = EXPIRES, **extra: object) -> dict[str, object]:
    """A GetModelInvocationJob answer with ``jobExpirationTime`` (None: without it, as the shape allows)."""
    answer = job_description(status) | {"submitTime": SUBMITTED, "timeoutDurationInHours": 24, **extra}
    if expires is not None:
        answer["jobExpirationTime"] = expires
    return answer


def test_the_service_deadline_is_job_expiration_time_else_submit_time_plus_the_job_timeout() -> None:
    state = running_job()
    # GIVEN answers with jobExpirationTime, without it, and without it nor timeoutDurationInHours
    with_field = described("InProgress", expires=EXPIRES + timedelta(hours=5))
    without = described("InProgress", expires=None)
    bare = {key: value for key, value in without.items() if key != "timeoutDurationInHours"}
    # WHEN the deadline is read THEN Bedrock's own field wins; else its submit time plus its timeout, else ours
    assert service_deadline(with_field, state, timeout_hours=72) == EXPIRES + timedelta(hours=5)
    assert service_deadline(without, state, timeout_hours=72) == EXPIRES
    assert service_deadline(bare, state, timeout_hours=72) == SUBMITTED + timedelta(hours=72)


@pytest.mark.parametrize(
    ("now", "stopped"),
    [
        (EXPIRES - timedelta(hours=1), False),  # before the service's deadline
        (EXPIRES + timedelta(minutes=5), False),  # past it, but Bedrock may still be ending the job itself
        (EXPIRES + DEADLINE_MARGIN, False),  # exactly at the margin
        (EXPIRES + DEADLINE_MARGIN + timedelta(seconds=1), True),  # past it
    ],
)
def test_a_running_job_is_stopped_only_past_the_service_deadline_plus_the_margin(
    bedrock: tuple[BaseClient, Stubber], now: datetime, stopped: bool
) -> None:
    client, stubber = bedrock
    # GIVEN a job Bedrock still reports InProgress, with its jobExpirationTime
    stubber.add_response("get_model_invocation_job", described("InProgress"))
    if stopped:
        stubber.add_response("stop_model_invocation_job", {}, {"jobIdentifier": JOB_ARN})
    # WHEN polled at ``now``
    out = poll(running_job(), bedrock=client, timeout_hours=72, now=now)
    # THEN the job is stopped only past deadline + margin, and even then it is not terminal: it is not Stopped yet
    stubber.assert_no_pending_responses()
    assert (out.status, out.terminal) == ("InProgress", False)
    assert (out.stop_requested_at is not None) is stopped
    assert (out.message is not None and "stopped by the orchestrator" in out.message) is stopped


def test_without_job_expiration_time_the_deadline_is_submit_time_plus_timeout_plus_margin(
    bedrock: tuple[BaseClient, Stubber],
) -> None:
    client, stubber = bedrock
    # GIVEN a job without jobExpirationTime (optional in the API), polled just before and just after the fallback
    fallback = SUBMITTED + timedelta(hours=24) + DEADLINE_MARGIN
    stubber.add_response("get_model_invocation_job", described("Scheduled", expires=None))
    stubber.add_response("get_model_invocation_job", described("Scheduled", expires=None))
    stubber.add_response("stop_model_invocation_job", {}, {"jobIdentifier": JOB_ARN})
    # WHEN polled at the fallback deadline, then a second after it
    before = poll(running_job(), bedrock=client, timeout_hours=72, now=fallback)
    after = poll(before, bedrock=client, timeout_hours=72, now=fallback + timedelta(seconds=1))
    # THEN only the second poll stops it (with the job's own 24 h, not the configured 72 h)
    stubber.assert_no_pending_responses()
    assert before.stop_requested_at is None and after.stop_requested_at is not None


def test_after_a_stop_the_job_is_followed_through_stopping_to_stopped_and_stopped_once(
    bedrock: tuple[BaseClient, Stubber],
) -> None:
    client, stubber = bedrock
    late = EXPIRES + DEADLINE_MARGIN + timedelta(hours=1)
    # GIVEN a job past its deadline: stopped on the first poll, Stopping on the second, Stopped on the third
    stubber.add_response("get_model_invocation_job", described("InProgress"))
    stubber.add_response("stop_model_invocation_job", {}, {"jobIdentifier": JOB_ARN})
    stubber.add_response("get_model_invocation_job", described("Stopping"))
    stubber.add_response("get_model_invocation_job", described("Stopped", processedRecordCount=50))
    # WHEN polled three times
    first = poll(running_job(), bedrock=client, timeout_hours=24, now=late)
    second = poll(first, bedrock=client, timeout_hours=24, now=late)
    third = poll(second, bedrock=client, timeout_hours=24, now=late)
    # THEN Stop was called once (the stubber holds no second stop), Stopping is not terminal, Stopped is
    stubber.assert_no_pending_responses()
    assert [(s.status, s.terminal) for s in (first, second, third)] == [
        ("InProgress", False),
        ("Stopping", False),
        ("Stopped", True),
    ]
    # AND the reason stays on the job, with Bedrock's counters of what it processed
    assert third.message and "stopped by the orchestrator" in third.message
    assert third.counters["processedRecordCount"] == 50


@pytest.mark.parametrize("refusal", ["ValidationException", "ConflictException"])
def test_a_stop_refused_because_the_job_just_ended_is_not_an_error(
    bedrock: tuple[BaseClient, Stubber], refusal: str
) -> None:
    client, stubber = bedrock
    # GIVEN a job read InProgress past its deadline, that completes before the Stop reaches Bedrock
    stubber.add_response("get_model_invocation_job", described("InProgress"))
    stubber.add_client_error("stop_model_invocation_job", refusal, http_status_code=400)
    stubber.add_response("get_model_invocation_job", described("Completed", processedRecordCount=100))
    # WHEN polled
    out = poll(running_job(), bedrock=client, timeout_hours=24, now=EXPIRES + timedelta(days=1))
    # THEN the job is followed as Bedrock ended it: Completed, terminal, no stop recorded
    stubber.assert_no_pending_responses()
    assert (out.status, out.terminal, out.stop_requested_at, out.message) == ("Completed", True, None, None)


def test_a_stop_refused_while_the_job_still_runs_is_raised(bedrock: tuple[BaseClient, Stubber]) -> None:
    client, stubber = bedrock
    # GIVEN a job past its deadline whose stop is refused while it still runs (not the race)
    stubber.add_response("get_model_invocation_job", described("InProgress"))
    stubber.add_client_error("stop_model_invocation_job", "ValidationException", http_status_code=400)
    stubber.add_response("get_model_invocation_job", described("InProgress"))
    # WHEN polled THEN the error goes to the state machine (its Catch sends the job to postprocessing)
    with pytest.raises(ClientError, match="ValidationException"):
        poll(running_job(), bedrock=client, timeout_hours=24, now=EXPIRES + timedelta(days=1))


def test_a_job_stopping_from_outside_is_followed_not_stopped_again(bedrock: tuple[BaseClient, Stubber]) -> None:
    client, stubber = bedrock
    # GIVEN a job a user is stopping from the console, polled long past its deadline
    stubber.add_response("get_model_invocation_job", described("Stopping"))
    # WHEN polled THEN it is not terminal and no Stop is sent (the stubber would reject one)
    out = poll(running_job(), bedrock=client, timeout_hours=24, now=EXPIRES + timedelta(days=1))
    assert (out.status, out.terminal, out.stop_requested_at) == ("Stopping", False, None)


def test_the_docs_state_the_deadline_margin_the_code_uses() -> None:
    # GIVEN the margin Poll waits past the service's deadline before it stops a job
    hours = DEADLINE_MARGIN / timedelta(hours=1)
    # WHEN the batch guide is read THEN its Poll paragraph states that same margin
    page = (Path(__file__).parents[2] / "docs" / "batch" / "how-it-works.md").read_text()
    assert f"**{hours:g} hours past that deadline**" in page
