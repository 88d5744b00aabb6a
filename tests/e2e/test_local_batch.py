"""The synthesized state machine, end to end: moto Step Functions + S3, in-process Lambdas, the Bedrock emulator."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from lambdas.shared import layout
from local.runner import LocalRuntime, RuntimeOptions
from tests.e2e.local_runs import CLAUDE, assert_every_row_echoes_its_own_prompt, read_results, read_summary, run_batch

pytestmark = pytest.mark.slow

TITAN = "amazon.titan-embed-text-v2:0"


def sample_table(n: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int32()),
            "topic": [f'topic {i} with {{braces}} and "quotes"' for i in range(n)],
            "score": pa.array([i / 7 for i in range(n)], pa.float64()),
            "flag": [i % 3 == 0 for i in range(n)],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_text_run_returns_every_row_once_with_its_own_prompt(tmp_path: Path, suffix: str, capsys):
    # GIVEN 330 rows in a CSV or Parquet file
    table = sample_table(330)
    path = tmp_path / f"input{suffix}"
    if suffix == ".csv":
        pacsv.write_csv(table, path)
        table = pacsv.read_csv(path)  # the types CSV reading infers are the input types
    else:
        pq.write_table(table, path)
    out = tmp_path / "out"
    # WHEN the local runtime runs it with at most 150 records per job
    code = run_batch(path, out, "--max-records-per-job", "150")
    # THEN it succeeds with ceil(330/150) = 3 job outputs
    assert code == 0, capsys.readouterr().err
    files = sorted(out.glob("*.parquet"))
    assert len(files) == math.ceil(330 / 150)
    result = pq.read_table(files)
    # AND every input column is unchanged (names, types, values, row count) ...
    assert result.select(table.column_names).equals(table)
    # ... followed by the response (this row's own rendered prompt, echoed) and empty error columns
    assert result.column_names == [*table.column_names, "response", "error_code", "error_message"]
    assert_every_row_echoes_its_own_prompt(result, table)
    # AND the summary prices the run's tokens at batch prices, and the CLI prints that estimate
    summary = read_summary(out)
    assert summary["execution_arn"].startswith("arn:aws:states:")  # the correlation id of the run's log lines
    cost = summary["estimated_cost"]
    assert summary["input_tokens"] > 0 and cost["input_tokens"] == summary["input_tokens"]
    assert cost["total_usd"] > 0 and cost["priced_as"] == CLAUDE and len(cost["jobs"]) == 3
    assert cost["message"] in capsys.readouterr().out


def test_embedding_run_returns_1024_dimension_vectors(tmp_path: Path, capsys):
    # GIVEN 150 texts in an input_text column
    path = tmp_path / "texts.parquet"
    pq.write_table(pa.table({"input_text": [f"sentence number {i}" for i in range(150)]}), path)
    out = tmp_path / "out"
    # WHEN embedded with Titan Text Embeddings v2
    code = run_batch(path, out, model_id=TITAN, prompt_id=None)
    # THEN each row has its own 1,024-float vector
    assert code == 0, capsys.readouterr().err
    result = read_results(out)
    assert result.num_rows == 150
    vectors = result.column("embedding").to_pylist()
    assert {len(v) for v in vectors} == {1024}
    assert len({tuple(v[:4]) for v in vectors}) == 150  # distinct texts, distinct vectors


def test_bad_input_exits_non_zero_with_one_clear_line(tmp_path: Path, capsys):
    # GIVEN a CSV without the column the template needs
    path = tmp_path / "bad.csv"
    path.write_text("subject\n" + "\n".join(f"s{i}" for i in range(150)) + "\n")
    # WHEN run THEN the exit code is 2 and stderr names the missing column and the fix, before any job exists
    code = run_batch(path, tmp_path / "out", step_seconds=None)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "'topic'" in err[0] and "rename" in err[0]


def test_a_prefix_of_parquet_files_runs_with_the_files_as_its_records(tmp_path: Path):
    # GIVEN 330 rows in three Parquet files under one prefix, sharing one schema (the files are the run's records)
    table = sample_table(330)
    parts = [table.slice(0, 100), table.slice(100, 0), table.slice(100, 230)]
    with LocalRuntime(RuntimeOptions(step_seconds=0.05)) as runtime:
        for index, part in enumerate(parts):
            path = tmp_path / f"part-{index}.parquet"
            pq.write_table(part, path, row_group_size=64)
            runtime.s3.upload_file(str(path), runtime.bucket, f"inputs/parts/part-{index}.parquet")
        # WHEN the synthesized state machine runs it with at most 150 records per job (jobs across the files' edges)
        execution = runtime.start(
            {
                "model_id": CLAUDE,
                "prompt_id": "joke_about_topic",
                "s3_uri": f"s3://{runtime.bucket}/inputs/parts/",
                "max_records_per_job": 150,
            }
        )
        outcome = runtime.wait(execution)
        run_id = runtime.run_id(execution)
        runtime.download_outputs(run_id, tmp_path / "out")
        listed = runtime.s3.list_objects_v2(Bucket=runtime.bucket, Prefix=f"runs/{run_id}/records")["Contents"]
    # THEN it succeeds with every row once, its input columns unchanged and its own prompt echoed
    assert outcome.status == "SUCCEEDED", outcome.error_message
    result = read_results(tmp_path / "out")
    assert result.select(table.column_names).equals(table)
    assert_every_row_echoes_its_own_prompt(result, table)
    # AND its records are the three files and their index, not records.parquet
    assert sorted(obj["Key"] for obj in listed) == [
        layout.records_index_key(run_id),
        *(layout.records_file_key(run_id, index) for index in range(3)),
    ]
