from __future__ import annotations

import json

import pytest

from lambdas.poll_job import handler as poll_handler
from lambdas.shared.errors import ServiceQuotaExceededException
from lambdas.submit_job import handler as submit_handler
from tests.functional.conftest import BUCKET

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def staged_job(s3, run_id="run-1", index=0, records=120) -> dict:
    key = f"runs/{run_id}/jobs/{index:04d}.jsonl"
    lines = [
        json.dumps(
            {
                "recordId": f"{i:011d}",
                "modelInput": {
                    "anthropic_version": "bedrock-2023-05-31",
                    "max_tokens": 10,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": f"prompt {i}"}]}],
                },
            }
        )
        for i in range(records)
    ]
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return {
        "run": {
            "run_id": run_id,
            "bucket": BUCKET,
            "model_id": CLAUDE,
            "family": "anthropic",
            "output_kind": "text",
            "job_name_prefix": "jokes",
            "total_records": records,
            "num_jobs": 1,
            "records_key": f"runs/{run_id}/records.parquet",
            "manifest_key": f"runs/{run_id}/jobs.json",
        },
        "job": {"index": index, "input_key": key, "first_row": 0, "record_count": records, "size_bytes": 1},
    }


def test_retried_submit_never_creates_a_second_job(s3, emulator, lambda_context):
    # GIVEN a staged job
    state = staged_job(s3)
    # WHEN Submit runs twice from the same input (a retried state after a lost response)
    first = submit_handler.lambda_handler(state, lambda_context)
    second = submit_handler.lambda_handler(state, lambda_context)
    # THEN both attempts got the same job and the emulator created exactly one
    assert first["job_arn"] == second["job_arn"]
    assert emulator.jobs_created_per_model() == {CLAUDE: 1}
    assert first["job_name"].startswith("jokes-run-1-0000")


def test_poll_follows_the_job_to_completion_with_counters(s3, emulator, lambda_context):
    # GIVEN a submitted job on an emulator where every status lasts 0 s
    state = submit_handler.lambda_handler(staged_job(s3), lambda_context)
    # WHEN polled THEN it is terminal, Completed, with the record counters passed on
    out = poll_handler.lambda_handler(state, lambda_context)
    assert out["terminal"] is True and out["status"] == "Completed"
    assert out["counters"]["totalRecordCount"] == 120 and out["counters"]["successRecordCount"] == 120


def test_poll_treats_partially_completed_as_terminal(s3, emulator, lambda_context):
    state = submit_handler.lambda_handler(staged_job(s3), lambda_context)
    emulator.set_job_status(state["job_arn"], "PartiallyCompleted", success_records=100, error_records=3)
    out = poll_handler.lambda_handler(state, lambda_context)
    assert out["terminal"] is True and out["status"] == "PartiallyCompleted"
    assert out["counters"]["errorRecordCount"] == 3


def test_quota_exhaustion_is_raised_under_the_name_the_state_machine_retries(s3, emulator, lambda_context):
    # GIVEN 20 jobs of the same model already in flight
    emulator.state.step_seconds = 3600
    for index in range(20):
        submit_handler.lambda_handler(staged_job(s3, run_id=f"run-{index}", index=index), lambda_context)
    # WHEN a 21st is submitted THEN ServiceQuotaExceededException is raised (Retry matches on that name)
    with pytest.raises(ServiceQuotaExceededException):
        submit_handler.lambda_handler(staged_job(s3, run_id="run-x"), lambda_context)


def test_a_resubmission_job_is_a_new_job_and_its_retried_submit_is_not(s3, emulator, lambda_context):
    # GIVEN planned job 0, submitted, and resubmission job 0 of the same run (its own file and rows)
    planned = staged_job(s3)
    submit_handler.lambda_handler(planned, lambda_context)
    retry = staged_job(s3) | {
        "job": {
            "index": 0,
            "input_key": "runs/run-1/jobs/0000.jsonl",
            "first_row": 0,
            "record_count": 120,
            "size_bytes": 1,
            "resubmission": True,
            "rows_key": "runs/run-1/retry/rows/0000.parquet",
        }
    }
    # WHEN the resubmission job is submitted, twice (a retried state)
    first = submit_handler.lambda_handler(retry, lambda_context)
    second = submit_handler.lambda_handler(retry, lambda_context)
    # THEN Bedrock created one new job for it, under its own name: the planned job's token did not swallow it
    assert first["job_arn"] == second["job_arn"]
    assert emulator.jobs_created_per_model() == {CLAUDE: 2}
    assert first["job_name"] == "jokes-run-1-r0000"
    # AND each job writes under an output URI of its own, so Postprocess reads one job's output only, whatever
    # layout Bedrock writes under it
    uris = [job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] for job in emulator.jobs()]
    assert uris == [f"s3://{BUCKET}/runs/run-1/bedrock-output/0000/", f"s3://{BUCKET}/runs/run-1/bedrock-output/r0000/"]


KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_submit_sends_the_output_key_and_cost_tags_the_stack_configures(s3, emulator, lambda_context, monkeypatch):
    # GIVEN the environment the stack sets with kmsKey and tags in cdk.json
    monkeypatch.setenv("OUTPUT_KMS_KEY_ID", KEY_ARN)
    monkeypatch.setenv("JOB_TAGS", json.dumps({"project": "jokes", "costCentre": "cc-42", "bedrock-batch-run": "x"}))
    # WHEN a job is submitted (the emulator checks the request against botocore's CreateModelInvocationJob shape)
    submit_handler.lambda_handler(staged_job(s3), lambda_context)
    # THEN the job output is encrypted with the key and the job carries the tags next to its run id (not replaced)
    (job,) = emulator.jobs()
    assert job["outputDataConfig"]["s3OutputDataConfig"]["s3EncryptionKeyId"] == KEY_ARN
    assert job["tags"] == [
        {"key": "bedrock-batch-run", "value": "run-1"},
        {"key": "project", "value": "jokes"},
        {"key": "costCentre", "value": "cc-42"},
    ]
    assert "vpcConfig" not in job


def test_submit_without_security_settings_sends_neither_key_nor_extra_tags(s3, emulator, lambda_context, monkeypatch):
    # GIVEN the default deployment: no OUTPUT_KMS_KEY_ID, no JOB_TAGS
    for name in ("OUTPUT_KMS_KEY_ID", "JOB_TAGS", "JOB_SUBNET_IDS", "JOB_SECURITY_GROUP_IDS"):
        monkeypatch.delenv(name, raising=False)
    # WHEN a job is submitted
    submit_handler.lambda_handler(staged_job(s3), lambda_context)
    # THEN the output uses the bucket's default encryption and the job has its run tag only
    (job,) = emulator.jobs()
    assert "s3EncryptionKeyId" not in job["outputDataConfig"]["s3OutputDataConfig"]
    assert job["tags"] == [{"key": "bedrock-batch-run", "value": "run-1"}]
    assert "vpcConfig" not in job


def test_submit_runs_the_job_in_the_vpc_the_stack_configures(s3, emulator, lambda_context, monkeypatch):
    # GIVEN the environment the stack sets with batchVpc in cdk.json
    monkeypatch.setenv("JOB_SUBNET_IDS", "subnet-0123456789abcdef0,subnet-0123456789abcdef1")
    monkeypatch.setenv("JOB_SECURITY_GROUP_IDS", "sg-0123456789abcdef0")
    # WHEN a job is submitted (the emulator checks vpcConfig against botocore's shape)
    submit_handler.lambda_handler(staged_job(s3), lambda_context)
    # THEN the job runs in those subnets with that security group
    (job,) = emulator.jobs()
    assert job["vpcConfig"] == {
        "subnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
        "securityGroupIds": ["sg-0123456789abcdef0"],
    }


EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:BatchStateMachine:run-1"


def printed(capture) -> list[dict]:
    """The JSON lines the handler printed (Powertools logs and EMF metric blobs)."""
    lines = capture.readouterr().out.splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def status_counts(lines: list[dict]) -> list[tuple[str, str]]:
    """(Status, service) of every JobStatusChanges EMF blob."""
    return [
        (line["Status"], line["service"])
        for line in lines
        if any(
            m["Name"] == "JobStatusChanges"
            for d in line.get("_aws", {}).get("CloudWatchMetrics", [])
            for m in d["Metrics"]
        )
    ]


