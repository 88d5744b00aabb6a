"""The Batch API's storage: files and batches in the batch stack's bucket, under ``openai/`` (no other store).

- ``openai/files/<file_id>``: an uploaded file's bytes, with S3 user metadata ``owner`` (the key that uploaded it),
  ``filename`` (percent-encoded: S3 metadata is ASCII), ``purpose`` and ``created-at`` (unix seconds). File ids
  ``file-<hex>``, the hex a reversed millisecond clock then random digits, so S3's ascending key order lists the
  newest first.
- ``openai/batches/<batch_id>/output.jsonl`` and ``errors.jsonl``: a batch's OpenAI output and error files, served
  as ``file-<batch_id>-output`` / ``file-<batch_id>-errors`` with purpose ``batch_output``, the same metadata.

A key sees only its own files: another key's file answers as a missing one (``None``: the routes' 404).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError

from lambdas.gateway.clients import AwsClients
from lambdas.gateway.config import GatewaySettings
from lambdas.gateway.errors import GatewayError

PREFIX = "openai/"
FILES = f"{PREFIX}files/"
BATCHES = f"{PREFIX}batches/"
OUTPUT_KINDS = {"output": "output.jsonl", "errors": "errors.jsonl"}  # file id suffix -> object name in the batch
UPLOAD_PURPOSES = ("batch",)  # what POST /v1/files accepts
# Prefixes of the batch bucket an s3:// input may not name: the gateway's own objects (other keys' files) and the
# runs' data (other batches' records and answers).
PRIVATE_PREFIXES = (PREFIX, "runs/")
CHUNK_BYTES = 1_048_576  # a download streams in chunks of at most this size
# GET /v1/files reads each listed file's owner, name and purpose with HeadObject: ListObjectsV2 answers a key's size
# and time but never its user metadata (botocore s3 shape ``Object``: Key, LastModified, ETag, checksums, Size,
# StorageClass, Owner - the bucket's account, not the gateway key - and RestoreStatus, the only
# ``OptionalObjectAttributes``), and the owner decides whether the file is listed at all. At most this many of a
# listing's HEADs run at once, in listing order: a page of 1,000 keys waits about 1,000/16 round trips rather than
# 1,000, and one listing holds at most 16 of the S3 client's pooled connections, leaving the others to downloads.
HEAD_CONCURRENCY = 16
_CLOCK_SPAN = 1 << 48  # milliseconds: about 8,900 years
_FILE_ID = re.compile(r"^file-[0-9a-f]{12,64}$")
_BATCH_FILE_ID = re.compile(r"^file-(batch_[0-9A-Za-z_]{1,100})-(output|errors)$")
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$")


def newest_first_hex(now_ms: int | None = None) -> str:
    """12 hex digits that sort later for an earlier millisecond, then 16 random ones."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{_CLOCK_SPAN - 1 - now:012x}{secrets.token_hex(8)}"


@dataclass(frozen=True)
class FileInfo:
    """One file as the Files API shows it (OpenAI's ``FileObject`` by ``openai()``)."""

    id: str
    key: str
    owner: str
    filename: str
    purpose: str
    created_at: int
    bytes: int

    def openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


def file_key(file_id: str) -> str | None:
    """The object key of a file id, or None when the id is no file id of the gateway."""
    if _FILE_ID.match(file_id):
        return FILES + file_id
    match = _BATCH_FILE_ID.match(file_id)
    if match:
        return f"{BATCHES}{match.group(1)}/{OUTPUT_KINDS[match.group(2)]}"
    return None


