from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.postprocess import handler
from lambdas.shared import layout
from tests.functional.conftest import BUCKET

RUN = "run-1"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefghijkl"


def stage_records(s3, n: int) -> None:
    table = pa.table(
        {"id": list(range(n)), "topic": [f"t{i}" for i in range(n)], "record_id": [f"{i:011d}" for i in range(n)]}
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=64)
    s3.put_object(Bucket=BUCKET, Key=f"runs/{RUN}/records.parquet", Body=buffer.getvalue())


def state(first_row: int, count: int, *, status="Completed", job_arn=JOB_ARN, kind="text", failure=None):
    return {
        "run": {
            "run_id": RUN,
            "bucket": BUCKET,
            "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
            "family": "anthropic" if kind == "text" else "titan-embed-text-v2",
            "output_kind": kind,
            "job_name_prefix": "t",
            "total_records": 300,
            "num_jobs": 2,
            "records_key": f"runs/{RUN}/records.parquet",
            "manifest_key": f"runs/{RUN}/jobs.json",
        },
        "job": {
            "index": 1,
            "input_key": f"runs/{RUN}/jobs/0001.jsonl",
            "first_row": first_row,
            "record_count": count,
            "size_bytes": 1,
        },
        "job_arn": job_arn,
        "status": status,
        "terminal": True,
        "failure": failure,
    }


def put_output(s3, lines: list[bytes], name="0001.jsonl.out", manifest=None, job_folder="abcdefghijkl/"):
    """Bedrock's output of job 1 under the output URI Submit gives it: in a folder named by the job id (as the
    emulator writes it), or ``job_folder=""`` directly under the URI."""
    prefix = layout.job_output_prefix(RUN, 1) + job_folder
    s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=b"\n".join(lines) + b"\n")
    if manifest:
        s3.put_object(Bucket=BUCKET, Key=prefix + "manifest.json.out", Body=json.dumps(manifest).encode())


def ok(i: int, text: str) -> bytes:
    return json.dumps(
        {"recordId": f"{i:011d}", "modelInput": {}, "modelOutput": {"content": [{"type": "text", "text": text}]}}
    ).encode()


def read_output(s3, index=1) -> pa.Table:
    body = s3.get_object(Bucket=BUCKET, Key=f"runs/{RUN}/output/{index:04d}.parquet")["Body"].read()
    return pq.read_table(io.BytesIO(body))


def test_left_join_keeps_every_row_whatever_the_output_order(s3, lambda_context):
    # GIVEN job 1 covering rows 150..299, whose output is shuffled, has one record error, one corrupt line (its
    # recordId still readable), a line for a row outside the job, and no line for row 299
    stage_records(s3, 300)
    lines = [ok(i, f"answer {i}") for i in reversed(range(150, 297))]
    lines.append(
        json.dumps(
            {"recordId": f"{297:011d}", "modelInput": {}, "error": {"errorCode": 400, "errorMessage": "bad request"}}
        ).encode()
    )
    lines.append(b'{"recordId": "00000000298", "modelOutput": {"conte')
    lines.append(ok(5, "belongs to another job"))
    put_output(s3, lines, manifest={"inputTokenCount": 11, "outputTokenCount": 22})
    # WHEN postprocess runs for a PartiallyCompleted job
    result = handler.lambda_handler(state(150, 150, status="PartiallyCompleted"), lambda_context)
    # THEN every one of the 150 rows is there once, in input order, with its own answer or an error
    table = read_output(s3)
    assert table.column_names == ["id", "topic", "response", "error_code", "error_message"]
    assert table.column("id").to_pylist() == list(range(150, 300))
    rows = table.to_pylist()
    assert all(r["response"] == f"answer {r['id']}" and r["error_code"] is None for r in rows[:147])
    assert (rows[147]["error_code"], rows[147]["error_message"]) == ("400", "bad request")
    assert rows[148]["error_code"] == "UNPARSABLE_OUTPUT" and rows[148]["response"] is None  # corrupt line
    assert rows[148]["error_message"].endswith(
        f"s3://{BUCKET}/{layout.job_output_prefix(RUN, 1)}abcdefghijkl/0001.jsonl.out"
    )
    assert rows[149]["error_code"] == "NOT_PROCESSED"
    assert result["succeeded"] == 147 and result["failed"] == 3
    assert (result["input_tokens"], result["output_tokens"]) == (11, 22)
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs/{RUN}/results/0001.json")["Body"].read())
    assert stored == result


