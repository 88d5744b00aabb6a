"""Preprocess: validate everything, number the rows, render model inputs and split them into Bedrock batch jobs.

Two streaming passes, so memory stays bounded whatever the input size:
1. source batches -> checks (columns, nulls) -> ``records.parquet`` (input rows + ``record_id``) in a local work dir;
2. with the row count known, plan balanced jobs, then read ``records.parquet`` back batch by batch, render each row
   through the model's adapter and write one JSONL shard per job, uploading each shard as soon as it is complete.
Nothing is submitted here: every error is raised before any job exists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lambdas.preprocess.sources import Source, open_source
from lambdas.shared import layout
from lambdas.shared.errors import InputValidationError
from lambdas.shared.model_families import InferenceSettings, ResolvedModel, UnknownModelError, resolve
from lambdas.shared.models import MIN_RECORDS_PER_JOB, ExecutionInput, JobSpec, RunContext
from lambdas.shared.settings import Settings
from prompt_templates import PromptTemplate, TemplateError, get_template

RECORD_ID = "record_id"
RESERVED_COLUMNS = ("response", "embedding", "error_code", "error_message", RECORD_ID)
EMBEDDING_INPUT_COLUMN = "input_text"
MAX_FILE_BYTES = 1 << 30  # Bedrock: 1 GB per input file (one file per job here, so also under 5 GB per job)


def record_id(row: int) -> str:
    """11-character alphanumeric record id; the row number, so postprocess can place results without a hash join."""
    return f"{row:011d}"


def plan_job_sizes(total: int, max_per_job: int, max_num_jobs: int | None = None) -> list[int]:
    """Balanced split: n = ceil(total / max) jobs whose sizes differ by at most one, each >= 100 records."""
    if total < MIN_RECORDS_PER_JOB:
        raise InputValidationError(
            f"the input has {total} rows, but a Bedrock batch job needs at least {MIN_RECORDS_PER_JOB} records; "
            f"add rows (or use on-demand inference for fewer than {MIN_RECORDS_PER_JOB})"
        )
    count = math.ceil(total / max_per_job)
    if total // count < MIN_RECORDS_PER_JOB:
        raise InputValidationError(
            f"max_records_per_job={max_per_job} splits {total} rows into {count} jobs of fewer than "
            f"{MIN_RECORDS_PER_JOB} records; raise max_records_per_job to at least {total} or add rows"
        )
    if max_num_jobs is not None and count > max_num_jobs:
        raise InputValidationError(
            f"max_num_jobs={max_num_jobs} is too small: {total} rows with max_records_per_job={max_per_job} need "
            f"{count} jobs; raise max_num_jobs to {count} or raise max_records_per_job (no row is ever dropped)"
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
        if self.template is None:
            return batch.column(EMBEDDING_INPUT_COLUMN).to_pylist()
        columns = {name: batch.column(name).to_pylist() for name in self.template.columns}
        return self.template.render_columns(columns, batch.num_rows)


def make_plan(inp: ExecutionInput, settings: Settings) -> Plan:
    try:
        model = resolve(inp.model_id)
    except UnknownModelError as exc:
        raise InputValidationError(f"field 'model_id': {exc}") from None
    if settings.allowed_model_ids and inp.model_id not in settings.allowed_model_ids:
        raise InputValidationError(
            f"field 'model_id' = '{inp.model_id}' is not enabled in this deployment (enabled: "
            f"{list(settings.allowed_model_ids)}); add it to allowedModelIds in cdk.json and redeploy"
        )
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


def write_records(source: Source, plan: Plan, path: Path) -> int:
    """Pass 1: stream the source into a local Parquet file with a ``record_id`` column; return the row count."""
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    rows = 0
    try:
        for batch in source.batches():
            if schema is None:
                check_schema(batch.schema, plan, source.description)
                schema = batch.schema.append(pa.field(RECORD_ID, pa.string(), nullable=False))
                writer = pq.ParquetWriter(path, schema, compression="zstd")
            elif not batch.schema.equals(schema.remove(schema.get_field_index(RECORD_ID))):
                raise InputValidationError(
                    f"input {source.description} changes its columns or types after row {rows}; "
                    "make every file and block share one schema"
                )
            if batch.num_rows == 0:
                continue
            check_nulls(batch, plan.text_columns, rows, source.description)
            ids = pa.array([record_id(i) for i in range(rows, rows + batch.num_rows)], pa.string())
            assert writer is not None
            writer.write_batch(pa.RecordBatch.from_arrays([*batch.columns, ids], schema=schema))
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    if rows == 0:
        raise InputValidationError(f"input {source.description} has no rows; give a file or split with data")
    return rows


def iter_lines(records: Path, plan: Plan, inference: InferenceSettings) -> Iterator[bytes]:
    """Pass 2 rows: one JSONL line per record, in record order."""
    build = plan.model.adapter.build_model_input
    dumps = json.dumps
    for batch in pq.ParquetFile(records).iter_batches(batch_size=8192):
        ids = batch.column(RECORD_ID).to_pylist()
        for rid, text in zip(ids, plan.texts(batch), strict=True):
            line = dumps({"recordId": rid, "modelInput": build(text, inference)}, ensure_ascii=False)
            yield line.encode() + b"\n"


def write_shards(
    records: Path, plan: Plan, inference: InferenceSettings, sizes: list[int], run_id: str, workdir: Path, upload: Any
) -> list[JobSpec]:
    """Write one JSONL file per job and hand each to ``upload(path, key)`` as soon as it is complete."""
    lines = iter_lines(records, plan, inference)
    jobs: list[JobSpec] = []
    first = 0
    for index, size in enumerate(sizes):
        key = layout.job_input_key(run_id, index)
        path = workdir / f"{index:04d}.jsonl"
        written = 0
        with path.open("wb") as out:
            for _ in range(size):
                written += out.write(next(lines))
                if written > MAX_FILE_BYTES:
                    raise InputValidationError(
                        f"job {index} would exceed Bedrock's 1 GB input file limit ({size} records); lower "
                        f"max_records_per_job (now {plan.max_per_job}) so each job stays under 1 GB"
                    )
        upload(path, key)
        path.unlink(missing_ok=True)  # the uploader may have moved it
        jobs.append(JobSpec(index=index, input_key=key, first_row=first, record_count=size, size_bytes=written))
        first += size
    return jobs


def preprocess(raw_input: Any, execution_name: str, *, s3: Any, settings: Settings, workdir: Path) -> RunContext:
    """Validate the execution input and the data, then stage records, job files and the job manifest in S3."""
    inp = ExecutionInput.parse(raw_input)
    plan = make_plan(inp, settings)
    run_id = layout.run_id_from_execution_name(execution_name)
    source = open_source(inp, s3, settings.data_bucket)
    records_path = workdir / "records.parquet"
    total = write_records(source, plan, records_path)
    sizes = plan_job_sizes(total, plan.max_per_job, inp.max_num_jobs)

    def upload(path: Path, key: str) -> None:
        s3.upload_file(str(path), settings.data_bucket, key)

    jobs = write_shards(records_path, plan, inp.inference_params.settings(), sizes, run_id, workdir, upload)
    upload(records_path, layout.records_key(run_id))
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
        job_name_prefix=inp.job_name_prefix,
        total_records=total,
        num_jobs=len(jobs),
        records_key=layout.records_key(run_id),
        manifest_key=layout.manifest_key(run_id),
    )
