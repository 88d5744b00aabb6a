"""The Batch API's work: create a batch (validate and prepare its input, start its run), show it, list a key's
batches, cancel one. The routes (``lambdas.gateway.routes_batches``) parse and authorize; this module does the rest,
with the S3 client and the state machine wrapper passed in.

Create: the input file is streamed from S3 line by line through ``batch_lines.prepare_line`` into
``prepared.jsonl`` (a multipart upload: one part in memory at a time). A line that fails stops nothing before the
whole file is read, so the batch's errors name every bad line (up to ``MAX_ERRORS``); then the upload is aborted,
no execution starts and the batch is ``failed`` (OpenAI answers the create with the failed batch too). Only a file
whose every line passed starts the one execution of the batch (named by its id), so nothing billable starts before
the whole file passed. A StartExecution that fails leaves the record ``failed`` with Step Functions' reason and the
prepared input deleted.

Show: the status and counts come from the execution and the run's files (``lambdas.gateway.batch_status``). When
the run has ended the output and error files are written once from the run's output Parquet through
``batch_lines.output_line`` (streamed: one row group in memory), so the Files routes serve them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from lambdas.gateway import batch_records as records
from lambdas.gateway.batch_executions import BatchExecutions, ExecutionNotStarted
from lambdas.gateway.batch_lines import (
    CHAT,
    DEFAULT_ATTACHMENT_BYTES,
    ENDPOINTS,
    BotLookup,
    PreparedLine,
    context_error,
    output_line,
    prepare_line,
)
from lambdas.gateway.batch_lines import LineError as BadLine
from lambdas.gateway.batch_status import (
    ENDED,
    BatchRecord,
    Execution,
    LineError,
    RunFiles,
    batch_object,
    status_of,
)
from lambdas.gateway.batch_store import OUTPUT_KINDS, _metadata, batch_file_id
from lambdas.gateway.errors import GatewayError, bedrock_failure
from lambdas.gateway.metrics import emit_record
from lambdas.gateway.tokens import count_input_tokens
from lambdas.shared.observability import logger

MAX_ERRORS = 100  # the line errors a failed batch lists (every bad line is counted; the message says how many)
JOB_NAME_PREFIX = "oai-batch"
BATCHES_CREATED = "BatchesCreated"  # metric: batches whose run started, per key and bot
START_FAILED = "batch_start_failed"


@dataclass(frozen=True)
class BatchRequest:
    """A validated ``POST /v1/batches`` body, the input resolved to an object key of the batch bucket."""

    input_file_id: str
    input_key: str
    endpoint: str
    completion_window: str
    metadata: Mapping[str, str] | None


def execution_input(bucket: str, batch_id: str, models: Mapping[str, Any]) -> dict[str, Any]:
    """The execution input of a prepared run (the orchestrator's ``ExecutionInput`` with ``input_format``
    ``prepared``)."""
    return {
        "input_format": "prepared",
        "s3_uri": f"s3://{bucket}/{records.prepared_key(batch_id)}",
        "models": dict(models),
        "job_name_prefix": JOB_NAME_PREFIX,
        "resubmit_failed": True,
    }


def run_model(line: PreparedLine) -> dict[str, Any]:
    """A bot as the run's ``models`` entry: a chat bot runs Converse records, an embedding bot its family's
    InvokeModel records (the orchestrator reads the family from the model id)."""
    chat = line.bot.modality == "text"
    return {
        "model_id": line.bot.model_id,
        "invocation_type": "Converse" if chat else "InvokeModel",
        "model_family": None,
        "output_kind": "text" if chat else "embedding",
    }


class Batches:
    """The batches of one deployment: its bucket, its state machine's executions, an S3 client, and ``runtime``: the
    bedrock-runtime client of a region (for CountTokens, as the synchronous route counts a prompt), and
    ``attachment_max_bytes``, the largest attachment a line may inline (the gateway's setting)."""

    def __init__(
        self,
        *,
        s3: Any,
        bucket: str,
        executions: BatchExecutions,
        runtime: Callable[[str], Awaitable[Any]],
        attachment_max_bytes: int = DEFAULT_ATTACHMENT_BYTES,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.executions = executions
        self.runtime = runtime
        self.attachment_max_bytes = attachment_max_bytes  # the largest inline attachment of a line, as synchronously

    async def _within_context(self, line: PreparedLine, endpoint: str) -> PreparedLine | BadLine:
        """A chat line counted and checked against its bot's ``context_tokens`` exactly as the synchronous route
        counts a prompt (``tokens.count_input_tokens``: the estimate, or CountTokens for a bot with
        ``token_counting`` when the prompt might not fit). A failed CountTokens call that is not the line's fault
        (throttling, 5xx) is the create's error, as it is the synchronous answer's: retrying the create may pass."""
        if endpoint != CHAT:
            return line  # embeddings lines: the route's own checks (check_texts) ran in prepare_line
        try:
            count = await count_input_tokens(line.bot, line.model_input, await self.runtime(line.bot.region))
        except GatewayError:
            raise
        except Exception as error:
            raise bedrock_failure(line.bot.name, error) from error
        return context_error(line, count) or line

    # ------------------------------------------------------------ create

    async def create(self, request: BatchRequest, *, owner: str, bots: BotLookup) -> dict[str, Any]:
        batch_id = records.new_batch_id()
        created = int(time.time())
        upload = records.Upload(self.s3, self.bucket, records.prepared_key(batch_id), ContentType="application/jsonl")
        errors: list[LineError] = []
        bad_lines = 0
        models: dict[str, Any] = {}
        used: dict[str, int] = {}
        seen: set[str] = set()
        total = 0
        try:
            async for number, raw in records.lines(self.s3, self.bucket, request.input_key):
                total += 1  # blank lines (the file's last newline, say) are no requests: LineSplitter skips them
                line = prepare_line(
                    raw,
                    number,
                    endpoint=request.endpoint,
                    bots=bots,
                    seen=seen,
                    attachment_max_bytes=self.attachment_max_bytes,
                )
                if isinstance(line, PreparedLine):
                    line = await self._within_context(line, request.endpoint)
                if isinstance(line, BadLine):
                    bad_lines += 1
                    if len(errors) < MAX_ERRORS:
                        errors.append(LineError(line.code, line.message, line.line, line.param))
                    continue
                if not errors:  # once a line failed nothing more is written: the batch will not run
                    await upload.write(line.jsonl())
                models.setdefault(line.bot.name, run_model(line))
                used[line.bot.name] = used.get(line.bot.name, 0) + 1
            if total == 0:
                errors.append(LineError("empty_file", "The input file has no requests: one JSON object a line."))
            if errors:
                await upload.abort()
            else:
                await upload.finish()
        except ClientError as error:  # the input is missing or unreadable (a file deleted meanwhile, an s3:// URI)
            await upload.abort()
            code = error.response.get("Error", {}).get("Code", "Error")
            raise GatewayError(
                400,
                f"The input file {request.input_file_id[:200]!r} cannot be read ({code}): upload it again, or check "
                "that the s3:// object exists.",
                code="invalid_input_file",
                param="input_file_id",
            ) from error
        except BaseException:
            await upload.abort()
            raise
        if bad_lines > len(errors):
            errors.append(
                LineError(
                    "too_many_errors",
                    f"{bad_lines} lines were refused; the first {MAX_ERRORS} are listed. Fix them and create the "
                    "batch again.",
                )
            )
        record = BatchRecord(
            id=batch_id,
            owner=owner,
            input_file_id=request.input_file_id,
            endpoint=request.endpoint,
            completion_window=request.completion_window,
            created_at=created,
            total=total,
            metadata=request.metadata,
            models=models,
            errors=tuple(errors),
            failed_at=created if errors else None,
        )
        await records.write_record(self.s3, self.bucket, record)
        if errors:
            logger.info("batch refused", batch_id=batch_id, key=owner, bad_lines=bad_lines, lines=total)
            return batch_object(record, None, RunFiles(), datetime.now(UTC))
        try:
            await self.executions.start(batch_id, execution_input(self.bucket, batch_id, models))
        except ExecutionNotStarted as error:
            reason = LineError(START_FAILED, f"The batch's run did not start: {error}")
            failed = replace(record, errors=(reason,), failed_at=int(time.time()))
            await records.write_record(self.s3, self.bucket, failed)
            await self.s3.delete_object(Bucket=self.bucket, Key=records.prepared_key(batch_id))
            logger.error("batch run not started", batch_id=batch_id, key=owner, error=str(error))
            return batch_object(failed, None, RunFiles(), datetime.now(UTC))
        for bot in used:
            emit_record([(BATCHES_CREATED, 1, "Count")], key=owner, bot=bot)
        logger.info("batch started", batch_id=batch_id, key=owner, lines=total, bots=used)
        return await self.show(record)

    # ------------------------------------------------------------ read

    async def record(self, batch_id: str, owner: str) -> BatchRecord:
        """The key's batch, or a 404 (another key's batch answers as a missing one)."""
        found = await records.read_record(self.s3, self.bucket, batch_id) if batch_id.startswith("batch_") else None
        if found is None or found.owner != owner:
            raise GatewayError(
                404, f"No batch found with id {batch_id[:100]!r}.", code="batch_not_found", param="batch_id"
            )
        return found

    async def show(self, record: BatchRecord) -> dict[str, Any]:
        """The Batch object now; writes the output and error files once the run has ended."""
        execution = None if record.errors else await self.executions.describe(record.id)
        run = await records.read_run(self.s3, self.bucket, record.id) if execution is not None else RunFiles()
        now = datetime.now(UTC)
        written = False
        if execution is not None and status_of(record, execution, run, now) in ENDED:
            written = await self._output_files(record, execution, run)
        return batch_object(record, execution, run, now, files_written=written)

    async def retrieve(self, batch_id: str, owner: str) -> dict[str, Any]:
        return await self.show(await self.record(batch_id, owner))

    async def list(self, owner: str, *, after: str | None, limit: int) -> dict[str, Any]:
        """The key's batches, newest first, after the batch ``after``: OpenAI's list page."""
        data: list[dict[str, Any]] = []
        more = False
        async for batch_id in records.batch_ids(self.s3, self.bucket, after):
            found = await records.read_record(self.s3, self.bucket, batch_id)
            if found is None or found.owner != owner:
                continue
            if len(data) == limit:
                more = True
                break
            data.append(await self.show(found))
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }

    # ------------------------------------------------------------ cancel

    async def cancel(self, batch_id: str, owner: str) -> dict[str, Any]:
        """Write the cancel marker (the run stops submitting, stops its jobs and delivers what they processed) and
        answer the batch, ``cancelling``; a batch that already ended (or never ran) is a 409."""
        record = await self.record(batch_id, owner)
        execution = None if record.errors else await self.executions.describe(record.id)
        run = await records.read_run(self.s3, self.bucket, batch_id) if execution is not None else RunFiles()
        status = status_of(record, execution, run, datetime.now(UTC))
        if status in ("cancelling", "cancelled"):
            return await self.show(record)
        if execution is None or execution.status != "RUNNING":
            raise GatewayError(
                409,
                f"Batch {batch_id!r} is {status}: only a batch in progress or finalizing can be cancelled.",
                code="batch_not_cancellable",
            )
        await records.write_cancel_marker(self.s3, self.bucket, batch_id)
        logger.info("batch cancel requested", batch_id=batch_id, key=owner)
        return await self.show(record)

    # ------------------------------------------------------------ output files

    async def _output_files(self, record: BatchRecord, execution: Execution, run: RunFiles) -> bool:
        """Write ``output.jsonl`` and ``errors.jsonl`` from the run's output Parquet, once (both exist: done).
        False when the run left no summary (no output to convert)."""
        names = await records.batch_objects(self.s3, self.bucket, record.id)
        if {OUTPUT_KINDS["output"], OUTPUT_KINDS["errors"]} <= names:
            return True
        if run.summary is None:
            return False
        created = int((execution.stopped_at or datetime.now(UTC)).timestamp())
        uploads = {
            kind: records.Upload(
                self.s3,
                self.bucket,
                f"{records.batch_prefix(record.id)}{name}",
                ContentType="application/jsonl",
                Metadata=_metadata(record.owner, f"{record.id}_{kind}.jsonl", "batch_output", created),
            )
            for kind, name in OUTPUT_KINDS.items()
        }
        lines = 0
        try:
            for uri in run.summary.get("output_row_files") or []:
                lines += await self._convert(str(uri), record, created, uploads)
            # the errors file's upload last: its presence says both are complete
            await uploads["output"].finish()
            await uploads["errors"].finish()
        except BaseException:
            for upload in uploads.values():
                await upload.abort()
            raise
        if lines != record.total:
            logger.error(
                "batch output rows differ from its requests", batch_id=record.id, rows=lines, total=record.total
            )
        logger.info("batch output written", batch_id=record.id, rows=lines, output=batch_file_id(record.id, "output"))
        return True

    async def _convert(self, uri: str, record: BatchRecord, created: int, uploads: Mapping[str, records.Upload]) -> int:
        """One job's output rows (the JSON lines Finalize writes next to its Parquet, ``output_row_files``),
        converted into lines of the two uploads; the number of rows. Streamed: no Arrow in the gateway."""
        rows = 0
        async for _, raw in records.lines(self.s3, self.bucket, uri.removeprefix(f"s3://{self.bucket}/")):
            row = json.loads(raw)
            kind, line = output_line(row, endpoint=record.endpoint, batch_id=record.id, created=created)
            await uploads["output" if kind == "output" else "errors"].write(line)
            rows += 1
        return rows


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` cannot be a batch's endpoint, or None."""
    if endpoint in ENDPOINTS:
        return None
    return f"'endpoint' {endpoint[:80]!r} is not supported in batch here: use one of {', '.join(ENDPOINTS)}."
