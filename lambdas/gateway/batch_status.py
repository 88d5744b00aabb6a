"""An OpenAI Batch object from what a batch is made of: its creation record, its execution (DescribeExecution) and the
files its run wrote. Pure: no I/O, no clock of its own (``now`` is passed in).

| Status        | When                                                                                           |
|---------------|------------------------------------------------------------------------------------------------|
| `failed`      | the record holds validation errors (no execution), the execution failed or was aborted, or no  |
|               | execution was started within ``START_GRACE`` of the creation (the gateway stopped before it)   |
| `validating`  | the record exists, the execution does not (yet)                                                |
| `in_progress` | the execution runs and some planned job has no result file yet                                 |
| `finalizing`  | the execution runs and every planned job has its result file (postprocess, resubmission, finalize) |
| `cancelling`  | the execution runs and the cancel marker is written                                            |
| `completed`   | the execution succeeded                                                                        |
| `cancelled`   | the execution succeeded (or was aborted) after the cancel marker                               |
| `expired`     | the execution timed out                                                                        |

``request_counts`` and ``usage`` add up the jobs' result files while the run goes on, and come from ``summary.json``
once it is written; ``completed + failed <= total`` always, and ``== total`` when the run accounted for every row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

COMPLETION_WINDOW = timedelta(hours=24)  # OpenAI's only completion window ("24h")
# How long a batch may stay without an execution: the create request validates and starts within one request, and
# a Lambda request lasts at most 15 minutes; past that the gateway stopped before StartExecution.
START_GRACE = timedelta(minutes=16)
ENDED = ("completed", "cancelled", "expired")  # what has output and error files
NOT_STARTED = "batch_not_started"
EXECUTION_FAILED = "batch_run_failed"


@dataclass(frozen=True)
class LineError:
    """One entry of a Batch object's ``errors.data``: OpenAI's ``BatchError``."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None

    def openai(self) -> dict[str, Any]:
        return {"code": self.code, "line": self.line, "message": self.message, "param": self.param}


@dataclass(frozen=True)
class BatchRecord:
    """``openai/batches/<id>/batch.json``: written at creation (and once more if the execution could not start)."""

    id: str
    owner: str
    input_file_id: str
    endpoint: str
    completion_window: str
    created_at: int
    total: int = 0  # the input's requests
    metadata: Mapping[str, str] | None = None
    models: Mapping[str, Any] = field(default_factory=dict)  # the execution input's models
    errors: tuple[LineError, ...] = ()
    failed_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "input_file_id": self.input_file_id,
            "endpoint": self.endpoint,
            "completion_window": self.completion_window,
            "created_at": self.created_at,
            "total": self.total,
            "metadata": dict(self.metadata) if self.metadata is not None else None,
            "models": dict(self.models),
            "errors": [error.openai() for error in self.errors],
            "failed_at": self.failed_at,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BatchRecord:
        return cls(
            id=str(raw["id"]),
            owner=str(raw["owner"]),
            input_file_id=str(raw["input_file_id"]),
            endpoint=str(raw["endpoint"]),
            completion_window=str(raw["completion_window"]),
            created_at=int(raw["created_at"]),
            total=int(raw.get("total", 0)),
            metadata=raw.get("metadata"),
            models=raw.get("models") or {},
            errors=tuple(
                LineError(e["code"], e["message"], e.get("line"), e.get("param")) for e in raw.get("errors") or ()
            ),
            failed_at=raw.get("failed_at"),
        )


@dataclass(frozen=True)
class Execution:
    """What DescribeExecution says about a batch's execution."""

    status: str  # RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE
    started_at: datetime
    stopped_at: datetime | None = None
    error: str | None = None
    cause: str | None = None

    def failure(self) -> LineError:
        """The execution's error as a Batch error: the Lambda's errorMessage when the cause is its error payload."""
        message = self.cause or self.error or self.status
        try:
            payload = json.loads(self.cause or "")
            if isinstance(payload, dict) and payload.get("errorMessage"):
                message = str(payload["errorMessage"])
        except ValueError:
            pass
        return LineError(EXECUTION_FAILED, f"The batch run failed ({self.error or self.status}): {message}")


@dataclass(frozen=True)
class JobCounts:
    """One job's ``results/<NNNN>.json`` (``JobResult``): what it processed."""

    succeeded: int
    failed: int
    input_tokens: int = 0
    output_tokens: int = 0
    written_at: datetime | None = None  # the result file's LastModified


