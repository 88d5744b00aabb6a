"""The batch side of the Batch API's storage (the files side is ``lambdas.gateway.batch_store``), all in the batch
bucket, through the S3 client passed in:

- ``openai/batches/<batch_id>/batch.json``: the creation record (``BatchRecord``); ``prepared.jsonl``: the run's
  input; ``output.jsonl`` / ``errors.jsonl``: the OpenAI output and error files, written once the run ended.
- what the batch's run writes under ``runs/<run id>/`` (the run id made from the batch id, as Step Functions names
  the execution): ``jobs.json``, ``results/<NNNN>.json``, ``summary.json``, and the cancel marker ``cancel.json``,
  which the gateway writes and the run honours.

Batch ids are ``batch_`` then ``newest_first_hex()``: S3 lists keys in ascending order, so it lists the newest batch
first, and ``GET /v1/batches?after=<id>`` is a ``StartAfter``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from lambdas.gateway.batch_lines import LineSplitter
from lambdas.gateway.batch_status import BatchRecord, JobCounts, RunFiles
from lambdas.gateway.batch_store import BATCHES, newest_first_hex
from lambdas.shared import layout

PART_BYTES = 8 * 1_048_576  # a multipart upload's part (S3's minimum is 5 MiB, the last part excepted)
CHUNK_BYTES = 1_048_576
_MISSING = ("404", "NoSuchKey", "NotFound")
# s3:// inputs larger than an upload through the API: under openai/inputs/<key name>/, so one key cannot run another
# key's files or the runs' data (the gateway reads nothing else of the bucket)
INPUTS = "openai/inputs/"


def new_batch_id() -> str:
    return f"batch_{newest_first_hex()}"


def batch_prefix(batch_id: str) -> str:
    return f"{BATCHES}{batch_id}/"


def record_key(batch_id: str) -> str:
    return f"{batch_prefix(batch_id)}batch.json"


def prepared_key(batch_id: str) -> str:
    return f"{batch_prefix(batch_id)}prepared.jsonl"


def run_id(batch_id: str) -> str:
    """The run id of the batch's execution (named by the batch id)."""
    return layout.run_id_from_execution_name(batch_id)


def cancel_key(batch_id: str) -> str:
    return layout.cancel_key(run_id(batch_id))


def _missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING


async def get_json(s3: Any, bucket: str, key: str) -> Any | None:
    """The JSON object at ``key``, or None when there is none."""
    try:
        response = await s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _missing(error):
            return None
        raise
    async with response["Body"] as body:
        return json.loads(await body.read())


async def put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    await s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(value).encode(), ContentType="application/json")


async def read_record(s3: Any, bucket: str, batch_id: str) -> BatchRecord | None:
    """The batch's record, or None when there is none (listed first: see ``read_run``)."""
    if "batch.json" not in await batch_objects(s3, bucket, batch_id):
        return None
    raw = await get_json(s3, bucket, record_key(batch_id))
    return BatchRecord.from_json(raw) if raw is not None else None


async def write_record(s3: Any, bucket: str, record: BatchRecord) -> None:
    await put_json(s3, bucket, record_key(record.id), record.to_json())


async def batch_ids(s3: Any, bucket: str, after: str | None) -> AsyncIterator[str]:
    """Every batch id, newest first, from after ``after``."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": BATCHES, "Delimiter": "/"}
    if after:
        kwargs["StartAfter"] = f"{batch_prefix(after)}~"  # past every key of that batch ("~" sorts after its names)
    async for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        for prefix in page.get("CommonPrefixes") or []:
            yield prefix["Prefix"][len(BATCHES) :].rstrip("/")


async def batch_objects(s3: Any, bucket: str, batch_id: str) -> set[str]:
    """The names of the batch's objects (``batch.json``, ``output.jsonl``, ...)."""
    names: set[str] = set()
    prefix = batch_prefix(batch_id)
    async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        names.update(item["Key"][len(prefix) :] for item in page.get("Contents") or [])
    return names


