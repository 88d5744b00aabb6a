"""Run-on-demand handler: thin."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.on_demand import logic
from lambdas.shared import aws
from lambdas.shared.models import JobState
from lambdas.shared.observability import append_correlation_keys, logger, metrics, tracer
from lambdas.shared.settings import Settings


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = JobState.model_validate(event)
    append_correlation_keys(**state.correlation_keys())
    before = state.counters.get("processedRecordCount", 0)
    out = logic.run_on_demand(
        state,
        runtime=aws.bedrock_runtime(),
        s3=aws.s3(),
        concurrency=Settings.from_env().on_demand_concurrency,
        remaining_ms=context.get_remaining_time_in_millis,
    )
    answered = out.counters.get("processedRecordCount", 0) - before
    logger.info("on-demand job ran", status=out.status, terminal=out.terminal, counters=out.counters)
    metrics.add_metric(name="OnDemandRecords", unit="Count", value=answered)
    return out.model_dump(mode="json")
