import re

import pytest

from lambdas.shared import layout

JOB_NAME = re.compile(r"^[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}$")
TOKEN = re.compile(r"^[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}$")
S3_URI = re.compile(r"^s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](/[-!_*'().a-zA-Z0-9]+)*/?$")


@pytest.mark.parametrize(
    ("prefix", "execution"),
    [("jokes", "run-1"), ("my prefix+with=odd chars!", "Exec_Name With Spaces"), ("x" * 40, "e" * 80), ("---", "__")],
)
def test_job_names_and_paths_match_bedrock_patterns(prefix, execution):
    # GIVEN any prefix and execution name a user may choose
    run_id = layout.run_id_from_execution_name(execution)
    # WHEN job names, tokens and S3 URIs are derived THEN they match Bedrock's patterns and limits
    name = layout.job_name(prefix, run_id, 44)
    assert JOB_NAME.match(name) and len(name) <= 63
    assert TOKEN.match(layout.client_request_token(run_id, 44))
    assert S3_URI.match(f"s3://bucket-name/{layout.job_input_key(run_id, 44)}")
    assert S3_URI.match(f"s3://bucket-name/{layout.bedrock_output_prefix(run_id)}")


def test_sanitised_run_ids_stay_distinct():
    assert layout.run_id_from_execution_name("a_b") != layout.run_id_from_execution_name("a-b")


def test_token_is_deterministic_per_run_and_job():
    assert layout.client_request_token("r", 1) == layout.client_request_token("r", 1)
    assert layout.client_request_token("r", 1) != layout.client_request_token("r", 2)
    assert layout.client_request_token("r", 1) != layout.client_request_token("s", 1)


@pytest.mark.parametrize(("prefix", "execution"), [("jokes", "run-1"), ("x" * 40, "e" * 80)])
def test_resubmission_jobs_get_their_own_names_tokens_and_files(prefix, execution):
    # GIVEN planned job 3 and resubmission job 3 of the same run
    run_id = layout.run_id_from_execution_name(execution)
    # WHEN their names, tokens and keys are derived
    names = {layout.job_name(prefix, run_id, 3), layout.job_name(prefix, run_id, 3, resubmission=True)}
    tokens = {layout.client_request_token(run_id, 3), layout.client_request_token(run_id, 3, resubmission=True)}
    keys = {layout.job_input_key(run_id, 3), layout.job_input_key(run_id, 3, resubmission=True)}
    # THEN none is shared (a resubmission is a new job, never a repeat Bedrock would ignore), all match Bedrock's
    # patterns, and the resubmission's files live under runs/<run>/retry/
    assert len(names) == len(tokens) == len(keys) == 2
    retry_name = layout.job_name(prefix, run_id, 3, resubmission=True)
    assert JOB_NAME.match(retry_name) and len(retry_name) <= 63 and retry_name.endswith("-r0003")
    assert TOKEN.match(layout.client_request_token(run_id, 3, resubmission=True))
    assert S3_URI.match(f"s3://bucket-name/{layout.job_input_key(run_id, 3, resubmission=True)}")
    assert layout.job_input_key(run_id, 3, resubmission=True) == f"runs/{run_id}/retry/jobs/0003.jsonl"
    assert layout.manifest_key(run_id, resubmission=True) == f"runs/{run_id}/retry/jobs.json"
    assert layout.output_key(run_id, 3, resubmission=True) == f"runs/{run_id}/retry/output/0003.parquet"
    assert layout.result_key(run_id, 3, resubmission=True) == f"runs/{run_id}/retry/results/0003.json"