@pytest.mark.parametrize("job_folder", ["abcdefghijkl/", "", "some/deeper/folder/"])
def test_the_jobs_output_is_read_wherever_bedrock_writes_it_under_the_jobs_uri(s3, lambda_context, job_folder):
    # GIVEN job 1's output and manifest under its own output URI: in a folder named by the job id (as the emulator
    # writes it), directly under the URI, or deeper (Bedrock's layout under the URI is undocumented)
    stage_records(s3, 300)
    put_output(
        s3, [ok(i, f"answer {i}") for i in range(150, 300)], manifest={"inputTokenCount": 3}, job_folder=job_folder
    )
    # AND another job's output beside it, under its own URI (job 0), which job 1 must not read
    s3.put_object(Bucket=BUCKET, Key=layout.job_output_prefix(RUN, 0) + "zyxw/0000.jsonl.out", Body=ok(151, "wrong"))
    # WHEN postprocess runs for job 1
    result = handler.lambda_handler(state(150, 150), lambda_context)
    # THEN every row has its own answer and the manifest's tokens are counted
    rows = read_output(s3).to_pylist()
    assert [r["response"] for r in rows] == [f"answer {i}" for i in range(150, 300)]
    assert result["succeeded"] == 150 and result["input_tokens"] == 3


def test_a_garbled_line_is_unparsable_output_when_its_record_id_can_be_read_and_missing_output_otherwise(
    s3, lambda_context
):
    # GIVEN a completed job of rows 0..149 whose output has two garbled lines: one cut after its recordId (row 7),
    # one cut inside it (its record, row 8, cannot be named), and good lines for every other row
    stage_records(s3, 300)
    lines = [ok(i, f"answer {i}") for i in range(150) if i not in (7, 8)]
    lines.insert(20, ok(7, "answer 7")[:40])
    lines.insert(90, ok(8, "answer 8")[:20])
    assert lines[20].startswith(b'{"recordId": "00000000007", ') and lines[90] == b'{"recordId": "000000'
    put_output(s3, lines, name="part-2.jsonl.out")
    # WHEN postprocess runs for the Completed job
    result = handler.lambda_handler(state(0, 150), lambda_context)
    # THEN row 7 is UNPARSABLE_OUTPUT (the model answered it) with a message naming the record and the output object
    rows = read_output(s3, index=1).to_pylist()
    key = f"{layout.job_output_prefix(RUN, 1)}abcdefghijkl/part-2.jsonl.out"
    assert rows[7]["error_code"] == "UNPARSABLE_OUTPUT" and rows[7]["response"] is None
    assert "output line of record 00000000007 could not be parsed" in rows[7]["error_message"]
    assert rows[7]["error_message"].endswith(f"s3://{BUCKET}/{key}")
    # AND row 8, whose line says nothing readable, has no output (MISSING_OUTPUT, which resubmission sends again)
    assert rows[8]["error_code"] == "MISSING_OUTPUT"
    # AND every other row has its answer, and the counts add up to the job's rows
    assert all(row["response"] == f"answer {row['id']}" for row in rows if row["id"] not in (7, 8))
    assert result["error_counts"] == {"UNPARSABLE_OUTPUT": 1, "MISSING_OUTPUT": 1} and result["succeeded"] == 148


@pytest.mark.parametrize(
    ("status", "code"), [("Failed", "JOB_FAILED"), ("Expired", "JOB_EXPIRED"), ("Stopped", "JOB_STOPPED")]
)
def test_jobs_that_ended_badly_still_yield_every_row(s3, lambda_context, status, code):
    # GIVEN a job that wrote no output at all
    stage_records(s3, 300)
    # WHEN postprocess runs THEN all rows come out with the job-level error
    result = handler.lambda_handler(state(0, 150, status=status), lambda_context)
    table = read_output(s3)
    assert table.num_rows == 150 and set(table.column("error_code").to_pylist()) == {code}
    assert result["failed"] == 150 and result["status"] == status


def test_submit_failure_caught_by_the_state_machine_marks_rows(s3, lambda_context):
    stage_records(s3, 300)
    failure = {"Error": "ValidationException", "Cause": "model not enabled"}
    result = handler.lambda_handler(state(0, 150, status=None, job_arn=None, failure=failure), lambda_context)
    table = read_output(s3)
    assert set(table.column("error_code").to_pylist()) == {"SUBMIT_FAILED"}
    assert "model not enabled" in table.column("error_message")[0].as_py()
    assert result["status"] == "SubmitFailed"


def test_embeddings_are_float32_lists(s3, lambda_context):
    stage_records(s3, 300)
    lines = [
        json.dumps({"recordId": f"{i:011d}", "modelOutput": {"embedding": [0.5] * 4}}).encode() for i in range(150)
    ]
    put_output(s3, lines)
    handler.lambda_handler(state(0, 150, kind="embedding"), lambda_context)
    table = read_output(s3)
    assert table.schema.field("embedding").type == pa.list_(pa.float32())
    assert table.column("embedding")[3].as_py() == [0.5] * 4


