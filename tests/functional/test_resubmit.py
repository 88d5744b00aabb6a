"""Plan resubmission, end to end on moto S3: which rows are gathered into new jobs, and what is written."""

from __future__ import annotations

import json

from lambdas.resubmit import handler
from lambdas.shared import layout
from tests.functional.conftest import BUCKET
from tests.functional.staged_run import CLAUDE, RUN, input_line, read_parquet, stage_planned_jobs


def request(run: dict, **execution_input) -> dict:
    source = {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": f"s3://{BUCKET}/inputs/topics.csv"}
    return {"run": run, "execution_input": source | execution_input}


def get_json(s3, key: str):
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def mixed_run(s3) -> dict:
    """Job 0 (rows 0-149) failed whole; job 1 (150-299) has 40 throttled, 10 server errors, 30 malformed rows;
    job 2 (300-449) succeeded."""
    job_1 = ["429"] * 40 + [None] * 20 + ["503"] * 10 + ["400"] * 30 + [None] * 50
    return stage_planned_jobs(s3, [["JOB_FAILED"] * 150, job_1, [None] * 150])


def test_failed_and_missing_rows_are_gathered_into_balanced_new_jobs(s3, lambda_context):
    # GIVEN a run whose planned jobs left 200 retryable rows and 30 rows a retry would fail again
    run = mixed_run(s3)
    # WHEN resubmission is planned with at most 150 records per job
    plan = handler.lambda_handler(request(run, max_records_per_job=150), lambda_context)
    # THEN the 200 rows go into 2 jobs of 100, and the 400 rows are not resubmitted
    assert plan["enabled"] is True and plan["job_count"] == 2
    assert (plan["rows_failed"], plan["rows_retryable"], plan["rows_not_retryable"]) == (230, 200, 30)
    assert (plan["rows_resubmitted"], plan["rows_reported"]) == (200, 0)
    assert "not resubmitted" in plan["message"]
    # AND the manifest lists them as small items naming their own files under runs/<run>/retry/
    manifest = get_json(s3, plan["manifest_key"])
    assert plan["manifest_key"] == layout.manifest_key(RUN, resubmission=True)
    assert [job["record_count"] for job in manifest] == [100, 100]
    assert all(len(json.dumps(job)) < 1024 for job in manifest)
    assert manifest[0] == {
        "index": 0,
        "input_key": f"runs/{RUN}/retry/jobs/0000.jsonl",
        "first_row": 0,
        "record_count": 100,
        "size_bytes": manifest[0]["size_bytes"],
        "resubmission": True,
        "rows_key": f"runs/{RUN}/retry/rows/0000.parquet",
    }
    # AND each job file holds exactly its rows' original lines, byte for byte, in row order
    expected_rows = list(range(150)) + list(range(150, 190)) + list(range(210, 220))
    written_rows = []
    for job in manifest:
        rows = read_parquet(s3, job["rows_key"]).column("row").to_pylist()
        body = s3.get_object(Bucket=BUCKET, Key=job["input_key"])["Body"].read()
        assert body == b"".join(input_line(row) + b"\n" for row in rows)
        assert job["size_bytes"] == len(body) and job["first_row"] == rows[0]
        written_rows += rows
    assert written_rows == expected_rows
    # AND the plan is stored for Finalize
    assert get_json(s3, layout.retry_plan_key(RUN)) == plan


def test_planning_twice_writes_the_same_jobs(s3, lambda_context):
    # GIVEN a planned resubmission
    run = mixed_run(s3)
    first = handler.lambda_handler(request(run, max_records_per_job=150), lambda_context)
    files = {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in retry_keys(s3)}
    # WHEN the Lambda is invoked again (a retried state)
    second = handler.lambda_handler(request(run, max_records_per_job=150), lambda_context)
    # THEN the plan and every file are the same, so the jobs' idempotency tokens still describe the same work
    assert second == first
    assert {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in retry_keys(s3)} == files


def retry_keys(s3) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{RUN}/retry/")
    return sorted(obj["Key"] for obj in listed.get("Contents", []) if not obj["Key"].endswith("plan.json"))


def test_resubmission_off_reports_the_rows_and_plans_no_job(s3, lambda_context):
    # GIVEN the same run, started with resubmit_failed false
    run = mixed_run(s3)
    # WHEN planning
    plan = handler.lambda_handler(request(run, resubmit_failed=False), lambda_context)
    # THEN no job is planned, the manifest is empty and the retryable rows are reported
    assert plan["job_count"] == 0 and get_json(s3, plan["manifest_key"]) == []
    assert (plan["rows_retryable"], plan["rows_resubmitted"], plan["rows_reported"]) == (200, 0, 200)
    assert plan["message"].startswith("resubmission is off")
    assert retry_keys(s3) == [plan["manifest_key"]]


def test_fewer_than_100_retryable_rows_are_reported_not_resubmitted(s3, lambda_context):
    # GIVEN 99 rows without an output line (or with one whose recordId cannot be read), and one malformed row
    run = stage_planned_jobs(s3, [["MISSING_OUTPUT"] * 99 + ["400"] + [None] * 50])
    # WHEN planning
    plan = handler.lambda_handler(request(run), lambda_context)
    # THEN a Bedrock job cannot take them (100 records at least): none is planned, the 99 are reported
    assert plan["job_count"] == 0 and get_json(s3, plan["manifest_key"]) == []
    assert (plan["rows_retryable"], plan["rows_reported"], plan["rows_not_retryable"]) == (99, 99, 1)
    assert "fewer than the 100" in plan["message"]


def test_rows_whose_output_line_was_garbled_are_not_resubmitted(s3, lambda_context):
    # GIVEN a job whose 5 garbled output lines still named their records (UNPARSABLE_OUTPUT: Bedrock processed and
    # billed them) and whose 100 other failed rows have no output line (MISSING_OUTPUT)
    codes = ["UNPARSABLE_OUTPUT"] * 5 + [None] * 45 + ["MISSING_OUTPUT"] * 100
    run = stage_planned_jobs(s3, [codes])
    # WHEN planning
    plan = handler.lambda_handler(request(run), lambda_context)
    # THEN only the rows without output are sent again, in one job; the 5 answered records are not sent twice
    assert (plan["rows_failed"], plan["rows_retryable"], plan["rows_not_retryable"]) == (105, 100, 5)
    assert plan["job_count"] == 1 and plan["rows_resubmitted"] == 100
    (job,) = get_json(s3, plan["manifest_key"])
    assert read_parquet(s3, job["rows_key"]).column("row").to_pylist() == list(range(50, 150))


def test_a_run_without_failures_needs_no_resubmission(s3, lambda_context):
    run = stage_planned_jobs(s3, [[None] * 120])
    plan = handler.lambda_handler(request(run), lambda_context)
    assert plan["job_count"] == 0 and plan["rows_failed"] == 0 and plan["message"] == "no row needs resubmission"
