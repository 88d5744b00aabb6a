"""A job stopped from outside, end to end: the synthesized state machine (moto), in-process Lambdas and the Bedrock
emulator with ``job_stopped=1``. The records the stopped job processed are results, billed once and never sent
again; only the others are resubmitted, and every row comes out once."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lambdas.shared import layout
from local.emulator.faults import parse_faults
from local.emulator.jobs import fault_code
from local.runner import LocalRuntime, RuntimeOptions, synth_template
from tests.e2e.local_runs import CLAUDE, read_results, read_summary
from tests.e2e.test_local_faults import assert_every_row_once_with_a_response_or_an_error, write_topics

ROWS, PER_JOB = 600, 200
PLANNED_JOBS = ROWS // PER_JOB
PROCESSED_BEFORE_STOP = PER_JOB // 2  # the emulator stops a job_stopped job half way through


def record_ids(s3: Any, bucket: str, prefix: str, suffix: str) -> Counter[str]:
    """How often each recordId appears in the JSONL objects under ``prefix`` whose key ends with ``suffix``."""
    found: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(suffix):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found.update(json.loads(line)["recordId"] for line in body.splitlines() if line.strip())
    return found


@pytest.mark.slow
def test_a_stopped_job_keeps_what_it_processed_and_only_the_rest_is_resubmitted(tmp_path: Path) -> None:
    # GIVEN 600 rows in three 200-record jobs, and an emulator that stops one job half way, as a user would
    path = write_topics(tmp_path / "topics.parquet", ROWS)
    out = tmp_path / "out"
    options = RuntimeOptions(step_seconds=0.05, faults={"job_stopped": 1})
    # WHEN the synthesized state machine runs it locally (resubmission on, the default)
    with LocalRuntime(options, template=synth_template(RuntimeOptions())) as runtime:
        execution_input = {
            "model_id": CLAUDE,
            "prompt_id": "joke_about_topic",
            "s3_uri": runtime.upload_input(path),
            "max_records_per_job": PER_JOB,
            "job_name_prefix": "stopped",
        }
        execution_arn = runtime.start(execution_input)
        outcome = runtime.wait(execution_arn)
        assert outcome.status == "SUCCEEDED", outcome.error_message
        run_id = runtime.run_id(execution_arn)
        runtime.download_outputs(run_id, out)
        jobs = runtime.emulator.jobs()
        s3, bucket = runtime.emulator.state.s3, runtime.bucket
        (stopped,) = [job for job in jobs if job["fault"] == "job_stopped"]
        stopped_output = stopped["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].split(f"{bucket}/", 1)[1]
        processed = record_ids(s3, bucket, stopped_output, ".jsonl.out")
        stopped_input = stopped["inputDataConfig"]["s3InputDataConfig"]["s3Uri"].split(f"{bucket}/", 1)[1]
        unprocessed = Counter(record_ids(s3, bucket, stopped_input, ".jsonl")) - processed
        submitted = record_ids(s3, bucket, f"{layout.run_prefix(run_id)}/jobs/", ".jsonl")
        resubmitted = record_ids(s3, bucket, f"{layout.run_prefix(run_id)}/retry/jobs/", ".jsonl")
        calls = runtime.emulator.calls()

    # THEN every input row is there exactly once, and every one has its response in the end
    rows = read_results(out).to_pylist()
    assert_every_row_once_with_a_response_or_an_error(rows, ROWS)
    assert {row["error_code"] for row in rows} == {None}
    # AND the stopped job ended Stopped (followed through Stopping: no Stop of ours, Bedrock's status read until then)
    # with half of its records processed, each once in its output
    assert stopped["status"] == "Stopped" and stopped["processedRecordCount"] == PROCESSED_BEFORE_STOP
    assert len(processed) == PROCESSED_BEFORE_STOP and set(processed.values()) == {1}
    assert "StopModelInvocationJob" not in calls
    # AND the records it processed were sent to Bedrock once; only the unprocessed ones a second time, once
    every_submission = submitted + resubmitted
    assert len(submitted) == ROWS and set(submitted.values()) == {1}
    assert {record for record, times in every_submission.items() if times > 1} == set(unprocessed)
    assert set(resubmitted) == set(unprocessed) and not set(resubmitted) & set(processed)
    assert len(unprocessed) == PER_JOB - PROCESSED_BEFORE_STOP and set(resubmitted.values()) == {1}
    # AND Bedrock processed (and billed) every record exactly once over all jobs
    assert sum(job["processedRecordCount"] for job in jobs) == ROWS
    # AND the summary: the stopped job's processed rows are results, the rest JOB_STOPPED, resubmitted and recovered
    summary = read_summary(out)
    assert summary["complete"] is True and (summary["succeeded"], summary["failed"]) == (ROWS, 0)
    assert summary["jobs_by_status"] == {"Completed": PLANNED_JOBS - 1, "Stopped": 1}
    (stopped_result,) = [job for job in summary["jobs"] if job["status"] == "Stopped"]
    assert stopped_result["job_arn"] == stopped["jobArn"]
    assert (stopped_result["succeeded"], stopped_result["error_counts"]) == (
        PROCESSED_BEFORE_STOP,
        {"JOB_STOPPED": PER_JOB - PROCESSED_BEFORE_STOP},
    )
    assert stopped_result["input_tokens"] > 0  # the processed half is billed, from the stopped job's manifest
    resubmission = summary["resubmission"]
    assert (resubmission["rows_retryable"], resubmission["rows_resubmitted"], resubmission["rows_recovered"]) == (
        PER_JOB - PROCESSED_BEFORE_STOP,
        PER_JOB - PROCESSED_BEFORE_STOP,
        PER_JOB - PROCESSED_BEFORE_STOP,
    )
    assert resubmission["jobs_planned"] == 1 and resubmission["jobs_by_status"] == {"Completed": 1}


def output_lines(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every line of every job's ``*.jsonl.out`` under ``prefix`` (planned and resubmission jobs alike)."""
    lines: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".jsonl.out"):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                lines += [json.loads(line) for line in body.splitlines() if line.strip()]
    return lines


