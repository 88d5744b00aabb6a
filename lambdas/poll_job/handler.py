"""Poll handler: thin."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.poll_job import logic
from lambdas.shared import aws
from lambdas.shared.models import JobState
from lambdas.shared.observability import logger, metrics, tracer
from lambdas.shared.settings import Settings


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = JobState.model_validate(event)
    logger.thread_safe_append_keys(
        run_id=state.run.run_id, job_index=state.job.index, resubmission=state.job.resubmission
    )
    out = logic.poll(state, bedrock=aws.bedrock(), timeout_hours=Settings.from_env().job_timeout_hours)
    logger.info("job polled", job_arn=out.job_arn, status=out.status, counters=out.counters)
    return out.model_dump(mode="json")
