"""The on-demand runner's pure parts, the cancel marker and what a cancel does to a job's rows (no AWS)."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lambdas.on_demand.logic import Backoff, answer_record, converse_request, is_retryable, output_keys
from lambdas.postprocess.logic import missing_reason
from lambdas.resubmit.logic import describe
from lambdas.resubmit.logic import is_retryable as resubmission_retries
from lambdas.shared.cancel import BATCH_CANCELLED, cancel_requested
from lambdas.shared.models import JobState

RECORD: dict[str, Any] = {
    "recordId": "00000000007",
    "modelInput": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
}


def job_state(**job: Any) -> JobState:
    run = {
        "run_id": "run-1",
        "bucket": "bucket",
        "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
        "family": "converse",
        "output_kind": "text",
        "invocation_type": "Converse",
        "job_name_prefix": "t",
        "total_records": 10,
        "num_jobs": 1,
        "records_key": "runs/run-1/records.parquet",
        "manifest_key": "runs/run-1/jobs.json",
    }
    spec = {"index": 3, "input_key": "runs/run-1/jobs/0003.jsonl", "first_row": 0, "record_count": 10, "size_bytes": 1}
    return JobState.model_validate({"run": run, "job": spec | job})


class FakeRuntime:
    """Answers Converse with the given outcomes in turn: a dict is the response, an exception is raised."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes: list[Any] = list(outcomes)
        self.requests: list[dict[str, Any]] = []

    def converse(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def service_error(code: str, status: int) -> ClientError:
    response = {"Error": {"Code": code, "Message": f"{code} says no"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "Converse")


ANSWER = {
    "output": {"message": {"role": "assistant", "content": [{"text": "hello"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
    "ResponseMetadata": {"HTTPStatusCode": 200},
}


def answer(runtime: FakeRuntime, attempts: int = 4) -> tuple[Any, list[float]]:
    waits: list[float] = []
    result = answer_record(
        runtime,
        "model",
        "Converse",
        RECORD,
        backoff=Backoff(attempts=attempts),
        sleep=waits.append,
        rng=random.Random(1),
    )
    return result, waits


def test_an_answer_is_the_record_plus_the_converse_response_without_the_sdks_metadata() -> None:
    # GIVEN a runtime that answers at once / WHEN a record is answered
    result, waits = answer(FakeRuntime(ANSWER))
    # THEN the line is Bedrock's output line: recordId, modelInput, modelOutput; with the response's tokens
    assert result.line == {**RECORD, "modelOutput": {k: v for k, v in ANSWER.items() if k != "ResponseMetadata"}}
    assert (result.input_tokens, result.output_tokens, waits) == (5, 2, [])


def test_throttling_and_5xx_are_retried_with_growing_capped_waits_then_answered() -> None:
    # GIVEN a runtime that throttles, then fails with a 500 and a connection error, then answers
    runtime = FakeRuntime(
        service_error("ThrottlingException", 429),
        service_error("InternalServerException", 500),
        EndpointConnectionError(endpoint_url="https://bedrock-runtime"),
        ANSWER,
    )
    # WHEN a record is answered
    result, waits = answer(runtime)
    # THEN it took four attempts, waiting (full jitter) at most 1, 2 and 4 seconds before the retries
    assert "modelOutput" in result.line and len(runtime.requests) == 4
    assert len(waits) == 3 and all(0 <= wait <= cap for wait, cap in zip(waits, (1, 2, 4), strict=True))


def test_a_lasting_failure_becomes_the_records_error_with_the_services_status_as_bedrock_writes_it() -> None:
    # GIVEN a runtime that keeps throttling / WHEN a record is answered with 3 attempts
    result, waits = answer(FakeRuntime(*[service_error("ThrottlingException", 429)] * 3), attempts=3)
    # THEN the line has an error object instead of modelOutput: errorCode the HTTP status, the exception named
    assert result.line == {
        **RECORD,
        "error": {
            "errorCode": 429,
            "errorMessage": "ThrottlingException: ThrottlingException says no (after 3 attempts)",
        },
    }
    assert result.failed and len(waits) == 2


def test_a_client_error_is_not_retried() -> None:
    # GIVEN a runtime refusing the request as invalid / WHEN answered / THEN one attempt, a 400 record error
    runtime = FakeRuntime(service_error("ValidationException", 400))
    result, waits = answer(runtime)
    assert result.line["error"]["errorCode"] == 400 and len(runtime.requests) == 1 and waits == []


@pytest.mark.parametrize(("status", "retried"), [(400, False), (403, False), (424, False), (408, True), (429, True)])
def test_the_runner_retries_exactly_what_resubmission_counts_as_retryable(status: int, retried: bool) -> None:
    # GIVEN an HTTP status of a record error / WHEN / THEN both agree on whether a retry may fix it
    assert is_retryable(status) is retried is resubmission_retries(str(status))
    assert is_retryable(503) and resubmission_retries("503")


def test_a_converse_record_is_sent_with_its_members_and_its_blobs_as_bytes() -> None:
    # GIVEN a Converse-type record with a system prompt, an inference config and an image as base64 text
    image = base64.b64encode(b"\x89PNG...").decode()
    content = [{"text": "what is it?"}, {"image": {"format": "png", "source": {"bytes": image}}}]
    model_input: dict[str, Any] = {"messages": [{"role": "user", "content": content}], "system": [{"text": "s"}]}
    model_input["inferenceConfig"] = {}
    # WHEN the request is built
    request = converse_request("model", model_input)
    # THEN it carries the record's members and the model, and the image's bytes decoded (the SDK encodes them)
    assert set(request) == {"modelId", "messages", "system", "inferenceConfig"}
    assert request["messages"][0]["content"][1]["image"]["source"]["bytes"] == b"\x89PNG..."
    assert model_input["messages"][0]["content"][1]["image"]["source"]["bytes"] == image  # the record is unchanged


@pytest.mark.parametrize("member", ["toolConfig", "guardrailConfig", "modelId"])
def test_a_converse_record_asking_for_a_member_the_runner_does_not_send_is_a_record_error(member: str) -> None:
    # GIVEN a record with a member the runner does not send (tools: batch Converse takes none; guardrails: no grant)
    record = {**RECORD, "modelInput": {**RECORD["modelInput"], member: {}}}
    runtime = FakeRuntime()
    # WHEN answered
    result = answer_record(
        runtime, "m", "Converse", record, backoff=Backoff(), sleep=lambda _: None, rng=random.Random()
    )
    # THEN nothing is sent, and the record's error names the member and the fix
    assert runtime.requests == []
    assert result.line["error"]["errorCode"] == 400 and member in result.line["error"]["errorMessage"]


def test_the_output_goes_where_a_batch_job_of_the_same_index_would_write_it() -> None:
    # GIVEN an on-demand job / WHEN / THEN <its output prefix>/<input file name>.out and manifest.json.out
    assert output_keys(job_state(on_demand=True)) == (
        "runs/run-1/bedrock-output/0003/0003.jsonl.out",
        "runs/run-1/bedrock-output/0003/manifest.json.out",
    )


class _Listing:
    """An S3 client that only lists (what the functions looking for a marker may do), with the listed keys."""

    def __init__(self, keys: dict[str, datetime]) -> None:
        self.keys = keys

    def list_objects_v2(self, Bucket: str, Prefix: str, MaxKeys: int) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        found = [{"Key": k, "LastModified": t} for k, t in sorted(self.keys.items()) if k.startswith(Prefix)]
        return {"Contents": found[:MaxKeys]} if found else {}


def test_a_marker_is_found_by_listing_and_its_time_is_when_it_was_written() -> None:
    # GIVEN a run with a cancel marker, a run without one, and a run whose key only starts like the marker's
    written = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    s3 = _Listing({"runs/r/cancel.json": written, "runs/other/cancel.json.bak": written})
    # WHEN each is looked up
    request = cancel_requested(s3, "bucket", "r")
    # THEN only the marker itself cancels, dated when it was written, and its reason says so
    assert request is not None and request.requested_at == written.isoformat()
    assert (
        request.reason().startswith("the run was cancelled at 2026-12-06") and "runs/r/cancel.json" in request.reason()
    )
    assert cancel_requested(s3, "bucket", "none") is None
    assert cancel_requested(s3, "bucket", "other") is None


def test_rows_a_cancel_left_without_a_result_get_batch_cancelled_whatever_stopped_them() -> None:
    # GIVEN a job Submit never submitted, a batch job Poll stopped, and an on-demand job that stopped taking records
    never = job_state().model_copy(update={"cancelled": True, "message": "the run was cancelled at T (k)"})
    stopped = job_state().model_copy(update={"cancelled": True, "job_arn": "arn:job", "status": "Stopped"})
    on_demand = job_state(on_demand=True).model_copy(update={"cancelled": True, "status": "Stopped"})
    # WHEN / THEN their rows without an output line are batch_cancelled, saying so
    assert missing_reason(never) == (BATCH_CANCELLED, "the run was cancelled at T (k)")
    assert missing_reason(stopped)[0] == missing_reason(on_demand)[0] == BATCH_CANCELLED
    assert "job arn:job stopped" in missing_reason(stopped)[1]
    assert "on-demand job stopped" in missing_reason(on_demand)[1]
    # AND batch_cancelled is not retryable, and a cancelled run's plan says why nothing is resubmitted
    assert not resubmission_retries(BATCH_CANCELLED)
    message = describe(enabled=True, retryable=120, resubmitted=0, not_retryable=5, job_count=0, cancelled=True)
    assert message.startswith("the run was cancelled: 120 retryable rows are reported, not resubmitted")


def test_an_on_demand_job_that_failed_is_an_orchestration_error_not_a_submit_failure() -> None:
    # GIVEN an on-demand job whose runner raised (caught into $.failure) / WHEN / THEN retryable ORCHESTRATION_ERROR
    failed = job_state(on_demand=True).model_copy(update={"failure": {"Error": "RuntimeError", "Cause": "boom"}})
    assert missing_reason(failed) == ("ORCHESTRATION_ERROR", "boom")
