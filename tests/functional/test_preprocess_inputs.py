"""Every input kind, byte-aware splitting, and the bad inputs that must stop a run before any job exists."""

from __future__ import annotations

import io
import json
from typing import Any
from unittest.mock import ANY

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from lambdas.preprocess import handler, sources
from lambdas.shared.errors import InputValidationError
from local.emulator import Quotas
from tests.functional.conftest import BUCKET

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
JOKES = {"model_id": CLAUDE, "prompt_id": "joke_about_topic"}


def run(lambda_context, execution_input: Any, name: str = "exec-1") -> dict:
    return handler.lambda_handler({"input": execution_input, "execution_name": name}, lambda_context)


def put(s3, key: str, body: bytes) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def csv_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    return buffer.getvalue()


def topics(start: int, n: int) -> pa.Table:
    return pa.table({"id": list(range(start, start + n)), "topic": [f"topic {i}" for i in range(start, start + n)]})


def prompts(s3, run_ctx: dict) -> list[str]:
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    texts = []
    for job in manifest:
        for line in s3.get_object(Bucket=BUCKET, Key=job["input_key"])["Body"].read().splitlines():
            texts.append(json.loads(line)["modelInput"]["messages"][0]["content"][0]["text"])
    return texts


def test_jsonl_input(s3, lambda_context):
    # GIVEN a JSONL file with one object per line
    body = "".join(json.dumps({"id": i, "topic": f"topic {i}"}) + "\n" for i in range(150)).encode()
    uri = put(s3, "inputs/topics.jsonl", body)
    # WHEN preprocessed THEN every line is a record, in order
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri})
    assert run_ctx["total_records"] == 150
    assert prompts(s3, run_ctx)[149] == "Tell me a joke about topic 149 in less than 50 words."


def test_prefix_reads_every_file_in_key_order(s3, lambda_context):
    # GIVEN three CSV files under one prefix (and an empty marker object and a README to skip)
    put(s3, "inputs/batch/part-2.csv", csv_bytes(topics(200, 50)))
    put(s3, "inputs/batch/part-0.csv", csv_bytes(topics(0, 100)))
    put(s3, "inputs/batch/part-1.csv", csv_bytes(topics(100, 100)))
    put(s3, "inputs/batch/_SUCCESS", b"")
    put(s3, "inputs/batch/README.md", b"notes")
    # WHEN the prefix is the input THEN all 250 rows come in key order
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/batch/"})
    assert run_ctx["total_records"] == 250
    assert prompts(s3, run_ctx)[:3] == [f"Tell me a joke about topic {i} in less than 50 words." for i in range(3)]
    assert prompts(s3, run_ctx)[-1] == "Tell me a joke about topic 249 in less than 50 words."


def test_jobs_are_split_further_when_their_files_would_exceed_the_byte_limit(s3, emulator, lambda_context):
    # GIVEN a model whose input file size quota (served by Service Quotas) 1,000 rows in 2 jobs would exceed
    # (scaled down from Bedrock's 1 GB)
    uri = put(s3, "inputs/t.csv", csv_bytes(topics(0, 1000)))
    emulator.state.model_quotas[CLAUDE] = Quotas(max_file_bytes=60_000)
    # WHEN preprocessed with up to 500 records per job
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 500})
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    # THEN there are more jobs, cut greedily as the rows came (a CSV input: its row count is known only at its end):
    # each as many rows as fit under the limit, the last the rest
    sizes = [job["record_count"] for job in manifest]
    assert sizes == [255, 255, 255, 235]
    assert all(job["size_bytes"] <= 60_000 for job in manifest)
    files = [s3.get_object(Bucket=BUCKET, Key=job["input_key"])["Body"].read() for job in manifest]
    assert all(
        len(body) + len(following.splitlines()[0]) + 1 > 60_000
        for body, following in zip(files, files[1:], strict=False)
    )


