from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from lambdas.preprocess import handler
from lambdas.shared.errors import InputValidationError
from tests.functional.conftest import BUCKET

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"


def put_table(s3, key: str, table: pa.Table) -> str:
    buffer = io.BytesIO()
    if key.endswith(".csv"):
        pacsv.write_csv(table, buffer)
    else:
        pq.write_table(table, buffer, row_group_size=70)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}"


def topics(n: int) -> pa.Table:
    return pa.table({"id": list(range(n)), "topic": [f"topic number {i}" for i in range(n)]})


def run(lambda_context, execution_input, name="exec-1"):
    return handler.lambda_handler({"input": execution_input, "execution_name": name}, lambda_context)


def read_jsonl(s3, key):
    return [json.loads(line) for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_rows_are_numbered_rendered_and_split_into_balanced_jobs(s3, lambda_context, suffix):
    # GIVEN 301 topics in S3 and a limit of 150 records per job
    uri = put_table(s3, f"inputs/topics{suffix}", topics(301))
    # WHEN preprocess runs
    run_ctx = run(
        lambda_context, {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": uri, "max_records_per_job": 150}
    )
    # THEN 3 jobs of 101/100/100 records hold every row once, each with its own rendered prompt
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    assert [job["record_count"] for job in manifest] == [101, 100, 100]
    assert run_ctx["total_records"] == 301 and run_ctx["num_jobs"] == 3 and run_ctx["output_kind"] == "text"
    lines = [line for job in manifest for line in read_jsonl(s3, job["input_key"])]
    assert [line["recordId"] for line in lines] == [f"{i:011d}" for i in range(301)]
    assert lines[7]["modelInput"]["messages"][0]["content"][0]["text"] == (
        "Tell me a joke about topic number 7 in less than 50 words."
    )
    # AND records.parquet holds the input rows as they are (a row's record id is its row number)
    records = pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=run_ctx["records_key"])["Body"].read()))
    assert records.column_names == ["id", "topic"] and records.num_rows == 301
    assert records.schema.field("id").type == pa.int64()
    assert records.column("topic").to_pylist() == [f"topic number {i}" for i in range(301)]


def test_embedding_input_uses_input_text_as_is(s3, lambda_context):
    uri = put_table(s3, "inputs/texts.parquet", pa.table({"input_text": [f"sentence {i}" for i in range(120)]}))
    run_ctx = run(lambda_context, {"model_id": TITAN, "s3_uri": uri})
    assert run_ctx["output_kind"] == "embedding" and run_ctx["num_jobs"] == 1
    first = read_jsonl(s3, f"runs/{run_ctx['run_id']}/jobs/0000.jsonl")[0]
    assert first == {"recordId": "00000000000", "modelInput": {"inputText": "sentence 0"}}


