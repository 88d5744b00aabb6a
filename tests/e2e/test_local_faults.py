"""Injected faults, end to end: the synthesized state machine (moto), in-process Lambdas and the Bedrock emulator
survive them, and every input row comes out once with a response or an error code."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.config import Config

from lambdas.shared import aws
from local.emulator.faults import FAULTS, parse_faults
from local.emulator.jobs import fault_code, fault_hits
from local.runner import LocalRuntime, RuntimeOptions, cap_retry_intervals, synth_template
from tests.e2e.local_runs import CLAUDE, read_results, read_summary, run_batch

ACCEPTANCE_FAULTS = (
    "record_error_rate=0.05,job_partial=1,job_failed=1,job_expired=1,submit_throttle=3,submit_quota=3,"
    "corrupt_output_lines=5"
)
ROWS, PER_JOB = 2000, 200
PLANNED_JOBS = ROWS // PER_JOB


def write_topics(path: Path, rows: int) -> Path:
    pq.write_table(
        pa.table({"id": pa.array(range(rows), pa.int32()), "topic": [f"topic {i}" for i in range(rows)]}), path
    )
    return path


def read_rows(out: Path) -> list[dict[str, Any]]:
    return read_results(out).to_pylist()


def assert_every_row_once_with_a_response_or_an_error(rows: list[dict[str, Any]], count: int) -> None:
    assert sorted(row["id"] for row in rows) == list(range(count))
    neither_or_both = [row["id"] for row in rows if (row["response"] is None) == (row["error_code"] is None)]
    assert neither_or_both == []


def function_name(runtime: LocalRuntime, module: str) -> str:
    return next(f.name for f in runtime.functions if f.handler == f"lambdas.{module}.handler.lambda_handler")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The batch stack, synthesized once for the LocalRuntime tests of this module (default runtime options)."""
    return synth_template(RuntimeOptions())


