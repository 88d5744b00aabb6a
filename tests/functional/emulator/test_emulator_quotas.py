"""The emulator's per-model batch quotas: served through Service Quotas (awsJson1_1 over HTTP, read by boto3) and
enforced on the jobs of that model while they validate."""

from __future__ import annotations

import pytest
from botocore.client import BaseClient

from lambdas.preprocess.quotas import lookup_batch_quotas
from local.emulator import BedrockEmulator, EmulatorState, ManualClock, Quotas
from tests.functional.emulator.conftest import emulator_client, error_code
from tests.functional.emulator.test_emulator import CLAUDE, TITAN, claude_record, create_job, put_jsonl, run_to_end

NOVA = "amazon.nova-lite-v1:0"


@pytest.fixture
def service_quotas(emulator: BedrockEmulator) -> BaseClient:
    return emulator_client(emulator, "service-quotas")


def all_pages(client: BaseClient, operation: str) -> list[dict]:
    paginator = client.get_paginator(operation)
    return [
        q
        for page in paginator.paginate(ServiceCode="bedrock", PaginationConfig={"PageSize": 7})
        for q in page["Quotas"]
    ]


def test_service_quotas_lists_each_models_batch_quotas_over_pages(
    service_quotas: BaseClient, state: EmulatorState
) -> None:
    # GIVEN Claude 3 Haiku with a raised record quota and a higher minimum (other models keep the defaults)
    state.model_quotas[CLAUDE] = Quotas(max_records_per_job=1000, min_records_per_job=200)
    # WHEN both lists are read page by page (7 per page)
    applied = {q["QuotaName"]: q for q in all_pages(service_quotas, "list_service_quotas")}
    defaults = {q["QuotaName"]: q for q in all_pages(service_quotas, "list_aws_default_service_quotas")}
    # THEN the applied list holds only adjustable quotas, with the model's value
    assert applied["Records per batch inference job for Claude 3 Haiku"]["Value"] == 1000
    assert applied["Records per batch inference job for Nova Lite V1"]["Value"] == 50_000
    assert all(q["Adjustable"] for q in applied.values())
    assert "Minimum number of records per batch inference job for Claude 3 Haiku" not in applied
    # AND the default list holds all six per model: the model's own value where it cannot be adjusted
    assert defaults["Minimum number of records per batch inference job for Claude 3 Haiku"]["Value"] == 200
    assert defaults["Records per batch inference job for Claude 3 Haiku"]["Value"] == 50_000
    assert defaults["Batch inference job size (in GB) for Claude 3 Haiku"]["Value"] == 5
    assert len([name for name in defaults if name.endswith(" for Claude 3 Haiku")]) == 6
    # AND every quota has its own L- code, in the ARN too
    codes = {q["QuotaCode"] for q in defaults.values()}
    assert len(codes) == len(defaults) and all(code.startswith("L-") for code in codes)
    quota = applied["Records per batch inference job for Claude 3 Haiku"]
    assert quota["QuotaArn"].endswith(f":bedrock/{quota['QuotaCode']}")


def test_preprocess_lookup_reads_the_models_quotas_from_the_emulator(
    service_quotas: BaseClient, state: EmulatorState
) -> None:
    # GIVEN Claude's quotas lowered in the emulator
    state.model_quotas[CLAUDE] = Quotas(max_records_per_job=1000, max_active_jobs_per_model=3)
    # WHEN the run's lookup reads them over HTTP, for the profile id
    quotas = lookup_batch_quotas(f"us.{CLAUDE}", service_quotas=service_quotas)
    # THEN the values are the emulator's, all from Service Quotas (the non-adjustable ones from the default list)
    assert quotas.defaults_used() == [] and quotas.note is None
    assert quotas.max_records_per_job.value == 1000 and quotas.max_concurrent_jobs.value == 3
    assert quotas.min_records_per_job.value == 100 and quotas.max_job_bytes.value == 5_000_000_000


def test_unknown_service_code_and_denied_access_are_modelled_errors(
    service_quotas: BaseClient, emulator: BedrockEmulator
) -> None:
    # GIVEN / WHEN another service's quotas are asked for THEN NoSuchResourceException
    with pytest.raises(service_quotas.exceptions.NoSuchResourceException):
        service_quotas.list_service_quotas(ServiceCode="ec2")
    # GIVEN a caller without permission / WHEN listing / THEN AccessDeniedException, parsed by botocore
    emulator.service_quotas.access_denied = True
    with pytest.raises(service_quotas.exceptions.AccessDeniedException) as error:
        service_quotas.list_aws_default_service_quotas(ServiceCode="bedrock")
    assert error_code(error) == "AccessDeniedException"
    # AND a bad page size is refused by the server's model validation
    emulator.service_quotas.access_denied = False
    with pytest.raises(service_quotas.exceptions.ClientError, match="MaxResults"):
        service_quotas.list_service_quotas(ServiceCode="bedrock", MaxResults=500)


