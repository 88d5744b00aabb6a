"""The Batch API routes over HTTP with the openai SDK (the app in-process), against a moto server for S3 and Step
Functions (the app's aiobotocore clients reach it through boto's standard endpoint variables).

The run itself is not executed here (moto keeps the execution RUNNING): each test writes what the orchestrator would
(``jobs.json``, results, ``summary.json``, the output Parquet) and, for an ended run, sets the execution's status in
moto, as a test sets a job's status in the emulator. The whole flow over the local runtime is
``tests/functional/gateway/test_batch_flow.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import boto3
import httpx
import openai
import pytest
from fastapi import FastAPI

from lambdas.gateway.app import create_app
from lambdas.gateway.batch_records import cancel_key, prepared_key, run_id
from lambdas.gateway.batch_store import FILES, _metadata, newest_first_hex
from lambdas.gateway.config import GatewaySettings
from lambdas.shared import layout
from local.key_table import moto_server
from tests.functional.gateway.conftest import KEY, TEAM_KEY, openai_client

pytestmark = pytest.mark.anyio
REGION = "us-east-1"
ACCOUNT = "123456789012"
BOT = "claude-3-haiku"  # a chat bot of the default key


@dataclass
class BatchAws:
    endpoint: str
    bucket: str  # each test's own: moto servers of one process share their state
    s3: Any
    sfn: Any
    state_machine_arn: str

    def upload(
        self, lines: list[dict[str, Any]] | list[str], owner: str = "key:default", purpose: str = "batch"
    ) -> str:
        """An input file as the Files API stores it (``lambdas.gateway.batch_store``); its id."""
        file_id = f"file-{newest_first_hex()}"
        body = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
        self.s3.put_object(
            Bucket=self.bucket, Key=FILES + file_id, Body=body, Metadata=_metadata(owner, "in.jsonl", purpose, 0)
        )
        return file_id

    def json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def keys(self, prefix: str) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])]

    def end_execution(self, batch_id: str, status: str = "SUCCEEDED") -> None:
        """The execution ended (moto's own model of it: no run is executed here)."""
        from moto.stepfunctions.models import stepfunctions_backends

        arn = self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{batch_id}"
        execution = stepfunctions_backends[ACCOUNT][REGION].describe_execution(arn)
        execution.status = status
        execution.stop_date = datetime.now(UTC)


def chat_line(custom_id: str, text: str = "hello", model: str = BOT) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 50}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the module: moto servers of one process share their state anyway, so what keeps the tests
    apart is each one's own bucket and state machine (``batch_aws``); a server per test only added its stop, which
    waits up to half a second for werkzeug's serving loop."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def batch_aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> BatchAws:
    endpoint, bucket = moto_endpoint, f"batch-{uuid.uuid4().hex[:12]}"  # a bucket and a state machine of its own
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", endpoint)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    sfn = boto3.client("stepfunctions", region_name=REGION, endpoint_url=endpoint)
    definition = json.dumps({"StartAt": "Run", "States": {"Run": {"Type": "Pass", "End": True}}})
    arn = sfn.create_state_machine(
        name=f"BatchInference{uuid.uuid4().hex[:8]}",
        definition=definition,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
    )["stateMachineArn"]
    return BatchAws(endpoint, bucket, s3, sfn, arn)