@dataclass(frozen=True)
class RunFiles:
    """What a batch's run wrote so far: the number of planned jobs (``jobs.json``; None before it exists), the jobs'
    results, ``summary.json`` and the cancel marker's time."""

    planned_jobs: int | None = None
    results: Sequence[JobCounts] = ()
    summary: Mapping[str, Any] | None = None
    cancel_requested_at: datetime | None = None


def _ts(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def status_of(record: BatchRecord, execution: Execution | None, run: RunFiles, now: datetime) -> str:
    if record.errors:
        return "failed"
    if execution is None:
        return "failed" if now.timestamp() - record.created_at > START_GRACE.total_seconds() else "validating"
    cancelled = run.cancel_requested_at is not None
    if execution.status == "RUNNING":
        if cancelled:
            return "cancelling"
        if run.planned_jobs is not None and len(run.results) >= run.planned_jobs:
            return "finalizing"
        return "in_progress"
    if execution.status == "SUCCEEDED":
        return "cancelled" if cancelled else "completed"
    if execution.status == "TIMED_OUT":
        return "expired"
    if execution.status == "ABORTED" and cancelled:
        return "cancelled"
    return "failed"  # FAILED, ABORTED without a cancel, PENDING_REDRIVE (a failed run waiting for a redrive)


def counts(record: BatchRecord, run: RunFiles) -> tuple[dict[str, int], dict[str, Any]]:
    """``request_counts`` and ``usage``: the summary's once written, else the sum of the jobs' results."""
    if run.summary is not None:
        completed, failed = int(run.summary.get("succeeded", 0)), int(run.summary.get("failed", 0))
        input_tokens = int(run.summary.get("input_tokens", 0))
        output_tokens = int(run.summary.get("output_tokens", 0))
    else:
        completed = sum(r.succeeded for r in run.results)
        failed = sum(r.failed for r in run.results)
        input_tokens = sum(r.input_tokens for r in run.results)
        output_tokens = sum(r.output_tokens for r in run.results)
    request_counts = {"total": record.total, "completed": completed, "failed": failed}
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
    return request_counts, usage


def _failed_at(record: BatchRecord, stopped: datetime | None) -> int:
    """When validation failed, the execution stopped, or (never started) the grace for starting it ended."""
    return record.failed_at or _ts(stopped) or record.created_at + int(START_GRACE.total_seconds())


def output_file_ids(batch_id: str) -> tuple[str, str]:
    """The ids the Files API serves a batch's output and error files by."""
    return f"file-{batch_id}-output", f"file-{batch_id}-errors"


def batch_object(
    record: BatchRecord,
    execution: Execution | None,
    run: RunFiles,
    now: datetime,
    *,
    files_written: bool = False,
) -> dict[str, Any]:
    """The Batch object (``openai.types.Batch``); ``files_written``: the output and error files exist."""
    status = status_of(record, execution, run, now)
    errors = list(record.errors)
    if status == "failed" and not errors:
        errors.append(
            execution.failure()
            if execution is not None
            else LineError(NOT_STARTED, "The gateway stopped before the batch's run started: create the batch again.")
        )
    request_counts, usage = counts(record, run)
    started = execution.started_at if execution is not None else None
    stopped = execution.stopped_at if execution is not None else None
    finalizing_at: datetime | None = None
    if status in ("finalizing", *ENDED) and run.planned_jobs is not None:
        written = [r.written_at for r in run.results if r.written_at is not None]
        finalizing_at = max(written) if written and len(run.results) >= run.planned_jobs else stopped
    elif status in ENDED:
        finalizing_at = stopped
    output_id, error_id = output_file_ids(record.id) if files_written and status in ENDED else (None, None)
    return {
        "id": record.id,
        "object": "batch",
        "endpoint": record.endpoint,
        "errors": {"object": "list", "data": [e.openai() for e in errors]} if errors else None,
        "input_file_id": record.input_file_id,
        "completion_window": record.completion_window,
        "status": status,
        "output_file_id": output_id,
        "error_file_id": error_id,
        "created_at": record.created_at,
        "in_progress_at": _ts(started),
        "expires_at": record.created_at + int(COMPLETION_WINDOW.total_seconds()),
        "finalizing_at": _ts(finalizing_at),
        "completed_at": _ts(stopped) if status == "completed" else None,
        "failed_at": _failed_at(record, stopped) if status == "failed" else None,
        "expired_at": _ts(stopped) if status == "expired" else None,
        "cancelling_at": _ts(run.cancel_requested_at),
        "cancelled_at": _ts(stopped) if status == "cancelled" else None,
        "request_counts": request_counts,
        "metadata": dict(record.metadata) if record.metadata is not None else None,
        "usage": usage,
        "model": ",".join(sorted(record.models)) or None,
    }
