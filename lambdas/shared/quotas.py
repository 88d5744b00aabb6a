"""A model's batch inference quotas, read from Service Quotas (service code ``bedrock``) once per run.

Bedrock's batch quotas are per model and per account: "Records per batch inference job for Claude 3 Haiku", and so
on (docs/bedrock-facts.md, Batch quotas). Their quota codes (``L-...``) differ per model, so they are found by name:
``ListServiceQuotas`` (the applied values; it leaves out quotas whose applied value is not available) and, for the
kinds still missing, ``ListAWSDefaultServiceQuotas``. Whatever cannot be read (no permission, endpoint error, model
not listed) falls back to the documented defaults, and the result says where each value came from, so the run's
summary can report it.

This module holds what a run carries (the quota kinds, their defaults and where each value came from) and how a quota
name reads; the lookup itself, which calls Service Quotas, is ``lambdas.preprocess.quotas`` (only Preprocess may call
it: the other functions import these types with the run context).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

SERVICE_CODE = "bedrock"
GB = 1_000_000_000  # "(in GB)": decimal gigabytes, the smaller reading (docs/bedrock-facts.md, Batch quotas)

QuotaKind = Literal[
    "min_records_per_job",
    "max_records_per_job",
    "max_records_per_file",
    "max_file_bytes",
    "max_job_bytes",
    "max_concurrent_jobs",
]
Source = Literal["service-quotas", "default"]

# Quota name (without the model) -> kind. Service Quotas spells the size quotas two ways: "Batch inference job size
# (in GB) for Claude 3 Haiku" and "Batch inference job size for Qwen3 235B (in GB)"; ``parse_quota_name`` accepts both.
QUOTA_NAMES: dict[str, QuotaKind] = {
    "Minimum number of records per batch inference job": "min_records_per_job",
    "Records per batch inference job": "max_records_per_job",
    "Records per input file per batch inference job": "max_records_per_file",
    "Batch inference input file size": "max_file_bytes",
    "Batch inference job size": "max_job_bytes",
    "Sum of in-progress and submitted batch inference jobs using a base model": "max_concurrent_jobs",
}
# The documented defaults (AWS General Reference, Amazon Bedrock endpoints and quotas), in our units.
DEFAULTS: dict[QuotaKind, int] = {
    "min_records_per_job": 100,
    "max_records_per_job": 50_000,
    "max_records_per_file": 50_000,
    "max_file_bytes": 1 * GB,
    "max_job_bytes": 5 * GB,
    "max_concurrent_jobs": 20,
}
_IN_GB = " (in GB)"
_QUOTAS = "|".join(re.escape(name) for name in QUOTA_NAMES)
_NAME = re.compile(rf"^(?P<quota>{_QUOTAS})(?P<gb> \(in GB\))? for (?P<model>.+)$")


def parse_quota_name(name: str) -> tuple[QuotaKind, str] | None:
    """``"Batch inference job size (in GB) for Claude 3 Haiku"`` -> ``("max_job_bytes", "Claude 3 Haiku")``; None
    for any quota that is not one of the batch quotas above."""
    found = _NAME.match(" ".join(name.split()))
    if found is None:
        return None
    kind, model = QUOTA_NAMES[found.group("quota")], found.group("model")
    sized = kind in ("max_file_bytes", "max_job_bytes")
    if sized and not found.group("gb"):
        if not model.endswith(_IN_GB):
            return None  # a size quota without its unit: not one we know how to read
        model = model.removesuffix(_IN_GB)
    elif not sized and found.group("gb"):
        return None
    return kind, model


def same_model_name(a: str, b: str) -> bool:
    """Model names compared as Service Quotas varies them: case and spacing ("Sonnet v2" / "Sonnet V2")."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class QuotaValue(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: int
    source: Source
    quota_code: str | None = None  # the L-... code it was read from (service-quotas only)


class BatchQuotas(BaseModel):
    """The quotas a run is split and submitted with; travels in the run context (small: six values)."""

    model_config = ConfigDict(frozen=True)

    model_name: str | None = None  # the model as Service Quotas names it; None: the model is not in our table
    min_records_per_job: QuotaValue = QuotaValue(value=DEFAULTS["min_records_per_job"], source="default")
    max_records_per_job: QuotaValue = QuotaValue(value=DEFAULTS["max_records_per_job"], source="default")
    max_records_per_file: QuotaValue = QuotaValue(value=DEFAULTS["max_records_per_file"], source="default")
    max_file_bytes: QuotaValue = QuotaValue(value=DEFAULTS["max_file_bytes"], source="default")
    max_job_bytes: QuotaValue = QuotaValue(value=DEFAULTS["max_job_bytes"], source="default")
    max_concurrent_jobs: QuotaValue = QuotaValue(value=DEFAULTS["max_concurrent_jobs"], source="default")
    note: str | None = None  # why some values are defaults (the error, or the model not listed)

    @property
    def records_per_job(self) -> int:
        """The most records one job file may hold: one input file per job here, so both record quotas apply."""
        return min(self.max_records_per_job.value, self.max_records_per_file.value)

    @property
    def bytes_per_job(self) -> int:
        """The largest job file: one input file per job, so both size quotas apply."""
        return min(self.max_file_bytes.value, self.max_job_bytes.value)

    def defaults_used(self) -> list[str]:
        return [kind for kind in DEFAULTS if getattr(self, kind).source == "default"]

    def summary(self) -> dict[str, Any]:
        """The ``quotas`` section of summary.json: each value, and whether it came from Service Quotas or is the
        documented default."""
        return {
            "model_name": self.model_name,
            "values": {kind: getattr(self, kind).model_dump(mode="json") for kind in DEFAULTS},
            "defaults_used": self.defaults_used(),
            "note": self.note,
        }
