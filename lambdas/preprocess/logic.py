"""Preprocess: validate everything, number the rows, render model inputs and split them into Bedrock batch jobs.

Streaming passes, so memory stays bounded whatever the input size: each source batch is checked (columns, nulls),
written to ``records.parquet`` (the input rows as they are; a Parquet object, or a prefix's Parquet files that share
one schema, is copied instead: ``copy_records_files``) and rendered into
JSONL lines (vectorized, see ``jsonl.py``). A row's record id is its row number, so postprocess places results without
a hash join. The job files go to S3 as multipart uploads while the lines are built, completed only once every row is
validated, and how the rows are split into jobs depends on when the row count is known:

- a source that knows it before the pass (Parquet footers) gets balanced jobs, planned first (``plan_job_sizes``:
  ``ceil(rows / max)`` jobs whose sizes differ by at most one) and streamed during the pass (``stage_planned``);
- a source that cannot count its rows first (CSV, JSONL, a split that ``datasets`` streams) is read once, its jobs
  cut greedily as the rows arrive (``stage_greedy``): a job closes at ``max_records_per_job`` rows or before the line
  that would take its file over the model's byte quota, and the last job holds the rest, so it may be small. Where
  that cannot stand (a job under the model's minimum records per job), the uploads are aborted and the input takes
  two passes: read once into ``records.parquet`` (``convert``), whose footer gives the count for a planned pass.

Where the plan changes after a planned pass (the byte quotas need more jobs) or cannot be made first, the lines are
staged in one local file (``stage``) and each job's byte range of it is uploaded. Every error is raised before
anything becomes visible in S3.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from queue import Queue
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lambdas.preprocess import jsonl
from lambdas.preprocess.quotas import lookup_batch_quotas
from lambdas.preprocess.sources import (
    BATCH_BYTES,
    BATCH_ROWS,
    Copied,
    CopiedFiles,
    Counted,
    LocalParquet,
    Projected,
    Source,
    open_source,
)
from lambdas.preprocess.uploads import JOB_PART_BYTES, PARTS_IN_FLIGHT, JobUploads, ObjectUpload, PartBuffers
from lambdas.shared import layout
from lambdas.shared.allocator import arrow_pool, release_free_memory
from lambdas.shared.errors import InputValidationError
from lambdas.shared.model_families import InferenceSettings, ModelFamilyError, ResolvedModel, resolve
from lambdas.shared.models import ExecutionInput, JobSpec, RecordsFile, RecordsIndex, RunContext
from lambdas.shared.observability import logger
from lambdas.shared.quotas import BatchQuotas
from lambdas.shared.s3io import FileRange, put_json
from lambdas.shared.settings import Settings
from prompt_templates import PromptTemplate, TemplateError, get_template

RESERVED_COLUMNS = ("response", "embedding", "error_code", "error_message")
EMBEDDING_INPUT_COLUMN = "input_text"
ID_DIGITS = 11  # a record id's width: the row number, zero-padded
# How records.parquet is encoded: Snappy where it is read back in the same run's second pass, or copied from a local
# file; uncompressed, without dictionaries or statistics, in the one pass over a CSV or JSONL input (``stage_greedy``),
# where encoding runs beside the line building and Snappy cost 3-5 s of CPU more than it saved in writing at 2.24M
# SimpleCoT rows, for a file 2.6 times bigger (docs/preprocess-performance.md, "Records compression"). Nothing reads the
# statistics (postprocess and finalize read rows by position): leaving them out halves the rest of the encoding.
RECORDS_ENCODINGS: dict[str, dict[str, Any]] = {
    "snappy": {"compression": "snappy"},
    "none": {"compression": "none", "use_dictionary": False, "write_statistics": False},
}
ONE_PASS_RECORDS = "none"
RECORDS_POOL = "mimalloc"  # Arrow's memory pool for a run whose records.parquet preprocess writes (arrow_pool)
COPY_PARTS_IN_FLIGHT = 1  # parts of a copied file's records sent at once (see _Copying)
FILE_COPIES_AT_ONCE = 4  # a prefix's files copied server-side at once as the run's records (copy_records_files)
TRIM_EVERY_BATCHES = 8  # batches (of up to 65,536 rows, or TEXT_BATCH_ROWS) between two release_free_memory() calls
# Rows per batch of a pass that reads only the template's columns (the records are copied): nothing but the JSONL
# lines is built from it, and a batch's lines (two at a time: the one built, the one written) were the largest blocks
# in glibc's heaps, 20 MB at 65,536 short rows; half that took about 30 MB off the 20M-row peak (docs/memory.md)
TEXT_BATCH_ROWS = 32_768


def record_id(row: int) -> str:
    """11-character alphanumeric record id; the row number, so postprocess can place results without a hash join."""
    return f"{row:0{ID_DIGITS}d}"


def record_ids(first: int, count: int) -> pa.Array:
    """``record_id`` for rows first .. first + count - 1, vectorized: the digits of every id written at once into
    one buffer of fixed-width strings (a tenth of the CPU of formatting the numbers and padding them)."""
    if first + count > 10**ID_DIGITS:  # ids wider than 11 digits (never in practice): formatted and padded
        numbers = pa.array(np.arange(first, first + count, dtype=np.int64)).cast(pa.string())
        return pc.ascii_lpad(numbers, width=ID_DIGITS, padding="0")
    numbers = np.arange(first, first + count, dtype=np.int64)
    digits = np.empty((count, ID_DIGITS), dtype=np.uint8)
    for place in range(ID_DIGITS - 1, -1, -1):
        numbers, digit = np.divmod(numbers, 10)
        digits[:, place] = digit
    digits += ord("0")
    offsets = np.arange(0, ID_DIGITS * (count + 1), ID_DIGITS, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(digits))


def plan_job_sizes(
    total: int,
    max_per_job: int,
    max_num_jobs: int | None = None,
    *,
    min_jobs: int = 1,
    why: str = "",
    min_per_job: int = BatchQuotas().min_records_per_job.value,
    model: str = "Bedrock",
) -> list[int]:
    """Balanced split: n = max(ceil(total / max), min_jobs) jobs whose sizes differ by at most one, each at least
    ``min_per_job`` (the model's minimum records per job; ``model`` names it in errors)."""
    if total < min_per_job:
        raise InputValidationError(
            f"the input has {total} rows, but a batch job of {model} needs at least {min_per_job} records (its "
            f"'Minimum number of records per batch inference job' quota); add rows (or use on-demand inference for "
            f"fewer than {min_per_job})"
        )
    count = max(math.ceil(total / max_per_job), min_jobs)
    if total // count < min_per_job:
        raise InputValidationError(
            f"max_records_per_job={max_per_job} splits {total} rows into {count} jobs{why} of fewer than "
            f"{min_per_job} records (the minimum per job of {model}); raise max_records_per_job to at least {total} "
            "or add rows"
        )
    if max_num_jobs is not None and count > max_num_jobs:
        raise InputValidationError(
            f"max_num_jobs={max_num_jobs} is too small: {total} rows with max_records_per_job={max_per_job} need "
            f"{count} jobs{why}; raise max_num_jobs to {count} or raise max_records_per_job (no row is ever dropped)"
        )
    base, extra = divmod(total, count)
    return [base + 1 if i < extra else base for i in range(count)]


@dataclass(frozen=True)
class Plan:
    """What the input needs: the model, the text to send per row, and the job size limit."""

    model: ResolvedModel
    template: PromptTemplate | None  # None: embed the input_text column as is
    max_per_job: int

    @property
    def text_columns(self) -> tuple[str, ...]:
        return self.template.columns if self.template else (EMBEDDING_INPUT_COLUMN,)

    def texts(self, batch: pa.RecordBatch) -> list[str]:
        """The text sent to the model for each row: the rendered template, or ``input_text`` for embeddings."""
        if self.template is None:
            return batch.column(EMBEDDING_INPUT_COLUMN).to_pylist()
        columns = {name: batch.column(name).to_pylist() for name in self.template.columns}
        return self.template.render_columns(columns, batch.num_rows)

    def escaped_texts(self, batch: pa.RecordBatch) -> list[str | pa.Array]:
        """``texts`` JSON-escaped, as pieces to concatenate, computed with Arrow kernels (the fast path)."""
        if self.template is None:
            return [jsonl.escape(jsonl.as_text(batch.column(EMBEDDING_INPUT_COLUMN)))]
        return jsonl.escaped_parts(self.template, batch)


def check_enabled(model: ResolvedModel, settings: Settings, field: str = "model_id") -> None:
    """Refuse a model the deployment does not enable (cdk.json ``allowedModelIds``; empty: every model).
    ``field`` names where the model came from in the execution input."""
    model_id = model.ref.model_id
    # An ARN of an allowed model or profile is allowed too (allowedModelIds holds ids, not ARNs).
    ids = {model_id, model.ref.resource_id} if model.ref.names_a_model else {model_id}
    if settings.allowed_model_ids and not ids & set(settings.allowed_model_ids):
        unreadable = (
            ""
            if model.ref.names_a_model
            else f" (allowedModelIds takes model and inference-profile ids, not {model.ref.arn_kind} ARNs)"
        )
        raise InputValidationError(
            f"field '{field}' = '{model_id}' is not enabled in this deployment{unreadable} (enabled: "
            f"{list(settings.allowed_model_ids)}); add it to allowedModelIds in cdk.json and redeploy"
        )


def make_plan(inp: ExecutionInput, settings: Settings) -> Plan:
    assert inp.model_id is not None  # a rows run has one (ExecutionInput's validator)
    try:
        model = resolve(inp.model_id, model_family=inp.model_family, invocation_type=inp.invocation_type)
    except ModelFamilyError as exc:
        raise InputValidationError(exc.describe()) from None
    check_enabled(model, settings)
    try:
        model.check_settings(inp.inference_params.settings())
    except ModelFamilyError as exc:
        raise InputValidationError(exc.describe()) from None
    template: PromptTemplate | None = None
    if model.output_kind == "embedding":
        if inp.prompt_id is not None:
            raise InputValidationError(
                f"field 'prompt_id' = '{inp.prompt_id}': embedding model '{inp.model_id}' embeds the "
                f"'{EMBEDDING_INPUT_COLUMN}' column as is; remove prompt_id"
            )
    else:
        if inp.prompt_id is None:
            raise InputValidationError(
                f"field 'prompt_id' is missing: text model '{inp.model_id}' needs a prompt template; "
                'set prompt_id to one of the ids in prompt_templates.py, e.g. "joke_about_topic"'
            )
        try:
            template = get_template(inp.prompt_id)
        except TemplateError as exc:
            raise InputValidationError(f"field 'prompt_id': {exc}") from None
    return Plan(model=model, template=template, max_per_job=inp.max_records_per_job or settings.max_records_per_job)


def check_schema(schema: pa.Schema, plan: Plan, source: str) -> None:
    names = list(schema.names)
    reserved = [name for name in names if name in RESERVED_COLUMNS]
    if reserved:
        raise InputValidationError(
            f"input {source} has column(s) {reserved} whose names are reserved for the output "
            f"({list(RESERVED_COLUMNS)}); rename those columns and run again"
        )
    if plan.template is not None:
        try:
            plan.template.check_columns(names)
        except TemplateError as exc:
            raise InputValidationError(str(exc)) from None
        for name in plan.template.columns:
            if pa.types.is_binary(schema.field(name).type) or pa.types.is_large_binary(schema.field(name).type):
                raise InputValidationError(
                    f"column '{name}' of input {source} is not valid UTF-8 text; convert the file to UTF-8 "
                    "first (e.g. iconv -f latin1 -t utf-8)"
                )
    elif EMBEDDING_INPUT_COLUMN not in names:
        raise InputValidationError(
            f"input {source} has no '{EMBEDDING_INPUT_COLUMN}' column (columns: {names}); embedding models embed "
            f"the '{EMBEDDING_INPUT_COLUMN}' column: rename the text column to '{EMBEDDING_INPUT_COLUMN}'"
        )
    else:
        kind = schema.field(EMBEDDING_INPUT_COLUMN).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise InputValidationError(
                f"column '{EMBEDDING_INPUT_COLUMN}' of input {source} has type {kind}, expected text; "
                "convert it to strings"
            )


def check_nulls(batch: pa.RecordBatch, columns: tuple[str, ...], first_row: int, source: str) -> None:
    for name in columns:
        column = batch.column(name)
        if column.null_count:
            row = first_row + pc.index(pc.is_null(column), True).as_py()
            raise InputValidationError(
                f"column '{name}' of input {source} is null in row {row} (0-based, {column.null_count} nulls in this "
                f"block); every row needs a value for '{name}': fill or drop those rows"
            )


class LineEnds:
    """The byte offset just past each row's line (int64), kept in a local file and read a few values at a time with
    plain reads: nothing per row is in memory. (A memory map would not do: each page read maps its neighbours too,
    64 KB per job boundary, which grew with the number of jobs.)"""

    def __init__(self, path: Path, count: int) -> None:
        self.path, self._count = path, count

    def __len__(self) -> int:
        return self._count

    def _read(self, file: Any, row: int) -> int:
        if not -self._count <= row < self._count:
            raise IndexError(f"row {row} of {self._count}")
        file.seek((row % self._count) * 8)
        return int(np.frombuffer(file.read(8), dtype=np.int64)[0])

    def __getitem__(self, rows: Any) -> Any:
        """One offset for an integer row, an int64 array for an array of rows."""
        with self.path.open("rb") as file:
            if isinstance(rows, int | np.integer):
                return self._read(file, int(rows))
            return np.array([self._read(file, int(row)) for row in np.asarray(rows).ravel()], dtype=np.int64)


@dataclass(frozen=True)
class Staged:
    """The input after one pass: ``records.parquet``, every JSONL line back to back, and where each row's line ends.

    ``line_ends`` (the byte offset just past row i's line) stays in a local file written during the pass (see
    ``LineEnds``): 8 bytes per row on disk, only the job boundaries are ever read. ``biggest_row`` is (row, bytes)
    of the longest line, found batch by batch while staging.
    """

    records_path: Path
    lines_path: Path
    line_ends: LineEnds
    biggest_row: tuple[int, int] = (0, 0)

    @property
    def rows(self) -> int:
        return len(self.line_ends)

    def byte_range(self, first_row: int, count: int) -> tuple[int, int]:
        start = int(self.line_ends[first_row - 1]) if first_row else 0
        return start, int(self.line_ends[first_row + count - 1])


def batch_lines(batch: pa.RecordBatch, ids: pa.Array, plan: Plan, inference: InferenceSettings) -> pa.Array:
    """The JSONL lines of one batch of records, vectorized where the adapter's JSON allows it."""

    def build(text: str) -> dict[str, Any]:
        return plan.model.adapter.build_model_input(text, inference)

    shape = jsonl.LineShape.of(build)
    if shape is not None:
        return jsonl.build_lines(ids, plan.escaped_texts(batch), shape)
    return pa.array(  # an adapter that places the text more than once: row by row
        [
            json.dumps({"recordId": rid, "modelInput": build(text)}, ensure_ascii=False) + "\n"
            for rid, text in zip(ids.to_pylist(), plan.texts(batch), strict=True)
        ],
        pa.string(),
    )


class _Background:
    """Runs writes in order on one worker thread, at most one behind the caller (bounded memory).

    pyarrow releases the GIL while encoding Parquet and file writes release it too, so writing batch N overlaps
    with building the JSONL lines of batch N + 1.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preprocess-writer")
        self._pending: Future[None] | None = None

    def submit(self, work: Callable[[], None]) -> None:
        self.wait()
        self._pending = self._pool.submit(work)

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def __enter__(self) -> _Background:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Finish the pending write before the files close; on an error already raised, do not mask it."""
        try:
            if kind is None:
                self.wait()
            elif self._pending is not None:
                self._pending.exception()  # wait for it, but keep the original error
        finally:
            self._pool.shutdown(wait=True)


def prefetched(batches: Iterator[pa.RecordBatch], depth: int = 1) -> Generator[pa.RecordBatch, None, None]:
    """Read the next batch on a worker thread while the caller processes this one. Bounded by slots, not by the
    queue: a batch is pulled from ``batches`` only once one of ``depth`` slots is free, and a slot frees when the
    caller takes a batch, so at most ``depth`` batches are read and not yet taken, the one being read included. A
    queue of ``depth`` alone let the reader hold one more, read and waiting to be put: with the caller's batch and
    the one being written, four whole-row batches of up to 16 MB where three do (docs/memory.md)."""
    ready: Queue[tuple[str, Any]] = Queue()  # never holds more than ``depth``: each put takes a slot
    slots = threading.Semaphore(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            iterator = iter(batches)
            while True:
                slots.acquire()
                if stop.is_set():
                    return
                batch = next(iterator, None)
                ready.put(("end", None) if batch is None else ("batch", batch))
                if batch is None:
                    return
                del batch  # the caller's now: not kept alive here while the reader waits for a slot
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put(("error", exc))

    worker = threading.Thread(target=produce, name="preprocess-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            slots.release()  # taken: the reader may read the next one
            yield item
    finally:
        stop.set()
        slots.release()  # unblock a reader waiting for a slot: it sees ``stop`` and ends
        worker.join()


def rebatched(
    batches: Iterator[pa.RecordBatch], rows: int = BATCH_ROWS, nbytes: int = BATCH_BYTES
) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``rows`` rows and about ``nbytes`` bytes, every row once and in order: a bigger batch is cut
    into zero-copy slices, consecutive smaller ones (2 MB CSV blocks) are joined up to the limits.

    Both limits bound memory: the JSONL lines of a whole batch are built at once and the pipeline holds a few batches
    (a 16 MB block of short rows held half a million rows; 65,536 rows of long text are 60 MB). Joining small blocks
    keeps the per-batch work and the row groups of ``records.parquet`` (one per batch) from growing in number. A batch
    whose schema differs from the one before is passed on alone, for ``stage`` to report; an empty batch passes only
    when nothing waits (the schema of an input without rows is still checked)."""
    waiting: list[pa.RecordBatch] = []
    waiting_rows = waiting_bytes = 0

    def flush() -> Iterator[pa.RecordBatch]:
        nonlocal waiting, waiting_rows, waiting_bytes
        if waiting:
            yield waiting[0] if len(waiting) == 1 else pa.concat_batches(waiting)
        waiting, waiting_rows, waiting_bytes = [], 0, 0

    for batch in batches:
        if batch.num_rows == 0:
            if not waiting:
                yield batch
            continue
        if waiting and not batch.schema.equals(waiting[0].schema):
            yield from flush()
        size = batch.nbytes
        if waiting and (waiting_rows + batch.num_rows > rows or waiting_bytes + size > nbytes):
            yield from flush()
        if batch.num_rows > rows or size > nbytes:
            step = max(1, min(rows, batch.num_rows * nbytes // max(size, 1)))
            for start in range(0, batch.num_rows, step):
                piece = batch.slice(start, step)
                if piece.num_rows == step:
                    yield piece
                else:  # the remainder may be joined with what follows
                    waiting, waiting_rows, waiting_bytes = [piece], piece.num_rows, piece.nbytes
            continue
        waiting.append(batch)
        waiting_rows += batch.num_rows
        waiting_bytes += size
    yield from flush()


def stage(
    source: Source,
    plan: Plan,
    inference: InferenceSettings,
    workdir: Path,
    *,
    write_records: bool = True,
    uploads: JobUploads | None = None,
    records: ObjectUpload | None = None,
    records_compression: str = "snappy",
) -> Staged:
    """One streaming pass: check each batch, number its rows, append it to ``records.parquet`` (unless the source
    file can serve as the records as it is), a local file or the ``records`` upload (encoded as
    ``records_compression`` says, see ``RECORDS_ENCODINGS``), and its JSONL lines to one local file, or to the jobs'
    ``uploads`` (planned, or cut greedily), with no local copy. Memory holds three batches at a time, whatever the
    row count (the one being written, the one whose lines are built, the one read ahead: ``prefetched``): the line
    offsets go to a local file (see ``LineEnds``), 8 bytes a row."""
    records_path, lines_path = workdir / "records.parquet", workdir / "records.jsonl"
    ends_path = workdir / "line_ends.int64"
    writer: pq.ParquetWriter | None = None
    rows = written = 0
    biggest = (0, 0)
    try:
        with contextlib.ExitStack() as files:
            ends_file = files.enter_context(ends_path.open("wb"))
            if uploads is not None:
                send = uploads.write
            else:
                send = partial(_append_lines, files.enter_context(lines_path.open("wb")))
            background = files.enter_context(_Background())
            for batch in checked(source, plan, text_only=not write_records):
                if write_records and writer is None:
                    sink = records if records is not None else records_path
                    writer = pq.ParquetWriter(sink, batch.schema, **RECORDS_ENCODINGS[records_compression])
                lines = batch_lines(batch, record_ids(rows, batch.num_rows), plan, inference)
                data, offsets = jsonl.line_bytes(lines)
                ends = offsets[1:].astype(np.int64) - int(offsets[0]) + written
                ends.tofile(ends_file)
                sizes = np.diff(offsets)
                longest = int(np.argmax(sizes))
                if int(sizes[longest]) > biggest[1]:
                    biggest = (rows + longest, int(sizes[longest]))
                written += int(offsets[-1] - offsets[0])
                rows += batch.num_rows
                background.submit(partial(_write_batch, writer, batch, send, lines))
    finally:
        if writer is not None:
            writer.close()
    if rows == 0:
        raise _no_rows(source)
    return Staged(records_path, lines_path, LineEnds(ends_path, rows), biggest)


def _no_rows(source: Source) -> InputValidationError:
    return InputValidationError(f"input {source.description} has no rows; give a file or split with data")


def checked(source: Source, plan: Plan, *, text_only: bool = False) -> Iterator[pa.RecordBatch]:
    """The source's rows in batches (``rebatched``, read a batch ahead), each checked before it is passed on: the
    schema (the first batch's, even an empty one; every later batch must share it) and nulls in the text columns.
    Empty batches are not passed on. ``text_only``: where nothing but the JSONL lines needs the rows (the records are
    written already, or copied), a source whose columns can be read alone (Parquet) is checked against its whole
    schema first and read for the template's columns only: the others are neither fetched nor decoded, and the
    batches are of ``TEXT_BATCH_ROWS`` rows (nothing but their lines is built from them)."""
    rows_per_batch = BATCH_ROWS
    if text_only and isinstance(source, Projected):
        check_schema(source.schema(), plan, source.description)
        batches, rows_per_batch = source.column_batches(plan.text_columns), TEXT_BATCH_ROWS
    else:
        batches = source.batches()
    schema: pa.Schema | None = None
    rows = batches_read = 0
    for batch in prefetched(rebatched(batches, rows_per_batch)):
        if schema is None:
            check_schema(batch.schema, plan, source.description)
            schema = batch.schema
        elif not batch.schema.equals(schema):
            raise InputValidationError(
                f"input {source.description} changes its columns or types after row {rows}; "
                "make every file and block share one schema"
            )
        if batch.num_rows == 0:
            continue
        check_nulls(batch, plan.text_columns, rows, source.description)
        rows += batch.num_rows
        batches_read += 1
        yield batch
        if batches_read % TRIM_EVERY_BATCHES == 0:
            release_free_memory()  # memory flat in the row count: see lambdas/shared/allocator.py


def convert(source: Source, plan: Plan, workdir: Path, *, upload: ObjectUpload | None = None) -> LocalParquet:
    """The first of two passes over a source that cannot tell its row count before it is read (CSV, JSONL, a split
    that ``datasets`` streams), taken only where the jobs its one pass cut cannot stand (``stage_greedy``): every
    batch checked as ``stage`` checks it and written to ``records.parquet`` (the
    run's records), which then serves as a source whose footer gives the row count. The second pass plans the jobs
    first and streams their files to S3 (``stage_planned``), as for a Parquet input: the JSONL lines are written
    once, where staging them wrote a local file, read it back and uploaded it. Memory holds a few batches, as in
    ``stage``; the file is what the run uploads as its records anyway: ``upload`` sends it to S3 as it is written
    (completed by the caller once the run is validated)."""
    records_path = workdir / "records.parquet"
    writer: pq.ParquetWriter | None = None
    with records_path.open("wb") as file:
        sink = _Tee(file, upload) if upload is not None else file
        try:
            for batch in checked(source, plan):
                if writer is None:
                    writer = pq.ParquetWriter(sink, batch.schema, **RECORDS_ENCODINGS["snappy"])
                writer.write_batch(batch)
        finally:
            if writer is not None:
                writer.close()
    if writer is None:
        raise _no_rows(source)
    return LocalParquet(records_path, source.description)


def _write_batch(
    writer: pq.ParquetWriter | None,
    records: pa.RecordBatch,
    send: Callable[[memoryview, np.ndarray], None],
    lines: pa.Array,
) -> None:
    if writer is not None:
        writer.write_batch(records)
    send(*jsonl.line_bytes(lines))


def _append_lines(lines_file: Any, data: memoryview, offsets: np.ndarray) -> None:
    lines_file.write(data[offsets[0] : offsets[-1]])


class _Tee:
    """A file to write into that writes into a local file and an upload."""

    closed = False

    def __init__(self, file: Any, upload: ObjectUpload) -> None:
        self._file, self._upload = file, upload

    def write(self, data: Any) -> int:
        self._file.write(data)
        return self._upload.write(data)

    def flush(self) -> None:
        self._file.flush()


class _Copying:
    """The records of a ``Copied`` source (a hub split of one Parquet file): its bytes copied into ``upload`` on a
    thread of their own while the pass builds the job files. ``wait`` returns once every byte is written (raising the
    copy's error); leaving the block stops the copy first, so an upload aborted on an error gets no more writes."""

    def __init__(self, source: Copied, upload: ObjectUpload) -> None:
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preprocess-copy")
        self._copy = self._pool.submit(source.copy_to, upload, self._stop)

    def wait(self) -> None:
        self._copy.result()

    def stop(self) -> None:
        """End the copy (after the read under way) and wait for it: nothing is written into the upload after this."""
        self._stop.set()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> _Copying:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def copy_records(source: Copied, s3: Any, bucket: str, run_id: str) -> None:
    """The run's records as ``source``'s bytes, uploaded once the run is validated (the staged fallback)."""
    with ObjectUpload(s3, bucket, layout.records_key(run_id), in_flight=COPY_PARTS_IN_FLIGHT) as records:
        source.copy_to(records, threading.Event())
        records.complete()


def copy_records_files(files: list[tuple[str, str, int]], s3: Any, bucket: str, run_id: str) -> str:
    """The run's records as the input's files themselves (a prefix of Parquet files with one schema), once the run is
    validated: each (bucket, key, rows) copied server-side to ``records/<NNNN>.parquet`` in order
    (``FILE_COPIES_AT_ONCE`` at a time; boto3's managed copy makes a multipart copy of a file over its threshold, so
    no byte passes through the function), then the index listing them with their row counts (``records.json``),
    written last: a reader never finds an index whose files are not all there. Returns the index's key."""
    listed = [
        RecordsFile(key=layout.records_file_key(run_id, position), rows=rows, source=f"s3://{source_bucket}/{key}")
        for position, (source_bucket, key, rows) in enumerate(files)
    ]

    def copy(entry: RecordsFile, file: tuple[str, str, int]) -> None:
        s3.copy({"Bucket": file[0], "Key": file[1]}, bucket, entry.key)

    with ThreadPoolExecutor(max_workers=max(1, min(FILE_COPIES_AT_ONCE, len(listed)))) as pool:
        for _ in pool.map(copy, listed, files):  # raises the first copy's error, in order
            pass
    index_key = layout.records_index_key(run_id)
    put_json(s3, bucket, index_key, RecordsIndex(files=listed).model_dump(mode="json"))
    return index_key


def part_buffers(*, write_records: bool, copied: bool) -> PartBuffers:
    """The part buffers of a planned pass's uploads: one bound, whatever the pass's length. The job files alone (the
    records copied server-side) take parts of S3's minimum, 5 MiB, one being filled and ``PARTS_IN_FLIGHT`` in flight
    (25 MiB, where 8 MiB parts and a sixth buffer were 48 MiB: part of what the 20M-row pass over a Parquet object
    held at its peak and the 200k one did not, docs/memory.md). A pool shared with the records' upload keeps 8 MiB
    parts: records.parquet can be far bigger than a job file (at most 1 GB), and an upload has at most 10,000 parts."""
    if write_records or copied:
        return PartBuffers()
    return PartBuffers(JOB_PART_BYTES, PARTS_IN_FLIGHT + 1)


def stage_planned(
    source: Source,
    plan: Plan,
    inference: InferenceSettings,
    workdir: Path,
    *,
    s3: Any,
    bucket: str,
    run_id: str,
    rows: int | None,
    max_per_job: int,
    max_num_jobs: int | None,
    quotas: BatchQuotas,
    write_records: bool,
    copied: Copied | None = None,
) -> tuple[Staged, list[JobSpec]] | None:
    """Stage with the jobs planned before the pass and their files streamed to S3 (``uploads.JobUploads``), for a
    source that knows its row count, ``rows`` (Parquet, or the records ``convert`` wrote); None, having left nothing
    in S3, where the rows or the jobs are only known after the pass: a source that cannot count, a count the plan
    refuses (``stage`` then reports the input's errors in their usual order), or jobs whose files the byte quotas
    split further. ``write_records``: the rows go to the run's records, streamed to S3 too (``uploads.ObjectUpload``)
    and completed with the job files; ``copied``: the records are that source's bytes, copied into their upload
    during the pass. Every error of the pass aborts the uploads, so no file appears."""
    if not rows:
        return None
    try:
        sizes = plan_job_sizes(
            rows,
            max_per_job,
            max_num_jobs,
            min_per_job=quotas.min_records_per_job.value,
            model=quotas.model_name or "Bedrock",
        )
    except InputValidationError:
        return None
    buffers = part_buffers(write_records=write_records, copied=copied is not None)
    with contextlib.ExitStack() as uploading:  # an error of the pass aborts every upload
        uploads = uploading.enter_context(
            JobUploads(s3, bucket, partial(layout.job_input_key, run_id), sizes=sizes, buffers=buffers)
        )
        records = (
            uploading.enter_context(
                ObjectUpload(
                    s3,
                    bucket,
                    layout.records_key(run_id),
                    buffers=buffers,
                    in_flight=COPY_PARTS_IN_FLIGHT if copied else PARTS_IN_FLIGHT,
                )
            )
            if write_records or copied is not None
            else None
        )
        copying = uploading.enter_context(_Copying(copied, records)) if copied is not None and records else None
        staged = stage(
            source,
            plan,
            inference,
            workdir,
            write_records=write_records,
            uploads=uploads,
            records=records if write_records else None,
        )
        if staged.rows != rows:
            raise InputValidationError(
                f"input {source.description} holds {staged.rows} rows where its footer says {rows}; check the file "
                "is valid Parquet"
            )
        fitted = fit_job_sizes(staged, max_per_job, max_num_jobs, quotas=quotas)
        if fitted != sizes:  # the byte quotas need more jobs: staged again, the plan made from the bytes
            if copying is not None:
                copying.stop()  # before the abort: a write after it would start the upload again
            _abort(uploads, records)
            logger.info(
                "jobs split further for the byte quota: staging again", planned_jobs=len(sizes), jobs=len(fitted)
            )
            return None
        if copying is not None:
            copying.wait()
        return staged, _completed(staged, sizes, run_id, uploads, records)


def _abort(*uploads: JobUploads | ObjectUpload | None) -> None:
    """End every upload given: nothing of them becomes visible."""
    for upload in uploads:
        if upload is not None:
            upload.abort()


def _completed(
    staged: Staged,
    sizes: list[int],
    run_id: str,
    uploads: JobUploads,
    records: ObjectUpload | None,
    *,
    on_demand: bool = False,
) -> list[JobSpec]:
    """The jobs of ``sizes``, once the bytes each job's upload received match the line offsets; then the job files
    (and the ``records``) are completed: visible in S3."""
    jobs = plan_jobs(staged, sizes, run_id, on_demand=on_demand)
    if [job.size_bytes for job in jobs] != uploads.job_bytes:
        raise RuntimeError(f"job file sizes {uploads.job_bytes} differ from the line offsets' {jobs}")
    uploads.complete()
    if records is not None:
        records.complete()
    return jobs


def stage_greedy(
    source: Source,
    plan: Plan,
    inference: InferenceSettings,
    workdir: Path,
    *,
    s3: Any,
    bucket: str,
    run_id: str,
    max_per_job: int,
    max_num_jobs: int | None,
    quotas: BatchQuotas,
) -> tuple[Staged, list[JobSpec]] | None:
    """The one pass over a source that cannot count its rows before it is read (CSV, JSONL, a split ``datasets``
    streams): each checked batch goes to the run's records (a ParquetWriter writing into the ``records.parquet``
    upload) and its JSONL lines to the job files, cut greedily as the rows arrive (``uploads.JobUploads`` without
    sizes): a job closes at ``max_per_job`` rows, or before the line that would take its file over the model's byte
    quota; the last job holds the rest. Only the line ends stay local (8 bytes a row).

    Every error of the pass aborts the uploads; so does an error of the plan (max_num_jobs, a row over the byte
    quota: raised as the balanced plan raises them, ``fit_job_sizes``). None, having left nothing in S3, where the
    greedy jobs cannot stand but balanced ones can: a job under the model's minimum records per job (the last one,
    or one of rows so long that few fit in the byte quota), or fewer rows than a batch job needs split into several
    jobs; the caller then takes the two passes (``convert``, then ``stage_planned``)."""
    buffers = PartBuffers()  # the two uploads' part buffers: one bound, whatever the pass's length
    with contextlib.ExitStack() as uploading:  # an error of the pass or of the plan aborts every upload
        uploads = uploading.enter_context(
            JobUploads(
                s3,
                bucket,
                partial(layout.job_input_key, run_id),
                max_rows=max_per_job,
                max_bytes=quotas.bytes_per_job,
                buffers=buffers,
            )
        )
        records = uploading.enter_context(ObjectUpload(s3, bucket, layout.records_key(run_id), buffers=buffers))
        staged = stage(
            source,
            plan,
            inference,
            workdir,
            uploads=uploads,
            records=records,
            records_compression=ONE_PASS_RECORDS,
        )
        sizes = uploads.finish()
        minimum = quotas.min_records_per_job.value
        if staged.rows < minimum:  # one on-demand job of every row, as plan_run_jobs makes
            stands, on_demand = len(sizes) == 1 and not uploads.broken, True
        else:
            too_many = max_num_jobs is not None and len(sizes) > max_num_jobs
            stands, on_demand = not (uploads.broken or too_many or min(sizes) < minimum), False
            if not stands:
                fit_job_sizes(staged, max_per_job, max_num_jobs, quotas=quotas)  # raises the plan's error, if any
        if not stands:
            _abort(uploads, records)
            logger.info(
                "greedy jobs cannot stand: two passes",
                jobs=len(sizes),
                smallest_job=min(sizes, default=0),
                min_per_job=minimum,
                line_over_byte_quota=uploads.broken,
            )
            return None
        return staged, _completed(staged, sizes, run_id, uploads, records, on_demand=on_demand)


def known_rows(source: Source) -> int | None:
    """How many rows the source holds, when it can tell before it is read (its Parquet footers); None otherwise."""
    return source.known_rows() if isinstance(source, Counted) else None


def fit_job_sizes(
    staged: Staged, max_per_job: int, max_num_jobs: int | None = None, *, quotas: BatchQuotas | None = None
) -> list[int]:
    """Balanced sizes that also keep every job file within the model's byte quotas (one file per job: the smaller
    of the input file size and job size quotas): more jobs when the bytes need it."""
    quotas = quotas or BatchQuotas()
    max_bytes, model = quotas.bytes_per_job, quotas.model_name or "Bedrock"
    limit = f"{max_bytes / 1e9:g} GB" if max_bytes >= 10**7 else f"{max_bytes:,} bytes"
    total_bytes = int(staged.line_ends[-1])
    row, biggest_row = staged.biggest_row
    if biggest_row > max_bytes:
        raise InputValidationError(
            f"row {row} alone makes a {biggest_row / 1e9:.2f} GB record, over the {limit} input file limit of "
            f"{model}; shorten that row's text"
        )
    min_jobs = math.ceil(total_bytes / max_bytes)
    while True:
        why = f" (needed to keep each job file under {limit}: {total_bytes / 1e9:.2f} GB in all)" * (min_jobs > 1)
        sizes = plan_job_sizes(
            staged.rows,
            max_per_job,
            max_num_jobs,
            min_jobs=min_jobs,
            why=why,
            min_per_job=quotas.min_records_per_job.value,
            model=model,
        )
        bounds = np.cumsum([0, *sizes])
        starts = np.concatenate([[0], staged.line_ends[bounds[1:-1] - 1]])
        if int(np.max(staged.line_ends[bounds[1:] - 1] - starts)) <= max_bytes:
            return sizes
        min_jobs = len(sizes) + 1


def capped_records_per_job(requested: int, quotas: BatchQuotas, *, asked: bool) -> int:
    """``requested`` (the execution input's ``max_records_per_job``, or the deployment's) within the model's record
    quotas; logs a warning when the user asked (``asked``) for more than the model takes."""
    allowed = quotas.records_per_job
    if requested > allowed:
        log = logger.warning if asked else logger.info
        log(
            "max_records_per_job capped by the model's quota",
            requested=requested,
            capped_to=allowed,
            model_quota_name=quotas.model_name,
            source=quotas.max_records_per_job.source,
        )
        return allowed
    return requested


def concurrency_cap(configured: int, quotas: BatchQuotas) -> int:
    """min(maxConcurrentJobs, the model's quota of submitted + in-progress jobs); logs a warning when it caps."""
    quota = quotas.max_concurrent_jobs
    if configured > quota.value:
        logger.warning(
            "maxConcurrentJobs is above the model's quota of submitted + in-progress jobs: capped",
            max_concurrent_jobs=configured,
            capped_to=quota.value,
            model_quota_name=quotas.model_name,
            source=quota.source,
        )
        return quota.value
    return configured


def plan_jobs(staged: Staged, sizes: list[int], run_id: str, *, on_demand: bool = False) -> list[JobSpec]:
    """One job per size, in row order; the jobs' byte ranges tile the JSONL file (its boundaries read at once).
    ``on_demand``: the jobs run through the runtime, record by record, instead of as batch jobs."""
    bounds = np.cumsum([0, *sizes])
    ends = staged.line_ends[bounds[1:] - 1]
    starts = np.concatenate([[0], ends[:-1]])
    return [
        JobSpec(
            index=index,
            input_key=layout.job_input_key(run_id, index),
            first_row=int(bounds[index]),
            record_count=size,
            size_bytes=int(ends[index] - starts[index]),
            on_demand=on_demand,
        )
        for index, size in enumerate(sizes)
    ]


def plan_run_jobs(
    staged: Staged, max_per_job: int, max_num_jobs: int | None, quotas: BatchQuotas, run_id: str
) -> list[JobSpec]:
    """The run's jobs: batch jobs within the model's quotas, or, for fewer rows than a batch job of the model needs
    (its minimum records per job, 100 by default), one on-demand job of them all (lambdas/on_demand): answered
    through the runtime at on-demand prices, instead of being refused."""
    minimum = quotas.min_records_per_job.value
    if staged.rows < minimum:
        logger.info("fewer rows than a batch job needs: one on-demand job", rows=staged.rows, min_per_job=minimum)
        return plan_jobs(staged, [staged.rows], run_id, on_demand=True)
    return plan_jobs(staged, fit_job_sizes(staged, max_per_job, max_num_jobs, quotas=quotas), run_id)


def preprocess(
    raw_input: Any,
    execution_name: str,
    *,
    s3: Any,
    service_quotas: Any,
    settings: Settings,
    workdir: Path,
    execution_arn: str | None = None,
) -> RunContext:
    """Validate the execution input and the data, then stage records, job files and the job manifest in S3.

    The model's batch quotas are read once here (``service_quotas`` is a Service Quotas client) and travel in the
    run context to the later steps."""
    inp = ExecutionInput.parse(raw_input)
    plan = make_plan(inp, settings)
    quotas = lookup_batch_quotas(plan.model.ref.model_id, service_quotas=service_quotas)
    if quotas.note:
        logger.warning("batch quotas: defaults used", defaults_used=quotas.defaults_used(), note=quotas.note)
    logger.info("batch quotas", **quotas.summary())
    max_per_job = capped_records_per_job(plan.max_per_job, quotas, asked=inp.max_records_per_job is not None)
    run_id = layout.run_id_from_execution_name(execution_name)
    source: Source = open_source(inp, s3, settings.data_bucket)
    copy_from = source.records_object  # a Parquet input is already the records (ids are row numbers)
    copied = source if isinstance(source, Copied) else None  # ... and so is a hub split of one Parquet file
    files = source.records_files() if isinstance(source, CopiedFiles) else None  # ... and a prefix's Parquet files
    write_records, rows = copy_from is None and copied is None and files is None, known_rows(source)
    records_key = layout.records_key(run_id)
    inference = inp.inference_params.settings()
    with contextlib.ExitStack() as stack:
        if write_records:  # a pass writes records.parquet: memory flat in the row count only on mimalloc (arrow_pool)
            stack.enter_context(arrow_pool(RECORDS_POOL))
        streamed: ObjectUpload | None = None  # the records, sent to S3 as the first of two passes writes them
        if rows is None:  # one pass, the jobs cut as the rows arrive
            planned = stage_greedy(
                source,
                plan,
                inference,
                workdir,
                s3=s3,
                bucket=settings.data_bucket,
                run_id=run_id,
                max_per_job=max_per_job,
                max_num_jobs=inp.max_num_jobs,
                quotas=quotas,
            )
            if planned is not None:
                return _finish(
                    planned, inp, plan, run_id, quotas, s3=s3, settings=settings, execution_arn=execution_arn
                )
            # the greedy jobs cannot stand: counted by a first pass, which writes the records
            streamed = stack.enter_context(ObjectUpload(s3, settings.data_bucket, layout.records_key(run_id)))
            source, write_records = convert(source, plan, workdir, upload=streamed), False
            rows = known_rows(source)
        planned = stage_planned(
            source,
            plan,
            inference,
            workdir,
            s3=s3,
            bucket=settings.data_bucket,
            run_id=run_id,
            rows=rows,
            max_per_job=max_per_job,
            max_num_jobs=inp.max_num_jobs,
            quotas=quotas,
            write_records=write_records,
            copied=copied,
        )
        if planned is not None:  # the job files are in S3 already
            staged, jobs = planned
        else:
            staged = stage(source, plan, inference, workdir, write_records=write_records)
            jobs = plan_run_jobs(staged, max_per_job, inp.max_num_jobs, quotas, run_id)
            # Validation is over: only now does anything go to S3.
            with staged.lines_path.open("rb") as lines:
                start = 0
                for job in jobs:  # the jobs tile the JSONL file in order
                    body = FileRange(lines, start, start + job.size_bytes)
                    s3.upload_fileobj(body, settings.data_bucket, job.input_key)
                    start += job.size_bytes
        if copy_from is not None:  # server-side copy: no re-encoding, the run keeps its own if the input changes later
            source_bucket, source_key = copy_from
            s3.copy({"Bucket": source_bucket, "Key": source_key}, settings.data_bucket, layout.records_key(run_id))
        elif files is not None:  # each file copied server-side, as one Parquet object is, and listed in an index
            records_key = copy_records_files(files, s3, settings.data_bucket, run_id)
        elif streamed is not None:
            streamed.complete()
        elif copied is not None:
            if planned is None:  # else: copied during the pass (stage_planned)
                copy_records(copied, s3, settings.data_bucket, run_id)
        elif planned is None or not write_records:  # else: streamed with the job files (stage_planned)
            s3.upload_file(str(staged.records_path), settings.data_bucket, layout.records_key(run_id))
    return _finish(
        (staged, jobs),
        inp,
        plan,
        run_id,
        quotas,
        s3=s3,
        settings=settings,
        execution_arn=execution_arn,
        records_key=records_key,
    )


def _finish(
    planned: tuple[Staged, list[JobSpec]],
    inp: ExecutionInput,
    plan: Plan,
    run_id: str,
    quotas: BatchQuotas,
    *,
    s3: Any,
    settings: Settings,
    execution_arn: str | None,
    records_key: str | None = None,
) -> RunContext:
    """The job manifest, written once the job files and records are in S3, and the run context (``records_key``:
    the records' index where they are a list of files; else ``records.parquet``)."""
    staged, jobs = planned
    total = staged.rows
    manifest = [job.model_dump() for job in jobs]
    s3.put_object(
        Bucket=settings.data_bucket,
        Key=layout.manifest_key(run_id),
        Body=json.dumps(manifest).encode(),
        ContentType="application/json",
    )
    return RunContext(
        run_id=run_id,
        bucket=settings.data_bucket,
        model_id=inp.model_id,
        family=plan.model.family,
        output_kind=plan.model.output_kind,
        invocation_type=plan.model.invocation_type,
        job_name_prefix=inp.job_name_prefix,
        total_records=total,
        num_jobs=len(jobs),
        records_key=records_key or layout.records_key(run_id),
        manifest_key=layout.manifest_key(run_id),
        execution_arn=execution_arn,
        quotas=quotas,
        max_concurrent_jobs=concurrency_cap(settings.max_concurrent_jobs, quotas),
    )
