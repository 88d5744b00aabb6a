"""Batch quotas by model: quota name matching, the Service Quotas lookup and its fallback to the documented defaults.

The Service Quotas client is a real boto3 client with botocore's Stubber: requests and responses are checked against
the service model, and no request leaves the process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from lambdas.preprocess.logic import capped_records_per_job, concurrency_cap, plan_job_sizes
from lambdas.preprocess.quotas import lookup_batch_quotas
from lambdas.shared.errors import InputValidationError
from lambdas.shared.model_families import quota_model_name
from lambdas.shared.quotas import DEFAULTS, GB, BatchQuotas, QuotaValue, parse_quota_name

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "Minimum number of records per batch inference job for Claude 3 Haiku",
            ("min_records_per_job", "Claude 3 Haiku"),
        ),
        ("Records per batch inference job for Claude 3.5 Sonnet v2", ("max_records_per_job", "Claude 3.5 Sonnet v2")),
        ("Records per input file per batch inference job for Nova Lite V1", ("max_records_per_file", "Nova Lite V1")),
        ("Batch inference input file size (in GB) for Claude 3 Haiku", ("max_file_bytes", "Claude 3 Haiku")),
        ("Batch inference input file size for Qwen3 32B (in GB)", ("max_file_bytes", "Qwen3 32B")),
        ("Batch inference job size (in GB) for Mistral Large 2 (24.07)", ("max_job_bytes", "Mistral Large 2 (24.07)")),
        ("Batch inference job size for DeepSeek v3 (in GB)", ("max_job_bytes", "DeepSeek v3")),
        (
            "Sum of in-progress and submitted batch inference jobs using a base model for Claude 3 Haiku",
            ("max_concurrent_jobs", "Claude 3 Haiku"),
        ),
        ("Records  per batch inference job for  Claude 3 Haiku", ("max_records_per_job", "Claude 3 Haiku")),
    ],
)
def test_batch_quota_names_are_read_in_both_spellings(name: str, expected: tuple[str, str]) -> None:
    # GIVEN a batch quota name as Service Quotas spells it / WHEN parsed / THEN its kind and model come out
    assert parse_quota_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "On-demand model inference tokens per minute for Anthropic Claude 3 Haiku",
        "Batch inference job size for Claude 3 Haiku",  # a size without its unit: not read as bytes
        "Records per batch inference job (in GB) for Claude 3 Haiku",  # a count with a size unit
        "Sum of in-progress and submitted batch inference jobs using a custom model",
        "Records per batch inference job",
    ],
)
def test_other_quota_names_are_not_batch_quotas(name: str) -> None:
    # GIVEN a quota that is not one of the six batch quotas / WHEN parsed / THEN it is ignored
    assert parse_quota_name(name) is None


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        (CLAUDE, "Claude 3 Haiku"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "Claude 3.5 Sonnet v2"),
        ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0", "Nova Lite V1"),
        ("anthropic.claude-sonnet-4-20250514-v1:0", "Claude Sonnet 4"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", None),  # not Claude Sonnet 4: its name is not in the table
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", None),
        ("cohere.embed-english-v3", None),
    ],
)
def test_model_ids_map_to_their_service_quotas_name(model_id: str, expected: str | None) -> None:
    # GIVEN a model id in any form / WHEN looked up / THEN the model's name in the quota names (None: not known)
    assert quota_model_name(model_id) == expected


def quota(name: str, value: float, code: str = "L-00000001") -> dict[str, Any]:
    return {"ServiceCode": "bedrock", "QuotaCode": code, "QuotaName": name, "Value": value, "Adjustable": True}


@pytest.fixture
def service_quotas() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("service-quotas", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


LIST = {"ServiceCode": "bedrock", "MaxResults": 100}


def test_applied_values_come_first_then_aws_defaults_across_pages(service_quotas: tuple[Any, Stubber]) -> None:
    client, stubber = service_quotas
    # GIVEN applied values for two adjustable quotas over two pages (and another model's and a runtime quota), and
    # AWS default values for the rest, one of them also listed as applied (the applied value must win)
    stubber.add_response(
        "list_service_quotas",
        {
            "Quotas": [
                quota("Records per batch inference job for Claude 3 Haiku", 1000.0, "L-AAAA0001"),
                quota("Records per batch inference job for Claude 3 Opus", 7.0),
                quota("On-demand model inference requests per minute for Anthropic Claude 3 Haiku", 9.0),
            ],
            "NextToken": "cGFnZTI=",
        },
        LIST,
    )
    stubber.add_response(
        "list_service_quotas",
        {
            "Quotas": [
                quota("Sum of in-progress and submitted batch inference jobs using a base model for claude 3 haiku", 5)
            ]
        },
        {**LIST, "NextToken": "cGFnZTI="},
    )
    stubber.add_response(
        "list_aws_default_service_quotas",
        {
            "Quotas": [
                quota("Records per batch inference job for Claude 3 Haiku", 50000.0),
                quota("Minimum number of records per batch inference job for Claude 3 Haiku", 1000.0),
                quota("Records per input file per batch inference job for Claude 3 Haiku", 40000.0),
                quota("Batch inference input file size (in GB) for Claude 3 Haiku", 0.5),
                quota("Batch inference job size for Claude 3 Haiku (in GB)", 2.0),
            ]
        },
        LIST,
    )
    # WHEN the quotas of the model are looked up
    quotas = lookup_batch_quotas(f"us.{CLAUDE}", service_quotas=client)
    # THEN each value is the model's own, from Service Quotas, in our units, and nothing fell back to a default
    assert quotas.model_name == "Claude 3 Haiku" and quotas.note is None and quotas.defaults_used() == []
    assert quotas.max_records_per_job == QuotaValue(value=1000, source="service-quotas", quota_code="L-AAAA0001")
    assert quotas.max_concurrent_jobs.value == 5
    assert quotas.min_records_per_job.value == 1000 and quotas.max_records_per_file.value == 40_000
    assert quotas.max_file_bytes.value == GB // 2 and quotas.max_job_bytes.value == 2 * GB
    assert quotas.records_per_job == 1000 and quotas.bytes_per_job == GB // 2


def test_no_permission_falls_back_to_the_documented_defaults_and_says_why(service_quotas: tuple[Any, Stubber]) -> None:
    client, stubber = service_quotas
    # GIVEN a role that may not call Service Quotas
    for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
        stubber.add_client_error(operation, "AccessDeniedException", "not authorized", 400, expected_params=LIST)
    # WHEN the quotas are looked up
    quotas = lookup_batch_quotas(CLAUDE, service_quotas=client)
    # THEN every value is the documented default, and the summary names the error
    assert {kind: getattr(quotas, kind).value for kind in DEFAULTS} == DEFAULTS
    assert quotas.defaults_used() == list(DEFAULTS)
    summary = quotas.summary()
    assert summary["values"]["max_records_per_job"] == {"value": 50_000, "source": "default", "quota_code": None}
    assert "AccessDeniedException: not authorized" in summary["note"]


def test_a_failed_applied_list_still_uses_the_aws_defaults(service_quotas: tuple[Any, Stubber]) -> None:
    client, stubber = service_quotas
    # GIVEN ListServiceQuotas fails but the AWS default list answers for one quota of the model
    stubber.add_client_error("list_service_quotas", "ServiceException", "boom", 500, expected_params=LIST)
    stubber.add_response(
        "list_aws_default_service_quotas",
        {"Quotas": [quota("Records per batch inference job for Claude 3 Haiku", 1000.0)]},
        LIST,
    )
    # WHEN looked up
    quotas = lookup_batch_quotas(CLAUDE, service_quotas=client)
    # THEN that quota comes from Service Quotas, the rest are defaults, and the note says which and why
    assert quotas.max_records_per_job.source == "service-quotas" and quotas.max_records_per_job.value == 1000
    assert "max_records_per_job" not in quotas.defaults_used() and "min_records_per_job" in quotas.defaults_used()
    assert quotas.note is not None and "ServiceException: boom" in quotas.note


def test_an_unreachable_endpoint_falls_back_to_the_defaults() -> None:
    # GIVEN a client whose every call fails to connect (as botocore's: when a page is requested)
    class Unreachable:
        def get_paginator(self, operation: str) -> Any:
            return self

        def paginate(self, **_kwargs: Any) -> Any:
            raise EndpointConnectionError(endpoint_url="https://servicequotas.us-east-1.amazonaws.com/")

    # WHEN looked up THEN the defaults are used and the note names the endpoint error
    quotas = lookup_batch_quotas(CLAUDE, service_quotas=Unreachable())
    assert quotas.defaults_used() == list(DEFAULTS) and "EndpointConnectionError" in str(quotas.note)


def test_a_model_without_a_quota_name_makes_no_call(service_quotas: tuple[Any, Stubber]) -> None:
    client, _ = service_quotas
    # GIVEN a model the table does not name (the Stubber fails on any call)
    # WHEN looked up THEN the defaults are used and the note says the model is not listed
    quotas = lookup_batch_quotas("cohere.embed-english-v3", service_quotas=client)
    assert quotas.model_name is None and quotas.defaults_used() == list(DEFAULTS)
    assert "no Service Quotas name" in str(quotas.note)


def test_a_model_service_quotas_does_not_list_falls_back_to_the_defaults(service_quotas: tuple[Any, Stubber]) -> None:
    client, stubber = service_quotas
    # GIVEN Service Quotas lists only other models' batch quotas
    other = {"Quotas": [quota("Records per batch inference job for Claude 3 Opus", 7.0)]}
    stubber.add_response("list_service_quotas", other, LIST)
    stubber.add_response("list_aws_default_service_quotas", other, LIST)
    # WHEN looked up THEN every value is a default, and the note says none was found for the model
    quotas = lookup_batch_quotas(CLAUDE, service_quotas=client)
    assert quotas.defaults_used() == list(DEFAULTS)
    assert "no such quota for 'Claude 3 Haiku'" in str(quotas.note)


def with_values(**values: int) -> BatchQuotas:
    return BatchQuotas(
        model_name="Claude 3 Haiku",
        **{kind: QuotaValue(value=value, source="service-quotas") for kind, value in values.items()},
    )


def test_max_records_per_job_is_capped_by_the_models_record_quotas() -> None:
    # GIVEN a model taking 1,000 records per job and 800 per input file (one file per job here)
    quotas = with_values(max_records_per_job=1000, max_records_per_file=800)
    # WHEN a user asks for 5,000, or for 500 / THEN 800 (the smaller quota), or 500 as asked
    assert capped_records_per_job(5000, quotas, asked=True) == 800
    assert capped_records_per_job(500, quotas, asked=True) == 500


def test_max_concurrent_jobs_is_capped_by_the_models_job_quota() -> None:
    # GIVEN a model quota of 3 submitted + in-progress jobs / WHEN maxConcurrentJobs is 20, or 2
    quotas = with_values(max_concurrent_jobs=3)
    # THEN the cap is min(maxConcurrentJobs, quota)
    assert concurrency_cap(20, quotas) == 3 and concurrency_cap(2, quotas) == 2


def test_too_few_rows_for_the_models_minimum_are_rejected_naming_the_minimum() -> None:
    # GIVEN a model whose minimum is 1,000 records per job / WHEN 999 rows are split
    # THEN the error names the model, its minimum and the quota
    with pytest.raises(InputValidationError, match=r"999 rows.*Claude 3 Haiku needs at least 1000 records.*Minimum"):
        plan_job_sizes(999, 50_000, min_per_job=1000, model="Claude 3 Haiku")
    # AND a split into jobs below that minimum is rejected too, naming it
    with pytest.raises(
        InputValidationError, match=r"fewer than 1000 records \(the minimum per job of Claude 3 Haiku\)"
    ):
        plan_job_sizes(1500, 1000, min_per_job=1000, model="Claude 3 Haiku")


def test_a_zero_quota_value_is_not_used(service_quotas: tuple[Any, Stubber]) -> None:
    client, stubber = service_quotas
    # GIVEN a records-per-job quota listed with the value 0 (no job could be split with it)
    zero = {"Quotas": [quota("Records per batch inference job for Claude 3 Haiku", 0.0)]}
    stubber.add_response("list_service_quotas", zero, LIST)
    stubber.add_response("list_aws_default_service_quotas", zero, LIST)
    # WHEN looked up THEN the documented default is used instead, and reported
    quotas = lookup_batch_quotas(CLAUDE, service_quotas=client)
    assert quotas.max_records_per_job == QuotaValue(value=50_000, source="default")
    assert "max_records_per_job" in quotas.defaults_used()
