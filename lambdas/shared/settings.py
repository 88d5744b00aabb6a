"""Function settings from the environment the CDK stack sets. Read in handlers only, never at import time."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    data_bucket: str
    bedrock_role_arn: str
    job_timeout_hours: int
    max_records_per_job: int
    allowed_model_ids: tuple[str, ...]

    @classmethod
    def from_env(cls) -> Settings:
        allowed = os.environ.get("ALLOWED_MODEL_IDS", "")
        return cls(
            data_bucket=os.environ["DATA_BUCKET"],
            bedrock_role_arn=os.environ.get("BEDROCK_ROLE_ARN", ""),
            job_timeout_hours=int(os.environ.get("JOB_TIMEOUT_HOURS", "72")),
            max_records_per_job=int(os.environ.get("MAX_RECORDS_PER_JOB", "50000")),
            allowed_model_ids=tuple(m.strip() for m in allowed.split(",") if m.strip()),
        )
