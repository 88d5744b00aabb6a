"""Preprocess handler: thin. Parse the event, call the logic, return the run context for the state machine."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from lambdas.preprocess import logic, prepared
from lambdas.shared import aws, layout
from lambdas.shared.observability import append_correlation_keys, logger, metrics, tracer
from lambdas.shared.settings import Settings


class PreprocessEvent(BaseModel):
    input: Any
    execution_name: str
    execution_id: str | None = None  # the execution ARN ($$.Execution.Id)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PreprocessEvent.model_validate(event)
    append_correlation_keys(
        run_id=layout.run_id_from_execution_name(request.execution_name), execution_arn=request.execution_id
    )
    # A prepared input (JSONL records of several models) or rows: the same call, the module of its format.
    preprocess = prepared.preprocess if prepared.is_prepared(request.input) else logic.preprocess
    with tempfile.TemporaryDirectory(prefix="preprocess-") as workdir:
        run = preprocess(
            request.input,
            request.execution_name,
            s3=aws.s3(),
            service_quotas=aws.service_quotas(),
            settings=Settings.from_env(),
            workdir=Path(workdir),
            execution_arn=request.execution_id,
        )
    logger.info("run prepared", run_id=run.run_id, records=run.total_records, jobs=run.num_jobs)
    metrics.add_metric(name="RecordsPrepared", unit="Count", value=run.total_records)
    metrics.add_metric(name="JobsPlanned", unit="Count", value=run.num_jobs)
    return run.model_dump(mode="json")
