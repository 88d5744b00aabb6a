"""A run as the planned jobs leave it in S3 (job files, manifest, outputs, results), for the resubmission and
finalize handlers; and the output a resubmission job's Bedrock run would write."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lambdas.shared import layout
from tests.functional.conftest import BUCKET

RUN = "run-1"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def run_context(total: int, num_jobs: int) -> dict[str, Any]:
    return {
        "run_id": RUN,
        "bucket": BUCKET,
        "model_id": CLAUDE,
        "family": "anthropic",
        "output_kind": "text",
        "job_name_prefix": "t",
        "total_records": total,
        "num_jobs": num_jobs,
        "records_key": layout.records_key(RUN),
        "manifest_key": layout.manifest_key(RUN),
    }


def input_line(row: int) -> bytes:
    model_input = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "user"}]}
    return json.dumps({"recordId": f"{row:011d}", "modelInput": model_input | {"row": row}}).encode()


def put_parquet(s3: Any, key: str, table: pa.Table) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())


def read_parquet(s3: Any, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def stage_planned_jobs(s3: Any, codes_per_job: list[list[str | None]]) -> dict[str, Any]:
    """One planned job per list of error codes (one per row; None: the row has a response). Returns the run."""
    first, manifest = 0, []
    for index, codes in enumerate(codes_per_job):
        rows = list(range(first, first + len(codes)))
        input_key = layout.job_input_key(RUN, index)
        s3.put_object(Bucket=BUCKET, Key=input_key, Body=b"\n".join(input_line(row) for row in rows) + b"\n")
        manifest.append(
            {"index": index, "input_key": input_key, "first_row": first, "record_count": len(rows), "size_bytes": 1}
        )
        output = pa.table(
            {
                "id": pa.array(rows, pa.int32()),
                "response": pa.array(
                    [f"answer {r}" if c is None else None for r, c in zip(rows, codes, strict=True)], pa.string()
                ),
                "error_code": pa.array(codes, pa.string()),
                "error_message": pa.array([None if c is None else f"first error {c}" for c in codes], pa.string()),
            }
        )
        output_key = layout.output_key(RUN, index)
        put_parquet(s3, output_key, output)
        errors = Counter(code for code in codes if code is not None)
        result = {
            "index": index,
            "job_arn": f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/job{index:09d}",
            "status": "Completed",
            "record_count": len(rows),
            "succeeded": len(rows) - sum(errors.values()),
            "failed": sum(errors.values()),
            "output_key": output_key,
            "error_counts": dict(errors),
        }
        s3.put_object(Bucket=BUCKET, Key=layout.result_key(RUN, index), Body=json.dumps(result).encode())
        first += len(rows)
    s3.put_object(Bucket=BUCKET, Key=layout.manifest_key(RUN), Body=json.dumps(manifest).encode())
    return run_context(first, len(codes_per_job))


def bedrock_output(s3: Any, job_id: str, lines: list[dict[str, Any]], *, index: int, resubmission: bool) -> str:
    """Write a ``.jsonl.out`` as Bedrock would for job ``job_id`` (12 characters), under the output URI Submit gives
    job ``index``; returns the job ARN."""
    key = f"{layout.job_output_prefix(RUN, index, resubmission=resubmission)}{job_id}/0000.jsonl.out"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    return f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{job_id}"


def answer(row: int, text: str) -> dict[str, Any]:
    return {"recordId": f"{row:011d}", "modelOutput": {"content": [{"type": "text", "text": text}]}}


def record_error(row: int, code: int, message: str) -> dict[str, Any]:
    return {"recordId": f"{row:011d}", "error": {"errorCode": code, "errorMessage": message}}
