"""Submit one Bedrock batch job. Idempotent: the clientRequestToken is derived from the run id and job index."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from lambdas.shared import layout
from lambdas.shared.errors import ServiceQuotaExceededException, ThrottlingException
from lambdas.shared.model_families import ModelRef
from lambdas.shared.models import JobState

# Bedrock error codes the state machine retries with a long backoff (by these exception class names).
_RETRIED: dict[str, type[Exception]] = {
    "ThrottlingException": ThrottlingException,
    "ServiceQuotaExceededException": ServiceQuotaExceededException,
}


RUN_TAG = "bedrock-batch-run"
# The statuses that hold one of the model's "submitted and in-progress" job slots: every status before the end
# (docs/bedrock-facts.md, Batch quotas).
IN_FLIGHT_STATUSES = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")


def jobs_in_flight(bedrock: Any, model_id: str) -> int:
    """How many batch jobs of ``model_id``'s base model are submitted or in progress in this account and region (any
    model id form: a profile and its foundation model share the quota), by ListModelInvocationJobs per status."""
    base = ModelRef.parse(model_id).base_model_id
    paginator = bedrock.get_paginator("list_model_invocation_jobs")
    return sum(
        1
        for status in IN_FLIGHT_STATUSES
        for page in paginator.paginate(statusEquals=status)
        for job in page.get("invocationJobSummaries", [])
        if ModelRef.parse(job["modelId"]).base_model_id == base
    )


def check_job_slot(state: JobState, bedrock: Any) -> None:
    """Raise ServiceQuotaExceededException (the state machine waits and retries) while the model already has as
    many jobs in flight as the run's cap, min(maxConcurrentJobs, the model's quota), computed by preprocess."""
    model = state.run.model_for(state.job.model)
    if model.max_concurrent_jobs is None:
        return
    active = jobs_in_flight(bedrock, model.model_id)
    if active >= model.max_concurrent_jobs:
        quota = model.quotas.max_concurrent_jobs
        raise ServiceQuotaExceededException(
            f"no free job slot for job {state.job.index}: {active} jobs of {model.model_id} are submitted or in "
            f"progress, and the cap is {model.max_concurrent_jobs} (min of maxConcurrentJobs and the model's quota of "
            f"{quota.value}, from {quota.source}); waiting for a job to end"
        )


def build_request(
    state: JobState,
    *,
    role_arn: str,
    timeout_hours: int,
    output_kms_key_id: str | None = None,
    tags: Sequence[tuple[str, str]] = (),
    vpc: tuple[Sequence[str], Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The CreateModelInvocationJob request. ``output_kms_key_id`` (cdk.json ``kmsKey``) encrypts the job output;
    ``tags`` (cdk.json ``tags``) go on the job next to its run id (which they cannot replace); ``vpc`` (subnet ids,
    security group ids; cdk.json ``batchVpc``) runs the job in a VPC."""
    run, job = state.run, state.job
    model = run.model_for(job.model)  # a prepared run's job runs its own model (jobs never mix models)
    prefix = layout.job_output_prefix(run.run_id, job.index, resubmission=job.resubmission)
    output: dict[str, str] = {"s3Uri": f"s3://{run.bucket}/{prefix}"}
    if output_kms_key_id:
        output["s3EncryptionKeyId"] = output_kms_key_id
    job_tags = [{"key": RUN_TAG, "value": run.run_id}]
    job_tags += [{"key": key, "value": value} for key, value in tags if key != RUN_TAG]
    request: dict[str, Any] = {
        "jobName": layout.job_name(run.job_name_prefix, run.run_id, job.index, resubmission=job.resubmission),
        "roleArn": role_arn,
        "modelId": model.model_id,
        "clientRequestToken": layout.client_request_token(run.run_id, job.index, resubmission=job.resubmission),
        "inputDataConfig": {
            "s3InputDataConfig": {"s3Uri": f"s3://{run.bucket}/{job.input_key}", "s3InputFormat": "JSONL"}
        },
        "outputDataConfig": {"s3OutputDataConfig": output},
        "timeoutDurationInHours": timeout_hours,
        "modelInvocationType": model.invocation_type,
        "tags": job_tags,
    }
    if vpc is not None:
        subnet_ids, security_group_ids = vpc
        request["vpcConfig"] = {"subnetIds": list(subnet_ids), "securityGroupIds": list(security_group_ids)}
    return request


def submit(
    state: JobState,
    *,
    bedrock: Any,
    role_arn: str,
    timeout_hours: int,
    output_kms_key_id: str | None = None,
    tags: Sequence[tuple[str, str]] = (),
    vpc: tuple[Sequence[str], Sequence[str]] | None = None,
) -> JobState:
    """Create the job (or find the one a previous attempt created) and return the state with its ARN."""
    if state.job_arn:
        return state  # a retried state after a successful create: nothing to do
    check_job_slot(state, bedrock)
    request = build_request(
        state,
        role_arn=role_arn,
        timeout_hours=timeout_hours,
        output_kms_key_id=output_kms_key_id,
        tags=tags,
        vpc=vpc,
    )
    try:
        response = bedrock.create_model_invocation_job(**request)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _RETRIED:
            raise _RETRIED[code](f"{code} submitting job {state.job.index}: {exc}") from exc
        raise
    return state.model_copy(
        update={
            "job_arn": response["jobArn"],
            "job_name": request["jobName"],
            "status": "Submitted",
            "submitted_at": datetime.now(UTC).isoformat(),
        }
    )
