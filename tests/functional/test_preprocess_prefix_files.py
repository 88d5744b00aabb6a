"""An S3 prefix of Parquet files that share one schema: the files themselves are the run's records (each copied
server-side to ``records/<NNNN>.parquet``, listed in ``records.json``), the pass reads the template's columns only,
and postprocess reads a job's rows from the files its range overlaps. A prefix whose files do not share one schema
takes the path it took before (its rows written to ``records.parquet``, or refused)."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.postprocess import handler as postprocess_handler
from lambdas.preprocess import handler, logic
from lambdas.shared import layout
from lambdas.shared.errors import InputValidationError
from local.emulator import Quotas
from tests.functional.conftest import BUCKET

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
JOKES = {"model_id": CLAUDE, "prompt_id": "joke_about_topic"}
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefghijkl"


def run(lambda_context, execution_input: Any, name: str) -> dict:
    return handler.lambda_handler({"input": execution_input, "execution_name": name}, lambda_context)


def rows(first: int, n: int) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(first, first + n), pa.int64()),
            "topic": pa.array([f"topic {i}" for i in range(first, first + n)], pa.string()),
            "score": pa.array([i / 7 for i in range(first, first + n)], pa.float64()),
        }
    )


def put(s3, key: str, table: pa.Table, *, row_group_size: int = 64) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return buffer.getvalue()


def get(s3, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def run_keys(s3, run_id: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{run_id}/")
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def record_ids(s3, run_ctx: dict) -> list[str]:
    manifest = json.loads(get(s3, run_ctx["manifest_key"]))
    return [json.loads(line)["recordId"] for job in manifest for line in get(s3, job["input_key"]).splitlines()]


@pytest.fixture
def pools(monkeypatch) -> list[str]:
    """The Arrow pools preprocess entered (``arrow_pool``), in order."""
    entered: list[str] = []
    original = logic.arrow_pool

    def recorded(name: str) -> Any:
        entered.append(name)
        return original(name)

    monkeypatch.setattr(logic, "arrow_pool", recorded)
    return entered


def test_a_prefix_of_parquet_files_with_one_schema_is_copied_as_the_runs_records(s3, lambda_context, pools):
    # GIVEN a prefix of three Parquet files sharing one schema (the middle one without rows), in key order
    bodies = [
        put(s3, "inputs/files/part-0.parquet", rows(0, 250)),
        put(s3, "inputs/files/part-1.parquet", rows(250, 0)),
        put(s3, "inputs/files/part-2.parquet", rows(250, 150), row_group_size=40),
    ]
    # WHEN preprocess runs on the prefix in jobs of at most 200 records
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/files/", "max_records_per_job": 200}, "x")
    run_id = run_ctx["run_id"]
    # THEN the run's records are the index, which lists each file's copy, byte for byte, with its row count, in order
    assert run_ctx["records_key"] == layout.records_index_key(run_id) and run_ctx["total_records"] == 400
    index = json.loads(get(s3, run_ctx["records_key"]))
    assert index == {
        "files": [
            {
                "key": layout.records_file_key(run_id, i),
                "rows": n,
                "source": f"s3://{BUCKET}/inputs/files/part-{i}.parquet",
            }
            for i, n in enumerate([250, 0, 150])
        ]
    }
    assert [get(s3, file["key"]) for file in index["files"]] == bodies
    # AND no records.parquet was written, and the pass ran on Arrow's default pool (no records writer, no mimalloc)
    assert layout.records_key(run_id) not in run_keys(s3, run_id)
    assert pools == []
    # AND the jobs number every row once, across the files, in order
    assert record_ids(s3, run_ctx) == [f"{i:011d}" for i in range(400)]


def test_a_prefix_whose_jobs_the_byte_quota_splits_further_still_gets_its_files_as_records(
    s3, emulator, lambda_context
):
    # GIVEN a prefix of two Parquet files with one schema whose 2 planned jobs (by rows) would exceed the model's
    # input file size quota (the jobs are then staged again from a local file)
    bodies = [put(s3, "inputs/big/a.parquet", rows(0, 600)), put(s3, "inputs/big/b.parquet", rows(600, 400))]
    emulator.state.model_quotas[CLAUDE] = Quotas(max_file_bytes=60_000)
    # WHEN preprocessed with up to 500 records per job
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/big/", "max_records_per_job": 500}, "q")
    # THEN the jobs were split further, every row numbered once, and the records are still the two files, copied
    manifest = json.loads(get(s3, run_ctx["manifest_key"]))
    assert len(manifest) > 2 and all(job["size_bytes"] <= 60_000 for job in manifest)
    assert record_ids(s3, run_ctx) == [f"{i:011d}" for i in range(1000)]
    index = json.loads(get(s3, run_ctx["records_key"]))
    assert [file["rows"] for file in index["files"]] == [600, 400]
    assert [get(s3, file["key"]) for file in index["files"]] == bodies


def test_a_prefix_refused_halfway_leaves_no_records_file(s3, lambda_context, monkeypatch):
    # GIVEN a prefix of two Parquet files with one schema, the second with a null topic, and the copies watched
    put(s3, "inputs/bad/a.parquet", rows(0, 300))
    put(s3, "inputs/bad/b.parquet", pa.table({"id": pa.array([300, 301]), "topic": ["x", None], "score": [1.0, 2.0]}))
    copies: list[str] = []
    original = type(s3).copy

    def watched(self: Any, source: dict[str, str], bucket: str, key: str, *args: Any, **kwargs: Any) -> Any:
        copies.append(key)
        return original(self, source, bucket, key, *args, **kwargs)

    monkeypatch.setattr(type(s3), "copy", watched)
    # WHEN preprocess runs THEN it names the row
    with pytest.raises(InputValidationError, match="null in row 301"):
        run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/bad/"}, "exec-bad")
    # AND nothing was copied (the files are copied once every row is validated), no upload stays open, and no file
    # of the run exists
    assert copies == []
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_a_prefix_whose_files_change_their_types_is_refused_as_before(s3, lambda_context):
    # GIVEN a prefix of two Parquet files whose ``id`` columns differ in type
    put(s3, "inputs/mixed/a.parquet", rows(0, 300))
    put(s3, "inputs/mixed/b.parquet", rows(300, 5).set_column(0, "id", pa.array(range(300, 305), pa.int32())))
    # WHEN preprocess runs THEN it refuses the second file's rows where they start, and leaves no file of the run
    with pytest.raises(InputValidationError, match=r"changes its columns or types after row 300"):
        run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/mixed/"}, "exec-mixed")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_a_file_of_the_prefix_that_is_not_parquet_is_named(s3, lambda_context):
    # GIVEN a prefix of Parquet files, the second of which is not Parquet (its footers are read several at a time)
    put(s3, "inputs/broken/a.parquet", rows(0, 200))
    s3.put_object(Bucket=BUCKET, Key="inputs/broken/b.parquet", Body=b"not a parquet file")
    put(s3, "inputs/broken/c.parquet", rows(200, 200))
    # WHEN preprocess runs THEN the error names that file, and no file of the run exists
    with pytest.raises(InputValidationError, match=r"inputs/broken/b\.parquet' could not be read as Parquet"):
        run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/broken/"}, "exec-broken")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_a_prefix_whose_schemas_differ_only_in_a_file_without_rows_writes_records_parquet(s3, lambda_context, pools):
    # GIVEN a prefix of two Parquet files with one schema and a third, without rows, of another schema (the pass
    # reads no batch of it, so it was accepted; its schema is not the others', so the files cannot be the records)
    first, second = rows(0, 120), rows(120, 80)
    put(s3, "inputs/odd/a.parquet", first)
    put(s3, "inputs/odd/b.parquet", second)
    put(s3, "inputs/odd/c.parquet", pa.table({"other": pa.array([], pa.string())}))
    # WHEN preprocess runs on the prefix
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/odd/"}, "exec-odd")
    # THEN the rows were written to records.parquet, as before (on the pool a pass writing records uses), and no
    # file was copied
    assert run_ctx["records_key"] == layout.records_key(run_ctx["run_id"])
    assert pq.read_table(io.BytesIO(get(s3, run_ctx["records_key"]))).equals(pa.concat_tables([first, second]))
    assert pools == [logic.RECORDS_POOL]
    assert not [key for key in run_keys(s3, run_ctx["run_id"]) if "/records/" in key or key.endswith("records.json")]


def answer(row: int) -> bytes:
    return json.dumps(
        {"recordId": f"{row:011d}", "modelInput": {}, "modelOutput": {"content": [{"type": "text", "text": f"a{row}"}]}}
    ).encode()


def postprocessed(s3, lambda_context, run_ctx: dict, index: int) -> pa.Table:
    """Job ``index`` of the run after Bedrock answered every row but its last, as postprocess writes it."""
    job = json.loads(get(s3, run_ctx["manifest_key"]))[index]
    prefix = layout.job_output_prefix(run_ctx["run_id"], index) + "abcdefghijkl/"
    lines = [answer(row) for row in range(job["first_row"], job["first_row"] + job["record_count"] - 1)]
    s3.put_object(Bucket=BUCKET, Key=prefix + "input.jsonl.out", Body=b"\n".join(lines) + b"\n")
    state = {"run": run_ctx, "job": job, "job_arn": JOB_ARN, "status": "Completed", "terminal": True}
    result = postprocess_handler.lambda_handler(state, lambda_context)
    return pq.read_table(io.BytesIO(get(s3, result["output_key"])))


def test_postprocess_over_the_files_gives_the_output_of_the_same_rows_in_one_object(s3, lambda_context):
    # GIVEN the same 400 rows as one Parquet object and as a prefix of three files (one without rows), each
    # preprocessed in jobs of at most 200 records (the second job spans the first file's end and the third's start)
    put(s3, "inputs/one.parquet", rows(0, 400))
    put(s3, "inputs/parts/0.parquet", rows(0, 250))
    put(s3, "inputs/parts/1.parquet", rows(250, 0))
    put(s3, "inputs/parts/2.parquet", rows(250, 150), row_group_size=32)
    limits = {"max_records_per_job": 200}
    one = run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/one.parquet", **limits}, "exec-one")
    files = run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/parts/", **limits}, "exec-files")
    assert layout.is_records_index(files["records_key"]) and not layout.is_records_index(one["records_key"])
    for index in range(files["num_jobs"]):
        # WHEN postprocess writes each job's output of both runs
        from_files, from_one = (postprocessed(s3, lambda_context, ctx, index) for ctx in (files, one))
        # THEN the outputs are the same: every input column in order, then the response and the error columns
        assert from_files.equals(from_one)
        assert from_files.column_names == ["id", "topic", "score", "response", "error_code", "error_message"]
    job = json.loads(get(s3, files["manifest_key"]))[1]
    assert (job["first_row"], job["record_count"]) == (200, 200)
