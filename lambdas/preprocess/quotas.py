"""Preprocess's lookup of a model's batch quotas in Service Quotas (service code ``bedrock``), once per run.

Applied values first (``ListServiceQuotas``, which leaves out quotas whose applied value is not available), then AWS's
defaults (``ListAWSDefaultServiceQuotas``) for the kinds still missing, matched by name (the ``L-...`` codes differ per
model). Whatever cannot be read (no permission, endpoint error, model not listed) falls back to the documented
defaults, and the result says where each value came from (docs/bedrock-facts.md, Batch quotas).

Pure logic: the Service Quotas client is a parameter (``lambdas.shared.aws.service_quotas()`` in the handler).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.model_families import quota_model_name
from lambdas.shared.quotas import (
    DEFAULTS,
    GB,
    SERVICE_CODE,
    BatchQuotas,
    QuotaKind,
    QuotaValue,
    parse_quota_name,
    same_model_name,
)


def _to_units(kind: QuotaKind, value: float) -> int:
    return int(value * GB) if kind in ("max_file_bytes", "max_job_bytes") else int(value)


def _quotas(paginator: Any) -> Iterator[dict[str, Any]]:
    pages = paginator.paginate(ServiceCode=SERVICE_CODE, PaginationConfig={"PageSize": 100})
    for page in pages:
        yield from page.get("Quotas", [])


def _collect(paginator: Any, model_name: str, wanted: set[QuotaKind]) -> dict[QuotaKind, QuotaValue]:
    found: dict[QuotaKind, QuotaValue] = {}
    for quota in _quotas(paginator):
        parsed = parse_quota_name(str(quota.get("QuotaName", "")))
        if parsed is None or quota.get("Value") is None or float(quota["Value"]) <= 0:
            continue  # not a batch quota, or no usable value (a zero limit would make no job possible)
        kind, name = parsed
        if kind in wanted and kind not in found and same_model_name(name, model_name):
            found[kind] = QuotaValue(
                value=_to_units(kind, float(quota["Value"])), source="service-quotas", quota_code=quota.get("QuotaCode")
            )
    return found


def _error_text(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', error)}"
    return f"{type(error).__name__}: {error}"


def lookup_batch_quotas(model_id: str, *, service_quotas: Any) -> BatchQuotas:
    """The batch quotas of ``model_id`` for this account and region: applied values first, then AWS defaults from
    Service Quotas, then the documented defaults. Never raises for a Service Quotas failure: the result's ``note``
    says what failed."""
    model_name = quota_model_name(model_id)
    if model_name is None:
        return BatchQuotas(
            note=f"model '{model_id}' has no Service Quotas name in lambdas/shared/model_families.py "
            "(QUOTA_MODEL_NAMES): documented defaults used"
        )
    found: dict[QuotaKind, QuotaValue] = {}
    problems: list[str] = []
    # The applied values first, then AWS's defaults for what is still missing (operation names spelled out as
    # literals: tests/infra/iam_usage.py derives the role's grants from them).
    lists = (
        ("list_service_quotas", service_quotas.get_paginator("list_service_quotas")),
        ("list_aws_default_service_quotas", service_quotas.get_paginator("list_aws_default_service_quotas")),
    )
    for operation, paginator in lists:
        missing = set(DEFAULTS) - set(found)
        if not missing:
            break
        try:
            found |= _collect(paginator, model_name, missing)
        except (ClientError, BotoCoreError) as error:
            problems.append(f"{operation}: {_error_text(error)}")
    missing_kinds = [kind for kind in DEFAULTS if kind not in found]
    note = None
    if missing_kinds:
        reasons = "; ".join(problems) if problems else f"no such quota for '{model_name}' in Service Quotas"
        note = f"documented defaults used for {missing_kinds} ({reasons})"
    return BatchQuotas(model_name=model_name, note=note, **found)
