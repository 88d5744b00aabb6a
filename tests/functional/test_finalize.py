"""Resubmitted rows end to end on moto S3: Plan resubmission -> Process retry job results -> Finalize run, which
merges them into the planned jobs' outputs and checks that every row is there exactly once."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from lambdas.finalize import handler as finalize_handler
from lambdas.postprocess import handler as postprocess_handler
from lambdas.resubmit import handler as resubmit_handler
from lambdas.shared import layout
from tests.functional.conftest import BUCKET
from tests.functional.staged_run import (
    CLAUDE,
    RUN,
    answer,
    bedrock_output,
    put_parquet,
    read_parquet,
    record_error,
    stage_planned_jobs,
)


def plan_resubmission(s3, lambda_context, run: dict[str, Any]) -> list[dict[str, Any]]:
    execution_input = {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": f"s3://{BUCKET}/in.csv"}
    plan = resubmit_handler.lambda_handler(
        {"run": run, "execution_input": execution_input | {"max_records_per_job": 150}}, lambda_context
    )
    return json.loads(s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read())


def run_retry_job(s3, lambda_context, run: dict, job: dict, lines: list[dict], status="Completed") -> dict:
    job_arn = bedrock_output(s3, f"retry{job['index']:07d}", lines, index=job["index"], resubmission=True)
    state = {"run": run, "job": job, "job_arn": job_arn, "status": status, "terminal": True}
    return postprocess_handler.lambda_handler(state, lambda_context)


def finalize(s3, lambda_context, run: dict) -> tuple[dict, dict]:
    result = finalize_handler.lambda_handler({"run": run}, lambda_context)
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key=layout.summary_key(RUN))["Body"].read())
    return result, summary


def rows_by_id(s3, indexes: range) -> dict[int, dict[str, Any]]:
    rows = [row for i in indexes for row in read_parquet(s3, layout.output_key(RUN, i)).to_pylist()]
    assert len(rows) == len({row["id"] for row in rows})
    return {row["id"]: row for row in rows}


def staged(s3, lambda_context) -> tuple[dict, list[dict]]:
    """Planned job 0 (rows 0-149) expired; job 1 (150-299) has 100 throttled rows (150-249) and 20 malformed ones
    (250-269); job 2 (300-449) is fine. So 250 rows are resubmitted in two jobs of 125 (at most 150 per job):
    retry job 0 holds rows 0-124, retry job 1 rows 125-249 (from both planned jobs)."""
    run = stage_planned_jobs(s3, [["JOB_EXPIRED"] * 150, ["429"] * 100 + ["400"] * 20 + [None] * 30, [None] * 150])
    return run, plan_resubmission(s3, lambda_context, run)


def run_both_retry_jobs(s3, lambda_context, run: dict, retry_jobs: list[dict]) -> list[dict]:
    """Retry job 0: every row answered but row 7 (400 again). Retry job 1: PartiallyCompleted, row 130 gets a 500,
    rows 240-249 were not processed."""
    first = [record_error(7, 400, "bad request") if r == 7 else answer(r, f"retried {r}") for r in range(125)]
    second = [record_error(130, 500, "internal") if r == 130 else answer(r, f"retried {r}") for r in range(125, 240)]
    return [
        run_retry_job(s3, lambda_context, run, retry_jobs[0], first),
        run_retry_job(s3, lambda_context, run, retry_jobs[1], second, status="PartiallyCompleted"),
    ]


def test_resubmitted_rows_replace_their_first_result_in_the_outputs(s3, lambda_context):
    # GIVEN the planned jobs' outputs and two resubmission jobs that recovered most of their rows
    run, retry_jobs = staged(s3, lambda_context)
    assert [(job["first_row"], job["record_count"]) for job in retry_jobs] == [(0, 125), (125, 125)]
    before = {i: read_parquet(s3, layout.output_key(RUN, i)) for i in range(3)}
    results = run_both_retry_jobs(s3, lambda_context, run, retry_jobs)
    # WHEN the run is finalized
    result, summary = finalize(s3, lambda_context, run)
    # THEN each resubmission job wrote its rows by number, under runs/<run>/retry/
    retry_output = read_parquet(s3, layout.output_key(RUN, 1, resubmission=True))
    assert retry_output.column_names == ["row", "response", "error_code", "error_message"]
    assert retry_output.column("row").to_pylist() == list(range(125, 250))
    assert [r["resubmission"] for r in results] == [True, True] and results[1]["failed"] == 11
    # AND every row is still there once, in the same files, with the same columns
    rows = rows_by_id(s3, range(3))
    assert sorted(rows) == list(range(450))
    for index in range(3):
        after = read_parquet(s3, layout.output_key(RUN, index))
        assert after.schema == before[index].schema and after.column("id").equals(before[index].column("id"))
    # AND recovered rows have their response and no error any more
    recovered = [i for i in range(250) if i not in (7, 130) and not 240 <= i < 250]
    assert all(rows[i]["response"] == f"retried {i}" and rows[i]["error_code"] is None for i in recovered)
    assert all(rows[i]["error_message"] is None for i in recovered)
    # AND rows that failed again carry the new error, marked as coming after resubmission
    assert (rows[7]["error_code"], rows[7]["error_message"]) == ("400", "after resubmission: bad request")
    assert (rows[130]["error_code"], rows[130]["error_message"]) == ("500", "after resubmission: internal")
    assert {rows[i]["error_code"] for i in range(240, 250)} == {"NOT_PROCESSED"}
    assert rows[245]["error_message"].startswith("after resubmission: no output for this record")
    # AND rows that were not resubmitted are untouched
    assert all(rows[i]["error_message"] == "first error 400" for i in range(250, 270))
    assert all(rows[i]["response"] == f"answer {i}" for i in [*range(270, 300), *range(300, 450)])
    # AND the summary counts the output as written, and what the resubmission did
    assert result["complete"] is True and (result["succeeded"], result["failed"]) == (418, 32)
    assert (result["rows_resubmitted"], result["rows_recovered"]) == (250, 238)
    assert summary["error_counts"] == {"400": 21, "500": 1, "NOT_PROCESSED": 10}
    resubmission = summary["resubmission"]
    assert {key: resubmission[key] for key in ("rows_retryable", "rows_resubmitted", "rows_recovered")} == {
        "rows_retryable": 250,
        "rows_resubmitted": 250,
        "rows_recovered": 238,
    }
    assert (resubmission["rows_still_failed"], resubmission["rows_not_retryable"], resubmission["rows_reported"]) == (
        12,
        20,
        0,
    )
    assert resubmission["jobs_by_status"] == {"Completed": 1, "PartiallyCompleted": 1}
    assert resubmission["output_files_rewritten"] == [layout.output_key(RUN, 0), layout.output_key(RUN, 1)]
    # AND the planned jobs' entries still say what those jobs produced
    assert [job["failed"] for job in summary["jobs"]] == [150, 120, 0]


def test_finalizing_twice_writes_the_same_outputs(s3, lambda_context):
    # GIVEN a finalized run with resubmitted rows
    run, retry_jobs = staged(s3, lambda_context)
    run_both_retry_jobs(s3, lambda_context, run, retry_jobs)
    first_result, _ = finalize(s3, lambda_context, run)
    first = {i: read_parquet(s3, layout.output_key(RUN, i)) for i in range(3)}
    # WHEN Finalize runs again (a retried state)
    second_result, _ = finalize(s3, lambda_context, run)
    # THEN the outputs and the counts are the same: no prefix is added twice, nothing is counted twice
    assert all(read_parquet(s3, layout.output_key(RUN, i)).equals(first[i]) for i in range(3))
    assert second_result == first_result


def test_rows_of_a_resubmission_job_without_results_keep_their_first_error(s3, lambda_context):
    # GIVEN a run whose second resubmission job never wrote results (its postprocess failed)
    run, retry_jobs = staged(s3, lambda_context)
    run_retry_job(s3, lambda_context, run, retry_jobs[0], [answer(r, f"retried {r}") for r in range(125)])
    # WHEN the run is finalized
    result, summary = finalize(s3, lambda_context, run)
    # THEN the first job's rows are merged, the second's keep their first error, and the run is still complete
    rows = rows_by_id(s3, range(3))
    assert rows[0]["response"] == "retried 0" and rows[124]["error_code"] is None
    assert rows[125]["error_code"] == "JOB_EXPIRED" and rows[200]["error_code"] == "429"
    assert result["complete"] is True and result["rows_recovered"] == 125
    assert summary["resubmission"]["rows_not_merged"] == 125 and summary["resubmission"]["missing_jobs"] == [1]


def test_without_a_resubmission_plan_the_run_is_finalized_as_the_planned_jobs_left_it(s3, lambda_context):
    # GIVEN planned jobs with failed rows and no resubmission plan (planning failed and was caught)
    run = stage_planned_jobs(s3, [["JOB_FAILED"] * 150, [None] * 150])
    # WHEN finalized
    result, summary = finalize(s3, lambda_context, run)
    # THEN every row is accounted for with its first result, and the summary says no resubmission was planned
    assert result["complete"] is True and (result["succeeded"], result["failed"]) == (150, 150)
    assert summary["resubmission"]["planned"] is False
    assert "Plan resubmission" in summary["resubmission"]["message"]


def test_a_row_resubmitted_twice_makes_the_run_incomplete(s3, lambda_context):
    # GIVEN resubmission outputs that (against the plan) both hold row 130
    run, retry_jobs = staged(s3, lambda_context)
    run_both_retry_jobs(s3, lambda_context, run, retry_jobs)
    key = layout.output_key(RUN, 0, resubmission=True)
    output = read_parquet(s3, key)
    rows = output.column("row").to_pylist()
    put_parquet(s3, key, output.set_column(0, "row", pa.array([*rows[:-1], 130], pa.int64())))
    # WHEN finalized
    result, _ = finalize(s3, lambda_context, run)
    # THEN the run is not complete (the state machine fails it) and the message names the problem
    assert result["complete"] is False
    assert "resubmitted twice" in result["message"]


EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:BatchStateMachine:run-1"


def set_tokens(s3, index: int, input_tokens: int, output_tokens: int, *, resubmission: bool = False) -> None:
    """Give a stored job result the token counts postprocess reads from Bedrock's manifest.json.out."""
    key = layout.result_key(RUN, index, resubmission=resubmission)
    result = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    result |= {"input_tokens": input_tokens, "output_tokens": output_tokens}
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(result).encode())


