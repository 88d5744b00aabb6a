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
