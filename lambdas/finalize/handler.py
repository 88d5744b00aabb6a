"""Finalize handler: thin."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.finalize import logic
from lambdas.shared import aws
from lambdas.shared.models import FinalizeRequest
from lambdas.shared.observability import logger, metrics, tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FinalizeRequest.model_validate(event)
    logger.thread_safe_append_keys(run_id=request.run.run_id)
    with tempfile.TemporaryDirectory(prefix="finalize-") as workdir:
        result = logic.finalize(request.run, s3=aws.s3(), workdir=Path(workdir))
    logger.info(
        "run finalized",
        complete=result.complete,
        succeeded=result.succeeded,
        failed=result.failed,
        resubmitted=result.rows_resubmitted,
        recovered=result.rows_recovered,
    )
    metrics.add_metric(name="RunsFinalized", unit="Count", value=1)
    metrics.add_metric(name="RecordsRecovered", unit="Count", value=result.rows_recovered)
    return result.model_dump(mode="json")
