"""Readers of a run's files shared by the data-plane functions: job manifests, job results, output columns.

Imports pyarrow, so control-plane (zip) functions must not import this module. Column names of the output Parquet
files are a contract (docs/batch/running.md, Outputs): the input columns, then ``response`` or ``embedding``
(``model_output`` in a prepared run), ``error_code`` and ``error_message``; a resubmission job's output has ``row``
(the row number) instead of the input columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lambdas.shared import layout
from lambdas.shared.models import JobResult, JobSpec, RecordsIndex, RunContext
from lambdas.shared.s3io import S3RangeReader, get_json, list_keys

ROW = "row"
ERROR_CODE = "error_code"
ERROR_MESSAGE = "error_message"
EMBEDDING_TYPE = pa.list_(pa.float32())
# The value kind of a prepared run's outputs: each record's modelOutput JSON exactly as Bedrock wrote it, as a string.
MODEL_OUTPUT = "model_output"
SLICE_BATCH_ROWS = 8_192  # rows decoded at a time when reading a slice of a Parquet object
READ_BUFFER_BYTES = 1 << 20  # bytes per ranged GET while decoding a column chunk
RESULT_READS_AT_ONCE = 16  # GETs of a run's job results in flight (finalize and resubmit read one per job)


def value_column(output_kind: str) -> str:
    """``response`` (text models), ``embedding`` (embedding models) or ``model_output`` (a prepared run)."""
    if output_kind == MODEL_OUTPUT:
        return MODEL_OUTPUT
    return "embedding" if output_kind == "embedding" else "response"


def value_type(output_kind: str) -> pa.DataType:
    return EMBEDDING_TYPE if output_kind == "embedding" else pa.string()


def value_kind(run: RunContext) -> str:
    """The kind of value a run's outputs hold: ``model_output`` in a prepared run (every model's), else the run's
    model's output kind (``text`` or ``embedding``)."""
    return MODEL_OUTPUT if run.prepared else run.model_for(None).output_kind


def read_manifest(s3: Any, bucket: str, key: str) -> list[JobSpec]:
    return [JobSpec.model_validate(item) for item in get_json(s3, bucket, key)]


def read_results(s3: Any, bucket: str, run_id: str, *, resubmission: bool = False) -> dict[int, JobResult]:
    """The results postprocess stored, by job index: of the planned jobs, or of the resubmission jobs. One small
    object per job, read ``RESULT_READS_AT_ONCE`` at a time: one after the other, each GET's round trip adds up
    (45 of them at the reference size) while the function waits (boto3 clients are thread-safe)."""
    keys = [key for key, _size in list_keys(s3, bucket, layout.results_prefix(run_id, resubmission=resubmission))]

    def read(key: str) -> JobResult:
        return JobResult.model_validate(get_json(s3, bucket, key))

    with ThreadPoolExecutor(max_workers=max(1, min(RESULT_READS_AT_ONCE, len(keys)))) as pool:
        return {result.index: result for result in pool.map(read, keys)}


def read_column(s3: Any, bucket: str, key: str, name: str) -> pa.Array:
    """One column of a Parquet object, fetching only that column's pages."""
    return pq.read_table(S3RangeReader(s3, bucket, key), columns=[name]).column(name).combine_chunks()


def read_row_numbers(s3: Any, bucket: str, key: str) -> np.ndarray:
    """The ``row`` column of a resubmission rows or output file, as int64."""
    return read_column(s3, bucket, key, ROW).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def iter_row_range(
    s3: Any, bucket: str, key: str, first_row: int, count: int, *, batch_rows: int = SLICE_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Rows [first_row, first_row + count) of a Parquet object as batches of at most ``batch_rows``, whatever its
    row-group layout: only the row groups that overlap the range are fetched, each decoded ``batch_rows`` at a time
    through a buffered stream of ranged GETs (``buffer_size``; without it Arrow reads a whole column chunk at
    once, 1.3 GB for a job of one huge row group). Rows of a group before ``first_row`` are decoded and dropped
    batch by batch: they cost time, never memory."""
    parquet = pq.ParquetFile(S3RangeReader(s3, bucket, key), pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
    end, group_start = first_row + count, 0
    for group in range(parquet.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        group_end = group_start + group_rows
        if group_end > first_row and group_start < end:
            position = group_start
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group], use_threads=False):
                lo, hi = max(first_row, position), min(end, position + batch.num_rows)
                if hi > lo:
                    yield batch.slice(lo - position, hi - lo)
                position += batch.num_rows
                if position >= end:
                    return
        group_start = group_end
        if group_start >= end:
            return


def iter_run_rows(
    s3: Any, bucket: str, records_key: str, first_row: int, count: int, *, batch_rows: int = SLICE_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """Rows [first_row, first_row + count) of a run's records (``RunContext.records_key``), whatever their shape:
    one Parquet object (``iter_row_range``), or an index of Parquet files (``layout.records_index_key``), whose
    part of the range each file holds is read in turn with ``iter_row_range``: the same bounded batches, in row
    order. Raises when the records hold fewer rows than the range asks for."""
    if not layout.is_records_index(records_key):
        yield from iter_row_range(s3, bucket, records_key, first_row, count, batch_rows=batch_rows)
        return
    index = RecordsIndex.model_validate(get_json(s3, bucket, records_key))
    parts = file_ranges([file.rows for file in index.files], first_row, count)
    if sum(rows for _file, _first, rows in parts) != count:
        raise RuntimeError(
            f"rows [{first_row}, {first_row + count}) asked of {records_key}, whose files hold "
            f"{sum(file.rows for file in index.files)} rows"
        )
    for file, first, rows in parts:
        yield from iter_row_range(s3, bucket, index.files[file].key, first, rows, batch_rows=batch_rows)


def file_ranges(file_rows: Sequence[int], first_row: int, count: int) -> list[tuple[int, int, int]]:
    """The files a row range [first_row, first_row + count) overlaps, given each file's row count in order: (the
    file's position in the list, the range's first row within that file, the range's rows in that file) for each,
    in order. Files without rows in the range (empty ones included) are left out; a range past the last file's
    rows gets only the rows there are (the caller compares the sum)."""
    parts: list[tuple[int, int, int]] = []
    end, start = first_row + count, 0
    for position, rows in enumerate(file_rows):
        lo, hi = max(first_row, start), min(end, start + rows)
        if hi > lo:
            parts.append((position, lo - start, hi - lo))
        start += rows
        if start >= end:
            break
    return parts