@pytest.mark.slow
def test_acceptance_run_survives_every_fault_and_accounts_for_every_row(
    tmp_path: Path, template: dict[str, Any]
) -> None:
    # GIVEN 2,000 rows split into 200-record jobs, and an emulator that fails records, jobs, calls and output lines
    path = write_topics(tmp_path / "topics.parquet", ROWS)
    out = tmp_path / "out"
    options = RuntimeOptions(step_seconds=0.05, faults=parse_faults(ACCEPTANCE_FAULTS))
    # WHEN the synthesized state machine runs it locally (resubmission on, the default)
    with LocalRuntime(options, template=template) as runtime:
        execution_input = {
            "model_id": CLAUDE,
            "prompt_id": "joke_about_topic",
            "s3_uri": runtime.upload_input(path),
            "max_records_per_job": PER_JOB,
            "job_name_prefix": "faults",
        }
        execution_arn = runtime.start(execution_input)
        outcome = runtime.wait(execution_arn)
        assert outcome.status == "SUCCEEDED", outcome.error_message
        runtime.download_outputs(runtime.run_id(execution_arn), out)
        emulator = runtime.emulator
        jobs_by_arn = {job["jobArn"]: job for job in emulator.jobs()}
        created, calls, injected = emulator.jobs_created_per_model(), emulator.calls(), emulator.faults_injected()
        submit_invocations = runtime.lambdas.invocations[function_name(runtime, "submit_job")]
        deployed = json.loads(runtime.definition)

    # THEN every input row is there exactly once, with either a response or an error code
    rows = read_rows(out)
    assert_every_row_once_with_a_response_or_an_error(rows, ROWS)
    # AND the planned jobs ended as the faults said: one partial, one failed, one expired, the others completed
    summary = read_summary(out)
    assert summary["complete"] is True and summary["jobs_planned"] == PLANNED_JOBS
    assert summary["jobs_by_status"] == {"Completed": 7, "PartiallyCompleted": 1, "Failed": 1, "Expired": 1}
    # AND each planned job first gave its rows the error codes its fate explains (its summary entry: as it ran); a
    # garbled output line still names its record, which the model answered: UNPARSABLE_OUTPUT, never resubmitted
    for job in summary["jobs"]:
        emulated = jobs_by_arn[job["job_arn"]]
        codes, corrupt = Counter(job["error_counts"]), emulated["corruptOutputLines"]
        assert len(emulated["corruptRecordIds"]) == corrupt
        if job["status"] == "Failed":
            assert codes == {"JOB_FAILED": PER_JOB} and emulated["fault"] == "job_failed"
        elif job["status"] == "Expired":
            assert codes == {"JOB_EXPIRED": PER_JOB} and emulated["fault"] == "job_expired"
        elif job["status"] == "PartiallyCompleted":
            # half the records were never processed
            assert emulated["fault"] == "job_partial"
            assert set(codes) <= {"400", "NOT_PROCESSED", "UNPARSABLE_OUTPUT"}
            assert codes["NOT_PROCESSED"] == PER_JOB // 2 and codes["UNPARSABLE_OUTPUT"] == corrupt
        else:
            assert emulated["fault"] is None
            assert set(codes) <= {"400", "UNPARSABLE_OUTPUT"} and codes["UNPARSABLE_OUTPUT"] == corrupt
    # the rows whose output lines the emulator garbled (record ids are row numbers)
    garbled = {int(record_id) for job in jobs_by_arn.values() for record_id in job["corruptRecordIds"]}
    assert len(garbled) == sum(job["corruptOutputLines"] for job in jobs_by_arn.values())
    assert len(garbled) == injected["corrupt_output_lines"] == 5
    # AND only the rows without an answer (2 whole jobs, half a job) were resubmitted once, in 3 balanced jobs of at
    # most 200, while the 400 errors (malformed input: a retry fails again) and the garbled lines were not
    resubmission = summary["resubmission"]
    retried = 2 * PER_JOB + PER_JOB // 2
    assert (resubmission["rows_retryable"], resubmission["rows_resubmitted"], resubmission["rows_reported"]) == (
        retried,
        retried,
        0,
    )
    assert resubmission["jobs_planned"] == 3 and resubmission["jobs_by_status"] == {"Completed": 3}
    sizes = sorted(job["record_count"] for job in resubmission["jobs"])
    assert sum(sizes) == retried and sizes[-1] - sizes[0] <= 1 and sizes[-1] <= PER_JOB
    # AND the output now holds only the errors a retry cannot fix: the records the emulator always fails, and the
    # garbled lines as UNPARSABLE_OUTPUT, each message naming its record and the output object to look at
    always_failing = {i for i in range(ROWS) if fault_hits(f"{i:011d}", 0.05)}
    errors = {row["id"]: row for row in rows if row["error_code"] is not None}
    assert set(errors) == always_failing | garbled
    assert {i for i, row in errors.items() if row["error_code"] == "UNPARSABLE_OUTPUT"} == garbled
    assert {i for i, row in errors.items() if row["error_code"] == "400"} == always_failing - garbled
    for i in garbled:
        message = errors[i]["error_message"]
        assert f"record {i:011d} could not be parsed" in message and ".jsonl.out" in message
    # AND every resubmitted row has its response now, or says its error came after resubmission
    failed_again = {row["id"] for row in rows if row["error_message"] and row["error_message"].startswith("after")}
    assert resubmission["rows_still_failed"] == len(failed_again) and failed_again <= always_failing - garbled
    assert resubmission["rows_recovered"] == retried - len(failed_again)
    assert summary["failed"] == len(always_failing | garbled)
    assert summary["error_counts"] == {"400": len(always_failing - garbled), "UNPARSABLE_OUTPUT": len(garbled)}
    # AND the record faults struck every always-failing record, once per time it was sent
    assert injected["record_error_rate"] >= len(always_failing)
    # AND the emulator created exactly the planned jobs plus the resubmission jobs, whatever the throttling and quota
    assert created == {CLAUDE: PLANNED_JOBS + resubmission["jobs_planned"]}
    assert injected["submit_throttle"] == 3 and injected["submit_quota"] == 3
    assert calls["CreateModelInvocationJob"] == PLANNED_JOBS + 3 + 3 + 3
    # AND the quota errors were retried by the state machine (a new Submit invocation each), while botocore's own
    # retries (8 per call) absorbed the 3 throttles inside the invocations that met them
    assert submit_invocations == PLANNED_JOBS + 3 + 3
    # AND those retries ran on the synthesized Retry structure of both job Maps, with the local 1-second cap
    for job_map, submit in (("Run jobs", "Submit job"), ("Rerun failed records", "Submit retry job")):
        submit_retry = deployed["States"][job_map]["ItemProcessor"]["States"][submit]["Retry"]
        assert [retrier["ErrorEquals"][0] for retrier in submit_retry][1:] == [
            "ThrottlingException",
            "ServiceQuotaExceededException",
        ]
        assert {(retrier["IntervalSeconds"], retrier["MaxDelaySeconds"]) for retrier in submit_retry} == {(1, 1)}


