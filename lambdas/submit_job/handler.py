"""Submit handler: thin."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import aws
from lambdas.shared.models import JobState
from lambdas.shared.observability import logger, metrics, tracer
from lambdas.shared.settings import Settings
from lambdas.submit_job import logic


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = JobState.model_validate(event)
    settings = Settings.from_env()
    logger.thread_safe_append_keys(
        run_id=state.run.run_id, job_index=state.job.index, resubmission=state.job.resubmission
    )
    out = logic.submit(
        state,
        bedrock=aws.bedrock(),
        role_arn=settings.bedrock_role_arn,
        timeout_hours=settings.job_timeout_hours,
        output_kms_key_id=settings.output_kms_key_id,
        tags=settings.job_tags,
        vpc=(settings.job_subnet_ids, settings.job_security_group_ids) if settings.job_subnet_ids else None,
    )
    logger.info("job submitted", job_arn=out.job_arn, job_name=out.job_name)
    metrics.add_metric(name="JobsSubmitted", unit="Count", value=1)
    return out.model_dump(mode="json")
