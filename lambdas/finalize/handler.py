"""Finalize handler: thin."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.finalize import logic
from lambdas.shared import aws
from lambdas.shared.models import FinalizeRequest
from lambdas.shared.observability import append_correlation_keys, logger, metrics, tracer
from lambdas.shared.pricing import PriceTable
from lambdas.shared.settings import Settings


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FinalizeRequest.model_validate(event)
    append_correlation_keys(run_id=request.run.run_id, execution_arn=request.run.execution_arn)
    prices = PriceTable.load(overrides=Settings.from_env().price_overrides)
    with tempfile.TemporaryDirectory(prefix="finalize-") as workdir:
        result = logic.finalize(request.run, s3=aws.s3(), workdir=Path(workdir), prices=prices)
    logger.info(
        "run finalized",
        complete=result.complete,
        succeeded=result.succeeded,
        failed=result.failed,
        resubmitted=result.rows_resubmitted,
        recovered=result.rows_recovered,
        estimated_cost_usd=result.estimated_cost_usd,
    )
    metrics.add_metric(name="RunsFinalized", unit="Count", value=1)
    metrics.add_metric(name="RecordsRecovered", unit="Count", value=result.rows_recovered)
    if result.estimated_cost_usd is not None:  # None: no price for the model (summary.json says which to add)
        metrics.add_metric(name="EstimatedCostUSD", unit="None", value=result.estimated_cost_usd)
    return result.model_dump(mode="json")
