"""Pydantic payloads: the execution input (a public contract) and the small objects the state machine carries."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lambdas.shared.errors import InputValidationError
from lambdas.shared.model_families import MODEL_FAMILIES, InferenceSettings
from lambdas.shared.quotas import BatchQuotas

# The statuses a job ends in. Not "Stopping": a stopped job writes the output of what it processed before Bedrock
# reports "Stopped" (docs/bedrock-facts.md, "Job statuses, stop semantics and deadlines").
TERMINAL_STATUSES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
# How long after the service's own deadline a job that is still running is stopped (Poll). Bedrock ends such a job
# itself (Expired or PartiallyCompleted) and has to write the output of a partial job first, which takes time; how long
# is undocumented. Two hours leave it room without a stuck job holding a run (and a quota slot) for long. The
# execution timeout's bounds (stacks/config/batch.py) follow it.
DEADLINE_MARGIN = timedelta(hours=2)
MIN_RECORDS_PER_JOB = 100
MAX_RECORDS_PER_JOB = 50_000
# Bedrock's input file limit (1 GB; one file per job here, so also under the 5 GB per job), in decimal bytes to be safe
MAX_FILE_BYTES = 1_000_000_000
_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][-.a-z0-9]{1,61}[a-z0-9])/(?P<key>.+)$")

# Example fixes shown next to validation errors, by field.
_FIXES: dict[str, str] = {
    "model_id": 'e.g. "anthropic.claude-3-haiku-20240307-v1:0"',
    "s3_uri": 'e.g. "s3://<bucket>/inputs/topics.csv"',
    "dataset_id": 'e.g. "w601sxs/simpleCoT"',
    "max_records_per_job": f"use an integer from {MIN_RECORDS_PER_JOB} to {MAX_RECORDS_PER_JOB}",
    "max_num_jobs": "use a positive integer or null",
    "inference_params": 'e.g. {"max_tokens": 1024, "temperature": 0.2}',
    "invocation_type": 'use "InvokeModel" (the model\'s own format, default) or "Converse" (any text model)',
    "model_family": f"use one of {list(MODEL_FAMILIES)}",
    "resubmit_failed": "use true (default: failed records are resubmitted once) or false",
}


class InferenceParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    system: str | None = Field(default=None, max_length=100_000)
    # Family-specific: the model's adapter rejects those its family does not take (see model_families.py).
    top_k: int | None = Field(default=None, ge=0, le=500)
    dimensions: int | None = Field(default=None, ge=1)  # embedding length: Titan Text v2, Titan Multimodal
    normalize: bool | None = None  # Titan Text Embeddings v2
    input_type: str | None = Field(default=None, max_length=64)  # Cohere Embed: search_document, search_query...

    def settings(self) -> InferenceSettings:
        return InferenceSettings(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            system=self.system,
            dimensions=self.dimensions,
            normalize=self.normalize,
            input_type=self.input_type,
        )


class ExecutionInput(BaseModel):
    """What a user passes to StartExecution. The keys of the public aws-samples orchestrator are accepted as is."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    model_id: str = Field(min_length=1, max_length=2048)
    prompt_id: str | None = None
    s3_uri: str | None = None
    dataset_id: str | None = None
    split: str = "train"
    job_name_prefix: str = Field(default="batch", max_length=40)
    max_records_per_job: int | None = Field(default=None, ge=MIN_RECORDS_PER_JOB, le=MAX_RECORDS_PER_JOB)
    max_num_jobs: int | None = Field(default=None, ge=1)
    inference_params: InferenceParams = Field(default_factory=InferenceParams)
    # "Converse": one Converse-shaped record format for any text model (the job's modelInvocationType).
    invocation_type: Literal["InvokeModel", "Converse"] = "InvokeModel"
    # Overrides the family looked up from model_id; needed for ids that name no model (application profile ARNs).
    model_family: str | None = None
    # Gather the rows that failed in a way a retry may fix (job-level failures, missing output, throttled or
    # server-side record errors) into new jobs, once, after the planned jobs (see lambdas/resubmit/logic.py).
    resubmit_failed: bool = True

    @field_validator("model_family")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        if value is not None and value not in MODEL_FAMILIES:
            raise ValueError("is not a model family")
        return value

    @field_validator("s3_uri")
    @classmethod
    def _s3_uri_shape(cls, value: str | None) -> str | None:
        if value is not None and not _S3_URI.match(value):
            raise ValueError("must look like s3://<bucket>/<key>")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ExecutionInput:
        if (self.s3_uri is None) == (self.dataset_id is None):
            got = "both" if self.s3_uri else "neither"
            raise ValueError(
                f"give exactly one input source, s3_uri or dataset_id (with split), got {got}; "
                'e.g. "s3_uri": "s3://<bucket>/inputs/data.csv" or "dataset_id": "w601sxs/simpleCoT", "split": "train"'
            )
        return self

    @property
    def s3_location(self) -> tuple[str, str]:
        match = _S3_URI.match(self.s3_uri or "")
        if not match:
            raise InputValidationError(f"s3_uri '{self.s3_uri}' is not an S3 object URI")
        return match.group("bucket"), match.group("key")

    @classmethod
    def parse(cls, raw: Any) -> ExecutionInput:
        """Validate raw execution input; every problem becomes one InputValidationError naming field, value, fix."""
        if not isinstance(raw, dict):
            raise InputValidationError(
                f"execution input must be a JSON object, got {type(raw).__name__}; "
                'e.g. {"model_id": "...", "prompt_id": "...", "s3_uri": "s3://..."}'
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise InputValidationError(describe_validation_error(exc, "execution input")) from None


def describe_validation_error(exc: ValidationError, what: str) -> str:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(input)"
        top = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            known = ", ".join(ExecutionInput.model_fields) if what == "execution input" else ""
            problems.append(f"unknown field '{field}'; remove it (known fields: {known})")
            continue
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        fix = _FIXES.get(top, "")
        message = err["msg"].removeprefix("Value error, ")
        problems.append(
            f"field '{field}' = {shown[:80]}: {message}" + (f"; {fix}" if fix and fix not in message else "")
        )
    return f"invalid {what}: " + " | ".join(problems)


class RunContext(BaseModel):
    """Everything about a run the later states need. Small: it travels in every state payload."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    bucket: str
    model_id: str
    family: str
    output_kind: Literal["text", "embedding"]
    invocation_type: Literal["InvokeModel", "Converse"] = "InvokeModel"
    job_name_prefix: str
    total_records: int
    num_jobs: int
    records_key: str
    manifest_key: str
    # The Step Functions execution ARN ($$.Execution.Id): every function logs it as its correlation id.
    execution_arn: str | None = None
    # The model's batch quotas, looked up once by preprocess (lambdas/preprocess/quotas.py), and the cap on this model's
    # submitted + in-progress jobs that Submit keeps: min(maxConcurrentJobs, the model's quota).
    quotas: BatchQuotas = Field(default_factory=BatchQuotas)
    max_concurrent_jobs: int | None = None


class JobSpec(BaseModel):
    """One line of a job manifest the Distributed Maps read: ``runs/<run>/jobs.json`` (the planned jobs, rows
    ``first_row`` .. ``first_row + record_count - 1``) or ``runs/<run>/retry/jobs.json`` (resubmission jobs).

    A resubmission job holds rows gathered from several planned jobs, so they are not contiguous: its row numbers
    are in the Parquet file ``rows_key`` (column ``row``, ascending) and ``first_row`` is the lowest of them.
    Items stay small (Distributed Map items must be well under 256 KB): never a list of records.
    """

    model_config = ConfigDict(frozen=True)

    index: int
    input_key: str
    first_row: int
    record_count: int
    size_bytes: int
    resubmission: bool = False
    rows_key: str | None = None
    # A group under the model's minimum records per batch job: run through the runtime (InvokeModel or Converse per
    # record) by "Run job on demand" instead of a batch job (lambdas/on_demand), priced at on-demand rates.
    on_demand: bool = False

    @model_validator(mode="after")
    def _rows_key_iff_resubmission(self) -> JobSpec:
        if self.resubmission != (self.rows_key is not None):
            raise ValueError("a resubmission job names its rows file (rows_key); a planned job has none")
        return self


class JobState(BaseModel):
    """The state of one job as it moves through Submit -> Wait -> Poll -> Postprocess."""

    run: RunContext
    job: JobSpec
    job_arn: str | None = None
    job_name: str | None = None
    status: str | None = None
    message: str | None = None
    terminal: bool = False
    submitted_at: str | None = None
    polls: int = 0
    unreadable_polls: int = 0  # consecutive polls that could not read the status (lambdas/poll_job/logic.py)
    stop_requested_at: str | None = None  # when Poll asked Bedrock to stop the job (past the service's deadline)
    # The run was cancelled (runs/<run>/cancel.json): Submit created no job, Poll stopped it, or the on-demand runner
    # stopped taking records. Postprocess gives the rows without a result the code batch_cancelled.
    cancelled: bool = False
    counters: dict[str, int] = Field(default_factory=dict)
    failure: dict[str, Any] | None = None  # set by a Catch: {"Error": ..., "Cause": ...}

    def correlation_keys(self) -> dict[str, Any]:
        """The ids every log line about this job carries (``append_correlation_keys``)."""
        return {
            "run_id": self.run.run_id,
            "execution_arn": self.run.execution_arn,
            "job_index": self.job.index,
            "resubmission": self.job.resubmission,
            "job_arn": self.job_arn,
        }


class JobResult(BaseModel):
    """What postprocess reports for one job; also stored as ``runs/<run>/results/<NNNN>.json``."""

    index: int
    job_arn: str | None
    status: str
    message: str | None = None
    record_count: int
    succeeded: int
    failed: int
    input_tokens: int = 0
    output_tokens: int = 0
    output_key: str
    error_counts: dict[str, int] = Field(default_factory=dict)
    resubmission: bool = False  # stored as runs/<run>/retry/results/<NNNN>.json
    on_demand: bool = False  # ran through the runtime, not as a batch job: priced at on-demand rates


class ResubmissionRequest(BaseModel):
    """Input of "Plan resubmission": the run, and the execution input (for ``resubmit_failed`` and
    ``max_records_per_job``, which the run context does not carry)."""

    run: RunContext
    execution_input: dict[str, Any]


class ResubmissionPlan(BaseModel):
    """What "Plan resubmission" decided; returned into the state (``$.resubmission``) and stored as
    ``runs/<run>/retry/plan.json`` for Finalize. Row counts are over the rows of the planned jobs' outputs."""

    enabled: bool
    manifest_key: str  # runs/<run>/retry/jobs.json, always written ([] when there is nothing to resubmit)
    job_count: int
    rows_failed: int  # rows with an error after the planned jobs
    rows_retryable: int  # of those, failed in a way a retry may fix (job-level failures, 408, 429, 5xx)
    rows_resubmitted: int  # in resubmission jobs
    rows_reported: int  # retryable, but not resubmitted: resubmission off, fewer than 100, or beyond the job limits
    rows_not_retryable: int  # errors a retry would repeat (e.g. 400 malformed input): never resubmitted
    jobs_without_results: list[int] = Field(default_factory=list)  # planned jobs whose rows could not be inspected
    message: str


class FinalizeRequest(BaseModel):
    run: RunContext


class FinalizeResult(BaseModel):
    complete: bool
    message: str
    summary_key: str
    total_records: int
    records_out: int
    succeeded: int
    failed: int
    rows_resubmitted: int = 0
    rows_recovered: int = 0
    estimated_cost_usd: float | None = None  # None: the model has no price in prices.json (see summary.json)