def test_each_job_status_transition_is_counted_once_with_its_status(s3, emulator, lambda_context, capsys, monkeypatch):
    # GIVEN metrics on (POWERTOOLS_SERVICE_NAME as the stack sets it) and a staged job
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "batch-submit-job")
    state = staged_job(s3)
    # WHEN it is submitted (twice: a retried state), then polled twice on an emulator that keeps it InProgress
    emulator.state.step_seconds = 3600
    submitted = submit_handler.lambda_handler(state, lambda_context)
    submit_handler.lambda_handler(submitted, lambda_context)
    submit_lines = printed(capsys)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "batch-poll-job")
    emulator.set_job_status(submitted["job_arn"], "InProgress")
    polled = poll_handler.lambda_handler(submitted, lambda_context)
    polled = poll_handler.lambda_handler(polled, lambda_context)
    emulator.set_job_status(submitted["job_arn"], "Completed", success_records=120)
    poll_handler.lambda_handler(polled, lambda_context)
    poll_lines = printed(capsys)
    # THEN Submitted is counted once by Submit, and InProgress and Completed once each by Poll, under the Status
    # dimension alone (the other metrics keep the service dimension only)
    assert status_counts(submit_lines) == [("Submitted", "batch-submit-job")]
    assert status_counts(poll_lines) == [("InProgress", "batch-poll-job"), ("Completed", "batch-poll-job")]
    submitted_blob = next(line for line in submit_lines if "JobsSubmitted" in line)
    assert submitted_blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def test_every_log_line_of_a_job_carries_the_run_execution_and_job_ids(s3, emulator, lambda_context, log_lines):
    # GIVEN a job of a run whose context carries the execution ARN (Preprocess puts it there)
    state = staged_job(s3)
    state["run"]["execution_arn"] = EXECUTION_ARN
    # WHEN it is submitted and polled
    submitted = submit_handler.lambda_handler(state, lambda_context)
    poll_handler.lambda_handler(submitted, lambda_context)
    logs = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    # THEN each log line names the run, the execution (as the correlation id) and the job, with its Bedrock job id
    job_id = submitted["job_arn"].rsplit("/", 1)[-1]
    by_message = {line["message"]: line for line in logs}
    for message in ("job submitted", "job polled"):
        line = by_message[message]
        assert (line["run_id"], line["execution_arn"], line["correlation_id"]) == (
            "run-1",
            EXECUTION_ARN,
            EXECUTION_ARN,
        )
        assert (line["job_index"], line["job_id"]) == (0, job_id)


def with_cap(state: dict, cap: int) -> dict:
    """The job state as preprocess leaves it when min(maxConcurrentJobs, the model's quota) is ``cap``."""
    return state | {"run": state["run"] | {"max_concurrent_jobs": cap}}


def test_submit_waits_while_the_model_has_as_many_jobs_in_flight_as_the_cap(s3, emulator, lambda_context):
    # GIVEN a cap of 2 (below the emulator's quota of 20), two Claude jobs in flight (one through its profile) and
    # one job of another model
    emulator.state.step_seconds = 3600
    submit_handler.lambda_handler(with_cap(staged_job(s3, run_id="run-a"), 2), lambda_context)
    other = staged_job(s3, run_id="run-b")
    other["run"]["model_id"] = f"us.{CLAUDE}"
    submit_handler.lambda_handler(with_cap(other, 2), lambda_context)
    titan = staged_job(s3, run_id="run-t")
    titan["run"] |= {"model_id": "amazon.titan-embed-text-v2:0", "family": "titan-embed-text-v2"}
    submit_handler.lambda_handler(titan, lambda_context)
    # WHEN a third Claude job is submitted under the cap
    # THEN Submit raises ServiceQuotaExceededException itself (the state machine's long-backoff Retry) without
    # calling CreateModelInvocationJob, and names the counts
    with pytest.raises(ServiceQuotaExceededException, match=r"2 jobs of .* are submitted or in progress.*cap is 2"):
        submit_handler.lambda_handler(with_cap(staged_job(s3, run_id="run-c"), 2), lambda_context)
    assert emulator.jobs_created_per_model() == {CLAUDE: 1, f"us.{CLAUDE}": 1, "amazon.titan-embed-text-v2:0": 1}
    assert emulator.calls()["CreateModelInvocationJob"] == 3


def test_a_finished_job_frees_its_slot_for_the_next_submit(s3, emulator, lambda_context):
    # GIVEN a cap of 1 and one Claude job that has ended
    first = submit_handler.lambda_handler(with_cap(staged_job(s3, run_id="run-a"), 1), lambda_context)
    emulator.set_job_status(first["job_arn"], "Completed")
    # WHEN the next job is submitted THEN it is created
    second = submit_handler.lambda_handler(with_cap(staged_job(s3, run_id="run-b"), 1), lambda_context)
    assert second["job_arn"] != first["job_arn"]