RECORD_ERROR_CODES = (400, 408, 429, 500, 503)


@pytest.mark.slow
def test_retryable_record_errors_are_resubmitted_once_and_recover_while_400s_stay(tmp_path: Path) -> None:
    # GIVEN 1,000 rows in two jobs, and an emulator failing 30% of the records with 400, 408, 429, 500 or 503 (the
    # retryable ones strike a record once, as a transient failure does)
    path = write_topics(tmp_path / "topics.parquet", 1000)
    out = tmp_path / "out"
    codes = ":".join(map(str, RECORD_ERROR_CODES))
    expected = {i: fault_code(f"{i:011d}", 0.3, "", RECORD_ERROR_CODES) for i in range(1000)}
    malformed = {i for i, code in expected.items() if code == 400}
    transient = {i for i, code in expected.items() if code is not None and code != 400}
    assert len(transient) >= 100 and malformed  # enough for a resubmission job (at least 100 records)
    assert {code for code in expected.values() if code is not None} == set(RECORD_ERROR_CODES)
    # WHEN the synthesized state machine runs it locally, resubmission on (the default)
    with LocalRuntime(
        RuntimeOptions(step_seconds=0.05, faults=parse_faults(f"record_error_rate=0.3,record_error_codes={codes}"))
    ) as runtime:
        execution_input = {
            "model_id": CLAUDE,
            "prompt_id": "joke_about_topic",
            "s3_uri": runtime.upload_input(path),
            "max_records_per_job": 500,
        }
        execution_arn = runtime.start(execution_input)
        outcome = runtime.wait(execution_arn)
        assert outcome.status == "SUCCEEDED", outcome.error_message
        runtime.download_outputs(runtime.run_id(execution_arn), out)
        created, injected = runtime.emulator.jobs_created_per_model(), runtime.emulator.faults_injected()
    # THEN every row is there exactly once, with a response or an error
    rows = read_rows(out)
    assert_every_row_once_with_a_response_or_an_error(rows, 1000)
    # AND only the 400s are left as errors: the transient errors were resubmitted and answered the second time
    assert {row["id"]: row["error_code"] for row in rows if row["error_code"] is not None} == dict.fromkeys(
        malformed, "400"
    )
    summary = read_summary(out)
    resubmission = summary["resubmission"]
    assert (resubmission["rows_retryable"], resubmission["rows_resubmitted"], resubmission["rows_reported"]) == (
        len(transient),
        len(transient),
        0,
    )
    assert resubmission["rows_not_retryable"] == len(malformed)
    assert resubmission["rows_recovered"] == len(transient) and resubmission["rows_still_failed"] == 0
    assert summary["failed"] == len(malformed) and summary["error_counts"] == {"400": len(malformed)}
    # AND the 400s were never resubmitted: each faulty record was struck exactly once
    assert injected["record_error_rate"] == len(malformed) + len(transient)
    assert created == {CLAUDE: 2 + resubmission["jobs_planned"]} and resubmission["jobs_planned"] >= 1


def read_rows_of_job(out: Path, index: int) -> list[dict[str, Any]]:
    return pq.read_table(out / f"{index:04d}.parquet").to_pylist()