def batch_file_id(batch_id: str, kind: str) -> str:
    """The file id of a batch's ``output`` or ``errors`` file."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {list(OUTPUT_KINDS)}, got {kind!r}")
    return f"file-{batch_id}-{kind}"


def _metadata(owner: str, filename: str, purpose: str, created_at: int) -> dict[str, str]:
    return {
        "owner": quote(owner, safe=""),
        "filename": quote(filename, safe=""),
        "purpose": purpose,
        "created-at": str(created_at),
    }


class BatchStore:
    """Files (and, from G2, batches) in the batch bucket, through the gateway's pooled S3 client."""

    def __init__(self, clients: AwsClients, settings: GatewaySettings) -> None:
        self._clients = clients
        self._settings = settings

    @property
    def bucket(self) -> str:
        """The batch bucket, or the 503 saying it is not configured (checked before any S3 call)."""
        if not self._settings.batch_bucket:
            raise GatewayError(
                503,
                "The Batch API needs the batch stack's bucket: deploy the gateway with the batch stack (it sets "
                "GATEWAY_BATCH_BUCKET), or set GATEWAY_BATCH_BUCKET to that bucket's name.",
                openai_type="service_unavailable",
                code="no_batch_bucket",
            )
        return self._settings.batch_bucket

    async def s3(self) -> Any:
        return await self._clients.client("s3", self._settings.batch_region)

    # ------------------------------------------------------------ files

    async def put_file(self, *, owner: str, filename: str, purpose: str, body: bytes) -> FileInfo:
        """Store an uploaded file under a new id."""
        bucket = self.bucket
        file_id = f"file-{newest_first_hex()}"
        created = int(time.time())
        s3 = await self.s3()
        await s3.put_object(
            Bucket=bucket,
            Key=FILES + file_id,
            Body=body,
            ContentType="application/jsonl",
            Metadata=_metadata(owner, filename, purpose, created),
        )
        return FileInfo(file_id, FILES + file_id, owner, filename, purpose, created, len(body))

    async def put_batch_file(self, *, batch_id: str, kind: str, owner: str, body: bytes) -> FileInfo:
        """Write a batch's output or error file (deterministic content: writing it twice is harmless)."""
        bucket = self.bucket
        file_id = batch_file_id(batch_id, kind)
        key = file_key(file_id)
        assert key is not None
        created = int(time.time())
        filename = f"{batch_id}_{kind}.jsonl"
        s3 = await self.s3()
        await s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/jsonl",
            Metadata=_metadata(owner, filename, "batch_output", created),
        )
        return FileInfo(file_id, key, owner, filename, "batch_output", created, len(body))

    async def get_file(self, file_id: str, owner: str) -> FileInfo | None:
        """The file, or None when it does not exist or belongs to another key."""
        key = file_key(file_id)
        if key is None:
            return None
        bucket = self.bucket
        s3 = await self.s3()
        try:
            head = await s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        info = _info(file_id, key, head.get("Metadata") or {}, int(head.get("ContentLength") or 0))
        return info if info is not None and info.owner == owner else None

    async def list_files(
        self, owner: str, *, purpose: str | None = None, after: str | None = None, limit: int = 10_000
    ) -> tuple[list[FileInfo], bool]:
        """The key's uploaded files, newest first (``purpose`` ``batch_output``: its batches' output and error files,
        newest batch first), from after the file id ``after``; at most ``limit``, and whether there are more."""
        bucket = self.bucket
        s3 = await self.s3()
        outputs = purpose == "batch_output"
        prefix = BATCHES if outputs else FILES
        start = file_key(after) if after else None
        found: list[FileInfo] = []
        paginator = s3.get_paginator("list_objects_v2")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if start:
            kwargs["StartAfter"] = start
        async for page in paginator.paginate(**kwargs):
            listed = [file_id for item in page.get("Contents") or [] if (file_id := _file_id_of(item["Key"]))]
            for first in range(0, len(listed), HEAD_CONCURRENCY):  # bounded: see HEAD_CONCURRENCY
                heads = listed[first : first + HEAD_CONCURRENCY]
                for info in await asyncio.gather(*(self.get_file(file_id, owner) for file_id in heads)):
                    if info is None or (purpose is not None and info.purpose != purpose):
                        continue
                    if len(found) == limit:
                        return found, True
                    found.append(info)
        return found, False

    async def content(self, info: FileInfo) -> AsyncIterator[bytes]:
        """The file's bytes in chunks of at most ``CHUNK_BYTES``, streamed from S3 (never read whole)."""
        s3 = await self.s3()
        response = await s3.get_object(Bucket=self.bucket, Key=info.key)
        body = response["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    async def delete_file(self, info: FileInfo) -> None:
        s3 = await self.s3()
        await s3.delete_object(Bucket=self.bucket, Key=info.key)

    # ------------------------------------------------------------ s3:// inputs

    def input_key(self, uri: str) -> str:
        """The key of an ``s3://<batch bucket>/<key>`` input reference, or a 400 naming the fix."""
        match = _S3_URI.match(uri)
        if match is None or match.group(1) != self.bucket:
            raise GatewayError(
                400,
                f"'input_file_id' {uri[:200]!r} is no object of the batch bucket: use a file id from POST /v1/files, "
                f"or s3://{self.bucket}/<key> for a file too large to upload through the API.",
                code="invalid_input_file",
                param="input_file_id",
            )
        key = match.group(2)
        if key.startswith(PRIVATE_PREFIXES):
            raise GatewayError(
                400,
                f"'input_file_id' names the gateway's own storage ({', '.join(PRIVATE_PREFIXES)}): put your input "
                "file elsewhere in the bucket (e.g. inputs/), or upload it with POST /v1/files.",
                code="invalid_input_file",
                param="input_file_id",
            )
        return key


def _file_id_of(key: str) -> str | None:
    if key.startswith(FILES):
        file_id = key[len(FILES) :]
        return file_id if _FILE_ID.match(file_id) else None
    if key.startswith(BATCHES):
        batch_id, _, name = key[len(BATCHES) :].partition("/")
        kinds = {value: kind for kind, value in OUTPUT_KINDS.items()}
        return batch_file_id(batch_id, kinds[name]) if name in kinds else None
    return None


def _info(file_id: str, key: str, metadata: dict[str, str], size: int) -> FileInfo | None:
    """A file from its object's metadata; None for an object the gateway did not write (no owner)."""
    if not metadata.get("owner"):
        return None
    created = metadata.get("created-at", "0")
    return FileInfo(
        id=file_id,
        key=key,
        owner=unquote(metadata["owner"]),
        filename=unquote(metadata.get("filename", "")),
        purpose=metadata.get("purpose", "batch"),
        created_at=int(created) if created.isdigit() else 0,
        bytes=size,
    )
