"""Parquet inputs: jobs planned from the footer's row count and their files streamed to S3 as multipart uploads during
the pass, byte for byte what staging writes, and nothing left in S3 when the pass fails or the plan changes."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from lambdas.preprocess import handler, logic, uploads
from lambdas.shared.errors import InputValidationError
from local.emulator import Quotas
from tests.functional.conftest import BUCKET

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
JOKES = {"model_id": CLAUDE, "prompt_id": "joke_about_topic"}


def run(lambda_context, execution_input: Any, name: str) -> dict:
    return handler.lambda_handler({"input": execution_input, "execution_name": name}, lambda_context)


def put(s3, key: str, table: pa.Table, *, row_group_size: int = 1000) -> str:
    buffer = io.BytesIO()
    if key.endswith(".csv"):
        pacsv.write_csv(table, buffer)
    else:
        pq.write_table(table, buffer, row_group_size=row_group_size)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}"


def job_files(s3, run_ctx: dict) -> list[bytes]:
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    files = [s3.get_object(Bucket=BUCKET, Key=job["input_key"])["Body"].read() for job in manifest]
    assert [len(body) for body in files] == [job["size_bytes"] for job in manifest]
    return files


def open_uploads(s3) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def count_records_parts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the parts the records upload sends, as it sends them."""
    sizes: list[int] = []
    original = uploads.ObjectUpload._send

    def counted(self: uploads.ObjectUpload) -> None:
        sizes.append(len(self._buffer))
        original(self)

    monkeypatch.setattr(uploads.ObjectUpload, "_send", counted)
    return sizes