@pytest.mark.slow
def test_throttling_that_outlasts_the_sdk_retries_is_retried_by_the_state_machine(
    tmp_path: Path, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Lambdas whose boto3 clients do not retry (so every throttle reaches the state machine), one job,
    # and 3 throttled CreateModelInvocationJob and 2 throttled GetModelInvocationJob calls to come
    monkeypatch.setattr(aws, "_RETRIES", Config(retries={"total_max_attempts": 1}))
    path = write_topics(tmp_path / "topics.parquet", 100)
    options = RuntimeOptions(step_seconds=0.05, faults={"submit_throttle": 3, "poll_throttle": 2})
    # WHEN the run goes through the state machine
    with LocalRuntime(options, template=template) as runtime:
        execution_input = {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": runtime.upload_input(path)}
        execution_arn = runtime.start(execution_input)
        outcome = runtime.wait(execution_arn)
        assert outcome.status == "SUCCEEDED", outcome.error_message
        runtime.download_outputs(runtime.run_id(execution_arn), tmp_path / "out")
        calls, injected = runtime.emulator.calls(), runtime.emulator.faults_injected()
        invocations = runtime.lambdas.invocations
        submits, polls = (invocations[function_name(runtime, name)] for name in ("submit_job", "poll_job"))
    # THEN every throttled call failed its Lambda invocation and the state machine's Retry invoked it again
    assert injected == {"submit_throttle": 3, "poll_throttle": 2}
    assert (calls["CreateModelInvocationJob"], submits) == (4, 4)
    assert calls["GetModelInvocationJob"] == polls >= 3
    # AND the job's rows are all answered (no Catch turned a throttle into row errors)
    rows = read_rows(tmp_path / "out")
    assert_every_row_once_with_a_response_or_an_error(rows, 100)
    assert {row["error_code"] for row in rows} == {None}


@pytest.mark.slow
def test_cli_faults_flag_reaches_the_emulator_and_no_resubmit_reports_failed_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN 300 rows in two jobs and a fault spec with a failed job, throttled polls and a corrupt line
    path = write_topics(tmp_path / "topics.parquet", 300)
    out = tmp_path / "out"
    # WHEN run from the CLI with --faults, and resubmission off (execution input resubmit_failed: false)
    faults = "job_failed=1,poll_throttle=2,corrupt_output_lines=1"
    code = run_batch(path, out, "--max-records-per-job", "150", "--faults", faults, "--no-resubmit")
    # THEN the run succeeds, one job failed with all its rows marked, one line of the other is garbled
    assert code == 0, capsys.readouterr().err
    rows = read_rows(out)
    assert_every_row_once_with_a_response_or_an_error(rows, 300)
    codes = Counter(row["error_code"] for row in rows)
    assert codes == {None: 149, "JOB_FAILED": 150, "UNPARSABLE_OUTPUT": 1}
    summary = read_summary(out)
    assert summary["jobs_by_status"] == {"Failed": 1, "Completed": 1}
    # AND the 150 rows a resubmission could have recovered are reported, not resubmitted (the garbled line's record
    # was answered: not retryable)
    resubmission = summary["resubmission"]
    assert resubmission["enabled"] is False and resubmission["jobs_planned"] == 0
    assert (resubmission["rows_retryable"], resubmission["rows_reported"], resubmission["rows_resubmitted"]) == (
        150,
        150,
        0,
    )
    assert resubmission["message"].startswith("resubmission is off")


def test_local_runs_cap_retry_intervals_and_keep_the_rest_of_each_retrier() -> None:
    # GIVEN a definition whose nested Map state retries after 5 s and 60 s (up to 900 s)
    retry = [
        {"ErrorEquals": ["ThrottlingException"], "IntervalSeconds": 5, "MaxAttempts": 8, "BackoffRate": 2},
        {
            "ErrorEquals": ["ServiceQuotaExceededException"],
            "IntervalSeconds": 60,
            "MaxAttempts": 294,
            "BackoffRate": 2,
            "MaxDelaySeconds": 900,
            "JitterStrategy": "FULL",
        },
    ]
    definition: dict[str, Any] = {
        "StartAt": "Map",
        "States": {"Map": {"Type": "Map", "ItemProcessor": {"States": {"Submit": {}}}}},
    }
    definition["States"]["Map"]["ItemProcessor"]["States"]["Submit"] = {"Type": "Task", "Retry": retry, "End": True}
    # WHEN capped for a local run
    capped = json.loads(cap_retry_intervals(json.dumps(definition), 1))
    # THEN only the waits change: at most 1 s each; error names, attempts, backoff and jitter stay
    assert capped["States"]["Map"]["ItemProcessor"]["States"]["Submit"]["Retry"] == [
        retry[0] | {"IntervalSeconds": 1, "MaxDelaySeconds": 1},
        retry[1] | {"IntervalSeconds": 1, "MaxDelaySeconds": 1},
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("job_exploded=1", "known faults: " + ", ".join(FAULTS)),
        ("record_error_rate=5%", "expected a fraction from 0 to 1"),
        ("job_failed=one", "expected a whole number of jobs >= 0"),
    ],
)
def test_cli_rejects_a_bad_fault_spec_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, expected: str
) -> None:
    # GIVEN a valid input and a fault spec with one mistake
    path = write_topics(tmp_path / "topics.parquet", 150)
    # WHEN run from the CLI
    code = run_batch(path, tmp_path / "out", "--faults", spec, step_seconds=None)
    # THEN it exits 2 with one line saying what is expected, and nothing ran
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: --faults: ") and expected in err[0]
    assert not (tmp_path / "out").exists()


def test_the_cli_help_names_every_fault() -> None:
    # GIVEN the static --faults help of the CLI WHEN compared with the emulator's faults THEN none is missing
    from cli.batch import FAULTS_HELP

    assert [name for name in FAULTS if name not in FAULTS_HELP] == []
