"""The steps after preprocess in a prepared run (several models): each job is submitted, read, resubmitted and
summarised as its own model's, on moto S3 and the Bedrock emulator over HTTP."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest

from lambdas.finalize import handler as finalize_handler
from lambdas.poll_job import handler as poll_handler
from lambdas.postprocess import handler as postprocess_handler
from lambdas.preprocess import handler as preprocess_handler
from lambdas.resubmit import handler as resubmit_handler
from lambdas.shared import layout
from lambdas.shared.errors import ServiceQuotaExceededException
from lambdas.submit_job import handler as submit_handler
from local.emulator import Quotas
from tests.functional.conftest import BUCKET
from tests.prepared_records import HAIKU_ID, TITAN_ID, execution_input, interleaved, jsonl

KEY = "openai/batches/batch_2/prepared.jsonl"


def prepare(s3: Any, lambda_context: Any, counts: dict[str, int], **changes: Any) -> tuple[dict[str, Any], list]:
    """Preprocess a prepared file of ``counts`` records per model; returns the run context and the manifest."""
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=jsonl(interleaved(counts)))
    execution = execution_input(f"s3://{BUCKET}/{KEY}", models=list(counts), **changes)
    run = preprocess_handler.lambda_handler({"input": execution, "execution_name": "batch_2"}, lambda_context)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run["manifest_key"])["Body"].read())
    return run, manifest


def read_parquet(s3: Any, key: str) -> Any:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def run_job(run: dict[str, Any], job: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
    """Submit, poll until terminal (the emulator moves a job on at each poll), postprocess; the job's result."""
    state = submit_handler.lambda_handler({"run": run, "job": job}, lambda_context)
    while not state["terminal"]:
        state = poll_handler.lambda_handler(state, lambda_context)
    return postprocess_handler.lambda_handler(state, lambda_context)


def test_each_job_runs_its_own_model_and_keeps_the_raw_model_output(s3, emulator, lambda_context):
    # GIVEN a prepared run of 150 Claude 3.5 Haiku records (Converse) and 120 Titan embeddings (InvokeModel)
    run, manifest = prepare(s3, lambda_context, {"claude-haiku": 150, "titan-embed": 120})
    # WHEN every job is submitted, polled and postprocessed
    results = [run_job(run, job, lambda_context) for job in manifest]
    # THEN each Bedrock job ran the model and invocation type of its records, not one of the run
    jobs = sorted(emulator.jobs(), key=lambda job: job["jobName"])
    assert [(job["modelId"], job["modelInvocationType"]) for job in jobs] == [
        (HAIKU_ID, "Converse"),
        (TITAN_ID, "InvokeModel"),
    ]
    assert {job["status"] for job in jobs} == {"Completed"}
    # AND each result says its model, and every record succeeded
    assert [(result["model"], result["succeeded"], result["failed"]) for result in results] == [
        ("claude-haiku", 150, 0),
        ("titan-embed", 120, 0),
    ]
    # AND the output has every input column, then model_output (the modelOutput JSON text exactly as Bedrock wrote
    # it in its output line), error_code and error_message
    claude = read_parquet(s3, results[0]["output_key"])
    assert claude.column_names == [
        "custom_id",
        "line",
        "model",
        "model_input",
        "model_output",
        "error_code",
        "error_message",
    ]
    output_lines = read_bedrock_output(s3, run["run_id"], 0)
    for custom_id, model_output in zip(
        claude.column("custom_id").to_pylist(), claude.column("model_output").to_pylist(), strict=True
    ):
        line = output_lines[custom_id]
        assert model_output in line["raw"] and json.loads(model_output) == line["parsed"]["modelOutput"]
    converse = json.loads(claude.column("model_output")[0].as_py())
    assert converse["output"]["message"]["content"][0]["text"] and converse["usage"]["inputTokens"] > 0
    titan = read_parquet(s3, results[1]["output_key"])
    assert len(json.loads(titan.column("model_output")[0].as_py())["embedding"]) == 1024
    assert titan.column("error_code").null_count == 120


def read_bedrock_output(s3: Any, run_id: str, index: int) -> dict[str, dict[str, Any]]:
    """The output lines of job ``index`` by the custom_id of their record (read from its echoed position)."""
    records = read_parquet(s3, layout.records_key(run_id))
    custom_ids = records.column("custom_id").to_pylist()
    lines: dict[str, dict[str, Any]] = {}
    prefix = layout.job_output_prefix(run_id, index)
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]:
        if item["Key"].endswith(".jsonl.out"):
            for raw in s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read().decode().splitlines():
                parsed = json.loads(raw)
                lines[custom_ids[int(parsed["recordId"])]] = {"raw": raw, "parsed": parsed}
    return lines


