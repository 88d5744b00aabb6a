"""Powertools singletons shared by every function: import these, never create new ones.

Two helpers every batch handler uses:

- ``append_correlation_keys``: the run id, the execution ARN (also the ``correlation_id``), and where there is one the
  job index and Bedrock job id, on every log line of the invocation. Handlers decorate with
  ``inject_lambda_context(clear_state=True)`` so that no key of a previous invocation of a warm function survives.
- ``record_job_status``: one ``JobStatusChanges`` metric with a ``Status`` dimension per job status transition. It is
  flushed on its own (``EphemeralMetrics``) because a dimension applies to every metric of a flush, and the handlers'
  other metrics (``JobsSubmitted``...) must keep the ``service`` dimension alone.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

JOB_STATUS_METRIC = "JobStatusChanges"


def append_correlation_keys(
    *,
    run_id: str,
    execution_arn: str | None = None,
    job_index: int | None = None,
    resubmission: bool | None = None,
    job_arn: str | None = None,
) -> None:
    """Add the run's (and job's) ids to every following log line of this invocation; thread-safe (the local runtime
    runs several invocations at once in threads)."""
    keys: dict[str, object] = {"run_id": run_id, "correlation_id": execution_arn or run_id}
    if execution_arn:
        keys["execution_arn"] = execution_arn
    if job_index is not None:
        keys["job_index"] = job_index
    if resubmission is not None:
        keys["resubmission"] = resubmission
    if job_arn:
        keys["job_arn"] = job_arn
        keys["job_id"] = job_arn.rsplit("/", 1)[-1]
    logger.thread_safe_append_keys(**keys)


def record_job_status(status: str) -> None:
    """Count one job entering ``status`` (Submitted, InProgress, Completed, Failed, Stopped, Expired...)."""
    status_metrics = EphemeralMetrics()  # namespace and service from POWERTOOLS_* like ``metrics``
    status_metrics.add_dimension(name="Status", value=status)
    status_metrics.add_metric(name=JOB_STATUS_METRIC, unit=MetricUnit.Count, value=1)
    status_metrics.flush_metrics()