def test_a_job_over_its_models_record_quota_fails_validation(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState
) -> None:
    # GIVEN Claude limited to 150 records per job and 120 per file, and 200 records for each model
    state.model_quotas[CLAUDE] = Quotas(max_records_per_job=150, max_records_per_file=120)
    uri = put_jsonl(s3, "inputs/200.jsonl", [claude_record(i) for i in range(200)])
    split = [
        put_jsonl(s3, f"inputs/split/part-{n}.jsonl", [claude_record(i) for i in range(n * 100, n * 100 + 100)])
        for n in range(2)
    ]
    # WHEN a Claude job (through its profile), a two-file Claude job and a Nova job run
    claude = run_to_end(bedrock, clock, create_job(bedrock, "claude-200", uri, model_id=f"us.{CLAUDE}"))
    two_files = run_to_end(bedrock, clock, create_job(bedrock, "claude-split", split[0].rsplit("/", 1)[0] + "/"))
    nova = run_to_end(bedrock, clock, create_job(bedrock, "nova-200", uri, model_id=NOVA))
    # THEN Claude's fail, naming the quota (the file one first), and the other model's job, under the defaults, runs
    assert claude["status"] == "Failed"
    assert "over the limit of 120 per file (quota: Records per input file per batch inference job)" in claude["message"]
    assert two_files["status"] == "Failed"
    assert "200 records, over the limit of 150 per job (quota: Records per batch inference job)" in two_files["message"]
    assert nova["status"] == "Completed" and nova["totalRecordCount"] == 200  # its records' format is not validated


def test_a_job_below_its_models_minimum_or_over_its_size_quota_fails_validation(
    bedrock: BaseClient, s3: BaseClient, clock: ManualClock, state: EmulatorState
) -> None:
    # GIVEN Claude with a minimum of 150 records, Titan with a 10 kB file size quota, and 120 records each
    state.model_quotas[CLAUDE] = Quotas(min_records_per_job=150)
    state.model_quotas[TITAN] = Quotas(max_file_bytes=10_000)
    records = put_jsonl(s3, "inputs/120.jsonl", [claude_record(i) for i in range(120)])
    # WHEN the jobs validate
    claude = run_to_end(bedrock, clock, create_job(bedrock, "claude-120", records))
    titan = run_to_end(bedrock, clock, create_job(bedrock, "titan-120", records, model_id=TITAN))
    # THEN each fails naming its quota
    assert claude["status"] == "Failed" and "below the minimum of 150 per job" in claude["message"]
    assert "(quota: Minimum number of records per batch inference job)" in claude["message"]
    assert titan["status"] == "Failed" and "over the limit of 10000 bytes per file" in titan["message"]


def test_the_models_own_job_quota_caps_its_jobs_in_flight(
    bedrock: BaseClient, s3: BaseClient, state: EmulatorState
) -> None:
    # GIVEN Claude limited to 2 jobs in flight (the default of 20 for others)
    state.model_quotas[CLAUDE] = Quotas(max_active_jobs_per_model=2)
    uri = put_jsonl(s3, "inputs/slots.jsonl", [claude_record(i) for i in range(100)])
    create_job(bedrock, "slot-1", uri)
    create_job(bedrock, "slot-2", uri)
    # WHEN a third Claude job is created THEN it is refused, while another model has room
    with pytest.raises(bedrock.exceptions.ServiceQuotaExceededException, match="the quota is 2"):
        create_job(bedrock, "slot-3", uri)
    assert create_job(bedrock, "titan-1", uri, model_id=TITAN)


def test_jobs_held_in_submitted_keep_their_slots_until_released_then_carry_on(
    bedrock: BaseClient, s3: BaseClient, state: EmulatorState, clock: ManualClock
) -> None:
    # GIVEN Claude limited to 2 jobs in flight and the emulator holding new jobs (the hook a test uses to make a
    # full quota certain), two jobs created while it holds
    state.model_quotas[CLAUDE] = Quotas(max_active_jobs_per_model=2)
    uri = put_jsonl(s3, "inputs/held.jsonl", [claude_record(i) for i in range(100)])
    state.hold_new_jobs()
    held = [create_job(bedrock, f"held-{i}", uri) for i in range(2)]
    # WHEN far more time passes than the jobs need
    clock.advance(3600)
    # THEN both are still Submitted and a third job is refused for the quota
    assert {bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] for arn in held} == {"Submitted"}
    with pytest.raises(bedrock.exceptions.ServiceQuotaExceededException, match="the quota is 2"):
        create_job(bedrock, "held-3", uri)
    # AND once released they carry on from Submitted to Completed, and later jobs are not held
    state.hold_new_jobs(False)
    assert [run_to_end(bedrock, clock, arn)["status"] for arn in held] == ["Completed", "Completed"]
    assert run_to_end(bedrock, clock, create_job(bedrock, "after", uri))["status"] == "Completed"
