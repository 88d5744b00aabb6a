"""Service Quotas (service code ``bedrock``) as the emulated account has them: the per-model batch quotas.

The emulator serves them itself, over HTTP with the real wire format (awsJson1_1, ``X-Amz-Target``), rather than
leaving them to moto or to the local runner: moto's Service Quotas has no ``ListServiceQuotas`` and no Bedrock
quotas, and this way the values a run is split with and the values its jobs are validated against come from one
place, ``EmulatorState.quotas_for``.

Each model of ``MODEL_QUOTA_NAMES`` gets the six batch quotas, named as Service Quotas names them ("Records per batch
inference job for Claude 3 Haiku", ...) with a fixed ``L-`` code per name. Stricter than the service where its
behaviour is open (docs/bedrock-facts.md, Batch quotas): ``ListServiceQuotas`` lists only the adjustable quotas (the
service leaves out quotas whose applied value is not available), so clients must also read
``ListAWSDefaultServiceQuotas``; a model outside ``MODEL_QUOTA_NAMES`` has no quotas at all (clients fall back to the
documented defaults); ``access_denied`` makes both calls fail with ``AccessDeniedException``.

This module does not import the project's own model table on purpose: the emulator stands in for AWS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.emulator.batch_io import Quotas
from local.emulator.errors import ApiError
from local.emulator.families import base_model_id

if TYPE_CHECKING:
    from local.emulator.jobs import EmulatorState

SERVICE_CODE = "bedrock"
SERVICE_NAME = "Amazon Bedrock"
GB = 1_000_000_000
DEFAULT_MAX_RESULTS = 100

# Foundation-model id prefixes -> the model's name in its quota names; longest prefix wins.
MODEL_QUOTA_NAMES: dict[str, str] = {
    "anthropic.claude-3-haiku": "Claude 3 Haiku",
    "anthropic.claude-3-5-haiku": "Claude 3.5 Haiku",
    "anthropic.claude-3-5-sonnet-20240620": "Claude 3.5 Sonnet",
    "anthropic.claude-3-5-sonnet-20241022": "Claude 3.5 Sonnet v2",
    "anthropic.claude-3-7-sonnet": "Claude 3.7 Sonnet",
    "amazon.nova-micro-v1": "Nova Micro V1",
    "amazon.nova-lite-v1": "Nova Lite V1",
    "amazon.nova-pro-v1": "Nova Pro V1",
    "amazon.titan-embed-text-v2": "Titan Text Embeddings V2",
    "amazon.titan-embed-image-v1": "Titan Multimodal Embeddings G1",
    "meta.llama3-1-70b-instruct": "Llama 3.1 70B Instruct",
    "meta.llama3-3-70b-instruct": "Llama 3.3 70B Instruct",
    "mistral.mistral-large-2407": "Mistral Large 2 (24.07)",
}


@dataclass(frozen=True)
class QuotaKind:
    name: str  # the quota's name before " for <model>"
    unit: str
    adjustable: bool
    value: Callable[[Quotas], float]


QUOTA_KINDS: tuple[QuotaKind, ...] = (
    QuotaKind("Minimum number of records per batch inference job", "None", False, lambda q: q.min_records_per_job),
    QuotaKind("Records per batch inference job", "None", True, lambda q: q.max_records_per_job),
    QuotaKind("Records per input file per batch inference job", "None", True, lambda q: q.max_records_per_file),
    QuotaKind("Batch inference input file size (in GB)", "None", False, lambda q: q.max_file_bytes / GB),
    QuotaKind("Batch inference job size (in GB)", "None", False, lambda q: q.max_job_bytes / GB),
    QuotaKind(
        "Sum of in-progress and submitted batch inference jobs using a base model",
        "None",
        True,
        lambda q: q.max_active_jobs_per_model,
    ),
)


def quota_model_name(model_id: str) -> str | None:
    base = base_model_id(model_id)
    matches = [prefix for prefix in MODEL_QUOTA_NAMES if base.startswith(prefix)]
    return MODEL_QUOTA_NAMES[max(matches, key=len)] if matches else None


def quota_code(name: str) -> str:
    return "L-" + hashlib.sha256(name.encode()).hexdigest()[:8].upper()


class ServiceQuotas:
    """``ListServiceQuotas`` and ``ListAWSDefaultServiceQuotas`` over ``state``'s per-model quotas."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.access_denied = False

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "ListServiceQuotas": self.list_service_quotas,
            "ListAWSDefaultServiceQuotas": self.list_aws_default_service_quotas,
        }

    def list_service_quotas(self, params: dict[str, Any]) -> dict[str, Any]:
        """The applied values; only the adjustable quotas (the others have no applied value)."""
        self._check(params)
        return _page(self._quotas(applied=True), params)

    def list_aws_default_service_quotas(self, params: dict[str, Any]) -> dict[str, Any]:
        """The values before any increase: the model's own for quotas that cannot be adjusted, the emulator's
        defaults for those that can."""
        self._check(params)
        return _page(self._quotas(applied=False), params)

    def _check(self, params: dict[str, Any]) -> None:
        if self.access_denied:
            raise ApiError(
                "AccessDeniedException", "You do not have sufficient permission to perform this action (emulated)."
            )
        if params["ServiceCode"] != SERVICE_CODE:
            raise ApiError("NoSuchResourceException", f"The service code {params['ServiceCode']} does not exist.")

    def _model_quotas(self, model_name: str) -> Quotas:
        for model_id, values in self.state.model_quotas.items():
            if quota_model_name(model_id) == model_name:
                return values
        return self.state.quotas

    def _quotas(self, *, applied: bool) -> list[dict[str, Any]]:
        region, account = self.state.region, self.state.account_id
        out = []
        for model_name in sorted(set(MODEL_QUOTA_NAMES.values())):
            values = self._model_quotas(model_name)
            for kind in QUOTA_KINDS:
                if applied and not kind.adjustable:
                    continue
                source = values if applied or not kind.adjustable else self.state.quotas
                name = f"{kind.name} for {model_name}"
                code = quota_code(name)
                out.append(
                    {
                        "ServiceCode": SERVICE_CODE,
                        "ServiceName": SERVICE_NAME,
                        "QuotaArn": f"arn:aws:servicequotas:{region}:{account}:{SERVICE_CODE}/{code}",
                        "QuotaCode": code,
                        "QuotaName": name,
                        "Value": float(kind.value(source)),
                        "Unit": kind.unit,
                        "Adjustable": kind.adjustable,
                        "GlobalQuota": False,
                    }
                )
        return out


def _page(quotas: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    start = _decode_token(params["NextToken"]) if "NextToken" in params else 0
    end = start + params.get("MaxResults", DEFAULT_MAX_RESULTS)
    token = base64.b64encode(str(end).encode()).decode() if end < len(quotas) else None
    return {"Quotas": quotas[start:end], "NextToken": token}


def _decode_token(token: str) -> int:
    try:
        return int(base64.b64decode(token.encode(), validate=True))
    except (ValueError, binascii.Error):
        raise ApiError("InvalidPaginationTokenException", "Invalid pagination token.") from None
