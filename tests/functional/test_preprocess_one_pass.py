"""CSV and JSONL inputs (sources that cannot count their rows before they are read): one pass, the jobs cut greedily as
the rows arrive, records.parquet and the job files streamed to S3 during the pass; the two-pass route (records first,
then balanced jobs) where the greedy jobs cannot stand, and nothing left in S3 by an error or an abandoned attempt."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from lambdas.preprocess import handler, logic, sources, uploads
from lambdas.shared.errors import InputValidationError
from local.emulator import Quotas
from tests.functional.conftest import BUCKET

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
JOKES = {"model_id": CLAUDE, "prompt_id": "joke_about_topic"}


def run(lambda_context, execution_input: Any, name: str) -> dict:
    return handler.lambda_handler({"input": execution_input, "execution_name": name}, lambda_context)


def put(s3, key: str, table: pa.Table) -> str:
    """``table`` as a CSV or JSONL object (by the key's suffix); its URI."""
    if key.endswith(".csv"):
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        body = buffer.getvalue()
    else:
        body = "".join(json.dumps(row) + "\n" for row in table.to_pylist()).encode()
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


def topics(n: int, width: int = 10) -> pa.Table:
    return pa.table({"id": list(range(n)), "topic": [f"{i:06d} " + "w" * width for i in range(n)]})


def manifest(s3, run_ctx: dict) -> list[dict]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=run_ctx["manifest_key"])["Body"].read())


def job_files(s3, run_ctx: dict) -> list[bytes]:
    files = [s3.get_object(Bucket=BUCKET, Key=job["input_key"])["Body"].read() for job in manifest(s3, run_ctx)]
    assert [len(body) for body in files] == [job["size_bytes"] for job in manifest(s3, run_ctx)]
    return files


def record_ids(s3, run_ctx: dict) -> list[str]:
    return [json.loads(line)["recordId"] for body in job_files(s3, run_ctx) for line in body.splitlines()]


def records(s3, run_ctx: dict) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=run_ctx["records_key"])["Body"].read()))


