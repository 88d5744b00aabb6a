"""Submit handler: thin."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import aws
from lambdas.shared.models import JobState
from lambdas.shared.observability import append_correlation_keys, logger, metrics, record_job_status, tracer
from lambdas.shared.settings import Settings
from lambdas.submit_job import logic


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = JobState.model_validate(event)
    settings = Settings.from_env()
    append_correlation_keys(**state.correlation_keys())
    out = logic.submit(
        state,
        bedrock=aws.bedrock(),
        s3=aws.s3(),
        role_arn=settings.bedrock_role_arn,
        timeout_hours=settings.job_timeout_hours,
        output_kms_key_id=settings.output_kms_key_id,
        tags=settings.job_tags,
        vpc=(settings.job_subnet_ids, settings.job_security_group_ids) if settings.job_subnet_ids else None,
    )
    if out.cancelled:
        logger.info("job not submitted: the run was cancelled", reason=out.message)
        return out.model_dump(mode="json")
    append_correlation_keys(**out.correlation_keys())  # now with the job's ARN
    logger.info("job submitted", job_name=out.job_name)
    metrics.add_metric(name="JobsSubmitted", unit="Count", value=1)
    if out.status and out.status != state.status:  # not when a retried state finds the job already created
        record_job_status(out.status)
    return out.model_dump(mode="json")
