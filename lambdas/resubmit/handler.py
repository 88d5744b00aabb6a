"""Plan resubmission handler: thin."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.resubmit import logic
from lambdas.shared import aws
from lambdas.shared.models import ExecutionInput, ResubmissionRequest
from lambdas.shared.observability import append_correlation_keys, logger, metrics, tracer
from lambdas.shared.settings import Settings


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ResubmissionRequest.model_validate(event)
    append_correlation_keys(run_id=request.run.run_id, execution_arn=request.run.execution_arn)
    execution_input = ExecutionInput.parse(request.execution_input)  # valid: preprocess accepted it
    max_per_job = execution_input.max_records_per_job or Settings.from_env().max_records_per_job
    with tempfile.TemporaryDirectory(prefix="resubmit-") as workdir:
        plan = logic.plan_resubmission(
            request.run,
            enabled=execution_input.resubmit_failed,
            max_per_job=max_per_job,
            s3=aws.s3(),
            workdir=Path(workdir),
        )
    logger.info("resubmission planned", jobs=plan.job_count, rows=plan.rows_resubmitted, plan=plan.message)
    metrics.add_metric(name="RecordsResubmitted", unit="Count", value=plan.rows_resubmitted)
    return plan.model_dump(mode="json")
