"""Postprocess handler: thin."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.postprocess import logic
from lambdas.shared import aws
from lambdas.shared.models import JobState
from lambdas.shared.observability import append_correlation_keys, logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = JobState.model_validate(event)
    append_correlation_keys(**state.correlation_keys())
    with tempfile.TemporaryDirectory(prefix="postprocess-") as workdir:
        result = logic.postprocess(state, s3=aws.s3(), workdir=Path(workdir))
    logger.info("job results written", status=result.status, succeeded=result.succeeded, failed=result.failed)
    metrics.add_metric(name="RecordsSucceeded", unit="Count", value=result.succeeded)
    metrics.add_metric(name="RecordsFailed", unit="Count", value=result.failed)
    metrics.add_metric(name="InputTokens", unit="Count", value=result.input_tokens)
    metrics.add_metric(name="OutputTokens", unit="Count", value=result.output_tokens)
    return result.model_dump(mode="json")
