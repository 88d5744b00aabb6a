"""The batch orchestrator's settings: concurrency, polling, timeouts, which models a run may use, and prices."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

# The runtime's model registry is the one list of inference-profile prefixes: IAM (bedrock_batch_role.py) must grant
# exactly the profiles the Lambdas accept. model_families imports the standard library only, so synth stays cheap and
# offline (tests/unit/test_model_families.py guards that).
from lambdas.shared.model_families import PROFILE_PREFIXES, batch_model_problem
from lambdas.shared.models import DEADLINE_MARGIN
from stacks.config.common import Context, check_model_id, check_region, error, json_object, setting

INFERENCE_PROFILE_PREFIXES = tuple(f"{geo}." for geo in PROFILE_PREFIXES)  # us., us-gov., eu., apac., ..., global.
DEFAULT_ALLOWED_MODEL_IDS = (
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "amazon.titan-embed-text-v2:0",
)
DEFAULT_BEDROCK_REGIONS = ("us-east-1", "us-east-2", "us-west-2")
MAX_EXECUTION_TIMEOUT_HOURS = 365 * 24  # a Standard workflow runs for at most one year


def late_job_hours(job_timeout_hours: int) -> int:
    """How long one job can hold a run: its own timeout, then Poll's ``DEADLINE_MARGIN`` past the service's deadline
    before it stops the job, then an hour for the stop and the output. The state machine's timeout is at least this,
    and by default twice it (a planned job and then a resubmission job, each running to its deadline)."""
    return job_timeout_hours + int(DEADLINE_MARGIN.total_seconds() // 3600) + 1


MAX_CONCURRENT_JOBS = setting(
    "batch",
    "maxConcurrentJobs",
    20,
    "Distributed Map `MaxConcurrency`: jobs in flight per run; Submit also keeps the model's submitted + in-progress "
    "jobs in the account below min(this, the model's quota from Service Quotas, 20 by default); more just wait for a "
    "slot",
    low=1,
    high=1000,
)
POLL_INTERVAL = setting(
    "batch", "pollIntervalSeconds", 60, "wait between two `GetModelInvocationJob` calls per job", low=1, high=3600
)
JOB_TIMEOUT = setting(
    "batch",
    "jobTimeoutHours",
    72,
    "`timeoutDurationInHours` of every job; Bedrock ends a job still running then, and Poll stops one still running "
    "2 h later",
    low=24,
    high=168,
)
EXECUTION_TIMEOUT = setting(
    "batch",
    "executionTimeoutHours",
    2 * late_job_hours(JOB_TIMEOUT.default),
    "the state machine's timeout; at least jobTimeoutHours + 3 (a job runs to its deadline, Poll stops it 2 h later, "
    "an hour for the stop), by default room for a planned and a resubmission job each doing so",
    default_text="2 x (jobTimeoutHours + 3): `150` at the default 72",
    kind=f"integer jobTimeoutHours + 3 - {MAX_EXECUTION_TIMEOUT_HOURS}",
    low=1,
    high=MAX_EXECUTION_TIMEOUT_HOURS,
)
MAX_RECORDS_PER_JOB = setting(
    "batch", "maxRecordsPerJob", 50_000, "the default `max_records_per_job` of a run", low=100, high=50_000
)
ALLOWED_MODEL_IDS = setting(
    "batch",
    "allowedModelIds",
    DEFAULT_ALLOWED_MODEL_IDS,
    "the models and inference profiles the Bedrock service role may invoke, each a model with batch inference; runs "
    "with other models are rejected before any job exists",
    kind="list of model or inference-profile ids",
    default_text="Claude 3 Haiku, Claude 3.5 Haiku (and its `us.` profile), Titan Text Embeddings V2",
)
BEDROCK_REGIONS = setting(
    "batch",
    "bedrockRegions",
    DEFAULT_BEDROCK_REGIONS,
    "the regions an inference profile may route to (the foundation-model grants of the batch role and the gateway)",
    kind="list of region names",
    default_text="`us-east-1`, `us-east-2`, `us-west-2`",
)
ON_DEMAND_CONCURRENCY = setting(
    "batch",
    "onDemandConcurrency",
    4,
    "records one on-demand job (a group of fewer records than a batch job of the model takes, answered through "
    "InvokeModel or Converse instead) sends at a time; throttled calls are retried with backoff, so more mostly "
    "spends the model's on-demand quota sooner",
    low=1,
    high=64,
)
PRICES = setting(
    "batch",
    "prices",
    {},
    "per-model price overrides for the estimated cost in `summary.json`, over `lambdas/shared/prices.json`: "
    '`{"amazon.nova-lite-v1:0": {"input_per_1m": 0.06, "output_per_1m": 0.24}}` (on-demand USD per 1M tokens; batch '
    "is billed at half of it)",
    kind="JSON object: model id -> prices",
    default_text="none (the prices of `lambdas/shared/prices.json`)",
)


@dataclass(frozen=True)
class BatchConfig:
    """The batch workflow: concurrency cap, polling, timeouts and which Bedrock models a run may use."""

    max_concurrent_jobs: int = MAX_CONCURRENT_JOBS.default
    poll_interval_seconds: int = POLL_INTERVAL.default
    job_timeout_hours: int = JOB_TIMEOUT.default
    execution_timeout_hours: int = EXECUTION_TIMEOUT.default
    max_records_per_job: int = MAX_RECORDS_PER_JOB.default
    allowed_model_ids: tuple[str, ...] = DEFAULT_ALLOWED_MODEL_IDS
    on_demand_concurrency: int = ON_DEMAND_CONCURRENCY.default
    bedrock_regions: tuple[str, ...] = DEFAULT_BEDROCK_REGIONS
    # cdk.json prices (over lambdas/shared/prices.json): (model id, on-demand USD per 1M input, per 1M output tokens)
    prices: tuple[tuple[str, float, float], ...] = ()

    def prices_json(self) -> str:
        """``prices`` as Finalize reads them (``PRICES``): ``{"<id>": {"input_per_1m": x, "output_per_1m": y}}``."""
        return json.dumps(
            {model: {"input_per_1m": i, "output_per_1m": o} for model, i, o in self.prices}, separators=(",", ":")
        )

    @classmethod
    def from_context(cls, context: Mapping[str, object]) -> BatchConfig:
        ctx = Context(context)
        job_timeout = ctx.integer(JOB_TIMEOUT)
        late = late_job_hours(job_timeout)
        return cls(
            max_concurrent_jobs=ctx.integer(MAX_CONCURRENT_JOBS),
            poll_interval_seconds=ctx.integer(POLL_INTERVAL),
            job_timeout_hours=job_timeout,
            execution_timeout_hours=ctx.integer(
                EXECUTION_TIMEOUT,
                default=2 * late,
                low=late,
                why=(
                    f" (at least jobTimeoutHours={job_timeout} + {late - job_timeout} h: the time Poll waits past a "
                    "job's deadline before it stops it, and an hour for the stop; at most one year)"
                ),
            ),
            max_records_per_job=ctx.integer(MAX_RECORDS_PER_JOB),
            allowed_model_ids=ctx.strings(ALLOWED_MODEL_IDS, check_batch_model_id),
            on_demand_concurrency=ctx.integer(ON_DEMAND_CONCURRENCY),
            bedrock_regions=ctx.strings(BEDROCK_REGIONS, check_region),
            prices=parse_prices(ctx.raw(PRICES)),
        )


def parse_prices(value: object) -> tuple[tuple[str, float, float], ...]:
    """cdk.json ``prices``: ``{"<model id>": {"input_per_1m": <USD>, "output_per_1m": <USD>}}`` (JSON text with -c)."""
    example = '{"amazon.nova-lite-v1:0": {"input_per_1m": 0.06, "output_per_1m": 0.24}}'
    raw = json_object(value, "prices", example)
    if not isinstance(raw, dict):
        raise error("prices", "a JSON object of model id -> prices", value, example)
    prices = []
    for model_id, entry in raw.items():
        problem = check_model_id(str(model_id))
        if problem:
            raise error("prices", f"an object whose keys are {problem}; {model_id!r} is not", value, example)
        numbers = [entry.get(name) if isinstance(entry, dict) else None for name in ("input_per_1m", "output_per_1m")]
        if not all(isinstance(n, int | float) and not isinstance(n, bool) and n >= 0 for n in numbers):
            need = 'an object whose values are {"input_per_1m": <USD >= 0>, "output_per_1m": <USD >= 0>}'
            raise error("prices", f"{need}; {model_id!r} has {entry!r}", value, example)
        prices.append((str(model_id), float(numbers[0]), float(numbers[1])))  # type: ignore[arg-type]
    return tuple(prices)


def check_batch_model_id(item: str) -> str | None:
    """allowedModelIds: model or inference-profile ids of models that run batch inference jobs."""
    problem = check_model_id(item)
    if problem is not None:
        return problem
    no_batch = batch_model_problem(item)
    return None if no_batch is None else f"ids of models that support batch inference (remove it: {no_batch})"


def is_inference_profile(model_id: str) -> bool:
    """System inference-profile ids carry a geography prefix: ``us.anthropic.claude-3-5-haiku-20241022-v1:0``."""
    return model_id.startswith(INFERENCE_PROFILE_PREFIXES)


def base_model_id(model_id: str) -> str:
    """The foundation model behind an inference-profile id (the id itself for a foundation model)."""
    for prefix in INFERENCE_PROFILE_PREFIXES:
        if model_id.startswith(prefix):
            return model_id.removeprefix(prefix)
    return model_id