@pytest.mark.slow
def test_the_fault_run_with_retryable_record_errors_and_a_stopped_job_bills_no_record_twice(tmp_path: Path) -> None:
    # GIVEN 1,000 rows in five 200-record jobs, an emulator that stops one job half way and fails 20% of the records
    # it processes with 400 (every time) or 429, 500, 503 (once: a transient failure)
    rows, per_job, rate, codes = 1000, 200, 0.2, (400, 429, 500, 503)
    path = write_topics(tmp_path / "topics.parquet", rows)
    out = tmp_path / "out"
    faults = parse_faults(f"job_stopped=1,record_error_rate={rate},record_error_codes={':'.join(map(str, codes))}")
    expected = {i: fault_code(f"{i:011d}", rate, "", codes) for i in range(rows)}
    malformed = {i for i, code in expected.items() if code == 400}
    transient = {i for i, code in expected.items() if code is not None and code != 400}
    # WHEN the synthesized state machine runs it locally (resubmission on, the default)
    with LocalRuntime(
        RuntimeOptions(step_seconds=0.05, faults=faults), template=synth_template(RuntimeOptions())
    ) as rt:
        execution_input = {
            "model_id": CLAUDE,
            "prompt_id": "joke_about_topic",
            "s3_uri": rt.upload_input(path),
            "max_records_per_job": per_job,
        }
        execution_arn = rt.start(execution_input)
        outcome = rt.wait(execution_arn)
        assert outcome.status == "SUCCEEDED", outcome.error_message
        run_id = rt.run_id(execution_arn)
        rt.download_outputs(run_id, out)
        s3, bucket = rt.emulator.state.s3, rt.bucket
        (stopped,) = [job for job in rt.emulator.jobs() if job["fault"] == "job_stopped"]
        stopped_input = stopped["inputDataConfig"]["s3InputDataConfig"]["s3Uri"].split(f"{bucket}/", 1)[1]
        stopped_records = record_ids(s3, bucket, stopped_input, ".jsonl")
        stopped_output = stopped["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].split(f"{bucket}/", 1)[1]
        stopped_processed = record_ids(s3, bucket, stopped_output, ".jsonl.out")
        lines = output_lines(s3, bucket, layout.bedrock_output_prefix(run_id))
        submitted = record_ids(s3, bucket, f"{layout.run_prefix(run_id)}/jobs/", ".jsonl")
        resubmitted = record_ids(s3, bucket, f"{layout.run_prefix(run_id)}/retry/jobs/", ".jsonl")

    # THEN every input row is there exactly once, with a response or an error
    result = read_results(out).to_pylist()
    assert_every_row_once_with_a_response_or_an_error(result, rows)
    # AND the stopped job ended Stopped with half of its records processed; the other jobs completed
    summary = read_summary(out)
    assert summary["jobs_by_status"] == {"Completed": rows // per_job - 1, "Stopped": 1}
    assert len(stopped_processed) == per_job // 2
    unprocessed = {int(record) for record in set(stopped_records) - set(stopped_processed)}
    # AND no record was billed twice: each record has at most one answer (modelOutput) over every job, and each
    # answered row's answer is that one
    answers = Counter(line["recordId"] for line in lines if "modelOutput" in line)
    assert answers and set(answers.values()) == {1}
    assert {int(record) for record in answers} == {row["id"] for row in result if row["error_code"] is None}
    # AND only records without an answer were sent again, once: the stopped job's unprocessed half and the records a
    # transient error struck; never a record a 400 struck (a retry fails the same way)
    first_round_transient = transient - unprocessed
    assert {int(record) for record in resubmitted} == unprocessed | first_round_transient
    assert set(resubmitted.values()) == {1} and set(submitted.values()) == {1} and len(submitted) == rows
    assert not {int(record) for record in resubmitted} & (malformed - unprocessed)
    # AND what is left as errors: the 400s, and the transient errors that struck a record first in its resubmission
    # (one resubmission round per run), each saying so
    errors = {row["id"]: row for row in result if row["error_code"] is not None}
    assert set(errors) == malformed | (transient & unprocessed)
    assert all(errors[i]["error_message"].startswith("after resubmission") for i in transient & unprocessed)
    resubmission = summary["resubmission"]
    assert resubmission["rows_resubmitted"] == len(unprocessed | first_round_transient)
    assert resubmission["rows_recovered"] == len(unprocessed - transient - malformed) + len(first_round_transient)
    assert resubmission["rows_not_retryable"] == len(malformed - unprocessed)