async def _listed(s3: Any, bucket: str, prefix: str, delimiter: str = "") -> dict[str, Any]:
    """The objects under ``prefix`` (with ``delimiter``: its top level only), by key."""
    found: dict[str, Any] = {}
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix} | ({"Delimiter": delimiter} if delimiter else {})
    async for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
        found.update((item["Key"], item) for item in page.get("Contents") or [])
    return found


async def read_run(s3: Any, bucket: str, batch_id: str) -> RunFiles:
    """What the batch's run wrote so far (nothing yet: an empty ``RunFiles``). Only listed objects are read: without
    s3:ListBucket on a key's prefix S3 answers a missing key with 403, not 404 (docs/bedrock-facts.md)."""
    run = run_id(batch_id)
    top = await _listed(s3, bucket, f"{layout.run_prefix(run)}/", "/")

    async def read(key: str) -> Any | None:
        return await get_json(s3, bucket, key) if key in top else None

    manifest = await read(layout.manifest_key(run))
    results: list[JobCounts] = []
    for key, item in sorted((await _listed(s3, bucket, layout.results_prefix(run))).items()):
        result = await get_json(s3, bucket, key)
        if result is None:
            continue
        results.append(
            JobCounts(
                succeeded=int(result.get("succeeded", 0)),
                failed=int(result.get("failed", 0)),
                input_tokens=int(result.get("input_tokens", 0)),
                output_tokens=int(result.get("output_tokens", 0)),
                written_at=item.get("LastModified"),
            )
        )
    summary = await read(layout.summary_key(run))
    cancel = await read(cancel_key(batch_id))
    requested = datetime.fromisoformat(cancel["requested_at"]) if cancel and cancel.get("requested_at") else None
    return RunFiles(
        planned_jobs=len(manifest) if isinstance(manifest, list) else None,
        results=tuple(results),
        summary=summary,
        cancel_requested_at=requested,
    )


async def write_cancel_marker(s3: Any, bucket: str, batch_id: str, now: datetime | None = None) -> None:
    moment = (now or datetime.now(UTC)).isoformat()
    await put_json(s3, bucket, cancel_key(batch_id), {"requested_at": moment})


async def lines(s3: Any, bucket: str, key: str) -> AsyncIterator[tuple[int, bytes]]:
    """The object's non-blank lines with their numbers (``batch_lines.LineSplitter``), streamed: one chunk and its
    lines held at a time."""
    response = await s3.get_object(Bucket=bucket, Key=key)
    body = response["Body"]
    splitter = LineSplitter()
    try:
        async for chunk in body.iter_chunks(CHUNK_BYTES):
            for numbered in splitter.feed(chunk):
                yield numbered
        for numbered in splitter.end():
            yield numbered
    finally:
        body.close()


class Upload:
    """An object written in pieces: one PutObject when it stays under ``PART_BYTES``, else a multipart upload of
    ``PART_BYTES`` parts (never more than one part in memory). ``abort()`` leaves nothing behind."""

    def __init__(self, s3: Any, bucket: str, key: str, **put_args: Any) -> None:
        self._s3, self._bucket, self.key, self._args = s3, bucket, key, put_args
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.size = 0

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= PART_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._upload_id is None:
            created = await self._s3.create_multipart_upload(Bucket=self._bucket, Key=self.key, **self._args)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        part = await self._s3.upload_part(
            Bucket=self._bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=bytes(self._buffer)
        )
        self._parts.append({"ETag": part["ETag"], "PartNumber": number})
        self._buffer.clear()

    async def finish(self) -> None:
        if self._upload_id is None:
            await self._s3.put_object(Bucket=self._bucket, Key=self.key, Body=bytes(self._buffer), **self._args)
            return
        if self._buffer:
            await self._flush()
        await self._s3.complete_multipart_upload(
            Bucket=self._bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )

    async def abort(self) -> None:
        if self._upload_id is not None:
            await self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
        self._buffer.clear()
