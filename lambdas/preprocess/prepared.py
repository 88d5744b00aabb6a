"""Preprocess of a prepared input (``input_format`` "prepared"): JSONL records that each name their model and carry
their whole ``modelInput`` (the gateway writes them for the OpenAI Batch API; docs/batch/running.md, "Prepared
input"). One line: ``{"custom_id": "req-1", "model": "claude-haiku", "model_input": {...}}``.

Two streaming passes over local files, so memory stays bounded whatever the input size:

1. The input is read line by line. Each line is checked (a JSON object; ``model`` one of the execution input's
   ``models``; ``model_input`` a JSON object; the record within its model's input file quota, as a rows run checks
   its longest row) and appended to its model's two spill files: the line's other keys (the input columns, ``model``
   included) and the ``model_input`` JSON text. Memory holds the column names and the JSON types seen per column.
2. The models' groups, in the order of ``models``, become ``records.parquet`` (a model's rows contiguous, in input
   order within the group; ``record_id``, the input columns, ``model_input`` as a JSON string) and one local file of
   job lines ``{"recordId": "<row>", "modelInput": <model_input>}`` whose record ids are row numbers, as in a rows run.

Each group is then split with the planner of a rows run and its model's own quotas and concurrency cap; jobs never
mix models. A group under its model's minimum records per job cannot be a batch job: it becomes one job with
``on_demand`` set, run through the runtime instead. Every error is raised before anything is uploaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lambdas.preprocess.logic import (
    LineEnds,
    Staged,
    capped_records_per_job,
    check_enabled,
    concurrency_cap,
    fit_job_sizes,
    record_id,
)
from lambdas.preprocess.quotas import lookup_batch_quotas
from lambdas.shared import layout
from lambdas.shared.errors import InputValidationError
from lambdas.shared.model_families import ModelFamilyError, ResolvedModel, resolve
from lambdas.shared.models import ExecutionInput, JobSpec, PreparedModel, RunContext, RunModel
from lambdas.shared.observability import logger
from lambdas.shared.quotas import BatchQuotas
from lambdas.shared.run_files import ERROR_CODE, ERROR_MESSAGE, MODEL_OUTPUT
from lambdas.shared.s3io import FileRange
from lambdas.shared.settings import Settings

MODEL_KEY = "model"
INPUT_KEY = "model_input"
RECORD_ID = "record_id"
# Keys a prepared line may not have: the names of the columns the run adds.
RESERVED_KEYS = (RECORD_ID, MODEL_OUTPUT, ERROR_CODE, ERROR_MESSAGE)
MAX_COLUMNS = 1_000  # distinct keys over all lines: each becomes a Parquet column
READ_CHUNK_BYTES = 1 << 20
GROUP_BATCH_ROWS = 8_192  # rows per records.parquet row group (and per batch of job lines)
GROUP_BATCH_BYTES = 16 << 20  # ... or fewer, when their model inputs add up to this many bytes
# '{"recordId": "<11 digits>", "modelInput": ' + the input + '}\n': the bytes a job line adds to its model input
LINE_OVERHEAD = len(f'{{"recordId": "{record_id(0)}", "modelInput": ') + len("}\n")
EXAMPLE_LINE = '{"custom_id": "req-1", "model": "<a key of models>", "model_input": {...}}'


@dataclass(frozen=True)
class GroupModel:
    """One model of the run: how it was resolved, its quotas and the limits its jobs are planned with."""

    name: str
    spec: PreparedModel
    resolved: ResolvedModel
    quotas: BatchQuotas
    max_per_job: int

    def run_model(self, settings: Settings) -> RunModel:
        return RunModel(
            model_id=self.spec.model_id,
            family=self.resolved.family,
            invocation_type=self.resolved.invocation_type,
            output_kind=self.resolved.output_kind,
            quotas=self.quotas,
            max_concurrent_jobs=concurrency_cap(settings.max_concurrent_jobs, self.quotas),
        )


def resolve_models(inp: ExecutionInput, settings: Settings, service_quotas: Any) -> dict[str, GroupModel]:
    """Each of the execution input's models resolved like a rows run's model (family, batch support, enabled in this
    deployment), with its own batch quotas from Service Quotas."""
    assert inp.models is not None  # a prepared input has them (ExecutionInput's validator)
    models: dict[str, GroupModel] = {}
    for name, spec in inp.models.items():
        where = f"models.{name}"
        try:
            resolved = resolve(spec.model_id, model_family=spec.model_family, invocation_type=spec.invocation_type)
        except ModelFamilyError as exc:
            raise InputValidationError(f"field '{where}.{exc.field}': {exc}") from None
        if spec.output_kind is not None and spec.output_kind != resolved.output_kind:
            raise InputValidationError(
                f"field '{where}.output_kind' = '{spec.output_kind}', but '{spec.model_id}' is a "
                f"{resolved.output_kind} model ({resolved.adapter.title}); fix output_kind or model_id, or remove "
                "output_kind"
            )
        check_enabled(resolved, settings, field=f"{where}.model_id")
        quotas = lookup_batch_quotas(spec.model_id, service_quotas=service_quotas)
        if quotas.note:
            logger.warning("batch quotas: defaults used", model=name, defaults_used=quotas.defaults_used())
        logger.info("batch quotas", model=name, **quotas.summary())
        requested = inp.max_records_per_job or settings.max_records_per_job
        max_per_job = capped_records_per_job(requested, quotas, asked=inp.max_records_per_job is not None)
        models[name] = GroupModel(name, spec, resolved, quotas, max_per_job)
    return models


def numbered_lines(body: Any, max_line_bytes: int, description: str) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its newline) of a streamed body, split on ``\\n`` only (a ``\\r`` is JSON
    whitespace). A line longer than ``max_line_bytes`` is refused before it is all in memory."""
    pieces: list[bytes] = []
    held = number = 0
    for chunk in body.iter_chunks(READ_CHUNK_BYTES):
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                pieces.append(chunk[start:])
                held += len(chunk) - start
                if held > max_line_bytes:
                    raise InputValidationError(
                        f"line {number + 1} of {description} is longer than {max_line_bytes:,} bytes, the largest "
                        "record any of the run's models takes in a batch job (its input file quota); shorten it"
                    )
                break
            pieces.append(chunk[start:end])
            number += 1
            yield number, b"".join(pieces)
            pieces, held, start = [], 0, end + 1
    if held:
        yield number + 1, b"".join(pieces)