BIG_TEXT = "x" * 5000
BAD_INPUTS: dict[str, tuple[Any, bytes | None, str]] = {
    # name: (execution input with S3_URI placeholder, file body for inputs/data.csv, expected message)
    "input is not an object": (["not", "an", "object"], None, r"execution input must be a JSON object"),
    "model_id has the wrong type": ({"model_id": 42, "prompt_id": "joke_about_topic"}, None, r"field 'model_id' = 42"),
    "temperature out of range": (
        {**JOKES, "inference_params": {"temperature": 1.5}},
        None,
        r"field 'inference_params.temperature' = 1.5",
    ),
    "max_tokens zero": ({**JOKES, "inference_params": {"max_tokens": 0}}, None, r"inference_params.max_tokens"),
    "unknown inference param": ({**JOKES, "inference_params": {"maxTokens": 5}}, None, r"unknown field"),
    "malformed s3 uri": ({**JOKES, "s3_uri": "s3:/bucket-only"}, None, r"field 's3_uri' = 's3:/bucket-only'"),
    "neither source": ({**JOKES, "s3_uri": None}, None, r"exactly one input source.*neither"),
    "max_num_jobs too small": (
        {**JOKES, "max_records_per_job": 100, "max_num_jobs": 1},
        csv_bytes(topics(0, 300)),
        r"max_num_jobs=1 is too small.*need 3 jobs",
    ),
    "max_num_jobs zero": ({**JOKES, "max_num_jobs": 0}, None, r"field 'max_num_jobs' = 0"),
    "unsupported file type": (
        {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/data.xlsx"},
        None,
        r"unsupported file type; use one of",
    ),
    "embedding model with a prompt_id": (
        {"model_id": TITAN, "prompt_id": "joke_about_topic"},
        None,
        r"embeds the 'input_text' column as is; remove prompt_id",
    ),
    "input_text is not text": (
        {"model_id": TITAN},
        b"input_text\n" + b"".join(f"{i}\n".encode() for i in range(150)),
        r"column 'input_text' .* has type int64, expected text",
    ),
    "job_name_prefix too long": ({**JOKES, "job_name_prefix": "p" * 41}, None, r"field 'job_name_prefix'"),
    "model not enabled in this deployment": (
        {**JOKES, "model_id": "anthropic.claude-3-opus-20240229-v1:0"},
        None,
        r"not enabled in this deployment.*allowedModelIds in cdk.json",
    ),
    "mixed-schema CSV": (
        JOKES,
        b"id,topic\n" + b"".join(f"{i},t{i}\n".encode() for i in range(3000)) + b"not-a-number,t\n",
        r"could not be read as CSV.*one type throughout the file",
    ),
    "non-UTF-8 CSV": (JOKES, b"topic\n" + "café\n".encode("latin-1") * 150, r"not valid UTF-8 text.*iconv"),
    "a single row over the model's file size quota": (
        JOKES,
        None,
        r"row 0 alone makes a .* record, over the 4,000 bytes input file limit of Claude 3 Haiku",
    ),
    "ragged CSV": (JOKES, b"id,topic\n1,a\n2,b,extra\n", r"could not be read as CSV"),
    "unknown model_family": ({**JOKES, "model_family": "acme"}, None, r"model_family"),
    "titan dimensions not allowed": (
        {"model_id": TITAN, "inference_params": {"dimensions": 384}},
        b"input_text\n" + b"t\n" * 150,
        r"'inference_params.dimensions'.*384.*256, 512, 1024",
    ),
    "prefix with no data files": (
        {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/nothing-here/"},
        None,
        r"is a prefix with no non-empty",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_before_any_job_exists(s3, lambda_context, monkeypatch, request, case):
    # GIVEN a bad execution input or a bad file
    execution_input, body, message = BAD_INPUTS[case]
    default_uri = put(s3, "inputs/data.csv", body if body is not None else csv_bytes(topics(0, 200)))
    if isinstance(execution_input, dict):
        execution_input = {"s3_uri": default_uri, **execution_input}
        if execution_input.get("s3_uri") is None:
            del execution_input["s3_uri"]
    monkeypatch.setenv("ALLOWED_MODEL_IDS", f"{CLAUDE},{TITAN}")
    if case == "a single row over the model's file size quota":
        request.getfixturevalue("emulator").state.model_quotas[CLAUDE] = Quotas(max_file_bytes=4000)
        put(s3, "inputs/data.csv", b"topic\n" + (BIG_TEXT + "\n").encode() * 150)
    if case == "mixed-schema CSV":
        monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 4096)
    # WHEN preprocess runs THEN it names the problem, and nothing of the run reached S3
    with pytest.raises(InputValidationError, match=message):
        run(lambda_context, execution_input)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


@pytest.mark.parametrize(
    ("execution_input", "alternative"),
    [
        ({"model_id": "mistral.mistral-7b-instruct-v0:2", "prompt_id": "joke_about_topic"}, "mistral.mistral-small"),
        ({"model_id": "mistral.mixtral-8x7b-instruct-v0:1", "prompt_id": "joke_about_topic"}, "mistral.mistral-small"),
        ({"model_id": "us.mistral.mistral-large-2402-v1:0", "prompt_id": "joke_about_topic"}, "mistral.mistral-small"),
        ({"model_id": "cohere.embed-english-v3"}, "amazon.titan-embed-text-v2"),
        ({"model_id": "cohere.embed-multilingual-v3", "model_family": "cohere-embed"}, "amazon.titan-embed-text-v2"),
    ],
)
def test_a_model_without_batch_inference_is_rejected_even_without_an_allow_list(
    s3, lambda_context, execution_input, alternative
):
    # GIVEN a deployment with no allowedModelIds (as local runs have), and a model the registry knows but that has no
    # batch inference (on-demand only)
    uri = put(s3, "inputs/data.csv", b"topic,input_text\n" + b"t,t\n" * 150)
    # WHEN preprocess runs
    with pytest.raises(InputValidationError) as error:
        run(lambda_context, {**execution_input, "s3_uri": uri})
    # THEN it names the field, the model and the fix, and nothing of the run reached S3
    message = str(error.value)
    assert message.startswith(f"field 'model_id': model_id '{execution_input['model_id']}' does not support batch")
    assert "use the gateway for on-demand inference, or a batch model such as" in message and alternative in message
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_an_application_profile_arn_of_any_model_stays_accepted_with_its_family(s3, lambda_context):
    # GIVEN an application inference profile ARN (its text names no model), with the family of the model behind it
    uri = put(s3, "inputs/data.csv", csv_bytes(topics(0, 150)))
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    # WHEN preprocess runs THEN the run is planned with that family (only Bedrock can say which model it is)
    run_ctx = run(lambda_context, {**JOKES, "model_id": arn, "model_family": "anthropic", "s3_uri": uri})
    assert (run_ctx["family"], run_ctx["total_records"]) == ("anthropic", 150)


def test_the_models_quotas_cap_the_split_and_the_concurrency_with_warnings(
    s3, emulator, lambda_context, log_lines, monkeypatch
):
    # GIVEN a model taking 1,000 records per job and 3 jobs in flight (served by Service Quotas), a deployment with
    # maxConcurrentJobs 20, and a run asking for 5,000 records per job over 2,100 rows
    emulator.state.model_quotas[CLAUDE] = Quotas(max_records_per_job=1000, max_active_jobs_per_model=3)
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "20")
    uri = put(s3, "inputs/t.csv", csv_bytes(topics(0, 2100)))
    # WHEN preprocessed
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 5000})
    # THEN the jobs are cut within the model's 1,000 (greedily: a CSV input) and the run carries the capped
    # concurrency and the quotas
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    assert [job["record_count"] for job in manifest] == [1000, 1000, 100]
    assert run_ctx["max_concurrent_jobs"] == 3
    assert run_ctx["quotas"]["max_records_per_job"] == {"value": 1000, "source": "service-quotas", "quota_code": ANY}
    # AND both caps were logged as warnings, naming the model's quota
    warnings = [json.loads(line) for line in log_lines.getvalue().splitlines() if '"WARNING"' in line]
    capped = {line["message"]: line for line in warnings}
    assert capped["max_records_per_job capped by the model's quota"]["capped_to"] == 1000
    concurrency = capped["maxConcurrentJobs is above the model's quota of submitted + in-progress jobs: capped"]
    assert concurrency["capped_to"] == 3 and concurrency["model_quota_name"] == "Claude 3 Haiku"


def test_fewer_rows_than_the_models_minimum_make_one_on_demand_job(s3, emulator, lambda_context):
    # GIVEN a model whose minimum is 500 records per job, and 300 rows
    emulator.state.model_quotas[CLAUDE] = Quotas(min_records_per_job=500)
    uri = put(s3, "inputs/t.csv", csv_bytes(topics(0, 300)))
    # WHEN preprocessed
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri})
    # THEN the run is not refused: its 300 rows are one on-demand job (the model's minimum, not 100, decides)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    assert [(job["record_count"], job["on_demand"]) for job in manifest] == [(300, True)]
    assert len(s3.get_object(Bucket=BUCKET, Key=manifest[0]["input_key"])["Body"].read().splitlines()) == 300
