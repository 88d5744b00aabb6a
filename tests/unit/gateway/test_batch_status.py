"""The Batch object from a batch's record, its execution and its run's files (lambdas/gateway/batch_status.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import openai.types
import pytest

from lambdas.gateway.batch_status import (
    EXECUTION_FAILED,
    NOT_STARTED,
    START_GRACE,
    BatchRecord,
    Execution,
    JobCounts,
    LineError,
    RunFiles,
    batch_object,
)

CREATED = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
STARTED = CREATED + timedelta(seconds=5)
STOPPED = CREATED + timedelta(hours=2)
NOW = CREATED + timedelta(hours=3)
RECORD = BatchRecord(
    id="batch_0001",
    owner="team-a",
    input_file_id="file-abc",
    endpoint="/v1/chat/completions",
    completion_window="24h",
    created_at=int(CREATED.timestamp()),
    total=150,
    metadata={"project": "demo"},
    models={"claude-haiku": {"model_id": "m", "invocation_type": "Converse"}},
)
RUNNING = Execution("RUNNING", STARTED)
TWO_JOBS = (JobCounts(90, 10, 1000, 500, STARTED + timedelta(hours=1)), JobCounts(45, 5, 400, 200, STOPPED))
SUMMARY = {"succeeded": 140, "failed": 10, "input_tokens": 1500, "output_tokens": 800}


NOTHING = RunFiles()


def _batch(execution: Execution | None, run: RunFiles = NOTHING, files_written: bool = False) -> openai.types.Batch:
    """The Batch object as the openai SDK reads it (its own model validates the shape)."""
    return openai.types.Batch.model_validate(batch_object(RECORD, execution, run, NOW, files_written=files_written))


def test_a_batch_without_an_execution_is_validating() -> None:
    # GIVEN a record written moments ago and no execution yet
    batch = openai.types.Batch.model_validate(batch_object(RECORD, None, RunFiles(), CREATED + timedelta(seconds=2)))
    # THEN it is validating, with its creation fields and no counts yet
    assert batch.status == "validating"
    assert (batch.input_file_id, batch.endpoint, batch.completion_window) == ("file-abc", "/v1/chat/completions", "24h")
    assert batch.expires_at == RECORD.created_at + 24 * 3600
    assert batch.request_counts is not None and batch.request_counts.total == 150
    assert batch.request_counts.completed == batch.request_counts.failed == 0


def test_a_batch_never_started_within_the_grace_is_failed_saying_so() -> None:
    # GIVEN a record older than the longest create request, and still no execution
    later = CREATED + START_GRACE + timedelta(seconds=1)
    batch = openai.types.Batch.model_validate(batch_object(RECORD, None, RunFiles(), later))
    # THEN it failed, with the reason and a stable failure time
    assert batch.status == "failed"
    assert batch.errors is not None and batch.errors.data is not None
    assert [e.code for e in batch.errors.data] == [NOT_STARTED]
    assert batch.failed_at == RECORD.created_at + int(START_GRACE.total_seconds())


def test_validation_errors_make_the_batch_failed_with_each_line() -> None:
    # GIVEN a record holding two line errors (no execution was started)
    errors = (LineError("duplicate_custom_id", "Line 3: ...", 3, "custom_id"), LineError("invalid_json", "x", 7))
    record = BatchRecord(**{**RECORD.__dict__, "errors": errors, "failed_at": RECORD.created_at})
    # WHEN the object is built
    batch = openai.types.Batch.model_validate(batch_object(record, None, RunFiles(), NOW))
    # THEN it failed at creation, listing the lines
    assert batch.status == "failed" and batch.failed_at == RECORD.created_at
    assert batch.errors is not None and batch.errors.data is not None
    assert [(e.code, e.line, e.param) for e in batch.errors.data] == [
        ("duplicate_custom_id", 3, "custom_id"),
        ("invalid_json", 7, None),
    ]


def test_a_running_batch_counts_the_finished_jobs_results() -> None:
    # GIVEN a running execution, two planned jobs and one result file
    batch = _batch(RUNNING, RunFiles(planned_jobs=2, results=TWO_JOBS[:1]))
    # THEN it is in progress since the execution started, counting what the finished job processed
    assert batch.status == "in_progress" and batch.in_progress_at == int(STARTED.timestamp())
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (90, 10)
    assert batch.usage is not None and (batch.usage.input_tokens, batch.usage.output_tokens) == (1000, 500)
    assert batch.usage.total_tokens == 1500
    assert batch.output_file_id is None and batch.finalizing_at is None


def test_every_job_with_its_result_while_running_is_finalizing() -> None:
    # GIVEN a running execution whose every planned job wrote its result
    batch = _batch(RUNNING, RunFiles(planned_jobs=2, results=TWO_JOBS))
    # THEN it is finalizing since the last result was written
    assert batch.status == "finalizing" and batch.finalizing_at == int(STOPPED.timestamp())


def test_a_succeeded_execution_is_completed_with_the_summary_s_counts() -> None:
    # GIVEN the execution succeeded and finalize wrote the summary; the output files are written
    execution = Execution("SUCCEEDED", STARTED, STOPPED)
    batch = _batch(execution, RunFiles(planned_jobs=2, results=TWO_JOBS, summary=SUMMARY), files_written=True)
    # THEN it completed, its counts add up to the total, and it names its output and error files
    assert batch.status == "completed" and batch.completed_at == int(STOPPED.timestamp())
    assert batch.request_counts is not None
    counts = batch.request_counts
    assert (counts.completed, counts.failed, counts.total) == (140, 10, 150)
    assert counts.completed + counts.failed == counts.total
    assert batch.output_file_id == "file-batch_0001-output" and batch.error_file_id == "file-batch_0001-errors"


def test_output_file_ids_wait_for_the_files() -> None:
    # GIVEN a completed execution whose output files are not written yet
    batch = _batch(
        Execution("SUCCEEDED", STARTED, STOPPED), RunFiles(planned_jobs=2, results=TWO_JOBS, summary=SUMMARY)
    )
    # THEN no file id is given
    assert batch.status == "completed" and batch.output_file_id is None and batch.error_file_id is None


@pytest.mark.parametrize(("status", "expected"), [("RUNNING", "cancelling"), ("SUCCEEDED", "cancelled")])
def test_the_cancel_marker_makes_it_cancelling_then_cancelled(status: str, expected: str) -> None:
    # GIVEN the cancel marker and the execution running, or ended (the run delivered what it processed)
    requested = STARTED + timedelta(minutes=30)
    execution = Execution(status, STARTED, STOPPED if status != "RUNNING" else None)
    batch = _batch(execution, RunFiles(planned_jobs=2, results=TWO_JOBS[:1], cancel_requested_at=requested))
    # THEN the status follows, with the cancel's time
    assert batch.status == expected and batch.cancelling_at == int(requested.timestamp())
    assert batch.cancelled_at == (int(STOPPED.timestamp()) if expected == "cancelled" else None)


def test_a_failed_execution_is_failed_with_the_lambda_s_error_message() -> None:
    # GIVEN an execution failed by an input the orchestrator refused (a Lambda error payload as the cause)
    cause = '{"errorType": "ValueError", "errorMessage": "models: required with input_format prepared"}'
    batch = _batch(Execution("FAILED", STARTED, STOPPED, error="ValueError", cause=cause))
    # THEN the batch failed with that message
    assert batch.status == "failed" and batch.failed_at == int(STOPPED.timestamp())
    assert batch.errors is not None and batch.errors.data is not None
    (error,) = batch.errors.data
    assert error.code == EXECUTION_FAILED and error.message is not None
    assert "models: required with input_format prepared" in error.message


def test_a_timed_out_execution_is_expired() -> None:
    # GIVEN the execution timed out / THEN the batch expired then
    batch = _batch(Execution("TIMED_OUT", STARTED, STOPPED), RunFiles(planned_jobs=2, results=TWO_JOBS))
    assert batch.status == "expired" and batch.expired_at == int(STOPPED.timestamp())


def test_the_record_survives_its_json() -> None:
    # GIVEN a record with errors and metadata / WHEN written and read back / THEN it is the same
    record = BatchRecord(**{**RECORD.__dict__, "errors": (LineError("c", "m", 2, "p"),), "failed_at": 5})
    assert BatchRecord.from_json(record.to_json()) == record
