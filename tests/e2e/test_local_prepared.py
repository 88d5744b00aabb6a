"""A prepared run (input_format "prepared", several models) through the synthesized state machine: moto Step
Functions + S3, in-process Lambdas, the Bedrock emulator. Every model's group has at least 100 records: a smaller
group is an on-demand job, which the batch emulator does not run."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lambdas.shared.layout import run_id_from_execution_name
from local.runner import LocalRuntime, RuntimeOptions
from tests.prepared_records import HAIKU_ID, TITAN_ID, execution_input, interleaved, jsonl

pytestmark = pytest.mark.slow


def test_a_prepared_run_of_two_models_returns_every_record_once_with_its_model_output(tmp_path: Path):
    # GIVEN a batch file as the gateway prepares it: 200 Claude 3.5 Haiku records (Converse type), one of which asks
    # for tools, and 110 Titan embeddings, interleaved; each model may have 1 job in flight
    lines = interleaved({"claude-haiku": 200, "titan-embed": 110})
    with_tools = next(item for item in lines if item["model"] == "claude-haiku")
    with_tools["model_input"]["toolConfig"] = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}]}
    path = tmp_path / "prepared.jsonl"
    path.write_bytes(jsonl(lines))
    batch_id = "batch_0001a2b3c4"
    with LocalRuntime(RuntimeOptions(step_seconds=0.05, max_concurrent_jobs=1)) as runtime:
        # (stored where the gateway stores a batch's prepared file)
        key = f"openai/batches/{batch_id}/prepared.jsonl"
        runtime.s3.upload_file(str(path), runtime.bucket, key)
        execution = runtime.start(
            execution_input(
                f"s3://{runtime.bucket}/{key}", models=["claude-haiku", "titan-embed"], max_records_per_job=120
            ),
            name=batch_id,
        )
        # WHEN the state machine runs it
        outcome = runtime.wait(execution)
        assert outcome.status == "SUCCEEDED", outcome.error_message
        jobs = runtime.emulator.jobs()
        run_id = runtime.run_id(execution)
        files = runtime.download_outputs(run_id, tmp_path / "out")
    # THEN the run id is the batch id's, and each model's records ran in jobs of that model and invocation type only
    assert run_id == run_id_from_execution_name(batch_id)
    by_model = sorted((job["modelId"], job["modelInvocationType"], job["totalRecordCount"]) for job in jobs)
    assert by_model == [(TITAN_ID, "InvokeModel", 110), (HAIKU_ID, "Converse", 100), (HAIKU_ID, "Converse", 100)]
    # AND every record is in the output once, with its input columns, model_output, error_code, error_message
    table = pq.read_table(sorted(f for f in files if f.suffix == ".parquet"))
    assert table.column_names == [
        "custom_id",
        "line",
        "model",
        "model_input",
        "model_output",
        "error_code",
        "error_message",
    ]
    assert sorted(table.column("custom_id").to_pylist()) == sorted(item["custom_id"] for item in lines)
    rows = {row["custom_id"]: row for row in table.to_pylist()}
    # AND a Claude record holds the Converse response, a Titan record its embedding, as Bedrock wrote them
    claude = rows[
        next(item["custom_id"] for item in lines if item["model"] == "claude-haiku" and item is not with_tools)
    ]
    answer = json.loads(claude["model_output"])
    assert answer["output"]["message"]["content"][0]["text"] and claude["error_code"] is None
    titan = rows[next(item["custom_id"] for item in lines if item["model"] == "titan-embed")]
    assert len(json.loads(titan["model_output"])["embedding"]) == 1024
    # AND the record with tools failed alone with Bedrock's 400 (batch Converse jobs take no toolConfig)
    failed = rows[with_tools["custom_id"]]
    assert failed["model_output"] is None and failed["error_code"] == "400"
    assert "tool calling" in failed["error_message"]
    assert [row["custom_id"] for row in rows.values() if row["error_code"]] == [with_tools["custom_id"]]
    # AND the summary breaks the run down per model, with tokens and cost at batch prices
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["complete"] is True and summary["records_out"] == 310
    models = summary["models"]
    assert (models["claude-haiku"]["records"], models["claude-haiku"]["failed"]) == (200, 1)
    assert (models["titan-embed"]["records"], models["titan-embed"]["succeeded"]) == (110, 110)
    assert models["claude-haiku"]["output_tokens"] > 0 and models["claude-haiku"]["estimated_cost_usd"] > 0
    assert summary["estimated_cost"]["total_usd"] == pytest.approx(
        models["claude-haiku"]["estimated_cost_usd"] + models["titan-embed"]["estimated_cost_usd"], abs=1e-6
    )