def long_topics(n: int, width: int = 1000) -> pa.Table:
    return pa.table({"id": list(range(n)), "topic": [f"{i:06d} " + "w" * width for i in range(n)]})


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The size of every part the planned path sends, in order."""
    sizes: list[int] = []
    original = uploads.JobUploads._send

    def counted(self: uploads.JobUploads) -> None:
        sizes.append(len(self._buffer))
        original(self)

    monkeypatch.setattr(uploads.JobUploads, "_send", counted)
    return sizes


def test_streamed_job_files_of_several_parts_equal_the_staged_ones(s3, lambda_context, monkeypatch, sent):
    # GIVEN 12,000 rows of ~1 KB as Parquet and as CSV, S3's minimum part size of 5 MiB, and each Parquet row group of
    # 1,000 rows staged alone
    monkeypatch.setattr(uploads, "PART_BYTES", 5 << 20)
    monkeypatch.setattr(logic, "rebatched", lambda batches, *_: batches)
    parquet_uri = put(s3, "inputs/long.parquet", long_topics(12_000))
    csv_uri = put(s3, "inputs/long.csv", long_topics(12_000))
    # WHEN both are preprocessed into jobs of 6,000 records, and the CSV once more with the streamed paths off (its
    # lines staged in a local file, then uploaded)
    streamed = run(lambda_context, {**JOKES, "s3_uri": parquet_uri, "max_records_per_job": 6000}, "exec-parquet")
    parquet_parts = list(sent)
    one_pass = run(lambda_context, {**JOKES, "s3_uri": csv_uri, "max_records_per_job": 6000}, "exec-csv")
    csv_parts = sent[len(parquet_parts) :]
    monkeypatch.setattr(logic, "stage_greedy", lambda *args, **kwargs: None)
    monkeypatch.setattr(logic, "stage_planned", lambda *args, **kwargs: None)
    staged = run(lambda_context, {**JOKES, "s3_uri": csv_uri, "max_records_per_job": 6000}, "exec-staged")
    # THEN the Parquet input's two jobs went up in parts of at least 5 MiB (the last of each smaller)
    assert len(parquet_parts) == 4 and parquet_parts[0] >= 5 << 20 and parquet_parts[2] >= 5 << 20
    # AND the CSV input's jobs were streamed too (cut in its one pass), the staged run sent no part
    assert len(csv_parts) >= 2 and len(sent) == len(parquet_parts) + len(csv_parts)
    # AND the job files are byte for byte the staged path's, every row once and in order
    assert job_files(s3, streamed) == job_files(s3, staged) == job_files(s3, one_pass)
    ids = [json.loads(line)["recordId"] for body in job_files(s3, streamed) for line in body.splitlines()]
    assert ids == [f"{i:011d}" for i in range(12_000)]
    # AND both CSV runs' records hold the same rows (the one pass writes them uncompressed, the staged path Snappy)
    records = [s3.get_object(Bucket=BUCKET, Key=r["records_key"])["Body"].read() for r in (one_pass, staged)]
    assert pq.read_table(io.BytesIO(records[0])).equals(pq.read_table(io.BytesIO(records[1])))
    assert open_uploads(s3) == []


def test_a_null_found_mid_pass_aborts_every_upload(s3, lambda_context, monkeypatch, sent):
    # GIVEN a Parquet input whose row 2,500 is null, in its third row group of 1,000 rows, each group staged alone
    monkeypatch.setattr(logic, "rebatched", lambda batches, *_: batches)
    table = pa.table({"topic": [f"topic {i}" if i != 2500 else None for i in range(3000)]})
    uri = put(s3, "inputs/late-null.parquet", table)
    # WHEN preprocess runs THEN it names the row
    with pytest.raises(InputValidationError, match="null in row 2500"):
        run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 1000}, "exec-null")
    # AND the first two jobs had been sent, but no upload stays open and no file of the run exists
    assert len(sent) == 2
    assert open_uploads(s3) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_jobs_the_byte_quota_splits_further_are_staged_again(s3, emulator, lambda_context, sent):
    # GIVEN a Parquet input whose 2 planned jobs (by rows) would exceed the model's input file size quota
    uri = put(s3, "inputs/t.parquet", long_topics(1000, width=50), row_group_size=100)
    emulator.state.model_quotas[CLAUDE] = Quotas(max_file_bytes=60_000)
    # WHEN preprocessed with up to 500 records per job
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 500}, "exec-quota")
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())
    # THEN the two planned jobs had been sent, then the jobs were split further: balanced, each file under the limit,
    # and no upload of the first plan remains
    sizes = [job["record_count"] for job in manifest]
    assert len(sent) == 2
    assert len(sizes) > 2 and max(sizes) - min(sizes) <= 1 and sum(sizes) == 1000
    assert all(job["size_bytes"] <= 60_000 for job in manifest)
    keys = [
        obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"runs/{run_ctx['run_id']}/jobs/")["Contents"]
    ]
    assert sorted(keys) == sorted(job["input_key"] for job in manifest)
    assert open_uploads(s3) == []
    ids = [json.loads(line)["recordId"] for body in job_files(s3, run_ctx) for line in body.splitlines()]
    assert ids == [f"{i:011d}" for i in range(1000)]


def test_records_of_a_prefix_of_parquet_files_are_streamed_with_the_jobs(s3, lambda_context, monkeypatch):
    # GIVEN a prefix of two Parquet files (planned from their footers; their rows written to records.parquet: a third
    # file, without rows, has another schema, so the files cannot be the records as they are), and the local upload
    # of a records file watched
    first, second = long_topics(300, width=10), long_topics(200, width=10)
    put(s3, "inputs/two/a.parquet", first, row_group_size=100)
    put(s3, "inputs/two/b.parquet", second, row_group_size=100)
    put(s3, "inputs/two/c.parquet", pa.table({"other": pa.array([], pa.string())}))
    local_uploads: list[str] = []
    monkeypatch.setattr(type(s3), "upload_file", lambda self, name, *args, **kwargs: local_uploads.append(name))
    # WHEN preprocess runs on the prefix
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/two/"}, "exec-two")
    # THEN records.parquet holds both files' rows in order, sent during the pass (no local file uploaded after it)
    body = s3.get_object(Bucket=BUCKET, Key=run_ctx["records_key"])["Body"].read()
    assert pq.read_table(io.BytesIO(body)).equals(pa.concat_tables([first, second]))
    assert local_uploads == []
    assert open_uploads(s3) == []


def test_a_null_in_a_later_file_aborts_the_streamed_records_too(s3, lambda_context, monkeypatch):
    # GIVEN a prefix of two Parquet files whose second holds a null topic (and a third without rows of another schema,
    # so the rows are written to records.parquet), each row group of 100 rows staged alone, and records parts of 1 KiB
    # (so the records upload has parts in S3 before the null is found)
    monkeypatch.setattr(logic, "rebatched", lambda batches, *_: batches)
    put(s3, "inputs/bad/a.parquet", long_topics(300, width=10), row_group_size=100)
    put(s3, "inputs/bad/b.parquet", pa.table({"id": [1, 2], "topic": ["x", None]}))
    put(s3, "inputs/bad/c.parquet", pa.table({"other": pa.array([], pa.string())}))
    monkeypatch.setattr(uploads, "PART_BYTES", 1 << 10)
    records_parts = count_records_parts(monkeypatch)
    # WHEN preprocess runs THEN it names the row
    with pytest.raises(InputValidationError, match="null in row 301"):
        run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/bad/"}, "exec-bad")
    # AND the records had been sent in part, but neither their upload nor the job files' stays open, and no file of
    # the run exists
    assert records_parts
    assert open_uploads(s3) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_a_csv_input_is_read_once_and_its_records_sent_as_the_first_pass_writes_them(s3, lambda_context, monkeypatch):
    # GIVEN a CSV input, its reads counted, and the local upload of a records file watched
    from lambdas.preprocess import sources

    table = long_topics(500, width=10)
    uri = put(s3, "inputs/once.csv", table)
    reads: list[str] = []
    original = sources.TextSource.batches

    def counted(self: sources.TextSource) -> Any:
        reads.append(self.key)
        return original(self)

    monkeypatch.setattr(sources.TextSource, "batches", counted)
    local_uploads: list[str] = []
    monkeypatch.setattr(type(s3), "upload_file", lambda self, name, *args, **kwargs: local_uploads.append(name))
    # WHEN preprocess runs on it in jobs of 250 records
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 250}, "exec-once")
    # THEN the CSV was read once; records.parquet holds its rows, sent during the first pass (no local upload after)
    assert reads == ["inputs/once.csv"]
    body = s3.get_object(Bucket=BUCKET, Key=run_ctx["records_key"])["Body"].read()
    assert pq.read_table(io.BytesIO(body)).equals(table)
    assert local_uploads == []
    # AND the two jobs hold every row once, in order
    ids = [json.loads(line)["recordId"] for body in job_files(s3, run_ctx) for line in body.splitlines()]
    assert ids == [f"{i:011d}" for i in range(500)]
    assert open_uploads(s3) == []


def test_an_error_found_after_the_first_pass_aborts_the_records_upload(s3, lambda_context, monkeypatch):
    # GIVEN a CSV input of 1,000 rows and records parts of 1 KiB (the records upload has parts in S3 after the first
    # pass)
    monkeypatch.setattr(uploads, "PART_BYTES", 1 << 10)
    uri = put(s3, "inputs/many.csv", long_topics(1000, width=10))
    records_parts = count_records_parts(monkeypatch)
    # WHEN preprocess runs with at most 2 jobs of 100 records THEN the plan is refused once the rows are counted
    with pytest.raises(InputValidationError, match="max_num_jobs=2 is too small"):
        run(
            lambda_context,
            {**JOKES, "s3_uri": uri, "max_records_per_job": 100, "max_num_jobs": 2},
            "exec-too-many",
        )
    # AND the records had gone up in parts, but no upload stays open and no file of the run exists
    assert len(records_parts) > 1
    assert open_uploads(s3) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")


def test_a_parquet_input_is_read_for_the_template_columns_only(s3, lambda_context, monkeypatch):
    # GIVEN a Parquet input whose template uses one column of three, and the columns each Parquet read asks for
    from lambdas.preprocess import sources

    table = long_topics(400, width=10).append_column("notes", pa.array(["n" * 200] * 400))
    uri = put(s3, "inputs/wide.parquet", table, row_group_size=100)
    asked: list[Any] = []
    original = sources.parquet_batches

    def watched(parquet: pq.ParquetFile, columns: Any = None) -> Any:
        asked.append(columns)
        return original(parquet, columns)

    monkeypatch.setattr(sources, "parquet_batches", watched)
    # WHEN preprocess runs on it
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri}, "exec-wide")
    # THEN the file was read for the template's column only
    assert asked == [("topic",)]
    # AND every row is a record with its prompt, and the records are the whole input (a copy)
    lines = [json.loads(line) for body in job_files(s3, run_ctx) for line in body.splitlines()]
    assert [line["recordId"] for line in lines] == [f"{i:011d}" for i in range(400)]
    assert all(table.column("topic")[i].as_py() in json.dumps(line) for i, line in enumerate(lines))
    body = s3.get_object(Bucket=BUCKET, Key=run_ctx["records_key"])["Body"].read()
    assert pq.read_table(io.BytesIO(body)).equals(table)


def test_a_reserved_column_the_template_does_not_use_is_still_refused(s3, lambda_context):
    # GIVEN a Parquet input with a column named like an output column, which the template does not read
    uri = put(s3, "inputs/reserved.parquet", pa.table({"topic": ["a"] * 200, "response": ["b"] * 200}))
    # WHEN preprocess runs THEN the column is refused by name (the whole schema is checked, not only what is read)
    with pytest.raises(InputValidationError, match=r"\['response'\] whose names are reserved"):
        run(lambda_context, {**JOKES, "s3_uri": uri}, "exec-reserved")
    assert open_uploads(s3) == []


@pytest.mark.parametrize(("name", "pool"), [("pools.csv", "mimalloc"), ("pools.parquet", None)])
def test_a_run_that_writes_its_records_runs_on_mimalloc_and_one_over_a_parquet_object_on_the_images_pool(
    s3, lambda_context, monkeypatch, name: str, pool: str | None
):
    # GIVEN a CSV input (its records written by preprocess) or one Parquet object (copied as the records), and the
    # Arrow pool each pass of preprocess runs on, recorded as it runs
    pools: dict[str, str] = {}
    for step in ("stage",):  # every route's pass over the rows (one pass, two passes, planned)
        original = getattr(logic, step)

        def recorded(*args: Any, _step: str = step, _original: Any = original, **kwargs: Any) -> Any:
            pools[_step] = pa.default_memory_pool().backend_name
            return _original(*args, **kwargs)

        monkeypatch.setattr(logic, step, recorded)
    image_pool = pa.default_memory_pool().backend_name
    uri = put(s3, f"inputs/{name}", long_topics(300, width=10))
    # WHEN preprocess runs on it
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 100}, "exec-pools")
    # THEN the CSV's one pass (parse, check, write records.parquet and the job files) ran on mimalloc, the Parquet
    # object's pass on the process's pool, which is the process's pool again afterwards
    expected = {"stage": pool or image_pool}
    assert pools == expected
    assert pa.default_memory_pool().backend_name == image_pool
    # AND every row is in the jobs
    assert run_ctx["total_records"] == 300
    assert sum(len(body.splitlines()) for body in job_files(s3, run_ctx)) == 300
