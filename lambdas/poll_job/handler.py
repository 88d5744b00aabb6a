"""Poll handler: thin."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.poll_job import logic
from lambdas.shared import aws
from lambdas.shared.models import JobState
from lambdas.shared.observability import append_correlation_keys, logger, metrics, record_job_status, tracer
from lambdas.shared.settings import Settings


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = JobState.model_validate(event)
    append_correlation_keys(**state.correlation_keys())
    out = logic.poll(state, bedrock=aws.bedrock(), s3=aws.s3(), timeout_hours=Settings.from_env().job_timeout_hours)
    logger.info("job polled", status=out.status, previous_status=state.status, counters=out.counters)
    if out.status and out.status != state.status:  # one count per transition, not per poll
        record_job_status(out.status)
    return out.model_dump(mode="json")
