"""On-demand jobs and cancel, handler by handler, on moto S3 and the emulator over HTTP: a run of fewer rows than a
batch job takes is answered through the runtime (InvokeModel or Converse) in Bedrock's batch output format, across
several invocations when Lambda's time runs low, and Postprocess and Finalize read it unchanged; a cancel marker stops
Submit, Poll and the runner, and every row still ends with a result or an error."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.finalize import handler as finalize_handler
from lambdas.on_demand import handler as on_demand_handler
from lambdas.on_demand import logic as on_demand
from lambdas.poll_job import handler as poll_handler
from lambdas.postprocess import handler as postprocess_handler
from lambdas.preprocess import handler as preprocess_handler
from lambdas.resubmit import handler as resubmit_handler
from lambdas.shared import aws, layout
from lambdas.shared.models import JobState
from lambdas.submit_job import handler as submit_handler
from local.emulator import ManualClock
from tests.functional.conftest import BUCKET
from tests.prepared_records import execution_input, interleaved, jsonl

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
JOKES = {"model_id": CLAUDE, "prompt_id": "joke_about_topic"}
PREPARED_KEY = "openai/batches/batch_od/prepared.jsonl"


@dataclass
class Context:
    """A Lambda context whose remaining time is plenty for ``calls`` reads, then below the runner's margin: the
    invocation 'runs out of time' after a fixed number of records, without any clock."""

    calls: int = 10**9
    function_name: str = "run-on-demand"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:run-on-demand"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"
    reads: list[int] = field(default_factory=list)

    def get_remaining_time_in_millis(self) -> int:
        self.reads.append(1)
        return 900_000 if len(self.reads) <= self.calls else 1_000


def stage_run(s3: Any, rows: int, name: str = "small", **execution_input: Any) -> dict[str, Any]:
    """A run of ``rows`` topics preprocessed as the state machine would: the state of its first job."""
    buffer = io.BytesIO()
    pq.write_table(pa.table({"topic": [f"topic {i}" for i in range(rows)]}), buffer)
    s3.put_object(Bucket=BUCKET, Key=f"inputs/{name}.parquet", Body=buffer.getvalue())
    event = {"input": {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/{name}.parquet", **execution_input}}
    run = preprocess_handler.lambda_handler(event | {"execution_name": name}, Context())
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run["manifest_key"])["Body"].read())
    return {"run": run, "job": manifest[0]}


def out_lines(s3: Any, state: dict[str, Any]) -> list[dict[str, Any]]:
    key, _manifest = on_demand.output_keys(JobState.model_validate(state))
    return [json.loads(line) for line in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()]


def output_table(s3: Any, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def cancel(s3: Any, run_id: str) -> None:
    body = json.dumps({"requested_at": "2026-12-06T12:00:00+00:00"}).encode()
    s3.put_object(Bucket=BUCKET, Key=layout.cancel_key(run_id), Body=body)


def test_an_on_demand_job_writes_bedrocks_batch_output_that_postprocess_and_finalize_read_unchanged(s3, emulator):
    # GIVEN a run of 30 rows: one on-demand job
    state = stage_run(s3, 30)
    assert state["job"]["on_demand"] is True
    # WHEN the runner answers it, then Postprocess and Finalize run
    done = on_demand_handler.lambda_handler(state, Context())
    result = postprocess_handler.lambda_handler(done, Context())
    summary = finalize_handler.lambda_handler({"run": state["run"]}, Context())
    # THEN the job is done in one invocation, and no batch job was created
    assert (done["terminal"], done["status"], done["job_arn"]) == (True, "Completed", None)
    assert emulator.jobs_created_per_model() == {}
    # AND its output is Bedrock's: <input name>.out, one line per record with recordId, modelInput and modelOutput
    key, manifest_key = on_demand.output_keys(JobState.model_validate(done))
    assert key == "runs/small/bedrock-output/0000/0000.jsonl.out"
    lines = out_lines(s3, state)
    inputs = [
        json.loads(line) for line in s3.get_object(Bucket=BUCKET, Key=state["job"]["input_key"])["Body"].iter_lines()
    ]
    assert [line["recordId"] for line in lines] == [record["recordId"] for record in inputs]
    assert all(set(line) == {"recordId", "modelInput", "modelOutput"} for line in lines)
    assert [line["modelInput"] for line in lines] == [record["modelInput"] for record in inputs]
    assert lines[0]["modelOutput"]["content"][0]["type"] == "text"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
    assert (manifest["totalRecordCount"], manifest["processedRecordCount"], manifest["errorRecordCount"]) == (30, 30, 0)
    assert manifest["inputTokenCount"] > 0 and manifest["outputTokenCount"] > 0
    # AND Postprocess gives every row its answer, with the tokens of the manifest, marked on demand
    table = output_table(s3, result["output_key"])
    assert table.column("topic").to_pylist() == [f"topic {i}" for i in range(30)]
    assert table.column("error_code").null_count == 30 and table.column("response").null_count == 0
    assert (result["succeeded"], result["on_demand"], result["input_tokens"]) == (30, True, manifest["inputTokenCount"])
    # AND the summary counts the on-demand records and prices them at the on-demand rate
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=summary["summary_key"])["Body"].read())
    assert summary["complete"] is True and stored["on_demand_records"] == 30
    assert stored["estimated_cost"]["jobs"][0]["on_demand"] is True
    assert "on-demand prices (no batch discount)" in stored["estimated_cost"]["message"]


def test_a_converse_type_run_sends_each_record_as_a_converse_request(s3, emulator):
    # GIVEN a Converse-type run of 12 rows
    state = stage_run(s3, 12, "converse", invocation_type="Converse")
    # WHEN the runner answers it and Postprocess reads it
    done = on_demand_handler.lambda_handler(state, Context())
    result = postprocess_handler.lambda_handler(done, Context())
    # THEN each modelOutput is the Converse response (as a Converse batch job writes it) and every row is answered
    lines = out_lines(s3, state)
    assert len(lines) == 12
    assert all(line["modelOutput"]["output"]["message"]["role"] == "assistant" for line in lines)
    assert "ResponseMetadata" not in lines[0]["modelOutput"]
    assert result["succeeded"] == 12 and result["input_tokens"] > 0


def test_a_job_longer_than_one_invocation_continues_where_the_last_one_wrote(s3, emulator, monkeypatch):
    # GIVEN a job of 40 records, one record at a time, and invocations whose time runs low after a few records
    monkeypatch.setenv("ON_DEMAND_CONCURRENCY", "1")
    state = stage_run(s3, 40, "long")
    invocations = []
    # WHEN the state machine's loop calls the runner until it says the job is done
    while not state.get("terminal"):
        state = on_demand_handler.lambda_handler(state, Context(calls=15))
        invocations.append(state["counters"]["processedRecordCount"])
    # THEN it took several invocations, each one taking records while it had time and writing them
    assert invocations == [15, 30, 40]
    # AND every record is in the output exactly once, none twice, none lost
    ids = [line["recordId"] for line in out_lines(s3, state)]
    assert sorted(ids) == [f"{row:011d}" for row in range(40)] and len(set(ids)) == 40
    assert state["status"] == "Completed"


def test_an_invocation_that_cannot_take_a_single_record_fails_instead_of_looping(s3, emulator):
    # GIVEN a job and an invocation with less time left than one record needs
    state = stage_run(s3, 5, "no-time")
    # WHEN / THEN the runner raises (the state machine sends the job to postprocessing) rather than return unchanged
    with pytest.raises(RuntimeError, match="no record could be answered in this invocation"):
        on_demand_handler.lambda_handler(state, Context(calls=0))


def test_throttling_is_retried_and_lasting_errors_become_record_errors_with_the_services_code(s3, emulator):
    # GIVEN a job of 6 records, a runtime that throttles the next 4 calls and refuses one record's request as invalid
    state = stage_run(s3, 6, "faults")
    emulator.state.faults["runtime_throttle"] = 4
    line_key = state["job"]["input_key"]
    records = s3.get_object(Bucket=BUCKET, Key=line_key)["Body"].read().splitlines()
    bad = json.loads(records[2])
    bad["modelInput"]["max_tokens"] = 0  # below the model's minimum: a 400 the service gives every time
    records[2] = json.dumps(bad).encode()
    s3.put_object(Bucket=BUCKET, Key=line_key, Body=b"\n".join(records) + b"\n")
    # WHEN the runner answers it (backoff waits skipped: the waits are not what is tested)
    done = on_demand.run_on_demand(
        JobState.model_validate(state),
        runtime=aws.bedrock_runtime(),
        s3=aws.s3(),
        concurrency=2,
        remaining_ms=lambda: 900_000,
        sleep=lambda _seconds: None,
    )
    # THEN the throttled calls were retried until they passed: five records answered
    assert emulator.state.faults_injected()["runtime_throttle"] == 4
    lines = {line["recordId"]: line for line in out_lines(s3, state)}
    assert len(lines) == 6 and sum("modelOutput" in line for line in lines.values()) == 5
    # AND the invalid record has Bedrock's record error: the HTTP status as errorCode, the exception in the message
    error = lines[f"{2:011d}"]["error"]
    assert error["errorCode"] == 400 and error["errorMessage"].startswith("ValidationException: ")
    assert done.counters["errorRecordCount"] == 1


def test_a_runtime_that_keeps_failing_gives_each_record_a_retryable_error_never_a_lost_row(s3, emulator):
    # GIVEN a job of 3 records and a runtime that answers every call with ServiceUnavailableException
    state = stage_run(s3, 3, "down")
    emulator.state.faults["runtime_error"] = "ServiceUnavailableException:1000"
    # WHEN the runner answers it
    on_demand.run_on_demand(
        JobState.model_validate(state),
        runtime=aws.bedrock_runtime(),
        s3=aws.s3(),
        concurrency=3,
        remaining_ms=lambda: 900_000,
        sleep=lambda _seconds: None,
        backoff=on_demand.Backoff(attempts=3),
    )
    # THEN each record was tried 3 times and ends with the service's 503, which resubmission counts as retryable
    assert emulator.state.faults_injected()["runtime_error"] == 9
    errors = [line["error"] for line in out_lines(s3, state)]
    assert [error["errorCode"] for error in errors] == [503, 503, 503]
    assert all("(after 3 attempts)" in error["errorMessage"] for error in errors)


# ---------------------------------------------------------------- cancel


def test_a_cancelled_runner_takes_no_more_records_and_the_rest_end_batch_cancelled(s3, emulator, monkeypatch):
    # GIVEN an on-demand job of 10 records, two at a time, in a run cancelled while its first records are answered
    monkeypatch.setenv("ON_DEMAND_CONCURRENCY", "2")
    state = stage_run(s3, 10, "cancel-od")
    answered: list[str] = []
    sent: set[bytes] = set()

    def note_request(params: dict[str, Any], **_: Any) -> None:
        sent.add(bytes(params["body"]))  # a retried call sends the same body again: one record, one entry

    writing = threading.Lock()

    def cancel_after_first_record(event_name: str, **_: Any) -> None:
        # the lock holds every other answer until the marker is written, so no record can finish (and let the runner
        # take the next one) between the first answer and the write, however slow the write is
        with writing:
            answered.append(event_name)
            if len(answered) == 1:
                cancel(s3, "cancel-od")

    runtime = aws.bedrock_runtime()
    runtime.meta.events.register("before-call.bedrock-runtime.InvokeModel", note_request)
    runtime.meta.events.register("after-call.bedrock-runtime.InvokeModel", cancel_after_first_record)
    # WHEN the runner runs, then Postprocess
    done = on_demand_handler.lambda_handler(state, Context())
    result = postprocess_handler.lambda_handler(done, Context())
    # THEN the two records taken before the cancel are answered and written, and no other record was sent (however
    # often a slow emulator made a call retry)
    assert [line["recordId"] for line in out_lines(s3, state)] == [f"{i:011d}" for i in (0, 1)]
    assert len(sent) == 2
    assert (done["terminal"], done["cancelled"], done["status"]) == (True, True, "Stopped")
    # AND Postprocess delivers them and gives the 8 others batch_cancelled, naming the cancel
    table = output_table(s3, result["output_key"])
    assert table.column("error_code").to_pylist() == [None, None] + ["batch_cancelled"] * 8
    assert "the run was cancelled" in table.column("error_message")[2].as_py()
    assert result["error_counts"] == {"batch_cancelled": 8}


def staged_batch_job(s3: Any, name: str, rows: int = 120) -> dict[str, Any]:
    state = stage_run(s3, rows, name)
    assert state["job"].get("on_demand", False) is False
    return state


def test_submit_in_a_cancelled_run_creates_no_job_and_its_rows_end_batch_cancelled(s3, emulator):
    # GIVEN a batch job of a run whose cancel marker is written
    state = staged_batch_job(s3, "cancel-submit")
    cancel(s3, "cancel-submit")
    # WHEN Submit runs, then (as the state machine routes a cancelled state) Postprocess
    out = submit_handler.lambda_handler(state, Context())
    result = postprocess_handler.lambda_handler(out, Context())
    # THEN no job was created, and every row has batch_cancelled with a message saying the run was cancelled
    assert emulator.jobs_created_per_model() == {}
    assert (out["cancelled"], out["terminal"], out["job_arn"], out["status"]) == (True, True, None, "Cancelled")
    table = output_table(s3, result["output_key"])
    assert table.column("error_code").to_pylist() == ["batch_cancelled"] * 120
    # the marker's time is when it was written (S3's LastModified), not what it says: its presence is the request
    assert table.column("error_message")[0].as_py().startswith("the run was cancelled at 20")
    # AND a run that is not cancelled submits as before
    other = submit_handler.lambda_handler(staged_batch_job(s3, "not-cancelled"), Context())
    assert other["job_arn"] and other["cancelled"] is False


def test_poll_stops_a_running_job_of_a_cancelled_run_and_its_processed_records_are_delivered(s3, emulator):
    # GIVEN a batch job of 120 records in progress (statuses 1 s each on a clock moved by hand)
    clock = ManualClock(datetime.now(UTC))  # Poll compares the job's deadline with the real time
    emulator.state.clock, emulator.state.step_seconds = clock, 1
    state = staged_batch_job(s3, "cancel-poll")
    state = submit_handler.lambda_handler(state, Context())
    clock.advance(3)
    state = poll_handler.lambda_handler(state, Context())
    assert state["status"] == "InProgress"
    # WHEN the run is cancelled, and Poll runs until the job is terminal
    cancel(s3, "cancel-poll")
    polls = []
    while not state["terminal"]:
        state = poll_handler.lambda_handler(state, Context())
        polls.append(state["status"])
        clock.advance(1)
    # THEN the first poll asked Bedrock to stop it (StopModelInvocationJob; the status it read before was InProgress),
    # and the next ones followed it through Stopping to Stopped
    assert polls == ["InProgress", "Stopping", "Stopped"]
    assert state["cancelled"] is True and state["stop_requested_at"]
    assert [job["status"] for job in emulator.jobs()] == ["Stopped"]
    # AND Postprocess delivers the 60 records the job processed before the stop, the other 60 are batch_cancelled
    result = postprocess_handler.lambda_handler(state, Context())
    codes = output_table(s3, result["output_key"]).column("error_code").to_pylist()
    assert codes == [None] * 60 + ["batch_cancelled"] * 60
    assert result["succeeded"] == 60 and result["input_tokens"] > 0


def test_a_cancelled_run_resubmits_nothing(s3, emulator):
    # GIVEN a batch job of a cancelled run, never submitted (its 120 rows end batch_cancelled)
    state = staged_batch_job(s3, "cancel-resubmit")
    cancel(s3, "cancel-resubmit")
    postprocess_handler.lambda_handler(submit_handler.lambda_handler(state, Context()), Context())
    # WHEN resubmission is planned
    execution_input = {**JOKES, "s3_uri": f"s3://{BUCKET}/inputs/cancel-resubmit.parquet"}
    plan = resubmit_handler.lambda_handler({"run": state["run"], "execution_input": execution_input}, Context())
    # THEN no row is resubmitted: batch_cancelled is not an error a retry fixes
    assert (plan["job_count"], plan["rows_retryable"], plan["rows_not_retryable"]) == (0, 0, 120)


# ---------------------------------------------------------------- prepared runs (several models)


def test_a_prepared_runs_small_groups_run_on_demand_each_with_its_own_model(s3, emulator):
    # GIVEN a prepared run (as the gateway writes it) of 150 Claude 3.5 Haiku records and 7 Titan embeddings: the
    # Claude group is a batch job, the Titan group (under 100) one on-demand job
    s3.put_object(Bucket=BUCKET, Key=PREPARED_KEY, Body=jsonl(interleaved({"claude-haiku": 150, "titan-embed": 7})))
    execution = execution_input(f"s3://{BUCKET}/{PREPARED_KEY}", models=["claude-haiku", "titan-embed"])
    run = preprocess_handler.lambda_handler({"input": execution, "execution_name": "batch_od"}, Context())
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=run["manifest_key"])["Body"].read())
    (titan_job,) = [job for job in manifest if job["on_demand"]]
    assert titan_job["model"] == "titan-embed" and titan_job["record_count"] == 7
    # WHEN the runner answers the on-demand job and Postprocess reads it
    done = on_demand_handler.lambda_handler({"run": run, "job": titan_job}, Context())
    result = postprocess_handler.lambda_handler(done, Context())
    # THEN each record went to Titan with InvokeModel (its modelInput as the body), no batch job was created for it,
    # and the output keeps each record's modelOutput as the runtime answered it, with Titan's input tokens counted
    assert emulator.jobs_created_per_model() == {}
    table = output_table(s3, result["output_key"])
    outputs = [json.loads(text) for text in table.column("model_output").to_pylist()]
    assert len(outputs) == 7 and all(len(output["embedding"]) > 0 for output in outputs)
    assert table.column("custom_id").to_pylist() == [f"req-{2 * i + 2}" for i in range(7)]  # Titan's, in order
    assert (result["model"], result["on_demand"], result["succeeded"]) == ("titan-embed", True, 7)
    assert result["input_tokens"] == sum(output["inputTextTokenCount"] for output in outputs) > 0
