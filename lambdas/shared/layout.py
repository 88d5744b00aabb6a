"""The S3 layout of a run (a contract with users: docs/batch/running.md, Outputs) and the names derived from run ids."""

from __future__ import annotations

import hashlib
import re

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def run_id_from_execution_name(execution_name: str) -> str:
    """A run id safe in S3 keys, in Bedrock's s3Uri pattern and in job names: [a-z0-9-], at most 64 chars."""
    cleaned = _NOT_ALNUM.sub("-", execution_name).strip("-").lower()
    if not cleaned:
        cleaned = "run"
    if len(cleaned) > 64 or cleaned != execution_name:
        # Keep it unique even when sanitising or truncating merged two names.
        digest = hashlib.sha256(execution_name.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[:55].rstrip('-')}-{digest}"
    return cleaned


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}"


def _jobs_root(run_id: str, resubmission: bool) -> str:
    """Where a kind of job keeps its files: the planned jobs at the run's root, resubmission jobs under ``retry/``
    with the same names (``retry/jobs/<NNNN>.jsonl``, ``retry/jobs.json``, ``retry/output/``, ``retry/results/``)."""
    return f"runs/{run_id}/retry/" if resubmission else f"runs/{run_id}/"


def records_key(run_id: str) -> str:
    """The run's records as one Parquet object (every input but a prefix of Parquet files with one schema)."""
    return f"runs/{run_id}/records.parquet"


def records_index_key(run_id: str) -> str:
    """The run's records as a list of Parquet files (a prefix of Parquet files with one schema, each copied as it
    is): the ordered list of ``records_file_key`` keys with each file's row count (``models.RecordsIndex``)."""
    return f"runs/{run_id}/records.json"


def records_file_key(run_id: str, index: int) -> str:
    return f"runs/{run_id}/records/{index:04d}.parquet"


def is_records_index(key: str) -> bool:
    """Whether a run's ``records_key`` names a list of files (``records_index_key``), not one Parquet object."""
    return key.endswith(".json")


def job_input_key(run_id: str, index: int, *, resubmission: bool = False) -> str:
    return f"{_jobs_root(run_id, resubmission)}jobs/{index:04d}.jsonl"


def manifest_key(run_id: str, *, resubmission: bool = False) -> str:
    return f"{_jobs_root(run_id, resubmission)}jobs.json"


def retry_rows_key(run_id: str, index: int) -> str:
    """The row numbers of resubmission job ``index`` (Parquet, one int64 column ``row``)."""
    return f"runs/{run_id}/retry/rows/{index:04d}.parquet"


def retry_plan_key(run_id: str) -> str:
    return f"runs/{run_id}/retry/plan.json"


def bedrock_output_prefix(run_id: str) -> str:
    return f"runs/{run_id}/bedrock-output/"


def job_output_prefix(run_id: str, index: int, *, resubmission: bool = False) -> str:
    """The output S3 URI of one job (its ``outputDataConfig``): a folder of its own, so whatever layout Bedrock writes
    under it (a folder named by the job id, or none: docs/bedrock-facts.md, "Records, output layout and record
    errors"), every ``*.jsonl.out`` and ``manifest.json.out`` below it is this job's and no other's."""
    tail = f"r{index:04d}" if resubmission else f"{index:04d}"
    return f"{bedrock_output_prefix(run_id)}{tail}/"


def output_key(run_id: str, index: int, *, resubmission: bool = False) -> str:
    return f"{_jobs_root(run_id, resubmission)}output/{index:04d}.parquet"


def output_rows_key(run_id: str, index: int) -> str:
    """A prepared run's output rows as JSON lines (every column), written by Finalize next to the job's output
    Parquet, so a reader without Arrow (the gateway's Batch API) can stream them."""
    return f"runs/{run_id}/output/{index:04d}.jsonl"


def result_key(run_id: str, index: int, *, resubmission: bool = False) -> str:
    return f"{results_prefix(run_id, resubmission=resubmission)}{index:04d}.json"


def results_prefix(run_id: str, *, resubmission: bool = False) -> str:
    return f"{_jobs_root(run_id, resubmission)}results/"


def cancel_key(run_id: str) -> str:
    """The cancel marker of a run (``{"requested_at": "<ISO 8601>"}``): while it exists, no new job starts, jobs in
    flight are stopped and on-demand jobs take no more records (lambdas/shared/cancel.py)."""
    return f"runs/{run_id}/cancel.json"


def summary_key(run_id: str) -> str:
    return f"runs/{run_id}/summary.json"


def job_name(prefix: str, run_id: str, index: int, *, resubmission: bool = False) -> str:
    """A Bedrock job name matching [a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9+\\-.]){0,63}, at most 63 chars, unique per job
    (resubmission jobs end in ``r<NNNN>``, planned jobs in ``<NNNN>``)."""
    head = _NOT_ALNUM.sub("-", prefix).strip("-") or "batch"
    tail = f"r{index:04d}" if resubmission else f"{index:04d}"
    run = run_id[: 63 - len(tail) - 2 - min(len(head), 20)].strip("-")
    return f"{head[:20].strip('-')}-{run}-{tail}"


def client_request_token(run_id: str, index: int, *, resubmission: bool = False) -> str:
    """Deterministic per run and job: a retried Submit can never create a second billed job. Resubmission jobs
    have tokens of their own, so they are new jobs, not repeats of the planned ones."""
    key = f"{run_id}/retry/{index}" if resubmission else f"{run_id}/{index}"
    return hashlib.sha256(key.encode()).hexdigest()[:64]


def job_id_from_arn(job_arn: str) -> str:
    return job_arn.rsplit("/", 1)[-1]
