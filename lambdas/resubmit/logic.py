"""Plan the one resubmission of a run: the failed rows worth a second try, gathered into new Bedrock jobs.

After the planned jobs ("Run jobs"), every row is in ``runs/<run>/output/<NNNN>.parquet`` with a response or an
error. The rows whose error a retry may fix are copied, line for line, from the planned jobs' input files into new
jobs under ``runs/<run>/retry/`` (only those records, never whole jobs):

- job-level codes (``RETRYABLE_JOB_CODES``): the job failed, expired, was stopped or never started, or the row has
  no output line (none was written, or one too garbled to say whose it is);
- record errors that may pass on a second try (``is_retryable``): 408 (timeout), 429 (throttled) and 5xx.

Other record errors (400 malformed input, and every other 4xx) would fail the same way again and be billed again,
so they are never resubmitted; nor is ``UNPARSABLE_OUTPUT`` (an output line was written for the record, so Bedrock
processed and billed it, even when the line itself is garbled). Retry jobs follow the planned jobs' rules: each
holds 100 to ``max_records_per_job`` records and at most 1 GB, sizes differ by at most one. Fewer than 100 retryable
rows make no job: they are reported, not resubmitted. The lines are staged in ``/tmp`` first (like preprocess does),
so the split knows their sizes.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lambdas.shared import layout
from lambdas.shared.models import MAX_FILE_BYTES, MIN_RECORDS_PER_JOB, JobResult, JobSpec, ResubmissionPlan, RunContext
from lambdas.shared.run_files import ERROR_CODE, ROW, read_column, read_manifest, read_results
from lambdas.shared.s3io import FileRange, iter_lines, put_json

# Codes postprocess gives rows without a usable output line (see MISSING_ROW_CODES and missing_reason there).
RETRYABLE_JOB_CODES = frozenset(
    {
        "JOB_FAILED",
        "JOB_EXPIRED",
        "JOB_STOPPED",
        "NOT_PROCESSED",
        "MISSING_OUTPUT",
        "SUBMIT_FAILED",
        "ORCHESTRATION_ERROR",
    }
)
RETRYABLE_RECORD_CODES = frozenset({"408", "429"})  # and every 5xx
_RECORD_ID = re.compile(rb'^\s*\{\s*"recordId"\s*:\s*"(\d+)"')  # how preprocess writes each line: the fast path


def is_retryable(code: str) -> bool:
    """Whether a row with this ``error_code`` may succeed when its record is sent again."""
    if code in RETRYABLE_JOB_CODES or code in RETRYABLE_RECORD_CODES:
        return True
    return len(code) == 3 and code.isdigit() and code.startswith("5")


def retryable_rows(codes: pa.Array, first_row: int) -> np.ndarray:
    """Row numbers (ascending) of the rows whose ``error_code`` is retryable; ``codes`` is a job's column."""
    present = [code for code in pc.unique(codes.drop_null()).to_pylist() if is_retryable(code)]
    if not present:
        return np.empty(0, dtype=np.int64)
    hits = pc.fill_null(pc.is_in(codes, value_set=pa.array(present, pa.string())), False)
    return np.flatnonzero(hits.to_numpy(zero_copy_only=False)).astype(np.int64) + first_row