def test_the_in_flight_cap_is_each_models_own(s3, emulator, lambda_context):
    # GIVEN Claude 3.5 Haiku may have 1 job in flight, Titan the default 20, and jobs that stay in flight
    emulator.state.model_quotas["anthropic.claude-3-5-haiku-20241022-v1:0"] = Quotas(max_active_jobs_per_model=1)
    run, manifest = prepare(s3, lambda_context, {"claude-haiku": 200, "titan-embed": 100}, max_records_per_job=100)
    emulator.state.step_seconds = 3600
    claude_jobs = [job for job in manifest if job["model"] == "claude-haiku"]
    titan_job = next(job for job in manifest if job["model"] == "titan-embed")
    assert run["models"]["claude-haiku"]["max_concurrent_jobs"] == 1
    submit_handler.lambda_handler({"run": run, "job": claude_jobs[0]}, lambda_context)
    # WHEN the second Claude job is submitted THEN it waits for a Claude slot, naming the model and its cap
    with pytest.raises(ServiceQuotaExceededException, match=rf"1 jobs of {HAIKU_ID} .* the cap is 1"):
        submit_handler.lambda_handler({"run": run, "job": claude_jobs[1]}, lambda_context)
    # AND Titan's job is submitted meanwhile: Claude's jobs do not count against Titan's cap
    submitted = submit_handler.lambda_handler({"run": run, "job": titan_job}, lambda_context)
    assert submitted["status"] == "Submitted"
    assert emulator.jobs_created_per_model() == {HAIKU_ID: 1, TITAN_ID: 1}


def failed_everywhere(s3: Any, run: dict[str, Any], manifest: list, lambda_context: Any) -> list[dict[str, Any]]:
    """Postprocess every job as if its submission failed: every row SUBMIT_FAILED (retryable)."""
    failure = {"Error": "ValidationException", "Cause": "the role cannot be assumed"}
    return [
        postprocess_handler.lambda_handler({"run": run, "job": job, "failure": failure}, lambda_context)
        for job in manifest
    ]


def test_resubmission_jobs_never_mix_models(s3, emulator, lambda_context):
    # GIVEN a prepared run of 250 Claude, 120 Titan and 30 Nova records whose every job failed to submit
    run, manifest = prepare(
        s3, lambda_context, {"claude-haiku": 250, "titan-embed": 120, "nova-micro": 30}, max_records_per_job=200
    )
    failed_everywhere(s3, run, manifest, lambda_context)
    # WHEN resubmission is planned
    execution = execution_input(
        f"s3://{BUCKET}/{KEY}", models=["claude-haiku", "titan-embed", "nova-micro"], max_records_per_job=200
    )
    plan = resubmit_handler.lambda_handler({"run": run, "execution_input": execution}, lambda_context)
    # THEN each model's failed rows are new jobs of that model only; Nova's 30 rows, under the minimum, are reported
    retry = json.loads(s3.get_object(Bucket=BUCKET, Key=plan["manifest_key"])["Body"].read())
    assert [(job["model"], job["record_count"]) for job in retry] == [
        ("claude-haiku", 125),
        ("claude-haiku", 125),
        ("titan-embed", 120),
    ]
    assert [job["index"] for job in retry] == [0, 1, 2]
    assert (plan["rows_retryable"], plan["rows_resubmitted"], plan["rows_reported"]) == (400, 370, 30)
    records = read_parquet(s3, run["records_key"])
    models = records.column("model").to_pylist()
    for job in retry:
        rows = read_parquet(s3, job["rows_key"]).column("row").to_pylist()
        assert {models[row] for row in rows} == {job["model"]}
        lines = s3.get_object(Bucket=BUCKET, Key=job["input_key"])["Body"].read().splitlines()
        assert [int(json.loads(line)["recordId"]) for line in lines] == rows
    # AND each retry job is submitted as its own model's
    state = submit_handler.lambda_handler({"run": run, "job": retry[2]}, lambda_context)
    assert state["job_name"].endswith("r0002")
    assert [job["modelId"] for job in emulator.jobs()] == [TITAN_ID]


def test_the_summary_breaks_records_tokens_and_cost_down_per_model(s3, emulator, lambda_context):
    # GIVEN a prepared run of 150 Claude and 120 Titan records whose jobs all ran
    run, manifest = prepare(s3, lambda_context, {"claude-haiku": 150, "titan-embed": 120})
    results = [run_job(run, job, lambda_context) for job in manifest]
    execution = execution_input(f"s3://{BUCKET}/{KEY}", models=["claude-haiku", "titan-embed"])
    resubmit_handler.lambda_handler({"run": run, "execution_input": execution}, lambda_context)
    # WHEN the run is finalized
    final = finalize_handler.lambda_handler({"run": run}, lambda_context)
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key=final["summary_key"])["Body"].read())
    # THEN every row is accounted for, and each model has its records, tokens and cost at batch prices
    assert summary["complete"] is True and summary["records_out"] == 270 and summary["failed"] == 0
    claude, titan = summary["models"]["claude-haiku"], summary["models"]["titan-embed"]
    assert (claude["records"], claude["succeeded"], claude["failed"], claude["on_demand_records"]) == (150, 150, 0, 0)
    assert (titan["records"], titan["succeeded"]) == (120, 120)
    assert claude["input_tokens"] == results[0]["input_tokens"] > 0 and claude["output_tokens"] > 0
    # Claude 3.5 Haiku: 0.8 / 4.0 USD per 1M tokens on demand, half in batch
    expected = (claude["input_tokens"] * 0.4 + claude["output_tokens"] * 2.0) / 1e6
    assert claude["estimated_cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert titan["estimated_cost_usd"] == pytest.approx(titan["input_tokens"] * 0.01 / 1e6, abs=1e-6)
    cost = summary["estimated_cost"]
    assert cost["total_usd"] == pytest.approx(claude["estimated_cost_usd"] + titan["estimated_cost_usd"], abs=1e-6)
    assert final["estimated_cost_usd"] == cost["total_usd"]
    assert summary["quotas"] is None and claude["quotas"]["max_concurrent_jobs_effective"] == 20
