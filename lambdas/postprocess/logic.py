"""Postprocess one job: join Bedrock's output on record id with the job's input rows, keeping every row.

Left join by construction: the job's rows are read from the run's records (``records.parquet``, or the
files ``records.json`` lists: ``run_files.iter_run_rows``); each output line fills the slot of its
record (record ids are row numbers), so output order does not matter. Rows without a result get an error code: the
record's own ``error``, or a job-level code when the job failed, expired, was stopped or never started. A line that is
not valid JSON but whose ``recordId`` can still be read at its start gives its record ``UNPARSABLE_OUTPUT`` (the
model answered and was billed; resubmission leaves it alone); a line whose ``recordId`` cannot be read is unmatched,
and its record, without a line, gets the job-level code (``MISSING_OUTPUT`` for a completed job). The output of
every job is read, whatever its status: a ``Stopped`` or ``PartiallyCompleted`` job's processed records are results
(billed once, never resubmitted); only its rows without an output line get ``JOB_STOPPED`` / ``NOT_PROCESSED``.
A resubmission job's rows are the row numbers listed in its rows file; its output keeps them in a ``row`` column.
An on-demand job (``JobSpec.on_demand``) has no job ARN: its runner (lambdas/on_demand) wrote the same files under the
job's output prefix, read the same way. Rows a cancelled run left without a result get ``batch_cancelled``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError

from lambdas.postprocess import columnar
from lambdas.shared import layout
from lambdas.shared.cancel import BATCH_CANCELLED
from lambdas.shared.model_families import ModelAdapter, adapter_for_family
from lambdas.shared.models import JobResult, JobState
from lambdas.shared.run_files import (
    ERROR_CODE,
    ERROR_MESSAGE,
    MODEL_OUTPUT,
    ROW,
    iter_run_rows,
    read_row_numbers,
    value_column,
    value_kind,
    value_type,
)
from lambdas.shared.s3io import list_keys, put_json

RECORD_ID = "record_id"
# The code of a row whose output line the model wrote but that cannot be read; never resubmitted (see lambdas/resubmit)
UNPARSABLE_OUTPUT = "UNPARSABLE_OUTPUT"
# The recordId at the start of an output line ("View the results of a batch inference job": each line starts with it),
# read without parsing the rest, so a line cut short still says whose it is; the closing quote must be there.
_LEADING_RECORD_ID = re.compile(rb'^\s*\{\s*"recordId"\s*:\s*"([A-Za-z0-9]+)"')

# Input bytes per row group of a job's output: the batches read from records.parquet are gathered up to this size
# (memory holds about two such groups: one being compressed, one being read), whatever the number of rows.
ROW_GROUP_BYTES = 32 << 20

# Code for rows with no output line, by the job's final status.
MISSING_ROW_CODES: dict[str, str] = {
    "Completed": "MISSING_OUTPUT",
    "PartiallyCompleted": "NOT_PROCESSED",
    "Failed": "JOB_FAILED",
    "Expired": "JOB_EXPIRED",
    "Stopped": "JOB_STOPPED",
}


_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def raw_members(text: str) -> dict[str, tuple[Any, str]]:
    """The members of a JSON object as (value, the value's own JSON text exactly as written), so a prepared run
    keeps each record's ``modelOutput`` as Bedrock wrote it. As strict as ``json.loads`` (which it uses for every key
    and value); a repeated key keeps its last value, as ``json.loads`` does. ValueError when ``text`` is not one JSON
    object."""
    members: dict[str, tuple[Any, str]] = {}
    at = _WHITESPACE.match(text).end()  # type: ignore[union-attr]  # the pattern matches the empty string
    if text[at : at + 1] != "{":
        raise ValueError("not a JSON object")
    at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
    closed = text[at : at + 1] == "}"
    if closed:  # the empty object
        at += 1
    while not closed:
        if text[at : at + 1] != '"':
            raise ValueError(f"expected a member name at {at}")
        key, at = _DECODER.raw_decode(text, at)
        at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
        if text[at : at + 1] != ":":
            raise ValueError(f"expected ':' at {at}")
        start = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
        value, end = _DECODER.raw_decode(text, start)
        members[key] = (value, text[start:end])
        at = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        separator = text[at : at + 1]
        if separator not in (",", "}"):
            raise ValueError(f"expected ',' or '}}' at {at}")
        closed = separator == "}"
        at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
    if text[at:].strip(" \t\n\r"):
        raise ValueError(f"extra data at {at}")
    return members


@dataclass(frozen=True)
class _Garbled:
    """Stands for the ``modelOutput`` of an output line that is not valid JSON but whose recordId could be read."""

    source: str  # where the line is: the output object's s3:// URI


@dataclass
class _Chunk:
    """Parsed output lines: one value, error code and message per line (value null where code is set)."""

    values: pa.Array
    codes: pa.Array
    messages: pa.Array


@dataclass
class JoinedOutput:
    """Per-row results of one job, filled from output lines in any order, kept as Arrow columns.

    A job's rows are ``first_row`` .. ``first_row + count - 1`` (a planned job), or the ascending row numbers
    ``rows`` (a resubmission job, see ``for_rows``); slot ``i`` is the job's ``i``-th row either way.
    Every parsed line is stored once in a chunk; ``line_of[slot]`` says which line holds the row's result (-1: none
    yet). The first line for a record wins; lines for records outside the job, duplicates and corrupt lines count
    as ``unmatched_lines``. ``fill_missing`` adds one shared line for every row still without one.
    """

    first_row: int
    count: int
    kind: str = "text"
    rows: np.ndarray | None = None  # ascending row numbers, when the rows are not contiguous
    unmatched_lines: int = 0
    line_of: np.ndarray = field(init=False)
    _chunks: list[_Chunk] = field(init=False, default_factory=list)
    _lines: int = field(init=False, default=0)
    _columns: tuple[pa.Array, pa.Array, pa.Array] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.rows is not None and len(self.rows) != self.count:
            raise ValueError(f"count={self.count} but {len(self.rows)} row numbers")
        self.line_of = np.full(self.count, -1, dtype=np.int64)

    @classmethod
    def for_rows(cls, rows: np.ndarray, kind: str = "text") -> JoinedOutput:
        """A job whose rows are not contiguous (a resubmission job); ``rows`` ascending, without duplicates."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) > 1 and not bool(np.all(np.diff(rows) > 0)):
            raise ValueError("row numbers must be ascending, without duplicates")
        return cls(first_row=int(rows[0]) if len(rows) else 0, count=len(rows), kind=kind, rows=rows)

    @property
    def value_type(self) -> pa.DataType:
        return value_type(self.kind)

    def _slots(self, record_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot, inside): where each record's row is in the job, and whether the record is one of the job's."""
        if self.rows is None:
            slots = record_ids - self.first_row
            return slots, (record_ids >= 0) & (slots >= 0) & (slots < self.count)
        if self.count == 0:
            return np.zeros(len(record_ids), dtype=np.int64), np.zeros(len(record_ids), dtype=bool)
        slots = np.minimum(np.searchsorted(self.rows, record_ids), self.count - 1)
        return slots, (record_ids >= 0) & (self.rows[slots] == record_ids)

    def _place(self, record_ids: np.ndarray, chunk: _Chunk) -> None:
        """Point each record's row at its line in ``chunk``; ``record_ids`` is -1 where a line had no usable id."""
        slots, inside = self._slots(record_ids)
        lines = np.arange(len(record_ids), dtype=np.int64) + self._lines
        slots, lines = slots[inside], lines[inside]
        unique_slots, first = np.unique(slots, return_index=True)  # the first line of a record wins
        fresh = self.line_of[unique_slots] < 0
        self.line_of[unique_slots[fresh]] = lines[first[fresh]]
        self.unmatched_lines += len(record_ids) - int(fresh.sum())
        self._chunks.append(chunk)
        self._lines += len(record_ids)
        self._columns = None

    def add_rows(self, rows: list[tuple[Any, Any, Any]], adapter: ModelAdapter) -> None:
        """Row-by-row path: (recordId, error, modelOutput) tuples parsed with the adapter."""
        ids, values, codes, messages = [], [], [], []
        for record_id, error, model_output in rows:
            ids.append(_record_number(record_id))
            value = code = message = None
            if error is not None:
                details = error if isinstance(error, dict) else {"errorMessage": error}
                code = str(details.get("errorCode") or "RECORD_ERROR")
                message = str(details.get("errorMessage") or error)
            elif isinstance(model_output, _Garbled):
                code = UNPARSABLE_OUTPUT
                message = (
                    f"the output line of record {record_id} could not be parsed (not valid JSON); Bedrock processed "
                    f"the record, so it is not resubmitted; read the line in {model_output.source}"
                )
            else:
                try:
                    value = adapter.parse_model_output(model_output)
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    code, message = UNPARSABLE_OUTPUT, f"could not read modelOutput: {exc}"
            values.append(value)
            codes.append(code)
            messages.append(message)
        chunk = _Chunk(pa.array(values, self.value_type), pa.array(codes, pa.string()), pa.array(messages, pa.string()))
        self._place(np.array(ids, dtype=np.int64), chunk)

    def add_lines(self, lines: Any, adapter: ModelAdapter, source: str) -> None:
        """Raw JSONL lines (bytes or str) of the output object ``source`` (its s3:// URI, named in messages). A line
        that is not valid JSON gives its record ``UNPARSABLE_OUTPUT`` when its recordId can be read at its start;
        otherwise it is unmatched (its record gets the job-level code)."""
        rows: list[tuple[Any, Any, Any]] = []
        for raw in lines:
            data = raw.encode() if isinstance(raw, str) else raw
            if not data.strip():
                continue
            try:
                line = json.loads(data)
            except ValueError:
                line = None
            if isinstance(line, dict):
                rows.append((line.get("recordId"), line.get("error"), line.get("modelOutput")))
                continue
            leading = _LEADING_RECORD_ID.match(data)
            if leading is None:
                rows.append((None, None, None))
            else:
                rows.append((leading.group(1).decode(), None, _Garbled(source)))
        self.add_rows(rows, adapter)

    def add_raw_lines(self, lines: Any, source: str) -> None:
        """A prepared run's output lines (bytes or str): each record's value is its ``modelOutput`` JSON text exactly
        as the line has it, whatever the model; errors, garbled and unmatched lines as ``add_lines`` reads them."""
        ids, values, codes, messages = [], [], [], []
        for raw in lines:
            data = raw.encode() if isinstance(raw, str) else raw
            if not data.strip():
                continue
            try:
                members: dict[str, tuple[Any, str]] | None = raw_members(data.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                members = None
            value = code = message = None
            if members is None:
                leading = _LEADING_RECORD_ID.match(data)
                ids.append(_record_number(leading.group(1).decode()) if leading else -1)
                code = UNPARSABLE_OUTPUT
                message = (
                    f"the output line of this record could not be parsed (not valid JSON); Bedrock processed the "
                    f"record, so it is not resubmitted; read the line in {source}"
                )
            else:
                ids.append(_record_number(members.get("recordId", (None, ""))[0]))
                error = members.get("error", (None, ""))[0]
                output = members.get("modelOutput")
                if error is not None:
                    details = error if isinstance(error, dict) else {"errorMessage": error}
                    code = str(details.get("errorCode") or "RECORD_ERROR")
                    message = str(details.get("errorMessage") or error)
                elif output is None or output[0] is None:
                    code, message = UNPARSABLE_OUTPUT, f"the output line has no modelOutput and no error; see {source}"
                else:
                    value = output[1]
            values.append(value)
            codes.append(code)
            messages.append(message)
        chunk = _Chunk(pa.array(values, pa.string()), pa.array(codes, pa.string()), pa.array(messages, pa.string()))
        self._place(np.array(ids, dtype=np.int64), chunk)

    def add_file(self, path: Path, family: str, adapter: ModelAdapter, source: str, *, documented: bool = True) -> None:
        """A whole ``.jsonl.out`` (downloaded from ``source``, its s3:// URI). Where the family has a vectorized
        reader, Arrow's multithreaded JSON reader parses only the fields it reads (``add_documented``; skipped with
        ``documented=False``, when the caller already tried it); otherwise, or when a line does not fit those
        fields, every field with inferred types, then the vectorized reader or the adapter row by row; the
        row-by-row path when any line is corrupt or the output has an unexpected shape.
        A prepared run's output (kind ``model_output``) keeps each line's raw ``modelOutput`` text instead."""
        if self.kind == MODEL_OUTPUT:
            with path.open("rb") as lines:
                self.add_raw_lines(lines, source)
            return
        reader = columnar.READERS.get(family)
        if documented and reader is not None and self.add_documented(path, reader):
            return
        try:
            table = pajson.read_json(path)
        except pa.ArrowInvalid:
            with path.open("rb") as lines:
                self.add_lines(lines, adapter, source)
            return
        if reader is not None and "modelOutput" in table.column_names and "recordId" in table.column_names:
            try:
                self._add_columns(table, reader.read)
                return
            except (KeyError, TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # an unexpected shape: the adapter decides row by row

        def column(name: str) -> Any:
            return table.column(name).to_pylist() if name in table.column_names else repeat(None)

        self.add_rows(list(zip(column("recordId"), column("error"), column("modelOutput"), strict=False)), adapter)

    def add_documented(self, lines: Path | BinaryIO, reader: columnar.ColumnReader) -> bool:
        """The fast path, for files whose every line has the documented shape: Arrow's JSON reader parses only
        ``recordId``, the part of ``modelOutput`` the family's reader needs and ``error`` (``reader.line_schema``).
        ``lines``: a local file, or a readable stream (an S3 object's body, read as it arrives). False, having added
        nothing, when a line does not fit those types, a line is corrupt, or an answer cannot be read (the general
        path then reads the file, and the adapter says why, row by row)."""
        options = pajson.ParseOptions(explicit_schema=reader.line_schema, unexpected_field_behavior="ignore")
        try:
            table = pajson.read_json(lines, parse_options=options)
            chunk, numbers = self._columns_of(table, reader.read)
        except (KeyError, TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        if chunk.codes.null_count < len(chunk.codes) and pc.any(pc.equal(chunk.codes, UNPARSABLE_OUTPUT)).as_py():
            return False
        self._place(numbers, chunk)
        return True

    def _add_columns(self, table: pa.Table, reader: columnar.Read) -> None:
        chunk, numbers = self._columns_of(table, reader)
        self._place(numbers, chunk)

    def _columns_of(self, table: pa.Table, reader: columnar.Read) -> tuple[_Chunk, np.ndarray]:
        """The chunk of parsed lines and each line's record number (-1: no usable id)."""
        ids = pc.cast(table.column("recordId").combine_chunks(), pa.int64())  # raises on a non-numeric id
        outputs = table.column("modelOutput").combine_chunks()
        values = reader(outputs).cast(self.value_type)
        codes = pa.nulls(table.num_rows, pa.string())
        messages = pa.nulls(table.num_rows, pa.string())
        error = table.column("error").combine_chunks() if "error" in table.column_names else None
        if error is not None and error.null_count < len(error):
            has_error = pc.fill_null(error.is_valid(), False)
            codes = pc.if_else(has_error, _error_text(error, "errorCode", "RECORD_ERROR"), codes)
            messages = pc.if_else(has_error, _error_text(error, "errorMessage", ""), messages)
            values = pc.if_else(has_error, pa.nulls(len(values), self.value_type), values)
        unreadable = pc.and_(pc.is_null(values), pc.is_null(codes))
        codes = pc.if_else(unreadable, UNPARSABLE_OUTPUT, codes)
        messages = pc.if_else(unreadable, "could not read modelOutput", messages)
        numbers = pc.fill_null(ids, -1).to_numpy(zero_copy_only=False)
        return _Chunk(values, codes.cast(pa.string()), messages.cast(pa.string())), numbers

    def fill_missing(self, code: str, message: str) -> None:
        missing = self.line_of < 0
        if missing.any():
            chunk = _Chunk(pa.nulls(1, self.value_type), pa.array([code]), pa.array([message]))
            self.line_of[missing] = self._lines
            self._chunks.append(chunk)
            self._lines += 1
            self._columns = None

    def columns(self) -> tuple[pa.Array, pa.Array, pa.Array]:
        """(values, error codes, error messages) in row order; rows still without a line are all null. Assembled
        once (a gather of every value) and kept until a line is added."""
        if self._columns is None:
            self._columns = self._assemble()
        return self._columns

    def _assemble(self) -> tuple[pa.Array, pa.Array, pa.Array]:
        if not self._chunks:
            return pa.nulls(self.count, self.value_type), pa.nulls(self.count, pa.string()), pa.nulls(self.count)
        indices = pa.array(self.line_of, mask=self.line_of < 0)

        def gathered(parts: list[pa.Array]) -> pa.Array:
            return (parts[0] if len(parts) == 1 else pa.concat_arrays(parts)).take(indices)  # one chunk: one copy

        values = gathered([chunk.values for chunk in self._chunks])
        codes = gathered([chunk.codes for chunk in self._chunks])
        return values, codes, gathered([chunk.messages for chunk in self._chunks])

    @property
    def error_counts(self) -> Counter[str]:
        counts = pc.value_counts(self.columns()[1].drop_null()).to_pylist()
        return Counter({item["values"]: item["counts"] for item in counts})


def _record_number(record_id: Any) -> int:
    try:
        return int(record_id)
    except (TypeError, ValueError):
        return -1


def _error_text(error: pa.Array, name: str, default: str) -> pa.Array:
    if error.type.get_field_index(name) < 0:
        return pa.array([default] * len(error), pa.string())
    return pc.fill_null(pc.struct_field(error, name).cast(pa.string()), default)


def missing_reason(state: JobState) -> tuple[str, str]:
    if state.cancelled:
        if state.job_arn is None and not state.job.on_demand:  # never submitted: the message is the cancel's reason
            return BATCH_CANCELLED, state.message or "the run was cancelled before this record was processed"
        what = "the on-demand job" if state.job.on_demand else f"job {state.job_arn}"
        detail = f" ({state.message})" if state.message else ""
        return BATCH_CANCELLED, f"the run was cancelled: {what} stopped before this record was processed{detail}"
    if state.failure is not None:
        cause = str(state.failure.get("Cause") or state.failure.get("Error") or "unknown error")
        code = "SUBMIT_FAILED" if not state.job_arn and not state.job.on_demand else "ORCHESTRATION_ERROR"
        return code, cause[:1000]
    status = state.status or "Unknown"
    code = MISSING_ROW_CODES.get(status, "MISSING_OUTPUT")
    detail = f": {state.message}" if state.message else ""
    return code, f"no output for this record; job {state.job_arn} ended {status}{detail}"


def build_table(records: pa.Table, joined: JoinedOutput) -> pa.Table:
    return add_results(records, joined.columns(), joined.kind)


def add_results(records: pa.Table, results: tuple[pa.Array, pa.Array, pa.Array], kind: str = "text") -> pa.Table:
    """The output rows: the input columns (without a ``record_id``) then the value, error code and message."""
    table = records.drop_columns([RECORD_ID]) if RECORD_ID in records.column_names else records
    values, codes, messages = results
    table = table.append_column(value_column(kind), values)
    table = table.append_column(ERROR_CODE, codes)
    return table.append_column(ERROR_MESSAGE, messages)


def write_output(batches: Iterator[pa.RecordBatch], joined: JoinedOutput, path: Path) -> None:
    """Write the job's output Parquet group by group: each group of input rows (about ``ROW_GROUP_BYTES``) with the
    results of those rows, so the input rows are never all in memory (a job's results are: one value per record).
    A group is compressed on a worker thread while the next one is read (Arrow releases the GIL for both), at most
    one behind."""
    values, codes, messages = joined.columns()
    writer: pq.ParquetWriter | None = None
    pending: Future[None] | None = None
    done = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="postprocess-writer") as background:
        try:
            for group in _groups(batches):
                n = group.num_rows
                part = (values.slice(done, n), codes.slice(done, n), messages.slice(done, n))
                table = add_results(group, part, joined.kind)
                if writer is None:
                    writer = _writer(path, table.schema, value_column(joined.kind))
                if pending is not None:
                    pending.result()
                pending = background.submit(writer.write_table, table)
                done += n
            if pending is not None:
                pending.result()
        finally:
            if pending is not None:
                pending.exception()  # the write in flight ends before the file closes; an error already raised stays
            if writer is not None:
                writer.close()
    if done != joined.count:
        raise RuntimeError(f"read {done} input rows for a job of {joined.count}; the records file is shorter")


def _groups(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.Table]:
    """The batches gathered into tables of at least ``ROW_GROUP_BYTES`` (the last one smaller): one row group each.
    A slice of a job ends in bounded batches of a few thousand rows, some tiny at the records' row-group edges; a
    row group per batch made many small groups, each with its own dictionary attempts and pages."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        pending.append(batch)
        size += batch.nbytes
        if size >= ROW_GROUP_BYTES:
            yield pa.Table.from_batches(pending)
            pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def _writer(path: Path, schema: pa.Schema, value: str) -> pq.ParquetWriter:
    """zstd; a dictionary for every column but the model's answers, which are all different: Arrow would build one
    for them in every row group and drop it as too large (it stays on for the input columns, which may repeat, and
    the error columns, which do)."""
    dictionary = [name for name in schema.names if name != value]
    return pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=dictionary)


def read_outputs(s3: Any, bucket: str, prefix: str, joined: JoinedOutput, family: str, workdir: Path) -> dict[str, int]:
    """Feed every ``*.jsonl.out`` under the job's output prefix into ``joined``; return the manifest's token counts.

    Where the family has a vectorized reader, the object is parsed as it streams from S3 (``add_documented`` on its
    body: no copy on local storage, the parse overlaps the transfer); an object that does not fit the documented
    shape, a prepared run's output, or a stream cut short is downloaded (``download_file`` retries) and read from
    the file by the general path."""
    tokens = {"inputTokenCount": 0, "outputTokenCount": 0}
    reader = None if joined.kind == MODEL_OUTPUT else columnar.READERS.get(family)
    for key, _size in list_keys(s3, bucket, prefix):
        if key.endswith(".jsonl.out"):
            if reader is not None and _add_streamed(s3, bucket, key, joined, reader):
                continue
            local = workdir / "output.jsonl"
            s3.download_file(bucket, key, str(local))
            source = f"s3://{bucket}/{key}"
            joined.add_file(local, family, adapter_for_family(family), source, documented=reader is None)
            local.unlink()
        elif key.endswith("manifest.json.out"):
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            tokens = {name: int(manifest.get(name) or 0) for name in tokens}
    return tokens


def _add_streamed(s3: Any, bucket: str, key: str, joined: JoinedOutput, reader: columnar.ColumnReader) -> bool:
    """The fast path on the object's body as it arrives; False, having added nothing, when the object does not fit
    the documented shape or the stream broke off (a read timeout or a reset connection: ``BotoCoreError``)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        return joined.add_documented(body, reader)
    except BotoCoreError:
        return False
    finally:
        body.close()


def postprocess(state: JobState, *, s3: Any, workdir: Path) -> JobResult:
    """Write the job's output Parquet and result. A planned job's output has the input columns of its rows
    (``output/<NNNN>.parquet``); a resubmission job's has their row numbers instead (``retry/output/<NNNN>.parquet``,
    column ``row``), which Finalize merges into the planned jobs' outputs."""
    run, job = state.run, state.job
    model, kind = run.model_for(job.model), value_kind(run)
    if job.rows_key is not None:
        rows = read_row_numbers(s3, run.bucket, job.rows_key)
        records: Iterator[pa.RecordBatch] = iter(pa.table({ROW: pa.array(rows, pa.int64())}).to_batches())
        joined = JoinedOutput.for_rows(rows, kind=kind)
    else:
        records = iter_run_rows(s3, run.bucket, run.records_key, job.first_row, job.record_count)
        joined = JoinedOutput(first_row=job.first_row, count=job.record_count, kind=kind)
    tokens = {"inputTokenCount": 0, "outputTokenCount": 0}
    if state.job_arn or job.on_demand:
        prefix = layout.job_output_prefix(run.run_id, job.index, resubmission=job.resubmission)
        tokens = read_outputs(s3, run.bucket, prefix, joined, model.family, workdir)
    code, message = missing_reason(state)
    joined.fill_missing(code, message)

    out_key = layout.output_key(run.run_id, job.index, resubmission=job.resubmission)
    path = workdir / f"{job.index:04d}.parquet"
    write_output(records, joined, path)
    s3.upload_file(str(path), run.bucket, out_key)
    path.unlink()

    errors = joined.error_counts
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
        resubmission=job.resubmission,
        model=job.model,
        on_demand=job.on_demand,
    )
    key = layout.result_key(run.run_id, job.index, resubmission=job.resubmission)
    put_json(s3, run.bucket, key, result.model_dump(mode="json"))
    return result
