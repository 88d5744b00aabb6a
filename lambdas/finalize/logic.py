"""Finalize a run: merge the resubmission jobs' rows into the outputs, write ``summary.json``, and check that every
input row is in the output exactly once.

Merge: for each planned job's output with resubmitted rows, the rows' ``response``/``embedding``, ``error_code`` and
``error_message`` are replaced by the resubmission's result, and the file is rewritten in place. A success replaces
the first error; a failure replaces it with the new error, its message prefixed ``after resubmission: ``. Rows of a
resubmission job that wrote no results keep their first error. Merging again gives the same files (the values come
from the resubmission outputs, never from the file being rewritten), so a retried Finalize is harmless.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from lambdas.shared import layout
from lambdas.shared.allocator import release_free_memory
from lambdas.shared.models import FinalizeResult, JobResult, JobSpec, ResubmissionPlan, RunContext, RunModel
from lambdas.shared.pricing import PriceTable, format_usd
from lambdas.shared.run_files import (
    ERROR_CODE,
    ERROR_MESSAGE,
    read_manifest,
    read_results,
    read_row_numbers,
    value_column,
    value_kind,
    value_type,
)
from lambdas.shared.s3io import S3RangeReader, get_json, put_json

RESUBMITTED = "after resubmission: "


@dataclass
class Resubmission:
    """What the resubmission did, as Finalize finds it in S3: the plan (None if it was never written), the
    resubmission jobs and their results."""

    plan: ResubmissionPlan | None = None
    jobs: list[JobSpec] = field(default_factory=list)
    results: dict[int, JobResult] = field(default_factory=dict)


@dataclass
class MergeReport:
    rows_merged: int = 0  # resubmitted rows whose new result is now in the output
    rows_recovered: int = 0  # of those, with a response now
    rows_not_merged: int = 0  # resubmitted rows whose resubmission job wrote no results: they keep their first error
    files_rewritten: list[str] = field(default_factory=list)
    error_counts: dict[int, Counter[str]] = field(default_factory=dict)  # per planned job whose output was rewritten
    problems: list[str] = field(default_factory=list)  # broken invariants: each makes the run incomplete


def load_resubmission(s3: Any, run: RunContext) -> Resubmission:
    """The plan is looked up by listing first: without s3:ListBucket on a key's prefix S3 answers a missing key with
    403, not 404 (the function may list ``runs/*/retry/``), and a plan is missing when planning itself failed."""
    key = layout.retry_plan_key(run.run_id)
    listed = s3.list_objects_v2(Bucket=run.bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    if not any(item["Key"] == key for item in listed):
        return Resubmission()
    try:
        raw = get_json(s3, run.bucket, key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return Resubmission()
        raise
    plan = ResubmissionPlan.model_validate(raw)
    if plan.job_count == 0:
        return Resubmission(plan=plan)
    jobs = read_manifest(s3, run.bucket, plan.manifest_key)
    return Resubmission(plan=plan, jobs=jobs, results=read_results(s3, run.bucket, run.run_id, resubmission=True))


def check_tiling(run: RunContext, jobs: list[JobSpec]) -> list[str]:
    """The planned jobs must cover rows 0 .. total - 1 once each, in contiguous ranges."""
    expected = 0
    for job in sorted(jobs, key=lambda job: job.first_row):
        if job.first_row != expected:
            return [f"planned job {job.index} starts at row {job.first_row}, expected {expected}"]
        expected += job.record_count
    if expected != run.total_records:
        return [f"the planned jobs hold {expected} rows, the run has {run.total_records}"]
    return []


class _RetryOutputs:
    """Resubmission outputs by job index, read whole when first needed; keeps the last one only (merging walks rows
    in ascending order, so each is needed for consecutive planned jobs only)."""

    def __init__(self, s3: Any, bucket: str, results: dict[int, JobResult]) -> None:
        self._s3, self._bucket, self._results = s3, bucket, results
        self._index: int | None = None
        self._table: pa.Table | None = None

    def get(self, index: int) -> pa.Table:
        if self._index != index or self._table is None:
            key = self._results[index].output_key
            self._table = pq.read_table(S3RangeReader(self._s3, self._bucket, key))
            self._index = index
        return self._table


def mark_resubmitted(messages: pa.Array, codes: pa.Array) -> pa.Array:
    """Error messages of resubmitted rows: prefixed where the resubmission failed too, null where it succeeded."""
    prefixed = pc.binary_join_element_wise(RESUBMITTED, pc.fill_null(messages.cast(pa.string()), ""), "")
    return pc.if_else(codes.is_valid(), prefixed, pa.nulls(len(codes), pa.string()))


def replace_rows(table: pa.Table, positions: np.ndarray, update: dict[str, pa.Array]) -> pa.Table:
    """``table`` with the columns of ``update`` replaced at ``positions`` (the i-th position by the i-th value)."""
    count = table.num_rows
    indices = np.arange(count, dtype=np.int64)
    indices[positions] = count + np.arange(len(positions), dtype=np.int64)
    take = pa.array(indices)
    for name, values in update.items():
        column = table.column(name).combine_chunks().cast(values.type)
        replaced = pa.concat_arrays([column, values]).take(take)
        table = table.set_column(table.schema.get_field_index(name), name, replaced)
    return table


def merge_resubmission(
    s3: Any,
    run: RunContext,
    jobs: list[JobSpec],
    results: dict[int, JobResult],
    resubmission: Resubmission,
    workdir: Path,
) -> MergeReport:
    report = MergeReport()
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (rows, resubmission job index, position in it)
    for spec in resubmission.jobs:
        result = resubmission.results.get(spec.index)
        if result is None:
            report.rows_not_merged += spec.record_count
            continue
        rows = read_row_numbers(s3, run.bucket, result.output_key)
        positions = np.arange(len(rows), dtype=np.int64)
        pieces.append((rows, np.full(len(rows), spec.index, dtype=np.int64), positions))
    if not pieces:
        return report
    rows, sources, positions = (np.concatenate(part) for part in zip(*pieces, strict=True))
    order = np.argsort(rows, kind="stable")
    rows, sources, positions = rows[order], sources[order], positions[order]
    if len(rows) > 1 and bool(np.any(rows[1:] == rows[:-1])):
        duplicates = np.unique(rows[1:][rows[1:] == rows[:-1]])
        report.problems.append(f"{len(duplicates)} rows were resubmitted twice, e.g. row {int(duplicates[0])}")
        return report

    planned = sorted(jobs, key=lambda job: job.first_row)
    starts = np.array([job.first_row for job in planned], dtype=np.int64)
    ends = starts + np.array([job.record_count for job in planned], dtype=np.int64)
    owner = np.searchsorted(starts, rows, side="right") - 1
    outside = (owner < 0) | (rows >= ends[np.maximum(owner, 0)])
    if outside.any():
        report.problems.append(f"{int(outside.sum())} resubmitted rows belong to no planned job")
        return report

    outputs = _RetryOutputs(s3, run.bucket, resubmission.results)
    kind = value_kind(run)
    value_name = value_column(kind)
    for owner_index in np.unique(owner):
        job = planned[int(owner_index)]
        mine = np.flatnonzero(owner == owner_index)
        result = results.get(job.index)
        if result is None:
            continue  # the planned job has no output: its rows are unaccounted for anyway (see missing_jobs)
        parts, targets = [], []
        for source in np.unique(sources[mine]):
            in_source = mine[sources[mine] == source]
            parts.append(outputs.get(int(source)).take(pa.array(positions[in_source])))
            targets.append(rows[in_source] - job.first_row)
        update, target = pa.concat_tables(parts), np.concatenate(targets)
        codes = update.column(ERROR_CODE).combine_chunks().cast(pa.string())
        values = update.column(value_name).combine_chunks().cast(value_type(kind))
        messages = mark_resubmitted(update.column(ERROR_MESSAGE).combine_chunks(), codes)

        local = workdir / "output.parquet"
        s3.download_file(run.bucket, result.output_key, str(local))
        table = pq.read_table(local)
        if table.num_rows != job.record_count:
            report.problems.append(f"{result.output_key} has {table.num_rows} rows, not {job.record_count}")
            continue
        merged = replace_rows(table, target, {value_name: values, ERROR_CODE: codes, ERROR_MESSAGE: messages})
        pq.write_table(merged, local, compression="zstd")
        s3.upload_file(str(local), run.bucket, result.output_key)
        local.unlink()

        report.rows_merged += len(mine)
        report.rows_recovered += codes.null_count
        report.files_rewritten.append(result.output_key)
        counts = pc.value_counts(merged.column(ERROR_CODE).combine_chunks().drop_null()).to_pylist()
        report.error_counts[job.index] = Counter({item["values"]: item["counts"] for item in counts})
        del table, merged, update, parts
        release_free_memory()  # each file's buffers leave holes in glibc's heaps: memory flat in the job count
    return report


def resubmission_summary(resubmission: Resubmission, merge: MergeReport) -> dict[str, Any]:
    plan = resubmission.plan
    if plan is None:
        return {
            "planned": False,
            "message": "no resubmission plan was written (see 'Plan resubmission' in the execution history); "
            "failed rows keep their errors",
        }
    results = resubmission.results
    return {
        "planned": True,
        "enabled": plan.enabled,
        "message": plan.message,
        "rows_failed_before": plan.rows_failed,  # after the planned jobs, before resubmission
        "rows_retryable": plan.rows_retryable,
        "rows_resubmitted": plan.rows_resubmitted,
        "rows_recovered": merge.rows_recovered,
        "rows_still_failed": merge.rows_merged - merge.rows_recovered,
        "rows_not_merged": merge.rows_not_merged,
        "rows_reported": plan.rows_reported,
        "rows_not_retryable": plan.rows_not_retryable,
        "jobs_planned": plan.job_count,
        "jobs_by_status": dict(Counter(result.status for result in results.values())),
        "missing_jobs": [job.index for job in resubmission.jobs if job.index not in results],
        "jobs": [results[i].model_dump(mode="json") for i in sorted(results)],
        "output_files_rewritten": merge.files_rewritten,
    }


def summarize(
    run: RunContext,
    jobs: list[JobSpec],
    results: dict[int, JobResult],
    resubmission: Resubmission | None = None,
    merge: MergeReport | None = None,
    prices: PriceTable | None = None,
) -> dict[str, Any]:
    """The run summary. Row counts describe the output as written (after the merge); each job entry is what that
    job produced. ``estimated_cost`` prices every job's tokens (resubmission jobs included) with ``prices``."""
    resubmission, merge = resubmission or Resubmission(), merge or MergeReport()
    missing_jobs = [job.index for job in jobs if job.index not in results]
    records_out = sum(result.record_count for result in results.values())
    errors: Counter[str] = Counter()
    for index, result in results.items():
        errors.update(merge.error_counts.get(index, result.error_counts))
    failed = sum(errors.values())
    succeeded = records_out - failed
    problems = check_tiling(run, jobs) + merge.problems
    complete = not missing_jobs and records_out == run.total_records and not problems
    if complete:
        message = f"all {run.total_records} rows written: {succeeded} with a result, {failed} with an error"
        if merge.rows_merged:
            message += f" ({merge.rows_recovered} of {merge.rows_merged} resubmitted rows recovered)"
    elif problems:
        message = "rows are not accounted for exactly once: " + "; ".join(problems)
    else:
        message = (
            f"{run.total_records - records_out} of {run.total_records} rows have no output file "
            f"(jobs without results: {missing_jobs}); see the execution history for those jobs"
        )
    all_results = [*results.values(), *resubmission.results.values()]
    prices = prices or PriceTable.load()
    models: dict[str, Any] | None = None
    if run.prepared:
        models = model_summaries(run, jobs, results, resubmission, merge, prices)
        estimated_cost = prepared_cost(models, prices)
    else:
        billed = [(r.index, r.input_tokens, r.output_tokens, r.resubmission) for r in all_results]
        on_demand_jobs = {r.index for r in results.values() if r.on_demand}
        estimated_cost = prices.estimate(run.model_for(None).model_id, billed, on_demand_jobs=on_demand_jobs)
    return {
        "run_id": run.run_id,
        "execution_arn": run.execution_arn,  # the correlation id of every log line of the run
        "model_id": run.model_id,
        "finished_at": datetime.now(UTC).isoformat(),
        "complete": complete,
        "message": message,
        "total_records": run.total_records,
        "records_out": records_out,
        "succeeded": succeeded,
        "failed": failed,
        "error_counts": dict(errors),
        # records of on-demand jobs (fewer than a batch job takes): answered through the runtime, billed on demand
        "on_demand_records": sum(r.record_count for r in results.values() if r.on_demand),
        "input_tokens": sum(r.input_tokens for r in all_results),  # resubmission jobs included: they are billed too
        "output_tokens": sum(r.output_tokens for r in all_results),
        "estimated_cost": estimated_cost,
        "jobs_planned": len(jobs),
        "jobs_by_status": dict(Counter(r.status for r in results.values())),
        "missing_jobs": missing_jobs,
        "jobs": [results[i].model_dump(mode="json") for i in sorted(results)],
        "output_files": [f"s3://{run.bucket}/{results[i].output_key}" for i in sorted(results)],
        "resubmission": resubmission_summary(resubmission, merge),
        # The model's batch quotas the run was split and submitted with, each from "service-quotas" or "default"
        # (a prepared run: per model, in "models").
        "quotas": None if run.prepared else _quotas(run.model_for(None)),
    } | ({"models": models} if models is not None else {})


def _quotas(model: RunModel) -> dict[str, Any]:
    return model.quotas.summary() | {"max_concurrent_jobs_effective": model.max_concurrent_jobs}


def model_summaries(
    run: RunContext,
    jobs: list[JobSpec],
    results: dict[int, JobResult],
    resubmission: Resubmission,
    merge: MergeReport,
    prices: PriceTable,
) -> dict[str, Any]:
    """The ``models`` section of a prepared run's summary: per model, its records and how they ended (after the
    merge of resubmissions), the tokens of all its jobs (resubmissions included) and their estimated cost, with
    on-demand records at on-demand prices."""
    assert run.models is not None
    section: dict[str, Any] = {}
    for name, model in run.models.items():
        planned = [job for job in jobs if job.model == name]
        ended = [results[job.index] for job in planned if job.index in results]
        errors: Counter[str] = Counter()
        for result in ended:
            errors.update(merge.error_counts.get(result.index, result.error_counts))
        billed = ended + [result for result in resubmission.results.values() if result.model == name]
        batch = [result for result in billed if not result.on_demand]
        on_demand = [result for result in billed if result.on_demand]
        usd, priced = prices.estimate_model(
            model.model_id,
            (sum(r.input_tokens for r in batch), sum(r.output_tokens for r in batch)),
            (sum(r.input_tokens for r in on_demand), sum(r.output_tokens for r in on_demand)),
        )
        records_out = sum(result.record_count for result in ended)
        section[name] = {
            "model_id": model.model_id,
            "invocation_type": model.invocation_type,
            "records": sum(job.record_count for job in planned),
            "records_out": records_out,
            "succeeded": records_out - sum(errors.values()),
            "failed": sum(errors.values()),
            "error_counts": dict(errors),
            "input_tokens": sum(result.input_tokens for result in billed),
            "output_tokens": sum(result.output_tokens for result in billed),
            "jobs": len(planned),
            "on_demand_records": sum(job.record_count for job in planned if job.on_demand),
            "estimated_cost_usd": usd,
            "estimated_cost": priced,
            "quotas": _quotas(model),
        }
    return section


def prepared_cost(models: dict[str, Any], prices: PriceTable) -> dict[str, Any]:
    """The ``estimated_cost`` of a prepared run: the sum of its models' (None when a model with records has no
    price: a partial sum would look like the whole)."""
    unpriced = [name for name, entry in models.items() if entry["estimated_cost_usd"] is None and entry["records"]]
    total = None if unpriced else round(sum(entry["estimated_cost_usd"] or 0.0 for entry in models.values()), 6)
    on_demand = sum(entry["on_demand_records"] for entry in models.values())
    if total is None:
        message = f"no estimate: no price for model(s) {unpriced} (see models.<name>.estimated_cost in summary.json)"
    else:
        message = f"estimated cost {format_usd(total)} over {len(models)} models at batch prices"
        if on_demand:
            message += f"; {on_demand} on-demand records at on-demand prices (no batch discount)"
    return {
        "currency": prices.currency,
        "total_usd": total,
        "models": {name: entry["estimated_cost_usd"] for name, entry in models.items()},
        "message": message,
    }


ROW_LINES_BATCH = 2_048  # rows per Arrow batch when writing a prepared run's JSON lines (bounded memory)


def write_row_lines(s3: Any, run: RunContext, results: dict[int, JobResult], workdir: Path) -> list[str]:
    """A prepared run's output rows as JSON lines, one file per job next to its Parquet (``layout.output_rows_key``),
    every column (the reader checks an answer against its request's ``model_input``). Streamed batch by batch from
    the final Parquet (after the resubmission merge): memory stays bounded; written again, they are the same bytes."""
    keys = []
    for index in sorted(results):
        local = workdir / f"rows-{index:04d}.parquet"
        lines = workdir / f"rows-{index:04d}.jsonl"
        s3.download_file(run.bucket, results[index].output_key, str(local))
        parquet = pq.ParquetFile(local)
        with lines.open("w", encoding="utf-8") as out:
            for batch in parquet.iter_batches(batch_size=ROW_LINES_BATCH):
                for row in batch.to_pylist():
                    out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str))
                    out.write("\n")
        key = layout.output_rows_key(run.run_id, index)
        s3.upload_file(str(lines), run.bucket, key)
        local.unlink()
        lines.unlink()
        keys.append(f"s3://{run.bucket}/{key}")
    return keys


def finalize(run: RunContext, *, s3: Any, workdir: Path, prices: PriceTable | None = None) -> FinalizeResult:
    jobs = read_manifest(s3, run.bucket, run.manifest_key)
    results = read_results(s3, run.bucket, run.run_id)
    resubmission = load_resubmission(s3, run)
    merge = merge_resubmission(s3, run, jobs, results, resubmission, workdir)
    summary = summarize(run, jobs, results, resubmission, merge, prices)
    if run.models is not None:
        summary["output_row_files"] = write_row_lines(s3, run, results, workdir)
    key = layout.summary_key(run.run_id)
    put_json(s3, run.bucket, key, summary)
    return FinalizeResult(
        complete=summary["complete"],
        message=summary["message"],
        summary_key=key,
        total_records=run.total_records,
        records_out=summary["records_out"],
        succeeded=summary["succeeded"],
        failed=summary["failed"],
        rows_resubmitted=resubmission.plan.rows_resubmitted if resubmission.plan else 0,
        rows_recovered=merge.rows_recovered,
        estimated_cost_usd=summary["estimated_cost"]["total_usd"],
    )
