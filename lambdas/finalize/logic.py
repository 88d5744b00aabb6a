"""Finalize a run: gather every job's result into ``summary.json`` and check that every input row is accounted for."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from lambdas.shared import layout
from lambdas.shared.models import FinalizeResult, JobResult, JobSpec, RunContext
from lambdas.shared.s3io import get_json, list_keys, put_json


def summarize(run: RunContext, jobs: list[JobSpec], results: dict[int, JobResult]) -> dict[str, Any]:
    missing_jobs = [job.index for job in jobs if job.index not in results]
    records_out = sum(result.record_count for result in results.values())
    succeeded = sum(result.succeeded for result in results.values())
    failed = sum(result.failed for result in results.values())
    complete = not missing_jobs and records_out == run.total_records
    if complete:
        message = f"all {run.total_records} rows written: {succeeded} with a result, {failed} with an error"
    else:
        message = (
            f"{run.total_records - records_out} of {run.total_records} rows have no output file "
            f"(jobs without results: {missing_jobs}); see the execution history for those jobs"
        )
    errors: Counter[str] = Counter()
    for result in results.values():
        errors.update(result.error_counts)
    return {
        "run_id": run.run_id,
        "model_id": run.model_id,
        "finished_at": datetime.now(UTC).isoformat(),
        "complete": complete,
        "message": message,
        "total_records": run.total_records,
        "records_out": records_out,
        "succeeded": succeeded,
        "failed": failed,
        "error_counts": dict(errors),
        "input_tokens": sum(r.input_tokens for r in results.values()),
        "output_tokens": sum(r.output_tokens for r in results.values()),
        "jobs_planned": len(jobs),
        "jobs_by_status": dict(Counter(r.status for r in results.values())),
        "missing_jobs": missing_jobs,
        "jobs": [results[i].model_dump(mode="json") for i in sorted(results)],
        "output_files": [f"s3://{run.bucket}/{results[i].output_key}" for i in sorted(results)],
    }


def finalize(run: RunContext, *, s3: Any) -> FinalizeResult:
    jobs = [JobSpec.model_validate(item) for item in get_json(s3, run.bucket, run.manifest_key)]
    results: dict[int, JobResult] = {}
    for key, _size in list_keys(s3, run.bucket, layout.results_prefix(run.run_id)):
        result = JobResult.model_validate(get_json(s3, run.bucket, key))
        results[result.index] = result
    summary = summarize(run, jobs, results)
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
    )