def open_uploads(s3) -> list[dict]:
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def run_objects(s3) -> list[str]:
    return [obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/").get("Contents", [])]


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The key of every read of a CSV or JSONL object, in order."""
    keys: list[str] = []
    original = sources.TextSource.batches

    def counted(self: sources.TextSource) -> Any:
        keys.append(self.key)
        return original(self)

    monkeypatch.setattr(sources.TextSource, "batches", counted)
    return keys


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_jobs_are_cut_greedily_by_rows_in_one_read(s3, lambda_context, reads, suffix):
    # GIVEN 1,050 rows as CSV or JSONL
    table = topics(1050)
    uri = put(s3, f"inputs/rows{suffix}", table)
    # WHEN preprocess runs in jobs of at most 400 records
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 400}, "exec-rows")
    # THEN the input was read once, and the jobs were cut as the rows came: two full jobs, the last with the rest
    # (not the balanced 350 each a known row count gives)
    assert reads == [f"inputs/rows{suffix}"]
    assert [job["record_count"] for job in manifest(s3, run_ctx)] == [400, 400, 250]
    assert [job["first_row"] for job in manifest(s3, run_ctx)] == [0, 400, 800]
    # AND every row is a record, once and in order, and records.parquet holds the input's rows in order
    assert record_ids(s3, run_ctx) == [f"{i:011d}" for i in range(1050)]
    assert records(s3, run_ctx).equals(table)
    assert open_uploads(s3) == []


def test_a_job_closes_before_the_line_that_would_take_it_over_the_byte_quota(s3, emulator, lambda_context, reads):
    # GIVEN 1,160 rows of 283-byte lines (106 fit in 30,000 bytes; the last job gets 100), and a model whose input
    # file size quota is 30,000 bytes
    uri = put(s3, "inputs/bytes.csv", topics(1160, width=50))
    emulator.state.model_quotas[CLAUDE] = Quotas(max_file_bytes=30_000)
    # WHEN preprocess runs in jobs of at most 500 records
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 500}, "exec-bytes")
    jobs, files = manifest(s3, run_ctx), job_files(s3, run_ctx)
    # THEN the input was read once; every job file is within the quota, and every job but the last was closed only
    # because its next line would not fit (cut at line granularity)
    assert reads == ["inputs/bytes.csv"]
    assert all(len(body) <= 30_000 for body in files)
    for body, following in zip(files, files[1:], strict=False):
        assert len(body) + len(following.splitlines(keepends=True)[0]) > 30_000
    assert [job["record_count"] for job in jobs] == [106] * 10 + [100]
    # AND every row is a record, once and in order
    assert record_ids(s3, run_ctx) == [f"{i:011d}" for i in range(1160)]


def test_a_last_job_under_the_minimum_falls_back_to_two_passes(s3, lambda_context, reads, monkeypatch):
    # GIVEN 1,030 rows as CSV: jobs of 500 records cut greedily would leave 30 rows, under the model's minimum of 100
    # records per job; and what S3 holds when the two-pass route starts, watched
    table = topics(1030)
    uri = put(s3, "inputs/short-tail.csv", table)
    seen_at_fallback: list[tuple[list[str], list[dict]]] = []
    original = logic.convert

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen_at_fallback.append((run_objects(s3), open_uploads(s3)))
        return original(*args, **kwargs)

    monkeypatch.setattr(logic, "convert", watched)
    # WHEN preprocess runs in jobs of at most 500 records
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 500}, "exec-tail")
    # THEN the one-pass attempt left nothing in S3 (no object, no upload open) when the two passes began
    assert seen_at_fallback == [([], [])]
    # AND the two passes read the input again and planned balanced jobs, each over the minimum
    assert reads == ["inputs/short-tail.csv", "inputs/short-tail.csv"]
    assert [job["record_count"] for job in manifest(s3, run_ctx)] == [344, 343, 343]
    # AND the run holds every row once, in order, and only the final jobs' files
    assert record_ids(s3, run_ctx) == [f"{i:011d}" for i in range(1030)]
    assert records(s3, run_ctx).equals(table)
    job_keys = sorted(key for key in run_objects(s3) if "/jobs/" in key)
    assert job_keys == sorted(job["input_key"] for job in manifest(s3, run_ctx))
    assert open_uploads(s3) == []


def test_one_pass_job_files_are_the_two_pass_ones_apart_from_the_boundaries(s3, lambda_context, monkeypatch):
    # GIVEN 1,050 JSONL rows, some text needing JSON escapes
    table = pa.table({"topic": [f'row {i} "quoted"\\ tab\t' + "é" * (i % 7) for i in range(1050)]})
    uri = put(s3, "inputs/same.jsonl", table)
    # WHEN preprocess runs in one pass, and once more with the one pass off (the two-pass route)
    one_pass = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 400}, "exec-one")
    monkeypatch.setattr(logic, "stage_greedy", lambda *args, **kwargs: None)
    two_pass = run(lambda_context, {**JOKES, "s3_uri": uri, "max_records_per_job": 400}, "exec-two")
    # THEN the jobs differ only in where they are cut: greedy 400, 400, 250 against balanced 350 each
    assert [job["record_count"] for job in manifest(s3, one_pass)] == [400, 400, 250]
    assert [job["record_count"] for job in manifest(s3, two_pass)] == [350, 350, 350]
    # AND the job files hold the same lines, byte for byte, and the records the same rows
    assert b"".join(job_files(s3, one_pass)) == b"".join(job_files(s3, two_pass))
    assert records(s3, one_pass).equals(records(s3, two_pass)) and records(s3, one_pass).equals(table)


@pytest.mark.parametrize(
    ("body", "execution_input", "message"),
    [
        pytest.param(
            "".join(f'{{"topic": "t{i}"}}\n' for i in range(600)) + '{"topic": null}\n',
            {"max_records_per_job": 200},
            "null in row 600",
            id="null-after-sent-jobs",
        ),
        pytest.param(
            "".join(f'{{"topic": "t{i}"}}\n' for i in range(600)) + '{"topic": 5}\n',
            {"max_records_per_job": 200},
            "changes its columns or types|could not be read as JSONL",
            id="schema-change",
        ),
        pytest.param(
            "".join(f'{{"topic": "t{i}"}}\n' for i in range(1000)),
            {"max_records_per_job": 100, "max_num_jobs": 3},
            "max_num_jobs=3 is too small: 1000 rows with max_records_per_job=100 need 10 jobs",
            id="max-num-jobs",
        ),
        pytest.param(
            "".join(f'{{"topic": "t{i}"}}\n' for i in range(300)) + '{"topic": "' + "x" * 40_000 + '"}\n',
            {"max_records_per_job": 100},
            "row 300 alone makes a",
            id="row-over-byte-quota",
        ),
    ],
)
def test_errors_abort_every_upload(s3, emulator, lambda_context, monkeypatch, body, execution_input, message):
    # GIVEN a JSONL input with an error after several jobs' rows, read in blocks of 2 KiB each staged alone, job and
    # records parts of 1 KiB (parts are in S3 when the error is found), and a model whose input file size quota is
    # 30,000 bytes
    s3.put_object(Bucket=BUCKET, Key="inputs/bad.jsonl", Body=body.encode())
    emulator.state.model_quotas[CLAUDE] = Quotas(max_file_bytes=30_000)
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 2 << 10)
    monkeypatch.setattr(logic, "rebatched", lambda batches, *_: batches)
    monkeypatch.setattr(uploads, "PART_BYTES", 1 << 10)
    sent: list[str] = []
    original = uploads._Parts._upload_part

    def counted(self: uploads._Parts, key: str, *args: Any) -> None:
        sent.append(key)
        original(self, key, *args)

    monkeypatch.setattr(uploads._Parts, "_upload_part", counted)
    # WHEN preprocess runs THEN it raises the error, worded as the two-pass route words it
    with pytest.raises(InputValidationError, match=message):
        run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/bad.jsonl", **execution_input}, "exec-bad")
    # AND parts had been sent, but no upload stays open and no file of the run exists
    assert sent
    assert open_uploads(s3) == []
    assert run_objects(s3) == []


def test_an_input_without_rows_leaves_nothing(s3, lambda_context):
    # GIVEN a CSV file with a header and no rows
    s3.put_object(Bucket=BUCKET, Key="inputs/empty.csv", Body=b"id,topic\n")
    # WHEN preprocess runs THEN it says the input has no rows, and leaves nothing in S3
    with pytest.raises(InputValidationError, match="has no rows"):
        run(lambda_context, {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/empty.csv"}, "exec-empty")
    assert open_uploads(s3) == []
    assert run_objects(s3) == []


def test_fewer_rows_than_a_batch_job_needs_make_one_on_demand_job_in_one_pass(s3, lambda_context, reads):
    # GIVEN 40 CSV rows, under the model's minimum of 100 records per batch job
    uri = put(s3, "inputs/few.csv", topics(40))
    # WHEN preprocess runs
    run_ctx = run(lambda_context, {**JOKES, "s3_uri": uri}, "exec-few")
    # THEN the input was read once, into one on-demand job of every row
    assert reads == ["inputs/few.csv"]
    assert [(job["record_count"], job["on_demand"]) for job in manifest(s3, run_ctx)] == [(40, True)]
    assert record_ids(s3, run_ctx) == [f"{i:011d}" for i in range(40)]
