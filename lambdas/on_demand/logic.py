"""Run one on-demand job: the records of a job file sent one by one through the runtime, written as Bedrock would.

A group of records under the model's minimum per batch job (100 by default) cannot be a batch job; it runs here
instead ("Run job on demand" in the state machine). Each record of the job's input file (the same JSONL Submit would
send) is sent with InvokeModel (its ``modelInput`` as the body: an InvokeModel-type model) or Converse (its
``modelInput`` as the request: a Converse-type job), at most ``concurrency`` at a time. The answers go to the job's
output prefix in Bedrock's batch output format (docs/bedrock-facts.md, "Records, output layout and record errors"):
``<input file name>.out`` with one ``{"recordId", "modelInput", "modelOutput"}`` line per record, or ``error``
``{"errorCode", "errorMessage"}`` instead of ``modelOutput``, and ``manifest.json.out`` with the counts and tokens, so
Postprocess reads them unchanged.

Lambda's 15 minutes: before each record the runner checks the time its invocation has left and stops taking records
below ``TIME_MARGIN_MS``; it writes what it has and returns the state not terminal, and the state machine calls it
again. What is done is read back from the ``.out`` file itself (its recordIds), so every call continues where the last
one wrote, and no record is sent twice by two calls that both returned. Throttling, timeouts and 5xx (HTTP 408, 429,
5xx, as Bedrock's record errors count them) are retried with exponential backoff and full jitter; the last failure
becomes the record's error, with the service's HTTP status as ``errorCode`` (as Bedrock writes record errors) and
its exception name in the message. No row is ever dropped: an error line is a line.

Cancel (lambdas/shared/cancel.py): the marker is looked for before the first record and again every ``concurrency``
records; once it is there no more records are taken, what was answered is written, and the job ends ``Stopped``.
"""

from __future__ import annotations

import base64
import io
import json
import random
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from lambdas.shared import layout
from lambdas.shared.cancel import CancelRequest, cancel_requested
from lambdas.shared.models import JobState
from lambdas.shared.observability import logger
from lambdas.shared.s3io import put_json

OUTPUT_SUFFIX = ".out"  # Bedrock names each output file after its input file: <name>.jsonl.out
MANIFEST_NAME = "manifest.json.out"
# Stop taking records when the invocation has less than this left: a record's call (read timeout 180 s in
# lambdas/shared/aws.py) and the write of the output must fit in it.
TIME_MARGIN_MS = 240_000
# HTTP statuses worth another attempt: the codes lambdas/resubmit retries for batch records (timeout, throttled, 5xx).
RETRYABLE_STATUSES = frozenset({408, 429})
NO_ANSWER_STATUS = 503  # a call that got no HTTP answer at all (connection error): counted as unavailable
# The Converse members a Converse-type record's modelInput may have here (botocore ConverseRequest, less modelId,
# toolConfig, which batch Converse records do not take, and guardrailConfig, whose ApplyGuardrail IAM does not grant).
CONVERSE_MEMBERS = (
    "messages",
    "system",
    "inferenceConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "outputConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
)


class UnsentMember(ValueError):
    """A Converse-type record asks for a member the on-demand runner does not send: a 400 record error."""


@dataclass(frozen=True)
class Backoff:
    """Attempts per record and their waits: exponential from ``base_seconds``, capped, with full jitter."""

    attempts: int = 6
    base_seconds: float = 1.0
    max_seconds: float = 20.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


@dataclass(frozen=True)
class Answer:
    """One record's output line and the tokens it was billed."""

    line: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def failed(self) -> bool:
        return "error" in self.line


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def output_keys(state: JobState) -> tuple[str, str]:
    """(the ``.out`` key, the manifest key) of the job: under its own output prefix, as Submit gives a batch job."""
    run, job = state.run, state.job
    prefix = layout.job_output_prefix(run.run_id, job.index, resubmission=job.resubmission)
    return f"{prefix}{job.input_key.rsplit('/', 1)[-1]}{OUTPUT_SUFFIX}", f"{prefix}{MANIFEST_NAME}"


def parse_records(data: bytes, key: str) -> list[dict[str, Any]]:
    """The job file's records ``{"recordId", "modelInput"}``, in input order; a broken line is a bug upstream."""
    records = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        record = json.loads(raw)
        if not isinstance(record, dict) or not isinstance(record.get("modelInput"), dict) or "recordId" not in record:
            raise ValueError(f"line {number} of {key} is not a batch record {{'recordId', 'modelInput'}}")
        records.append(record)
    return records