def emf_metrics(capsys) -> dict[str, float]:
    """Name -> value of the EMF metrics the handler printed."""
    found: dict[str, float] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{") and "_aws" in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    found[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return found


def test_summary_estimates_the_cost_of_every_billed_job_at_batch_prices(s3, lambda_context, capsys):
    # GIVEN a Claude 3 Haiku run (on-demand $0.25 / $1.25 per 1M tokens) whose two planned jobs and one
    # resubmission job used tokens
    run, retry_jobs = staged(s3, lambda_context)
    run_both_retry_jobs(s3, lambda_context, run, retry_jobs)
    set_tokens(s3, 0, 1_000_000, 200_000)
    set_tokens(s3, 1, 600_000, 100_000)
    set_tokens(s3, 0, 400_000, 100_000, resubmission=True)
    capsys.readouterr()
    # WHEN the run is finalized
    result, summary = finalize(s3, lambda_context, run)
    # THEN the summary prices all of them at half the on-demand price, per job and in total, naming the price file
    cost = summary["estimated_cost"]
    assert (cost["input_tokens"], cost["output_tokens"]) == (2_000_000, 400_000)
    assert cost["total_usd"] == pytest.approx((2 * 0.25 + 0.4 * 1.25) / 2)
    assert cost["priced_as"] == CLAUDE and cost["source"] == "lambdas/shared/prices.json"
    usd = {(job["index"], job["resubmission"]): job["usd"] for job in cost["jobs"]}
    assert usd[(0, False)] == pytest.approx((0.25 + 0.2 * 1.25) / 2) and usd[(2, False)] == 0
    assert usd[(0, True)] == pytest.approx((0.4 * 0.25 + 0.1 * 1.25) / 2)
    assert cost["message"].startswith("estimated cost $0.5000 at batch prices (0.5 x on-demand")
    # AND Finalize returns it and emits it as the EstimatedCostUSD metric
    assert result["estimated_cost_usd"] == pytest.approx(0.5)
    assert emf_metrics(capsys)["EstimatedCostUSD"] == pytest.approx(0.5)


def test_a_model_without_a_price_gets_no_estimate_and_no_metric(s3, lambda_context, capsys):
    # GIVEN a run of a model prices.json does not list
    run = stage_planned_jobs(s3, [[None] * 150]) | {"model_id": "acme.unknown-model-v1:0"}
    set_tokens(s3, 0, 1000, 1000)
    capsys.readouterr()
    # WHEN finalized
    result, summary = finalize(s3, lambda_context, run)
    # THEN the summary says which model to add where, instead of a guessed number, and no cost metric is emitted
    assert summary["estimated_cost"]["total_usd"] is None and result["estimated_cost_usd"] is None
    assert summary["estimated_cost"]["message"].startswith(
        "no price for model acme.unknown-model-v1:0: add it to prices.json"
    )
    metrics = emf_metrics(capsys)
    assert "RunsFinalized" in metrics and "EstimatedCostUSD" not in metrics


def test_cdk_json_prices_override_the_price_file(s3, lambda_context, monkeypatch):
    # GIVEN cdk.json prices for the run's model, which the stack passes to Finalize as PRICES
    monkeypatch.setenv("PRICES", json.dumps({CLAUDE: {"input_per_1m": 2.0, "output_per_1m": 4.0}}))
    run = stage_planned_jobs(s3, [[None] * 150])
    set_tokens(s3, 0, 1_000_000, 1_000_000)
    # WHEN finalized
    _, summary = finalize(s3, lambda_context, run)
    # THEN they are used (at the file's batch discount) and named as the source
    assert summary["estimated_cost"]["total_usd"] == pytest.approx(3.0)
    assert summary["estimated_cost"]["source"] == "cdk.json prices"


def test_finalize_logs_carry_the_run_id_and_the_execution_arn(s3, lambda_context, log_lines):
    # GIVEN a run context with the execution ARN Preprocess put there
    run = stage_planned_jobs(s3, [[None] * 150]) | {"execution_arn": EXECUTION_ARN}
    # WHEN finalized
    finalize(s3, lambda_context, run)
    # THEN its log line names the run and the execution, which is also the correlation id
    (line,) = [json.loads(text) for text in log_lines.getvalue().splitlines() if '"run finalized"' in text]
    assert (line["run_id"], line["execution_arn"], line["correlation_id"]) == (RUN, EXECUTION_ARN, EXECUTION_ARN)


def test_free_heap_memory_is_released_after_each_output_file_rewritten(s3, lambda_context, monkeypatch):
    # GIVEN a run whose resubmission rewrites two planned jobs' outputs, and glibc's trim counted
    from lambdas.finalize import logic

    released: list[int] = []

    def release() -> bool:
        released.append(1)
        return True

    monkeypatch.setattr(logic, "release_free_memory", release)
    run, retry_jobs = staged(s3, lambda_context)
    run_both_retry_jobs(s3, lambda_context, run, retry_jobs)
    # WHEN the run is finalized
    _, summary = finalize(s3, lambda_context, run)
    # THEN the free heap memory went back to the system once per rewritten file (each file's buffers leave holes in
    # the heaps: 40 files of 50,000 rows grew the peak 1.27x over 4 files without the trim)
    assert len(released) == len(summary["resubmission"]["output_files_rewritten"]) == 2
