"""Function settings from the environment the CDK stack sets. Read in handlers only, never at import time."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    data_bucket: str
    bedrock_role_arn: str
    job_timeout_hours: int
    max_records_per_job: int
    allowed_model_ids: tuple[str, ...]
    max_concurrent_jobs: int = 20  # MAX_CONCURRENT_JOBS (cdk.json maxConcurrentJobs): capped by the model's quota
    # Security options (cdk.json kmsKey, tags); the stack sets them on Submit only. Configuration, never secrets.
    output_kms_key_id: str | None = None  # OUTPUT_KMS_KEY_ID: the job output's s3EncryptionKeyId
    job_tags: tuple[tuple[str, str], ...] = ()  # JOB_TAGS: a JSON object of cost-attribution tags for every job
    job_subnet_ids: tuple[str, ...] = ()  # JOB_SUBNET_IDS (batchVpc): comma-separated, the jobs' vpcConfig
    job_security_group_ids: tuple[str, ...] = ()  # JOB_SECURITY_GROUP_IDS (batchVpc): comma-separated
    price_overrides: str = ""  # PRICES (cdk.json prices, Finalize only): JSON, model id -> per-1M-token prices
    on_demand_concurrency: int = 4  # ON_DEMAND_CONCURRENCY (cdk.json onDemandConcurrency): records in flight per job

    @classmethod
    def from_env(cls) -> Settings:
        allowed = os.environ.get("ALLOWED_MODEL_IDS", "")
        return cls(
            data_bucket=os.environ["DATA_BUCKET"],
            bedrock_role_arn=os.environ.get("BEDROCK_ROLE_ARN", ""),
            job_timeout_hours=int(os.environ.get("JOB_TIMEOUT_HOURS", "72")),
            max_records_per_job=int(os.environ.get("MAX_RECORDS_PER_JOB", "50000")),
            allowed_model_ids=tuple(m.strip() for m in allowed.split(",") if m.strip()),
            max_concurrent_jobs=int(os.environ.get("MAX_CONCURRENT_JOBS", "20")),
            output_kms_key_id=os.environ.get("OUTPUT_KMS_KEY_ID", "").strip() or None,
            job_tags=_tags(os.environ.get("JOB_TAGS", "")),
            job_subnet_ids=_ids(os.environ.get("JOB_SUBNET_IDS", "")),
            job_security_group_ids=_ids(os.environ.get("JOB_SECURITY_GROUP_IDS", "")),
            price_overrides=os.environ.get("PRICES", ""),
            on_demand_concurrency=int(os.environ.get("ON_DEMAND_CONCURRENCY", "4")),
        )


def _ids(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _tags(raw: str) -> tuple[tuple[str, str], ...]:
    """``JOB_TAGS`` (``{"project": "x", ...}``) as ordered pairs; empty when unset. A malformed value is a deployment
    error: raise rather than submit jobs without their cost attribution."""
    if not raw.strip():
        return ()
    tags = json.loads(raw)
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise ValueError(f"JOB_TAGS must be a JSON object of strings, got {raw!r}")
    return tuple(tags.items())
