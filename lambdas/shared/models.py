"""Pydantic payloads: the execution input (a public contract) and the small objects the state machine carries."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

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
# A prepared run's models travel in every state payload (RunContext.models, about 1 KB each with their quotas), which
# Step Functions caps at 256 KB: a run takes at most this many.
MAX_PREPARED_MODELS = 32
# A model's name in a prepared run: a key of the execution input's "models" (the gateway's bot names), written into
# every prepared line's "model" and into summary.json.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# Keys of the execution input that a prepared run refuses: each record's modelInput is complete already, and each
# model says its own id, family and invocation type (in "models").
PREPARED_REFUSES: dict[str, str] = {
    "model_id": "each model's id goes in models.<name>.model_id",
    "prompt_id": "prepared records carry their whole modelInput; no template is rendered",
    "dataset_id": "a prepared run reads its JSONL file from s3_uri",
    "split": "a prepared run reads its JSONL file from s3_uri",
    "inference_params": "prepared records carry their inference parameters in their modelInput",
    "invocation_type": "each model's invocation type goes in models.<name>.invocation_type",
    "model_family": "each model's family goes in models.<name>.model_family",
    "max_num_jobs": "a prepared run plans its jobs per model; bound a job's size with max_records_per_job",
}

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
    "input_format": 'use "rows" (default: rows rendered with a prompt template) or "prepared" (JSONL records with '
    "their model and modelInput)",
    "models": 'e.g. {"claude-haiku": {"model_id": "us.anthropic.claude-3-5-haiku-20241022-v1:0", '
    '"invocation_type": "Converse"}}',
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


class PreparedModel(BaseModel):
    """One model of a prepared run, as the execution input names it (``models.<name>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    model_id: str = Field(min_length=1, max_length=2048)
    invocation_type: Literal["InvokeModel", "Converse"] = "InvokeModel"
    model_family: str | None = None  # as the execution input's model_family: for ids that name no model
    # What the model returns; None: as its family says. When given, it must agree with the family (a check that the
    # caller and the orchestrator read the model the same way).
    output_kind: Literal["text", "embedding"] | None = None

    @field_validator("model_family")
    @classmethod
    def _known_family(cls, value: str | None) -> str | None:
        if value is not None and value not in MODEL_FAMILIES:
            raise ValueError("is not a model family")
        return value


class ExecutionInput(BaseModel):
    """What a user passes to StartExecution. The keys of the public aws-samples orchestrator are accepted as is.

    ``input_format`` "rows" (the default): a table whose rows a prompt template renders for ``model_id``.
    "prepared": a JSONL file of complete records, each naming its model, a key of ``models`` (see
    docs/batch/running.md, "Prepared input")."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    input_format: Literal["rows", "prepared"] = "rows"
    model_id: str | None = Field(default=None, min_length=1, max_length=2048)
    models: dict[str, PreparedModel] | None = None
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

    @field_validator("models")
    @classmethod
    def _model_names(cls, value: dict[str, PreparedModel] | None) -> dict[str, PreparedModel] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("names no model; give at least one")
        if len(value) > MAX_PREPARED_MODELS:
            raise ValueError(
                f"names {len(value)} models, more than the {MAX_PREPARED_MODELS} a run takes; split the run"
            )
        for name in value:
            if not _MODEL_NAME.match(name):
                raise ValueError(
                    f"has a model named {name!r}; a name is 1 to 128 letters, digits and . _ : - (starting with a "
                    "letter or digit)"
                )
        return value

    @model_validator(mode="after")
    def _format_fields(self) -> ExecutionInput:
        """The fields each input format needs and refuses. Model-level errors name their field themselves (see
        ``describe_validation_error``)."""
        if self.input_format == "rows":
            if self.models is not None:
                raise ValueError(
                    "field 'models' is given with input_format 'rows'; models name the models of a prepared run: "
                    'set "input_format": "prepared" (a JSONL file of records with model and model_input), or '
                    "remove models and give model_id"
                )
            if self.model_id is None:
                raise ValueError(
                    "field 'model_id' is missing; a rows run needs the model to run, "
                    + _FIXES["model_id"]
                    + ' (or set "input_format": "prepared" with models)'
                )
            return self
        for name, why in PREPARED_REFUSES.items():
            if name in self.model_fields_set:
                value = getattr(self, name)
                shown = "{...}" if isinstance(value, BaseModel) else repr(value)
                raise ValueError(
                    f"field '{name}' = {shown[:80]} is not taken with input_format 'prepared' ({why}); remove it"
                )
        if self.models is None:
            raise ValueError(
                "field 'models' is missing; input_format 'prepared' needs the models its records name, "
                + _FIXES["models"]
            )
        if self.s3_uri is None:
            raise ValueError(
                "field 's3_uri' is missing; input_format 'prepared' reads a JSONL file of records, e.g. "
                '"s3_uri": "s3://<bucket>/openai/batches/<batch_id>/prepared.jsonl"'
            )
        return self

    @model_validator(mode="after")
    def _one_source(self) -> ExecutionInput:
        if self.input_format == "prepared":
            return self  # _format_fields: s3_uri, never dataset_id
        if (self.s3_uri is None) == (self.dataset_id is None):
            got = "both" if self.s3_uri else "neither"
            raise ValueError(
                f"give exactly one input source, s3_uri or dataset_id (with split), got {got}; "
                'e.g. "s3_uri": "s3://<bucket>/inputs/data.csv" or "dataset_id": "w601sxs/simpleCoT", "split": "train"'
            )
        return self

    @property
    def prepared(self) -> bool:
        return self.input_format == "prepared"

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
        if not err["loc"] and err["msg"].startswith("Value error, field '"):
            problems.append(err["msg"].removeprefix("Value error, "))  # a check of several fields names its own
            continue
        if err["type"] == "extra_forbidden":
            fields = PreparedModel.model_fields if top == "models" else ExecutionInput.model_fields
            known = ", ".join(fields) if what == "execution input" else ""
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


def _without_prepared_defaults(data: dict[str, Any], model: str | None, on_demand: bool) -> dict[str, Any]:
    """A job's or result's JSON without ``model`` and ``on_demand`` when they say nothing (a rows run's job): a rows
    run writes its manifests, results and summary exactly as before prepared runs existed. A prepared run's jobs
    and results always carry both."""
    if model is None and not on_demand:
        data.pop("model", None)
        data.pop("on_demand", None)
    return data


class RunModel(BaseModel):
    """One model of a run, everything the later steps need to submit, read and price its jobs."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    family: str  # keys the adapter that reads its records' output (``converse`` for Converse jobs)
    invocation_type: Literal["InvokeModel", "Converse"] = "InvokeModel"
    output_kind: Literal["text", "embedding"]
    # The model's batch quotas, looked up once by preprocess (lambdas/preprocess/quotas.py), and the cap on this model's
    # submitted + in-progress jobs that Submit keeps: min(maxConcurrentJobs, the model's quota).
    quotas: BatchQuotas = Field(default_factory=BatchQuotas)
    max_concurrent_jobs: int | None = None


class RunContext(BaseModel):
    """Everything about a run the later states need. Small: it travels in every state payload.

    A rows run has one model (``model_id``, ``family``, ``output_kind``, ``invocation_type``, ``quotas``,
    ``max_concurrent_jobs``); a prepared run has ``models`` instead (by name, the keys jobs name in
    ``JobSpec.model``), and the single-model fields are None. ``model_for(job.model)`` gives a job's model either way.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    bucket: str
    model_id: str | None = None
    family: str | None = None
    output_kind: Literal["text", "embedding"] | None = None
    invocation_type: Literal["InvokeModel", "Converse"] = "InvokeModel"
    job_name_prefix: str
    total_records: int
    num_jobs: int
    # The run's records: one Parquet object (layout.records_key), or an index of Parquet files (layout.
    # records_index_key, a RecordsIndex); run_files.iter_run_rows reads a row range of either.
    records_key: str
    manifest_key: str
    # The Step Functions execution ARN ($$.Execution.Id): every function logs it as its correlation id.
    execution_arn: str | None = None
    # The model's batch quotas, looked up once by preprocess (lambdas/preprocess/quotas.py), and the cap on this model's
    # submitted + in-progress jobs that Submit keeps: min(maxConcurrentJobs, the model's quota).
    quotas: BatchQuotas = Field(default_factory=BatchQuotas)
    max_concurrent_jobs: int | None = None
    models: dict[str, RunModel] | None = None  # a prepared run's models, by name

    @model_validator(mode="after")
    def _one_model_or_models(self) -> RunContext:
        single = (self.model_id, self.family, self.output_kind)
        if self.models is None and None in single:
            raise ValueError("a rows run names its model_id, family and output_kind")
        if self.models is not None and (not self.models or any(value is not None for value in single)):
            raise ValueError("a prepared run names its models in models, and no model_id, family or output_kind")
        return self

    @property
    def prepared(self) -> bool:
        return self.models is not None

    def model_for(self, name: str | None) -> RunModel:
        """The model of a job (``JobSpec.model``): one of ``models`` in a prepared run, the run's model otherwise."""
        if self.models is None:
            if name is not None:
                raise ValueError(f"job names model {name!r}, but run {self.run_id} is a rows run of one model")
            return RunModel(
                model_id=str(self.model_id),
                family=str(self.family),
                invocation_type=self.invocation_type,
                output_kind=self.output_kind or "text",
                quotas=self.quotas,
                max_concurrent_jobs=self.max_concurrent_jobs,
            )
        if name not in self.models:
            raise ValueError(f"job names model {name!r}, not one of run {self.run_id}'s models {sorted(self.models)}")
        return self.models[name]


class RecordsFile(BaseModel):
    """One file of a run's records given as a list of files: its key in the data bucket, its row count (from its
    footer) and the input file it is a copy of."""

    model_config = ConfigDict(frozen=True)

    key: str
    rows: int = Field(ge=0)
    source: str


class RecordsIndex(BaseModel):
    """A run's records as Parquet files, in row order (``runs/<run>/records.json``): the record ids number the rows
    of the first file, then of the next, and so on."""

    model_config = ConfigDict(frozen=True)

    files: list[RecordsFile]


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
    # A prepared run's job runs one model (a key of RunContext.models; jobs never mix models); None in a rows run.
    model: str | None = None
    # A model's group under Bedrock's minimum records per job: run on demand through the runtime, not as a batch job.
    on_demand: bool = False

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_prepared_defaults(handler(self), self.model, self.on_demand)

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
    model: str | None = None  # the job's model in a prepared run (JobSpec.model)
    on_demand: bool = False  # the job ran on demand (JobSpec.on_demand)

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without_prepared_defaults(handler(self), self.model, self.on_demand)


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