def _json_text(value: Any) -> str:
    """Compact JSON text; ASCII-escaped only when the value holds a lone surrogate (which UTF-8 cannot encode)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"))
    return text


_INT64 = (-(2**63), 2**63)


def _json_type(value: Any) -> str | None:
    """The JSON type of one column value, as the column's Arrow type is chosen from: None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value < _INT64[1] else "json"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"  # an object or an array


def column_type(seen: set[str]) -> tuple[pa.DataType, bool]:
    """(Arrow type, values as JSON text) of an input column from the JSON types of its values: one scalar type keeps
    its type (integers and floats together are float64); objects, arrays and mixed types are the JSON text of each
    value; a column that is null on every line is a null string."""
    kinds = seen - {"json"} if "json" not in seen else seen
    if not seen or kinds == {"str"}:
        return pa.string(), False
    if kinds == {"bool"}:
        return pa.bool_(), False
    if kinds == {"int"}:
        return pa.int64(), False
    if kinds <= {"int", "float"}:
        return pa.float64(), False
    return pa.string(), True


@dataclass
class _Spill:
    """One model's records as pass 1 leaves them: their columns (a JSON object a line) and model inputs (JSON text a
    line), in input order."""

    columns_path: Path
    inputs_path: Path
    count: int = 0
    columns: IO[bytes] | None = field(default=None, repr=False)
    inputs: IO[bytes] | None = field(default=None, repr=False)

    def add(self, columns: bytes, model_input: bytes) -> None:
        if self.columns is None or self.inputs is None:
            self.columns, self.inputs = self.columns_path.open("wb"), self.inputs_path.open("wb")
        self.columns.write(columns + b"\n")
        self.inputs.write(model_input + b"\n")
        self.count += 1

    def close(self) -> None:
        for file in (self.columns, self.inputs):
            if file is not None:
                file.close()

    def records(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        with self.columns_path.open("rb") as columns, self.inputs_path.open("rb") as inputs:
            for line, model_input in zip(columns, inputs, strict=True):
                yield json.loads(line), model_input.rstrip(b"\n")


@dataclass
class Split:
    """Pass 1's result: each model's spill and the input columns (first seen first) with their values' JSON types."""

    spills: dict[str, _Spill]
    columns: dict[str, set[str]]

    @property
    def records(self) -> int:
        return sum(spill.count for spill in self.spills.values())


_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _line_error(number: int, description: str, problem: str, fix: str) -> InputValidationError:
    return InputValidationError(f"line {number} of {description} {problem}; {fix}")


def split_by_model(body: Any, description: str, models: dict[str, GroupModel], workdir: Path) -> Split:
    """Pass 1: check every line and append it to its model's spill files."""
    spills = {
        name: _Spill(workdir / f"{i:03d}.columns.jsonl", workdir / f"{i:03d}.inputs.jsonl")
        for i, name in enumerate(models)
    }
    split = Split(spills, {})
    max_line = max(model.quotas.bytes_per_job for model in models.values())
    try:
        for number, raw in numbered_lines(body, max_line, description):
            if not raw.strip():
                continue  # a blank line holds no record
            _add_line(split, number, raw, description, models)
    finally:
        for spill in spills.values():
            spill.close()
    if split.records == 0:
        raise InputValidationError(
            f"input {description} has no records; give one JSON object per line, e.g. {EXAMPLE_LINE}"
        )
    return split


def _add_line(split: Split, number: int, raw: bytes, description: str, models: dict[str, GroupModel]) -> None:
    try:
        line = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _line_error(
            number, description, f"is not valid UTF-8 ({exc.reason} at byte {exc.start})", "write the file as UTF-8"
        ) from None
    except ValueError as exc:
        raise _line_error(
            number, description, f"is not valid JSON ({exc})", f"give one JSON object per line, e.g. {EXAMPLE_LINE}"
        ) from None
    if not isinstance(line, dict):
        raise _line_error(
            number,
            description,
            f"is a JSON {_JSON_TYPE_NAMES.get(type(line), type(line).__name__)}, not an object",
            f"give one JSON object per line, e.g. {EXAMPLE_LINE}",
        )
    name = line.get(MODEL_KEY)
    if not isinstance(name, str) or name not in models:
        problem = "has no 'model'" if name is None else f"has 'model' = {json.dumps(name)[:80]}, not a key of models"
        raise _line_error(
            number,
            description,
            problem,
            f"set 'model' to one of the execution input's models {list(models)} (or add the model to models)",
        )
    model_input = line.get(INPUT_KEY)
    if not isinstance(model_input, dict):
        problem = "has no 'model_input'" if model_input is None else "has a 'model_input' that is not a JSON object"
        raise _line_error(
            number,
            description,
            problem,
            "give the record's modelInput as a JSON object (the request body the model takes)",
        )
    reserved = [key for key in line if key in RESERVED_KEYS]
    if reserved:
        raise _line_error(
            number,
            description,
            f"has key(s) {reserved}, names of columns the run adds",
            f"rename them (reserved: {list(RESERVED_KEYS)})",
        )
    model = models[name]
    input_text = _json_text(model_input).encode()
    size = len(input_text) + LINE_OVERHEAD
    if size > model.quotas.bytes_per_job:
        raise _line_error(
            number,
            description,
            f"makes a {size:,}-byte record, over the {model.quotas.bytes_per_job:,}-byte input file "
            f"limit of model '{name}' ({model.quotas.model_name or model.spec.model_id})",
            "shorten that record's model_input",
        )
    columns = {key: value for key, value in line.items() if key != INPUT_KEY}
    for key, value in columns.items():
        seen = split.columns.get(key)
        if seen is None:
            if len(split.columns) >= MAX_COLUMNS:
                raise _line_error(
                    number,
                    description,
                    f"adds key '{key[:80]}', past the {MAX_COLUMNS} distinct keys a run takes (each "
                    "is an output column)",
                    "give every line the same few keys",
                )
            seen = split.columns[key] = set()
        kind = _json_type(value)
        if kind is not None:
            seen.add(kind)
    split.spills[name].add(_json_text(columns).encode(), input_text)


@dataclass
class _Group:
    """Where a model's rows are in the staged files: rows [first_row, first_row + count)."""

    name: str
    first_row: int
    count: int
    biggest_row: tuple[int, int]  # (row within the group, bytes) of its longest job line


class GroupLineEnds(LineEnds):
    """The line ends of one group's rows, relative to the group's first row and first byte: what ``fit_job_sizes``
    reads from a rows run's ``LineEnds``, for one model's rows of the run's file of line ends."""

    def __init__(self, path: Path, first_row: int, count: int) -> None:
        super().__init__(path, count)
        self._first = first_row
        self._base = int(LineEnds(path, first_row)[first_row - 1]) if first_row else 0

    def __getitem__(self, rows: Any) -> Any:
        single = isinstance(rows, int | np.integer)
        wanted = np.asarray([rows] if single else rows, dtype=np.int64).ravel()
        if np.any((wanted < -len(self)) | (wanted >= len(self))):
            raise IndexError(f"rows {wanted.tolist()} of {len(self)}")
        whole = LineEnds(self.path, self._first + len(self))
        ends = np.asarray(whole[wanted % len(self) + self._first], dtype=np.int64) - self._base
        return int(ends[0]) if single else ends


def write_groups(split: Split, workdir: Path) -> tuple[Path, Path, Path, list[_Group]]:
    """Pass 2: ``records.parquet`` and the job lines, model group after model group; returns their paths, the file
    of line ends (int64, one per row) and where each group is."""
    records_path, lines_path, ends_path = (workdir / name for name in ("records.parquet", "lines.jsonl", "ends"))
    types = {key: column_type(seen) for key, seen in split.columns.items()}
    fields = [pa.field(RECORD_ID, pa.string()), *(pa.field(key, kind) for key, (kind, _) in types.items())]
    schema = pa.schema([*fields, pa.field(INPUT_KEY, pa.string())])
    groups: list[_Group] = []
    row = written = 0
    with (
        pq.ParquetWriter(records_path, schema, compression="snappy") as writer,
        lines_path.open("wb") as lines,
        ends_path.open("wb") as ends,
    ):
        for name, spill in split.spills.items():
            if spill.count == 0:
                continue
            group = _Group(name, row, spill.count, (0, 0))
            batch: list[tuple[dict[str, Any], bytes]] = []
            held = 0
            for record in spill.records():
                batch.append(record)
                held += len(record[1])
                if len(batch) >= GROUP_BATCH_ROWS or held >= GROUP_BATCH_BYTES:
                    row, written = _write_batch(batch, row, written, types, schema, writer, lines, ends, group)
                    batch, held = [], 0
            if batch:
                row, written = _write_batch(batch, row, written, types, schema, writer, lines, ends, group)
            groups.append(group)
    return records_path, lines_path, ends_path, groups


def _write_batch(
    batch: list[tuple[dict[str, Any], bytes]],
    row: int,
    written: int,
    types: dict[str, tuple[pa.DataType, bool]],
    schema: pa.Schema,
    writer: pq.ParquetWriter,
    lines: IO[bytes],
    ends: IO[bytes],
    group: _Group,
) -> tuple[int, int]:
    ids = [record_id(row + i) for i in range(len(batch))]
    arrays = [pa.array(ids, pa.string())]
    for key, (kind, as_json) in types.items():
        values = [columns.get(key) for columns, _ in batch]
        if as_json:
            values = [None if value is None else _json_text(value) for value in values]
        arrays.append(pa.array(values, kind))
    arrays.append(pa.array([model_input.decode() for _, model_input in batch], pa.string()))
    writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    line_ends = np.empty(len(batch), dtype=np.int64)
    for i, (rid, (_, model_input)) in enumerate(zip(ids, batch, strict=True)):
        line = b'{"recordId": "' + rid.encode() + b'", "modelInput": ' + model_input + b"}\n"
        lines.write(line)
        written += len(line)
        line_ends[i] = written
        if len(line) > group.biggest_row[1]:
            group.biggest_row = (row + i - group.first_row, len(line))
    line_ends.tofile(ends)
    return row + len(batch), written


def plan_group(
    group: _Group,
    model: GroupModel,
    ends_path: Path,
    records_path: Path,
    lines_path: Path,
    run_id: str,
    first_index: int,
) -> list[JobSpec]:
    """The jobs of one model's group: balanced batch jobs within the model's quotas, or one on-demand job for a group
    under the model's minimum records per job. Indexes start at ``first_index``; rows are the run's row numbers."""
    line_ends = GroupLineEnds(ends_path, group.first_row, group.count)
    minimum = model.quotas.min_records_per_job.value
    if group.count < minimum:
        logger.info(
            "model group under the minimum records per job: on demand",
            model=group.name,
            records=group.count,
            minimum=minimum,
        )
        sizes, on_demand = [group.count], True
    else:
        staged = Staged(records_path, lines_path, line_ends, group.biggest_row)
        try:
            sizes = fit_job_sizes(staged, model.max_per_job, quotas=model.quotas)
        except InputValidationError as exc:
            raise InputValidationError(f"model '{group.name}': {exc}") from None
        on_demand = False
    bounds = np.cumsum([0, *sizes])
    job_ends = line_ends[bounds[1:] - 1]
    starts = np.concatenate([[0], job_ends[:-1]])
    return [
        JobSpec(
            index=first_index + i,
            input_key=layout.job_input_key(run_id, first_index + i),
            first_row=group.first_row + int(bounds[i]),
            record_count=size,
            size_bytes=int(job_ends[i] - starts[i]),
            model=group.name,
            on_demand=on_demand,
        )
        for i, size in enumerate(sizes)
    ]


def is_prepared(raw_input: Any) -> bool:
    """Whether an execution input asks for a prepared run (the handler picks this module's ``preprocess`` then)."""
    return isinstance(raw_input, dict) and raw_input.get("input_format") == "prepared"


def open_input(inp: ExecutionInput, s3: Any, data_bucket: str) -> tuple[Any, str]:
    """The body of the prepared JSONL object and its s3:// URI; only the deployment's bucket, one object."""
    bucket, key = inp.s3_location
    uri = f"s3://{bucket}/{key}"
    if bucket != data_bucket:
        raise InputValidationError(
            f"s3_uri '{inp.s3_uri}' is in bucket '{bucket}', but this deployment reads only its own bucket; "
            f"upload the file to s3://{data_bucket}/ and use that URI"
        )
    if key.endswith("/"):
        raise InputValidationError(
            f"s3_uri '{inp.s3_uri}' is a prefix; input_format 'prepared' reads one JSONL file: give its URI"
        )
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"], uri
    except s3.exceptions.NoSuchKey:
        raise InputValidationError(
            f"s3_uri '{inp.s3_uri}' does not exist; upload the prepared JSONL file first"
        ) from None


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
    """Validate a prepared execution input and its records, then stage the records, job files and job manifest."""
    inp = ExecutionInput.parse(raw_input)
    if not inp.prepared:
        raise ValueError("lambdas.preprocess.prepared takes input_format 'prepared'; rows go to logic.preprocess")
    models = resolve_models(inp, settings, service_quotas)
    run_id = layout.run_id_from_execution_name(execution_name)
    body, description = open_input(inp, s3, settings.data_bucket)
    try:
        split = split_by_model(body, description, models, workdir)
    finally:
        body.close()
    records_path, lines_path, ends_path, groups = write_groups(split, workdir)
    jobs: list[JobSpec] = []
    for group in groups:
        jobs += plan_group(group, models[group.name], ends_path, records_path, lines_path, run_id, len(jobs))
    # Validation is over: only now does anything go to S3.
    with lines_path.open("rb") as lines:
        start = 0
        for job in jobs:  # the jobs tile the lines file in order
            s3.upload_fileobj(FileRange(lines, start, start + job.size_bytes), settings.data_bucket, job.input_key)
            start += job.size_bytes
    s3.upload_file(str(records_path), settings.data_bucket, layout.records_key(run_id))
    s3.put_object(
        Bucket=settings.data_bucket,
        Key=layout.manifest_key(run_id),
        Body=json.dumps([job.model_dump() for job in jobs]).encode(),
        ContentType="application/json",
    )
    logger.info(
        "prepared run planned",
        records={group.name: group.count for group in groups},
        jobs=len(jobs),
        on_demand_jobs=sum(job.on_demand for job in jobs),
    )
    return RunContext(
        run_id=run_id,
        bucket=settings.data_bucket,
        job_name_prefix=inp.job_name_prefix,
        total_records=split.records,
        num_jobs=len(jobs),
        records_key=layout.records_key(run_id),
        manifest_key=layout.manifest_key(run_id),
        execution_arn=execution_arn,
        models={name: model.run_model(settings) for name, model in models.items()},
    )
