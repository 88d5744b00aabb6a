"""Submit one Bedrock batch job. Idempotent: the clientRequestToken is derived from the run id and job index."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from lambdas.shared import layout
from lambdas.shared.errors import ServiceQuotaExceededException, ThrottlingException
from lambdas.shared.models import JobState

# Bedrock error codes the state machine retries with a long backoff (by these exception class names).
_RETRIED: dict[str, type[Exception]] = {
    "ThrottlingException": ThrottlingException,
    "ServiceQuotaExceededException": ServiceQuotaExceededException,
}


def build_request(state: JobState, *, role_arn: str, timeout_hours: int) -> dict[str, Any]:
    run, job = state.run, state.job
    return {
        "jobName": layout.job_name(run.job_name_prefix, run.run_id, job.index, resubmission=job.resubmission),
        "roleArn": role_arn,
        "modelId": run.model_id,
        "clientRequestToken": layout.client_request_token(run.run_id, job.index, resubmission=job.resubmission),
        "inputDataConfig": {
            "s3InputDataConfig": {"s3Uri": f"s3://{run.bucket}/{job.input_key}", "s3InputFormat": "JSONL"}
        },
        "outputDataConfig": {
            "s3OutputDataConfig": {"s3Uri": f"s3://{run.bucket}/{layout.bedrock_output_prefix(run.run_id)}"}
        },
        "timeoutDurationInHours": timeout_hours,
        "modelInvocationType": run.invocation_type,
        "tags": [{"key": "bedrock-batch-run", "value": run.run_id}],
    }


def submit(state: JobState, *, bedrock: Any, role_arn: str, timeout_hours: int) -> JobState:
    """Create the job (or find the one a previous attempt created) and return the state with its ARN."""
    if state.job_arn:
        return state  # a retried state after a successful create: nothing to do
    request = build_request(state, role_arn=role_arn, timeout_hours=timeout_hours)
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
