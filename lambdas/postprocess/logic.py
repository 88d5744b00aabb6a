"""Postprocess one job: join Bedrock's output on record id with the job's input rows, keeping every row.

Left join by construction: the job's rows are read from ``records.parquet``; each output line fills the slot of its
record (record ids are row numbers), so output order does not matter. Rows without a result get an error code: the
record's own ``error``, or a job-level code when the job failed, expired, was stopped or never started.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from lambdas.shared import layout
from lambdas.shared.model_families import ModelAdapter, adapter_for_family
from lambdas.shared.models import JobResult, JobState
from lambdas.shared.s3io import S3RangeReader, list_keys, put_json

RECORD_ID = "record_id"

# Code for rows with no output line, by the job's final status.
MISSING_ROW_CODES: dict[str, str] = {
    "Completed": "MISSING_OUTPUT",
    "PartiallyCompleted": "NOT_PROCESSED",
    "Failed": "JOB_FAILED",
    "Expired": "JOB_EXPIRED",
    "Stopped": "JOB_STOPPED",
}


def read_rows(s3: Any, bucket: str, key: str, first_row: int, count: int) -> pa.Table:
    """Read rows [first_row, first_row + count) of a Parquet object, fetching only the row groups needed."""
    parquet = pq.ParquetFile(S3RangeReader(s3, bucket, key))
    groups, start, group_start = [], None, 0
    for index in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(index).num_rows
        if group_start + rows > first_row and group_start < first_row + count:
            groups.append(index)
            start = group_start if start is None else start
        group_start += rows
    table = parquet.read_row_groups(groups)
    return table.slice(first_row - (start or 0), count)


@dataclass
class JoinedOutput:
    """Per-row results of one job, filled from output lines in any order."""

    first_row: int
    count: int
    values: list[Any] = field(init=False)
    codes: list[str | None] = field(init=False)
    messages: list[str | None] = field(init=False)
    unmatched_lines: int = 0

    def __post_init__(self) -> None:
        self.values = [None] * self.count
        self.codes = [None] * self.count
        self.messages = [None] * self.count
        self._seen = [False] * self.count

    def slot(self, record_id: Any) -> int | None:
        try:
            index = int(record_id) - self.first_row
        except (TypeError, ValueError):
            return None
        if 0 <= index < self.count and not self._seen[index]:
            self._seen[index] = True
            return index
        return None

    def add_record(self, record_id: Any, error: Any, model_output: Any, adapter: ModelAdapter) -> None:
        index = self.slot(record_id)
        if index is None:
            self.unmatched_lines += 1
            return
        if error is not None:
            self.codes[index] = (
                str(error.get("errorCode", "RECORD_ERROR")) if isinstance(error, dict) else "RECORD_ERROR"
            )
            self.messages[index] = str(error.get("errorMessage", error) if isinstance(error, dict) else error)
            return
        try:
            self.values[index] = adapter.parse_model_output(model_output)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.codes[index] = "UNPARSABLE_OUTPUT"
            self.messages[index] = f"could not read modelOutput: {exc}"

    def add_line(self, raw: bytes, adapter: ModelAdapter) -> None:
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            self.unmatched_lines += 1  # a corrupt line: its record stays missing and gets the job-level code
            return
        self.add_record(line.get("recordId"), line.get("error"), line.get("modelOutput"), adapter)

    def add_file(self, path: Path, adapter: ModelAdapter) -> None:
        """Read a whole ``.jsonl.out`` with Arrow's multithreaded JSON parser; line by line if any line is bad."""
        try:
            table = pajson.read_json(path)
        except pa.ArrowInvalid:
            with path.open("rb") as lines:
                for raw in lines:
                    if raw.strip():
                        self.add_line(raw, adapter)
            return

        def column(name: str) -> Any:
            return table.column(name).to_pylist() if name in table.column_names else repeat(None)

        for record_id, error, model_output in zip(
            column("recordId"), column("error"), column("modelOutput"), strict=False
        ):
            self.add_record(record_id, error, model_output, adapter)

    def fill_missing(self, code: str, message: str) -> None:
        for index in range(self.count):
            if not self._seen[index]:
                self.codes[index] = code
                self.messages[index] = message