def _read_if_present(s3: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist (listed first: see lambdas/shared/cancel.py)."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    if not any(item["Key"] == key for item in listed):
        return None
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _bytes_from_base64(request: dict[str, Any]) -> dict[str, Any]:
    """A Converse record as the SDK takes it: in the JSON record, the ``bytes`` of image, document and video blocks
    are base64 text; the SDK wants the raw bytes (it encodes them itself)."""

    def blocks(value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for block in value:
            if isinstance(block, dict):
                block = dict(block)
                for kind in ("image", "document", "video"):
                    source = block.get(kind, {}).get("source") if isinstance(block.get(kind), dict) else None
                    if isinstance(source, dict) and isinstance(source.get("bytes"), str):
                        block[kind] = {**block[kind], "source": {**source, "bytes": base64.b64decode(source["bytes"])}}
            out.append(block)
        return out

    request = dict(request)
    if isinstance(request.get("messages"), list):
        request["messages"] = [
            {**message, "content": blocks(message.get("content"))} if isinstance(message, dict) else message
            for message in request["messages"]
        ]
    return request


def converse_request(model_id: str, model_input: dict[str, Any]) -> dict[str, Any]:
    """The Converse request of a Converse-type record: its members spelled out (IAM grants follow what is sent: a
    ``guardrailConfig`` would need bedrock:ApplyGuardrail), blobs as bytes. A member the runner does not send is
    refused (``UnsentMember``) rather than dropped: the record would be answered differently from what it asks."""
    unsent = sorted(set(model_input) - set(CONVERSE_MEMBERS))
    if unsent:
        raise UnsentMember(
            f"the record's modelInput has {unsent}, which on-demand jobs do not send (they send "
            f"{list(CONVERSE_MEMBERS)}); remove those members, or give the model's group at least the records of one "
            "batch job"
        )
    body = _bytes_from_base64(model_input)
    request: dict[str, Any] = {"modelId": model_id, "messages": body.get("messages")}
    if "system" in body:
        request["system"] = body["system"]
    if "inferenceConfig" in body:
        request["inferenceConfig"] = body["inferenceConfig"]
    if "additionalModelRequestFields" in body:
        request["additionalModelRequestFields"] = body["additionalModelRequestFields"]
    if "additionalModelResponseFieldPaths" in body:
        request["additionalModelResponseFieldPaths"] = body["additionalModelResponseFieldPaths"]
    if "outputConfig" in body:
        request["outputConfig"] = body["outputConfig"]
    if "performanceConfig" in body:
        request["performanceConfig"] = body["performanceConfig"]
    if "promptVariables" in body:
        request["promptVariables"] = body["promptVariables"]
    if "requestMetadata" in body:
        request["requestMetadata"] = body["requestMetadata"]
    return request


def _json_safe(value: Any) -> Any:
    """A parsed Converse response as JSON: blobs (e.g. redacted reasoning) back to base64 text, as on the wire."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def call_model(runtime: Any, model_id: str, invocation_type: str, model_input: dict[str, Any]) -> Answer:
    """One attempt at one record: its ``modelOutput`` and tokens (a ClientError or BotoCoreError propagates)."""
    if invocation_type == "Converse":
        response = runtime.converse(**converse_request(model_id, model_input))
        output = _json_safe({key: value for key, value in response.items() if key != "ResponseMetadata"})
        usage = output.get("usage") or {}
        return Answer({"modelOutput": output}, int(usage.get("inputTokens") or 0), int(usage.get("outputTokens") or 0))
    response = runtime.invoke_model(
        modelId=model_id,
        body=json.dumps(model_input).encode(),
        contentType="application/json",
        accept="application/json",
    )
    output = json.loads(response["body"].read())
    # Text models report their tokens in these headers; embedding models may not (docs/bedrock-facts.md), and Titan's
    # embedding answers count their input in the body (inputTextTokenCount). Other embeddings: 0, said in the docs.
    headers = response["ResponseMetadata"].get("HTTPHeaders", {})
    body_tokens = output.get("inputTextTokenCount") if isinstance(output, dict) else None
    return Answer(
        {"modelOutput": output},
        int(headers.get("x-amzn-bedrock-input-token-count") or body_tokens or 0),
        int(headers.get("x-amzn-bedrock-output-token-count") or 0),
    )


def answer_record(
    runtime: Any,
    model_id: str,
    invocation_type: str,
    record: dict[str, Any],
    *,
    backoff: Backoff,
    sleep: Callable[[float], None],
    rng: random.Random,
) -> Answer:
    """The record's output line: its answer, or, after the retries, the error the service gave (never nothing)."""
    head = {"recordId": record["recordId"], "modelInput": record["modelInput"]}
    for attempt in range(backoff.attempts):
        try:
            answer = call_model(runtime, model_id, invocation_type, record["modelInput"])
            return Answer({**head, **answer.line}, answer.input_tokens, answer.output_tokens)
        except ParamValidationError as exc:  # the SDK refused the request: it never reached the service
            status, message = 400, f"ValidationException: the record is not a valid request: {exc}"
        except UnsentMember as exc:
            status, message = 400, f"ValidationException: {exc}"
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 500)
            message = f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}"
        except BotoCoreError as exc:  # no answer (connection reset, read timeout): as the service being unavailable
            status, message = NO_ANSWER_STATUS, f"{type(exc).__name__}: {exc}"
        if not is_retryable(status) or attempt + 1 == backoff.attempts:
            break
        sleep(backoff.delay(attempt, rng))
    tries = f" (after {attempt + 1} attempts)" if attempt else ""
    return Answer({**head, "error": {"errorCode": status, "errorMessage": message + tries}})