def test_inference_params_reach_the_model_input(s3, lambda_context):
    uri = put_table(s3, "inputs/t.csv", topics(100))
    params = {"max_tokens": 77, "temperature": 0.3, "system": "be short"}
    run_ctx = run(
        lambda_context, {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": uri, "inference_params": params}
    )
    body = read_jsonl(s3, f"runs/{run_ctx['run_id']}/jobs/0000.jsonl")[0]["modelInput"]
    assert (body["max_tokens"], body["temperature"], body["system"]) == (77, 0.3, "be short")


BAD_INPUTS: dict[str, tuple[dict[str, Any], pa.Table, str]] = {
    "unknown prompt_id": ({"prompt_id": "joke_about_topics"}, topics(200), r"prompt_id 'joke_about_topics' is unknown"),
    "template key missing": (
        {"prompt_id": "joke_about_topic"},
        pa.table({"subject": ["a"] * 200}),
        r"needs column\(s\) 'topic'",
    ),
    "embedding without input_text": ({"model_id": TITAN}, pa.table({"text": ["a"] * 200}), r"no 'input_text' column"),
    "unknown model family": ({"model_id": "acme.llm-v1"}, topics(200), r"no supported model family"),
    "reserved column": (
        {"prompt_id": "joke_about_topic"},
        topics(200).append_column("response", pa.array(["x"] * 200)),
        r"reserved for the output",
    ),
    "null template value": (
        {"prompt_id": "joke_about_topic"},
        pa.table({"topic": ["a"] * 150 + [None] * 50}),
        r"null in row 150",
    ),
    "unknown field": ({"prompt_id": "joke_about_topic", "max_records": 5}, topics(200), r"unknown field 'max_records'"),
    "records per job out of range": (
        {"prompt_id": "joke_about_topic", "max_records_per_job": 60_000},
        topics(200),
        r"max_records_per_job",
    ),
    "prompt_id missing for text model": ({}, topics(200), r"field 'prompt_id' is missing"),
}


def test_fewer_rows_than_a_batch_job_needs_make_one_on_demand_job(s3, lambda_context):
    # GIVEN 99 rows, one fewer than the smallest batch job
    uri = put_table(s3, "inputs/data.parquet", topics(99))
    # WHEN preprocess runs
    run_ctx = run(lambda_context, {"model_id": CLAUDE, "s3_uri": uri, "prompt_id": "joke_about_topic"})
    # THEN the rows are one job marked on_demand, whose input file holds every row as a batch record would
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    assert [(job["first_row"], job["record_count"], job["on_demand"]) for job in manifest] == [(0, 99, True)]
    lines = read_jsonl(s3, manifest[0]["input_key"])
    assert [line["recordId"] for line in lines] == [f"{row:011d}" for row in range(99)]
    # AND a run of 100 rows is a batch job as before
    uri = put_table(s3, "inputs/data100.parquet", topics(100))
    run_ctx = run(lambda_context, {"model_id": CLAUDE, "s3_uri": uri, "prompt_id": "joke_about_topic"}, "exec-100")
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    assert [(job["record_count"], job.get("on_demand", False)) for job in manifest] == [(100, False)]


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_before_any_job_exists(s3, lambda_context, case):
    # GIVEN a bad execution input or bad data
    overrides, table, message = BAD_INPUTS[case]
    uri = put_table(s3, "inputs/data.parquet", table)
    execution_input = {"model_id": CLAUDE, "s3_uri": uri, **overrides}
    # WHEN preprocess runs THEN it raises with the problem and no job manifest exists
    with pytest.raises(InputValidationError, match=message):
        run(lambda_context, execution_input)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/exec-1/jobs.json")


def test_empty_file_and_missing_and_unreadable_files_are_clear_errors(s3, lambda_context):
    base = {"model_id": CLAUDE, "prompt_id": "joke_about_topic"}
    s3.put_object(Bucket=BUCKET, Key="inputs/empty.csv", Body=b"")
    with pytest.raises(InputValidationError, match="empty file"):
        run(lambda_context, {**base, "s3_uri": f"s3://{BUCKET}/inputs/empty.csv"})
    with pytest.raises(InputValidationError, match="does not exist"):
        run(lambda_context, {**base, "s3_uri": f"s3://{BUCKET}/inputs/nope.csv"})
    s3.put_object(Bucket=BUCKET, Key="inputs/bad.parquet", Body=b"this is not parquet at all")
    with pytest.raises(InputValidationError, match="could not be read as Parquet"):
        run(lambda_context, {**base, "s3_uri": f"s3://{BUCKET}/inputs/bad.parquet"})
    s3.put_object(Bucket=BUCKET, Key="inputs/header-only.csv", Body=b"topic\n")
    with pytest.raises(InputValidationError, match="no rows"):
        run(lambda_context, {**base, "s3_uri": f"s3://{BUCKET}/inputs/header-only.csv"})
    with pytest.raises(InputValidationError, match="reads only its own bucket"):
        run(lambda_context, {**base, "s3_uri": "s3://someone-elses-bucket/inputs/x.csv"})
    with pytest.raises(InputValidationError, match="exactly one input source"):
        run(lambda_context, {**base, "s3_uri": f"s3://{BUCKET}/a.csv", "dataset_id": "org/name"})


def test_the_execution_arn_travels_in_the_run_context_and_tags_the_logs(s3, lambda_context, log_lines):
    # GIVEN the payload the state machine sends (execution name and $$.Execution.Id)
    execution_arn = "arn:aws:states:us-east-1:123456789012:execution:BatchStateMachine:exec-1"
    uri = put_table(s3, "inputs/topics.csv", topics(120))
    event = {
        "input": {"model_id": CLAUDE, "prompt_id": "joke_about_topic", "s3_uri": uri},
        "execution_name": "exec-1",
        "execution_id": execution_arn,
    }
    # WHEN preprocess runs
    out = handler.lambda_handler(event, lambda_context)
    # THEN the run context carries the execution ARN to every later state, and the log line names run and execution
    assert out["execution_arn"] == execution_arn
    (line,) = [json.loads(text) for text in log_lines.getvalue().splitlines() if '"run prepared"' in text]
    assert (line["run_id"], line["correlation_id"]) == ("exec-1", execution_arn)