def missing_reason(state: JobState) -> tuple[str, str]:
    if state.failure is not None:
        cause = str(state.failure.get("Cause") or state.failure.get("Error") or "unknown error")
        code = "SUBMIT_FAILED" if not state.job_arn else "ORCHESTRATION_ERROR"
        return code, cause[:1000]
    status = state.status or "Unknown"
    code = MISSING_ROW_CODES.get(status, "MISSING_OUTPUT")
    detail = f": {state.message}" if state.message else ""
    return code, f"no output for this record; job {state.job_arn} ended {status}{detail}"


def output_column(kind: str, values: list[Any]) -> tuple[str, pa.Array]:
    if kind == "embedding":
        return "embedding", pa.array(values, pa.list_(pa.float32()))
    return "response", pa.array(values, pa.string())


def build_table(records: pa.Table, kind: str, joined: JoinedOutput) -> pa.Table:
    table = records.drop_columns([RECORD_ID]) if RECORD_ID in records.column_names else records
    name, values = output_column(kind, joined.values)
    table = table.append_column(name, values)
    table = table.append_column("error_code", pa.array(joined.codes, pa.string()))
    return table.append_column("error_message", pa.array(joined.messages, pa.string()))


def read_outputs(
    s3: Any, bucket: str, prefix: str, joined: JoinedOutput, adapter: ModelAdapter, workdir: Path
) -> dict[str, int]:
    """Feed every ``*.jsonl.out`` under the job's output prefix into ``joined``; return the manifest's token counts."""
    tokens = {"inputTokenCount": 0, "outputTokenCount": 0}
    for key, _size in list_keys(s3, bucket, prefix):
        if key.endswith(".jsonl.out"):
            local = workdir / "output.jsonl"
            s3.download_file(bucket, key, str(local))
            joined.add_file(local, adapter)
            local.unlink()
        elif key.endswith("manifest.json.out"):
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            tokens = {name: int(manifest.get(name) or 0) for name in tokens}
    return tokens


def postprocess(state: JobState, *, s3: Any, workdir: Path) -> JobResult:
    run, job = state.run, state.job
    adapter = adapter_for_family(run.family)
    records = read_rows(s3, run.bucket, run.records_key, job.first_row, job.record_count)
    joined = JoinedOutput(first_row=job.first_row, count=job.record_count)
    tokens = {"inputTokenCount": 0, "outputTokenCount": 0}
    if state.job_arn:
        prefix = f"{layout.bedrock_output_prefix(run.run_id)}{layout.job_id_from_arn(state.job_arn)}/"
        tokens = read_outputs(s3, run.bucket, prefix, joined, adapter, workdir)
    code, message = missing_reason(state)
    joined.fill_missing(code, message)

    table = build_table(records, run.output_kind, joined)
    out_key = layout.output_key(run.run_id, job.index)
    path = workdir / f"{job.index:04d}.parquet"
    pq.write_table(table, path, compression="zstd")
    s3.upload_file(str(path), run.bucket, out_key)
    path.unlink()

    errors = Counter(c for c in joined.codes if c is not None)
    failed = sum(errors.values())
    result = JobResult(
        index=job.index,
        job_arn=state.job_arn,
        status=state.status or ("SubmitFailed" if state.failure else "Unknown"),
        message=state.message or (message if state.failure else None),
        record_count=job.record_count,
        succeeded=job.record_count - failed,
        failed=failed,
        input_tokens=tokens["inputTokenCount"],
        output_tokens=tokens["outputTokenCount"],
        output_key=out_key,
        error_counts=dict(errors),
    )
    put_json(s3, run.bucket, layout.result_key(run.run_id, job.index), result.model_dump(mode="json"))
    return result