@pytest.fixture
async def batch_app(emulator: Any, settings: GatewaySettings, batch_aws: BatchAws) -> AsyncIterator[FastAPI]:
    configured = replace(
        settings,
        batch_bucket=batch_aws.bucket,
        batch_region=REGION,
        batch_state_machine_arn=batch_aws.state_machine_arn,
    )
    application = create_app(configured)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def sdk(batch_app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(batch_app, KEY) as client:
        yield client


async def test_create_prepares_the_input_and_starts_one_run_named_by_the_batch(
    sdk: openai.AsyncOpenAI, batch_aws: BatchAws
) -> None:
    # GIVEN an input file of three chat requests (the last line ends with a newline)
    file_id = batch_aws.upload([chat_line(f"req-{i}", f"question {i}") for i in range(3)])
    # WHEN a batch is created with the SDK
    batch = await sdk.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"team": "a"}
    )
    # THEN it is in progress, counts three requests and keeps its metadata
    assert batch.status == "in_progress" and batch.id.startswith("batch_")
    assert batch.request_counts is not None and batch.request_counts.total == 3
    assert batch.metadata == {"team": "a"} and batch.input_file_id == file_id
    # AND the prepared input holds one record a request, in order, as the orchestrator reads it
    prepared = batch_aws.s3.get_object(Bucket=batch_aws.bucket, Key=prepared_key(batch.id))["Body"].read().decode()
    records = [json.loads(line) for line in prepared.splitlines()]
    assert [(r["custom_id"], r["line"], r["model"]) for r in records] == [(f"req-{i}", i + 1, BOT) for i in range(3)]
    assert records[0]["model_input"]["messages"][0]["content"][0]["text"] == "question 0"
    # AND one execution of the state machine, named by the batch id, on the prepared input
    (execution,) = batch_aws.sfn.list_executions(stateMachineArn=batch_aws.state_machine_arn)["executions"]
    assert execution["name"] == batch.id
    started = json.loads(batch_aws.sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started["input_format"] == "prepared"
    assert started["s3_uri"] == f"s3://{batch_aws.bucket}/{prepared_key(batch.id)}"
    assert started["models"] == {
        BOT: {
            "model_id": "anthropic.claude-3-haiku-20240307-v1:0",
            "invocation_type": "Converse",
            "model_family": None,
            "output_kind": "text",
        }
    }


async def test_a_bad_line_fails_the_batch_before_anything_runs(sdk: openai.AsyncOpenAI, batch_aws: BatchAws) -> None:
    # GIVEN a file whose second line is not JSON and whose third repeats a custom_id
    file_id = batch_aws.upload([json.dumps(chat_line("a")), "{not json", json.dumps(chat_line("a"))])
    # WHEN the batch is created
    batch = await sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    # THEN it answers the failed batch with each bad line (OpenAI's behaviour), and nothing started
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data is not None
    assert [e.line for e in batch.errors.data] == [2, 3]
    assert all(e.message for e in batch.errors.data)
    assert batch_aws.sfn.list_executions(stateMachineArn=batch_aws.state_machine_arn)["executions"] == []
    assert batch_aws.keys(prepared_key(batch.id)) == []
    # AND it stays failed when read again
    assert (await sdk.batches.retrieve(batch.id)).status == "failed"


async def test_a_refused_start_leaves_a_failed_batch_and_no_prepared_input(
    emulator: Any, settings: GatewaySettings, batch_aws: BatchAws
) -> None:
    # GIVEN a gateway told a state machine that does not exist (StartExecution refuses)
    missing = batch_aws.state_machine_arn + "Gone"
    application = create_app(
        replace(settings, batch_bucket=batch_aws.bucket, batch_region=REGION, batch_state_machine_arn=missing)
    )
    file_id = batch_aws.upload([chat_line("a")])
    async with application.router.lifespan_context(application), openai_client(application, KEY) as sdk:
        # WHEN a batch is created
        batch = await sdk.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        # THEN it failed, saying why, and no half-started batch is left
        assert batch.status == "failed" and batch.errors is not None and batch.errors.data is not None
        (error,) = batch.errors.data
        assert error.code == "batch_start_failed" and "StateMachineDoesNotExist" in str(error.message)
        assert batch_aws.keys(prepared_key(batch.id)) == []
        assert (await sdk.batches.retrieve(batch.id)).status == "failed"


async def test_status_follows_the_run_and_the_output_files_are_written_once(
    sdk: openai.AsyncOpenAI, batch_aws: BatchAws
) -> None:
    # GIVEN a started batch of three requests, whose run planned one job
    file_id = batch_aws.upload([chat_line(f"req-{i}") for i in range(3)])
    batch = await sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    run = run_id(batch.id)
    s3 = batch_aws.s3
    s3.put_object(Bucket=batch_aws.bucket, Key=layout.manifest_key(run), Body=json.dumps([{"index": 0}]))
    assert (await sdk.batches.retrieve(batch.id)).status == "in_progress"
    # WHEN the job's result is written
    result = {"succeeded": 2, "failed": 1, "input_tokens": 30, "output_tokens": 12}
    s3.put_object(Bucket=batch_aws.bucket, Key=layout.result_key(run, 0), Body=json.dumps(result))
    finalizing = await sdk.batches.retrieve(batch.id)
    # THEN the batch is finalizing with the job's counts and tokens
    assert finalizing.status == "finalizing" and finalizing.request_counts is not None
    assert (finalizing.request_counts.completed, finalizing.request_counts.failed) == (2, 1)
    assert finalizing.usage is not None and finalizing.usage.total_tokens == 42
    # WHEN the run ends: its output Parquet (two answers, one error) and summary, the execution succeeded
    _write_output(s3, batch_aws.bucket, run)
    batch_aws.end_execution(batch.id)
    done = await sdk.batches.retrieve(batch.id)
    # THEN it completed and names its output and error files
    assert done.status == "completed" and done.completed_at is not None
    assert done.request_counts is not None and done.request_counts.completed + done.request_counts.failed == 3
    assert done.output_file_id == f"file-{batch.id}-output" and done.error_file_id == f"file-{batch.id}-errors"
    # AND every input custom_id is in exactly one of the two files
    output = _lines(s3, batch_aws.bucket, f"openai/batches/{batch.id}/output.jsonl")
    errors = _lines(s3, batch_aws.bucket, f"openai/batches/{batch.id}/errors.jsonl")
    assert sorted(line["custom_id"] for line in output + errors) == ["req-0", "req-1", "req-2"]
    assert [line["custom_id"] for line in errors] == ["req-2"] and errors[0]["error"]["code"] == "ValidationException"
    answer = output[0]["response"]["body"]
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == "answer req-0"
    # AND the files carry the Files API's metadata (owner, purpose batch_output)
    head = s3.head_object(Bucket=batch_aws.bucket, Key=f"openai/batches/{batch.id}/output.jsonl")
    assert unquote(head["Metadata"]["owner"]) == "key:default" and head["Metadata"]["purpose"] == "batch_output"
    # AND reading the batch again writes nothing new
    written = head["LastModified"]
    await sdk.batches.retrieve(batch.id)
    assert (
        s3.head_object(Bucket=batch_aws.bucket, Key=f"openai/batches/{batch.id}/output.jsonl")["LastModified"]
        == written
    )


async def test_cancel_writes_the_marker_and_answers_cancelling(sdk: openai.AsyncOpenAI, batch_aws: BatchAws) -> None:
    # GIVEN a running batch
    file_id = batch_aws.upload([chat_line("a")])
    batch = await sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    # WHEN it is cancelled
    cancelled = await sdk.batches.cancel(batch.id)
    # THEN the marker the run honours is written and the batch is cancelling
    assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
    assert "requested_at" in batch_aws.json(cancel_key(batch.id))
    # AND once the run ended it is cancelled; cancelling it again changes nothing
    batch_aws.s3.put_object(
        Bucket=batch_aws.bucket,
        Key=layout.summary_key(run_id(batch.id)),
        Body=json.dumps({"succeeded": 0, "failed": 1, "output_files": [], "output_row_files": []}),
    )
    batch_aws.end_execution(batch.id)
    assert (await sdk.batches.cancel(batch.id)).status == "cancelled"


async def test_an_ended_batch_cannot_be_cancelled(sdk: openai.AsyncOpenAI, batch_aws: BatchAws) -> None:
    # GIVEN a batch that failed validation
    file_id = batch_aws.upload(["{broken"])
    batch = await sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    # WHEN it is cancelled / THEN a 409 says why
    with pytest.raises(openai.ConflictError, match="only a batch in progress or finalizing can be cancelled"):
        await sdk.batches.cancel(batch.id)


async def test_a_key_sees_and_cancels_only_its_own_batches(batch_app: FastAPI, batch_aws: BatchAws) -> None:
    # GIVEN three batches of the default key and one of the team key (nova-micro is that key's bot)
    async with openai_client(batch_app, KEY) as mine, openai_client(batch_app, TEAM_KEY) as theirs:
        own = []
        for i in range(3):
            file_id = batch_aws.upload([chat_line(f"r{i}")])
            own.append(
                await mine.batches.create(
                    input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
                )
            )
        other_file = batch_aws.upload([chat_line("t", model="nova-micro")], owner="key:team")
        other = await theirs.batches.create(
            input_file_id=other_file, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert other.status == "in_progress"
        # WHEN the default key lists, reads and cancels
        page = await mine.batches.list(limit=2)
        rest = await mine.batches.list(limit=2, after=page.data[-1].id)
        # THEN it sees its own batches, newest first, in pages
        assert [b.id for b in page.data] == [own[2].id, own[1].id] and page.has_more
        assert [b.id for b in rest.data] == [own[0].id] and not rest.has_more
        # AND another key's batch (and its input file) are not found
        with pytest.raises(openai.NotFoundError):
            await mine.batches.retrieve(other.id)
        with pytest.raises(openai.NotFoundError):
            await mine.batches.cancel(other.id)
        with pytest.raises(openai.NotFoundError):
            await mine.batches.create(
                input_file_id=other_file, endpoint="/v1/chat/completions", completion_window="24h"
            )
        assert batch_aws.keys(cancel_key(other.id)) == []


async def test_a_line_naming_a_bot_of_another_key_is_refused(sdk: openai.AsyncOpenAI, batch_aws: BatchAws) -> None:
    # GIVEN a line asking nova-micro, a bot of the team key only
    file_id = batch_aws.upload([chat_line("a", model="nova-micro")])
    # WHEN the default key creates the batch / THEN it fails naming line 1 and nothing runs
    batch = await sdk.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data is not None
    assert [e.line for e in batch.errors.data] == [1]
    assert batch_aws.sfn.list_executions(stateMachineArn=batch_aws.state_machine_arn)["executions"] == []


@pytest.fixture
async def small_context_sdk(
    emulator: Any, settings: GatewaySettings, batch_aws: BatchAws
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK on a gateway whose claude-3-haiku (CountTokens) and llama-3.1-8b (the estimate) take 40 tokens."""
    bots = dict(settings.bots)
    for name in ("claude-3-haiku", "llama-3.1-8b"):
        bots[name] = bots[name].model_copy(update={"context_tokens": 40})
    configured = replace(
        settings,
        bots=bots,
        batch_bucket=batch_aws.bucket,
        batch_region=REGION,
        batch_state_machine_arn=batch_aws.state_machine_arn,
    )
    application = create_app(configured)
    async with application.router.lifespan_context(application), openai_client(application, KEY) as client:
        yield client


async def test_a_line_over_its_bots_context_fails_the_batch_as_the_synchronous_route_refuses_it(
    small_context_sdk: openai.AsyncOpenAI, batch_aws: BatchAws, emulator: Any
) -> None:
    # GIVEN lines within and over 40 tokens, for a bot counted with CountTokens and a bot counted by the estimate
    long = " ".join(["word"] * 60)  # 60 words for the emulator's CountTokens, 75 tokens for the estimate
    file_id = batch_aws.upload(
        [
            chat_line("short", "hello"),
            chat_line("long", long),
            chat_line("short-llama", "hello", model="llama-3.1-8b"),
            chat_line("long-llama", long, model="llama-3.1-8b"),
        ]
    )
    # WHEN the batch is created
    batch = await small_context_sdk.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    # THEN it fails naming lines 2 and 4 with the synchronous route's code, its count and the fix; nothing runs
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data is not None
    assert [(e.line, e.code, e.param) for e in batch.errors.data] == [
        (2, "context_length_exceeded", "body.messages"),
        (4, "context_length_exceeded", "body.messages"),
    ]
    counted, estimated = (str(e.message) for e in batch.errors.data)
    assert counted.startswith("Line 2: The conversation is ") and "over this bot's limit of 40" in counted
    assert "about" not in counted  # Bedrock's count, as the route says it
    assert estimated.startswith("Line 4: The conversation is about ") and "Fix the line" in estimated
    assert batch_aws.sfn.list_executions(stateMachineArn=batch_aws.state_machine_arn)["executions"] == []
    # AND CountTokens was asked for the claude lines only (their prompts might not fit 40 tokens), as the route asks
    assert emulator.calls().get("CountTokens") == 2


async def test_a_throttled_count_fails_the_create_not_the_line(
    small_context_sdk: openai.AsyncOpenAI, batch_aws: BatchAws, emulator: Any
) -> None:
    # GIVEN CountTokens throttled, and a line that needs it
    emulator.state.faults["runtime_throttle"] = 100
    file_id = batch_aws.upload([chat_line("a", "hello")])
    # WHEN the batch is created / THEN the create answers Bedrock's throttling (retryable), as the route would
    with pytest.raises(openai.RateLimitError):
        await small_context_sdk.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    # AND no batch run started and no prepared input is left
    assert batch_aws.sfn.list_executions(stateMachineArn=batch_aws.state_machine_arn)["executions"] == []
    assert batch_aws.keys("openai/batches/") == []


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"endpoint": "/v1/chat/completions", "completion_window": "48h"}, 400, "completion_window"),
        ({"endpoint": "/v1/responses", "completion_window": "24h"}, 400, "endpoint"),
        (
            {
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {str(i): "v" for i in range(17)},
            },
            400,
            "metadata",
        ),
        (
            {"endpoint": "/v1/chat/completions", "completion_window": "24h", "output_expires_after": {}},
            400,
            "output_expires_after",
        ),
    ],
)
async def test_a_bad_create_body_is_a_400_naming_the_field(
    batch_app: FastAPI, batch_aws: BatchAws, body: dict[str, Any], status: int, names: str
) -> None:
    # GIVEN a valid input file and a body with one bad field
    file_id = batch_aws.upload([chat_line("a")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=batch_app), base_url="http://test") as http:
        # WHEN it is posted
        answer = await http.post(
            "/v1/batches", json={"input_file_id": file_id, **body}, headers={"Authorization": f"Bearer {KEY}"}
        )
    # THEN the 400 names the field
    assert answer.status_code == status and names in answer.text


async def test_s3_inputs_only_from_the_key_s_own_folder(sdk: openai.AsyncOpenAI, batch_aws: BatchAws) -> None:
    # GIVEN an input in the default key's folder of the batch bucket, and the same file elsewhere
    line = (json.dumps(chat_line("big")) + "\n").encode()
    batch_aws.s3.put_object(Bucket=batch_aws.bucket, Key="openai/inputs/key:default/big.jsonl", Body=line)
    batch_aws.s3.put_object(Bucket=batch_aws.bucket, Key="openai/inputs/key:team/big.jsonl", Body=line)
    # WHEN batches are created from them / THEN its own runs, another key's folder is a 400 naming the fix
    ok = await sdk.batches.create(
        input_file_id=f"s3://{batch_aws.bucket}/openai/inputs/key:default/big.jsonl",
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    assert ok.status == "in_progress" and ok.request_counts is not None and ok.request_counts.total == 1
    for uri in (
        f"s3://{batch_aws.bucket}/openai/inputs/key:team/big.jsonl",
        "s3://other-bucket/openai/inputs/key:default/big.jsonl",
    ):
        with pytest.raises(openai.BadRequestError, match="openai/inputs/key:default/"):
            await sdk.batches.create(input_file_id=uri, endpoint="/v1/chat/completions", completion_window="24h")


async def test_a_missing_s3_input_is_a_400_naming_it(sdk: openai.AsyncOpenAI, batch_aws: BatchAws) -> None:
    # GIVEN an s3:// URI of the key's folder where no object is
    uri = f"s3://{batch_aws.bucket}/openai/inputs/key:default/missing.jsonl"
    # WHEN a batch is created from it / THEN a 400 names the input and nothing runs
    with pytest.raises(openai.BadRequestError, match="cannot be read"):
        await sdk.batches.create(input_file_id=uri, endpoint="/v1/chat/completions", completion_window="24h")
    assert batch_aws.keys("openai/batches/") == []


async def test_without_the_batch_stack_the_routes_say_the_api_is_not_deployed(
    emulator: Any, settings: GatewaySettings
) -> None:
    # GIVEN a gateway deployed without the batch stack (no bucket, no state machine)
    application = create_app(settings)
    async with application.router.lifespan_context(application), openai_client(application, KEY) as sdk:
        # WHEN a batch is listed / THEN a 501 names the fix
        with pytest.raises(openai.APIStatusError) as raised:
            await sdk.batches.list()
    assert raised.value.status_code == 501
    assert "deploy the gateway stack with the batch stack" in raised.value.message


def _write_output(s3: Any, bucket: str, run: str) -> None:
    """What postprocess and finalize write for the three requests: two answers and one record error."""

    def converse(text: str) -> str:
        return json.dumps(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 10, "outputTokens": 4, "totalTokens": 14},
            }
        )

    rows = [
        {
            "custom_id": f"req-{i}",
            "line": i + 1,
            "model": BOT,
            "bedrock_model_id": "anthropic.claude-3-haiku-20240307-v1:0",
            "record_id": f"r{i}",
            "model_output": output,
            "error_code": code,
            "error_message": message,
        }
        for i, (output, code, message) in enumerate(
            [
                (converse("answer req-0"), None, None),
                (converse("answer req-1"), None, None),
                (None, "ValidationException", "Malformed input request"),
            ]
        )
    ]
    key = layout.output_rows_key(run, 0)  # what Finalize writes for a prepared run, next to the job's Parquet
    s3.put_object(Bucket=bucket, Key=key, Body="".join(json.dumps(row) + "\n" for row in rows))
    summary = {
        "succeeded": 2,
        "failed": 1,
        "input_tokens": 30,
        "output_tokens": 12,
        "output_files": [f"s3://{bucket}/{layout.output_key(run, 0)}"],
        "output_row_files": [f"s3://{bucket}/{key}"],
    }
    s3.put_object(Bucket=bucket, Key=layout.summary_key(run), Body=json.dumps(summary))


def _lines(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]