def plan_retry_sizes(
    rows: int,
    max_per_job: int,
    line_ends: np.ndarray | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    min_per_job: int = MIN_RECORDS_PER_JOB,
) -> list[int]:
    """Balanced job sizes for ``rows`` retryable rows, each from ``min_per_job`` (the model's minimum, 100 by
    default) to ``max_per_job`` records and (given the byte offset after each line, ``line_ends``) at most
    ``max_bytes``, in as few jobs as possible.

    The sizes add up to ``rows``, except where no split fits: fewer than ``min_per_job`` rows give no job, and (only
    when ``max_per_job`` < 2 * ``min_per_job``) a remainder that cannot make a job of the minimum is left out, to be
    reported.
    """
    count = min(math.ceil(rows / max_per_job), rows // min_per_job)
    while count:
        taken = min(rows, count * max_per_job)
        base, extra = divmod(taken, count)
        sizes = [base + 1 if i < extra else base for i in range(count)]
        if line_ends is None or _largest_file(sizes, line_ends) <= max_bytes:
            return sizes
        if taken // (count + 1) < min_per_job:
            raise ValueError(
                f"cannot split {taken} records of {int(line_ends[taken - 1])} bytes into jobs of at least "
                f"{min_per_job} records and at most {max_bytes} bytes"
            )
        count += 1  # as preprocess does: more, smaller jobs until every file fits
    return []


def _largest_file(sizes: list[int], line_ends: np.ndarray) -> int:
    ends = line_ends[np.cumsum(sizes) - 1]
    return int(np.max(np.diff(ends, prepend=0)))


def line_record_number(line: bytes) -> int:
    """The row number of a job input line (its recordId); -1 if the line has none."""
    match = _RECORD_ID.match(line)
    if match:
        return int(match.group(1))
    try:
        return int(json.loads(line)["recordId"])
    except (ValueError, KeyError, TypeError):
        return -1


@dataclass(frozen=True)
class StagedLines:
    """The input lines of the rows to resubmit, copied into one local file: ``rows[i]`` is line ``i``'s row number
    and ``ends[i]`` the byte offset after it."""

    path: Path
    rows: np.ndarray
    ends: np.ndarray

    def byte_range(self, first: int, count: int) -> tuple[int, int]:
        return (int(self.ends[first - 1]) if first else 0), int(self.ends[first + count - 1])


def find_retryable(s3: Any, run: RunContext, jobs: list[JobSpec], results: dict[int, JobResult]) -> list[np.ndarray]:
    """Per planned job (in ``jobs`` order), the row numbers to retry; only outputs with a retryable code are read,
    and only their ``error_code`` column."""
    found = []
    for job in jobs:
        result = results.get(job.index)
        if result is None or not any(is_retryable(code) for code in result.error_counts):
            found.append(np.empty(0, dtype=np.int64))
            continue
        codes = read_column(s3, run.bucket, result.output_key, ERROR_CODE)
        found.append(retryable_rows(codes, job.first_row))
    return found


def stage_lines(s3: Any, bucket: str, jobs: Iterable[tuple[JobSpec, np.ndarray]], path: Path) -> StagedLines:
    """Stream each planned job's input file and copy the lines of the wanted rows into ``path``, in job order."""
    rows, ends = array("q"), array("q")  # 8 bytes a line, not a Python int object each
    written = 0
    with path.open("wb") as out:
        for job, wanted_rows in jobs:
            wanted = set(wanted_rows.tolist())
            if not wanted:
                continue
            for line in iter_lines(s3, bucket, job.input_key):
                row = line_record_number(line) if line.strip() else -1
                if row in wanted:
                    wanted.discard(row)
                    data = line.rstrip(b"\r\n") + b"\n"
                    out.write(data)
                    written += len(data)
                    rows.append(row)
                    ends.append(written)
                    if not wanted:
                        break
            if wanted:
                raise RuntimeError(f"{len(wanted)} rows to resubmit are not in {job.input_key}, e.g. row {min(wanted)}")
    return StagedLines(path, np.frombuffer(rows, dtype=np.int64), np.frombuffer(ends, dtype=np.int64))


def upload_retry_jobs(
    s3: Any,
    run: RunContext,
    staged: StagedLines,
    sizes: list[int],
    workdir: Path,
    *,
    first_index: int = 0,
    model: str | None = None,
) -> list[JobSpec]:
    """Job ``k`` takes the next ``sizes[k]`` staged lines: its input file ``retry/jobs/<NNNN>.jsonl`` and its rows
    file ``retry/rows/<NNNN>.parquet`` (ascending row numbers). Indexes start at ``first_index``; in a prepared run
    every job is of ``model``, the model of all the staged lines."""
    jobs, first = [], 0
    rows_path = workdir / "retry-rows.parquet"
    with staged.path.open("rb") as lines:
        for index, size in enumerate(sizes, start=first_index):
            start, end = staged.byte_range(first, size)
            input_key = layout.job_input_key(run.run_id, index, resubmission=True)
            s3.upload_fileobj(FileRange(lines, start, end), run.bucket, input_key)
            rows = np.sort(staged.rows[first : first + size])
            pq.write_table(pa.table({ROW: rows}), rows_path)
            rows_key = layout.retry_rows_key(run.run_id, index)
            s3.upload_file(str(rows_path), run.bucket, rows_key)
            jobs.append(
                JobSpec(
                    index=index,
                    input_key=input_key,
                    first_row=int(rows[0]),
                    record_count=size,
                    size_bytes=end - start,
                    resubmission=True,
                    rows_key=rows_key,
                    model=model,
                )
            )
            first += size
    return jobs


def describe(
    *,
    enabled: bool,
    retryable: int,
    resubmitted: int,
    not_retryable: int,
    job_count: int,
    min_per_job: int = MIN_RECORDS_PER_JOB,
) -> str:
    """One sentence for the summary: what was resubmitted, what is reported and why."""
    repeat = f"; {not_retryable} rows whose error a retry would repeat (e.g. 400) are not resubmitted"
    if not not_retryable:
        repeat = ""
    if retryable == 0:
        return "no row needs resubmission" + repeat
    if not enabled:
        return f"resubmission is off (resubmit_failed: false): {retryable} retryable rows are reported" + repeat
    if resubmitted == 0:
        return (
            f"{retryable} retryable rows are fewer than the {min_per_job} a Bedrock batch job of this model needs: "
            "reported, not resubmitted" + repeat
        )
    reported = retryable - resubmitted
    left = f"; {reported} rows that fit no job of at least {min_per_job} are reported" if reported else ""
    return f"resubmitting {resubmitted} failed or missing rows in {job_count} jobs" + left + repeat


def plan_resubmission(run: RunContext, *, enabled: bool, max_per_job: int, s3: Any, workdir: Path) -> ResubmissionPlan:
    """Write the resubmission jobs, their manifest (``retry/jobs.json``, ``[]`` for none) and ``retry/plan.json``."""
    jobs = sorted(read_manifest(s3, run.bucket, run.manifest_key), key=lambda job: job.first_row)
    results = read_results(s3, run.bucket, run.run_id)
    per_job = find_retryable(s3, run, jobs, results)
    retryable = sum(len(rows) for rows in per_job)
    retry_jobs: list[JobSpec] = []
    resubmitted = 0
    min_per_job = MIN_RECORDS_PER_JOB
    # One group of retry jobs per model (a rows run has one, None): retry jobs never mix models.
    for model_name in dict.fromkeys(job.model for job in jobs):
        mine = [(job, rows) for job, rows in zip(jobs, per_job, strict=True) if job.model == model_name]
        count = sum(len(rows) for _, rows in mine)
        # The model's quotas as preprocess read them (the run context carries them): the planned jobs' limits.
        quotas = run.model_for(model_name).quotas
        min_per_job, most = quotas.min_records_per_job.value, min(max_per_job, quotas.records_per_job)
        sizes = plan_retry_sizes(count, most, min_per_job=min_per_job) if enabled else []
        if not sizes:
            continue
        staged = stage_lines(s3, run.bucket, mine, workdir / "retry.jsonl")
        # now also within the model's file size quota
        sizes = plan_retry_sizes(count, most, staged.ends, quotas.bytes_per_job, min_per_job)
        retry_jobs += upload_retry_jobs(s3, run, staged, sizes, workdir, first_index=len(retry_jobs), model=model_name)
        resubmitted += sum(sizes)
    manifest_key = layout.manifest_key(run.run_id, resubmission=True)
    s3.put_object(
        Bucket=run.bucket,
        Key=manifest_key,
        Body=json.dumps([job.model_dump() for job in retry_jobs]).encode(),
        ContentType="application/json",
    )
    failed = sum(result.failed for result in results.values())
    plan = ResubmissionPlan(
        enabled=enabled,
        manifest_key=manifest_key,
        job_count=len(retry_jobs),
        rows_failed=failed,
        rows_retryable=retryable,
        rows_resubmitted=resubmitted,
        rows_reported=retryable - resubmitted,
        rows_not_retryable=failed - retryable,
        jobs_without_results=sorted(job.index for job in jobs if job.index not in results),
        message=describe(
            enabled=enabled,
            retryable=retryable,
            resubmitted=resubmitted,
            not_retryable=failed - retryable,
            job_count=len(retry_jobs),
            min_per_job=min_per_job,
        ),
    )
    put_json(s3, run.bucket, layout.retry_plan_key(run.run_id), plan.model_dump(mode="json"))
    return plan