@dataclass
class Progress:
    """What one invocation found and did."""

    total: int
    answered_before: int
    answered_now: int = 0
    cancel: CancelRequest | None = None
    out_of_time: bool = False


def run_on_demand(
    state: JobState,
    *,
    runtime: Any,
    s3: Any,
    concurrency: int,
    remaining_ms: Callable[[], int],
    time_margin_ms: int = TIME_MARGIN_MS,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> JobState:
    """Answer the job's records not answered yet, until all are, the run is cancelled or time runs low; write the
    ``.out`` file and the manifest; return the state (terminal when nothing is left to do)."""
    run, job = state.run, state.job
    backoff, rng = backoff or Backoff(), rng or random.Random()
    out_key, manifest_key = output_keys(state)
    records = parse_records(s3.get_object(Bucket=run.bucket, Key=job.input_key)["Body"].read(), job.input_key)
    previous = _read_if_present(s3, run.bucket, out_key) or b""
    done = {json.loads(line)["recordId"] for line in previous.splitlines() if line.strip()}
    manifest = json.loads(_read_if_present(s3, run.bucket, manifest_key) or b"{}")
    todo = [record for record in records if record["recordId"] not in done]
    progress = Progress(total=len(records), answered_before=len(records) - len(todo))
    answers = _answer_all(
        state, todo, progress, runtime, s3, concurrency, remaining_ms, time_margin_ms, backoff, sleep, rng
    )

    if answers:
        lines = b"".join(json.dumps(answer.line, ensure_ascii=False).encode() + b"\n" for answer in answers)
        kept = previous.rstrip(b"\n") + b"\n" if previous.strip() else b""
        s3.upload_fileobj(io.BytesIO(kept + lines), run.bucket, out_key)  # one object, multipart when large
    errors = int(manifest.get("errorRecordCount") or 0) + sum(answer.failed for answer in answers)
    processed = progress.answered_before + len(answers)
    counters = {
        "totalRecordCount": len(records),
        "processedRecordCount": processed,
        "successRecordCount": processed - errors,
        "errorRecordCount": errors,
        "inputTokenCount": int(manifest.get("inputTokenCount") or 0) + sum(a.input_tokens for a in answers),
        "outputTokenCount": int(manifest.get("outputTokenCount") or 0) + sum(a.output_tokens for a in answers),
    }
    put_json(s3, run.bucket, manifest_key, counters)

    left = len(records) - processed
    logger.info("on-demand records answered", answered=len(answers), left=left, errors=errors)
    if progress.cancel is not None and left:
        return state.model_copy(
            update={
                "status": "Stopped",
                "terminal": True,
                "cancelled": True,
                "message": f"the run was cancelled ({progress.cancel.key}): {left} of {len(records)} records not sent",
                "counters": counters,
                "polls": state.polls + 1,
            }
        )
    if left and not answers:
        raise RuntimeError(
            f"on-demand job {job.index}: no record could be answered in this invocation ({left} left, "
            f"{remaining_ms()} ms remaining, margin {time_margin_ms} ms); raise the function's timeout"
        )
    return state.model_copy(
        update={
            "status": "InProgress" if left else "Completed",
            "terminal": not left,
            "message": f"{left} records left for the next invocation" if left else None,
            "counters": counters,
            "polls": state.polls + 1,
        }
    )


def _answer_all(
    state: JobState,
    todo: list[dict[str, Any]],
    progress: Progress,
    runtime: Any,
    s3: Any,
    concurrency: int,
    remaining_ms: Callable[[], int],
    time_margin_ms: int,
    backoff: Backoff,
    sleep: Callable[[float], None],
    rng: random.Random,
) -> list[Answer]:
    """Answer ``todo`` in input order, at most ``concurrency`` at a time, until done, cancelled or out of time; the
    answers in input order (every record taken is answered: the runner waits for the calls in flight)."""
    run = state.run
    model = run.model_for(state.job.model)  # a prepared run's job names its model; a rows run has one
    answers: dict[int, Answer] = {}
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="on-demand") as pool:
        in_flight: dict[Future[Answer], int] = {}
        position = 0
        while position < len(todo) or in_flight:
            while position < len(todo) and len(in_flight) < concurrency:
                if position % max(1, concurrency) == 0:  # before the first record, then every `concurrency` records
                    progress.cancel = cancel_requested(s3, run.bucket, run.run_id)
                    if progress.cancel is not None:
                        break
                if remaining_ms() < time_margin_ms:
                    progress.out_of_time = True
                    break
                record = todo[position]
                future = pool.submit(
                    answer_record,
                    runtime,
                    model.model_id,
                    model.invocation_type,
                    record,
                    backoff=backoff,
                    sleep=sleep,
                    rng=random.Random(rng.random()),
                )
                in_flight[future] = position
                position += 1
            if progress.cancel is not None or progress.out_of_time:
                position = len(todo)  # take no more; the calls in flight still end and are written
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                answers[in_flight.pop(future)] = future.result()
    progress.answered_now = len(answers)
    return [answers[index] for index in sorted(answers)]