class RecordingS3:
    """The moto client, recording every ``download_file``; with ``cut_after`` bytes, the body of each output object
    GET (no Range) breaks off after that many bytes as a reset connection does (botocore's ResponseStreamingError)."""

    def __init__(self, s3, cut_after: int | None = None) -> None:
        self._s3, self._cut_after = s3, cut_after
        self.downloads: list[str] = []
        self.streamed: list[str] = []

    def get_object(self, **kwargs):
        answer = self._s3.get_object(**kwargs)
        if kwargs["Key"].endswith(".jsonl.out"):
            self.streamed.append(kwargs["Key"])
            if self._cut_after is not None:
                answer["Body"] = CutBody(answer["Body"], self._cut_after)
        return answer

    def download_file(self, bucket, key, filename):
        self.downloads.append(key)
        return self._s3.download_file(bucket, key, filename)

    def __getattr__(self, name):
        return getattr(self._s3, name)


class CutBody(io.RawIOBase):
    """A response body that raises ResponseStreamingError once ``limit`` bytes were read."""

    def __init__(self, body, limit: int) -> None:
        super().__init__()
        self._body, self._left = body, limit

    def readable(self) -> bool:
        return True

    def read(self, size=-1):
        from botocore.exceptions import ResponseStreamingError

        if self._left <= 0:
            raise ResponseStreamingError(error="Connection broken: connection reset by peer")
        data = self._body.read(self._left if size is None or size < 0 else min(size, self._left))
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._body.close()
        super().close()


def run_logic(s3, tmp_path, first_row: int, count: int) -> dict:
    from lambdas.postprocess import logic
    from lambdas.shared.models import JobState

    return logic.postprocess(JobState.model_validate(state(first_row, count)), s3=s3, workdir=tmp_path).model_dump()


def test_an_output_of_the_documented_shape_is_parsed_as_it_streams_without_a_local_copy(s3, tmp_path):
    # GIVEN job 1's output, every line of the documented shape, shuffled
    stage_records(s3, 300)
    put_output(s3, [ok(i, f"answer {i}") for i in reversed(range(150, 300))])
    recording = RecordingS3(s3)
    # WHEN postprocess runs
    result = run_logic(recording, tmp_path, 150, 150)
    # THEN the object was read once, from its GET's body, and never downloaded to local storage
    assert len(recording.streamed) == 1 and recording.downloads == []
    # AND every row has its own answer
    assert [r["response"] for r in read_output(s3).to_pylist()] == [f"answer {i}" for i in range(150, 300)]
    assert result["succeeded"] == 150 and list(tmp_path.iterdir()) == []


def test_an_output_off_the_documented_shape_is_downloaded_and_read_by_the_general_path(s3, tmp_path):
    # GIVEN job 1's output with a corrupt line (its recordId readable) among good ones
    stage_records(s3, 300)
    lines = [ok(i, f"answer {i}") for i in range(150, 299)] + [ok(299, "answer 299")[:40]]
    put_output(s3, lines)
    recording = RecordingS3(s3)
    # WHEN postprocess runs
    result = run_logic(recording, tmp_path, 150, 150)
    # THEN the streamed parse declined it, and the object was downloaded and read line by line
    assert len(recording.streamed) == 1 and len(recording.downloads) == 1
    rows = read_output(s3).to_pylist()
    assert all(r["response"] == f"answer {r['id']}" for r in rows[:149])
    assert rows[149]["error_code"] == "UNPARSABLE_OUTPUT"
    assert result["succeeded"] == 149 and list(tmp_path.iterdir()) == []


def test_an_output_stream_cut_short_is_downloaded_and_read_again_whole(s3, tmp_path):
    # GIVEN job 1's output, whose GET body breaks off after 1,000 bytes (a reset connection)
    stage_records(s3, 300)
    put_output(s3, [ok(i, f"answer {i}") for i in range(150, 300)])
    recording = RecordingS3(s3, cut_after=1_000)
    # WHEN postprocess runs
    result = run_logic(recording, tmp_path, 150, 150)
    # THEN nothing of the broken stream was kept: the object was downloaded (download_file retries) and every row has
    # its answer once
    assert len(recording.downloads) == 1
    assert [r["response"] for r in read_output(s3).to_pylist()] == [f"answer {i}" for i in range(150, 300)]
    assert result["succeeded"] == 150 and result["failed"] == 0
