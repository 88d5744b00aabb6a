"""Run a data-plane handler as the deployed function runs it, with S3 on the local disk.

The measured side of the batch benchmarks calls ``lambda_handler`` itself (Powertools logger, metrics and tracer
decorators, the pydantic parse, ``Settings.from_env``, the one call into ``logic``) with the environment the stack
gives the function (``POWERTOOLS_*`` from ``stacks/constructs/python_function.py``, the data-plane image's
``ARROW_DEFAULT_MEMORY_POOL``): JSON log lines at INFO and the EMF metrics line go to stdout as in Lambda. Two
things differ, both outside what a variant does itself: S3 is :class:`LocalS3` (the network transfer is not part of
any variant; a copy is a hard link, as S3 copies server-side without the bytes passing through the function), and
X-Ray is off (Powertools disables the
tracer outside the Lambda environment; in Lambda it adds one segment per invocation, not per row).
"""

from __future__ import annotations

import io
import itertools
import os
import shlex
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from lambdas.shared.allocator import FUNCTION_ENVIRONMENT

BUCKET = "bench-data"
PART_WAIT_SECONDS = 0.5  # how long LocalS3 holds a part back for the part before it (see its multipart uploads)
PATHS = ("parquet", "csv", "jsonl", "hf")  # the preprocess input paths: S3 objects of three formats, a HF dataset
DOCKERFILE = Path(__file__).resolve().parent.parent / "lambdas" / "Dockerfile"


def image_env(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """Every ``ENV`` of the data-plane image (``lambdas/Dockerfile``), continuation lines joined."""
    env: dict[str, str] = {}
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def allocator_env() -> dict[str, str]:
    """The image's memory allocator settings (Arrow's pool, glibc's malloc), which a benchmark's process must run
    with to measure what Lambda runs; read from the Dockerfile, so the two cannot drift apart."""
    return {name: value for name, value in image_env().items() if name.startswith(("ARROW_", "MALLOC_"))}


# stacks/constructs/python_function.py (POWERTOOLS_*, the INFO log level), batch_workflow.py (service name, data
# plane settings) and lambdas/Dockerfile (the allocators; a function's own: lambdas/shared/allocator.py).
FUNCTION_ENV = {
    "POWERTOOLS_METRICS_NAMESPACE": "BedrockBatch",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    **allocator_env(),
    "DATA_BUCKET": BUCKET,
}


def production_env(function: str, max_records_per_job: int) -> dict[str, str]:
    """The environment of the deployed ``function`` (``preprocess``, ``postprocess``...), for a child process: set
    before Powertools creates its singletons, pyarrow its memory pool and glibc its malloc (the function's own
    allocator settings, ``FUNCTION_ENVIRONMENT``, as the stack sets them)."""
    return {
        **FUNCTION_ENV,
        **FUNCTION_ENVIRONMENT.get(function, {}),
        "POWERTOOLS_SERVICE_NAME": f"batch-{function}",
        "MAX_RECORDS_PER_JOB": str(max_records_per_job),
    }


class _Range(io.RawIOBase):
    """A body that reads ``length`` bytes of an open file from its current position."""

    def __init__(self, file: BinaryIO, length: int) -> None:
        super().__init__()
        self._file, self._left = file, length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        if size == 0 or self._file.closed:
            return b""
        data = self._file.read(size)
        self._left -= len(data)
        if self._left == 0 or not data:
            self._file.close()
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


class _Paginator:
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self._pages = pages

    def paginate(self, **_: Any) -> Iterator[dict[str, Any]]:
        yield from self._pages


class _ListObjects:
    def __init__(self, s3: LocalS3) -> None:
        self._s3 = s3

    def paginate(self, *, Bucket: str, Prefix: str = "") -> Iterator[dict[str, Any]]:  # noqa: N803
        token = None
        while True:
            page = self._s3.list_objects_v2(Bucket=Bucket, Prefix=Prefix, ContinuationToken=token)
            yield page
            if not page["IsTruncated"]:
                return
            token = page["NextContinuationToken"]


@dataclass
class LocalS3:
    """The S3 calls the data-plane functions make, on files under ``root/<bucket>/<key>``."""

    root: Path
    _lock: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _parts: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict, init=False, repr=False)  # written
    _placed: dict[str, set[int]] = field(default_factory=dict, init=False, repr=False)  # parts with a range
    _ends: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # each upload's next free offset

    def _path(self, bucket: str, key: str) -> Path:
        return self.root / bucket / key

    def _missing(self, operation: str, code: str = "404") -> Exception:
        """S3's error for a missing key: HEAD has no body, so its code is the status ("404"); GET's is NoSuchKey."""
        from botocore.exceptions import ClientError  # imported late: the bench's parent process stays small

        return ClientError({"Error": {"Code": code, "Message": "Not Found"}}, operation)

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's argument names
        path = self._path(Bucket, Key)
        if not path.is_file():
            raise self._missing("HeadObject")
        return {"ContentLength": path.stat().st_size}

    def get_object(self, *, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:  # noqa: N803
        """The body is botocore's ``StreamingBody`` (``read``, ``iter_lines``, ``iter_chunks``, ``close``, and its
        length check) over the file, as boto3 returns it over the socket: read as the caller reads, never whole."""
        from botocore.response import StreamingBody

        path = self._path(Bucket, Key)
        if not path.is_file():
            raise self._missing("GetObject", "NoSuchKey")
        file = path.open("rb")
        size = path.stat().st_size
        if Range is not None:
            first, last = (int(n) for n in Range.removeprefix("bytes=").split("-"))
            last = min(last, size - 1)
            file.seek(first)
            size = last - first + 1
        return {"Body": StreamingBody(_Range(file, size), size), "ContentLength": size}

    def list_objects_v2(
        self,
        *,
        Bucket: str,  # noqa: N803
        Prefix: str = "",  # noqa: N803
        MaxKeys: int = 1000,  # noqa: N803
        ContinuationToken: str | None = None,  # noqa: N803
    ) -> dict[str, Any]:
        """One page of keys in key order, at most ``MaxKeys`` (S3's limit, 1,000), with size and modification time;
        no ``Contents`` when nothing matches, as S3 answers."""
        base = self._path(Bucket, "")
        folder = base / Prefix.rpartition("/")[0]  # only the folder that can hold the prefix's keys is walked
        found = sorted(
            key
            for key in (p.relative_to(base).as_posix() for p in folder.rglob("*") if p.is_file())
            if key.startswith(Prefix) and (ContinuationToken is None or key > ContinuationToken)
        )
        page, truncated = found[: min(MaxKeys, 1000)], len(found) > min(MaxKeys, 1000)
        out: dict[str, Any] = {"IsTruncated": truncated, "KeyCount": len(page), "Prefix": Prefix}
        if page:
            out["Contents"] = [self._listed(base / key, key) for key in page]
        if truncated:
            out["NextContinuationToken"] = page[-1]
        return out

    @staticmethod
    def _listed(path: Path, key: str) -> dict[str, Any]:
        stat = path.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        return {"Key": key, "Size": stat.st_size, "LastModified": modified}

    def get_paginator(self, operation: str) -> _ListObjects:
        if operation != "list_objects_v2":
            raise NotImplementedError(f"LocalS3 has no paginator for {operation}")
        return _ListObjects(self)

    def download_file(self, bucket: str, key: str, filename: str) -> None:
        path = self._path(bucket, key)
        if not path.is_file():
            raise self._missing("HeadObject")
        shutil.copyfile(path, filename)

    def _new(self, bucket: str, key: str) -> Path:
        """The path an object is written to, as a new file: an object is never changed in place, so a copy (a hard
        link) keeps its bytes when either key is written again."""
        path = self._path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        return path

    def upload_fileobj(self, body: Any, bucket: str, key: str) -> None:
        with self._new(bucket, key).open("wb") as out:
            shutil.copyfileobj(body, out, 8 << 20)  # boto3's uploader reads 8 MB parts

    def upload_file(self, filename: str, bucket: str, key: str) -> None:
        shutil.copyfile(filename, self._new(bucket, key))

    def copy(self, source: dict[str, str], bucket: str, key: str) -> None:
        """S3 copies server-side: no byte passes through the function, so neither does one here (a hard link; a file
        copy only where the file system cannot link)."""
        source_path, path = self._path(source["Bucket"], source["Key"]), self._new(bucket, key)
        try:
            path.hardlink_to(source_path.resolve())
        except OSError:
            shutil.copyfile(source_path, path)

    def put_object(self, *, Bucket: str, Key: str, Body: bytes | BinaryIO, **_: Any) -> dict[str, Any]:  # noqa: N803
        """``Body`` is bytes or a readable file, as boto3 takes it."""
        with self._new(Bucket, Key).open("wb") as out:
            if isinstance(Body, bytes | bytearray | memoryview):
                out.write(Body)
            else:
                shutil.copyfileobj(Body, out, 8 << 20)
        return {}

    # Multipart uploads: each part takes the next free range of one file in the order the parts arrive, and is written
    # there outside the lock (``os.pwrite`` at its offset): S3 takes the parts of one upload, and of several, in
    # parallel, so the stand-in must not write them one at a time either. S3 assembles the parts server-side: no
    # byte passes through the function then, nor here when they arrived in order; otherwise the file is rebuilt in
    # part order, a copy S3 would not make, charged to the caller. A part waits up to PART_WAIT_SECONDS for the one
    # before it to take its range, so parts sent in order from several threads (whose calls reach the lock in any
    # order) are placed in order, as S3 would place them, without that copy.
    def _upload(self, upload_id: str) -> Path:
        return self.root / ".uploads" / upload_id

    def create_multipart_upload(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        upload_id = uuid.uuid4().hex
        path = self._upload(upload_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        with self._lock:
            self._parts[upload_id] = {}
            self._ends[upload_id] = 0
        return {"UploadId": upload_id, "Bucket": Bucket, "Key": Key}

    def upload_part(self, *, UploadId: str, PartNumber: int, Body: Any, **_: Any) -> dict[str, Any]:  # noqa: N803
        """The part's range is reserved under the lock (after the part before it, when that one comes in time), its
        bytes written outside it; the part counts as uploaded once they are all written, as S3 answers an UploadPart
        once it holds the part."""
        length = memoryview(Body).nbytes
        with self._lock:
            before = PartNumber - 1
            self._lock.wait_for(lambda: before in self._placed.get(UploadId, {before}) or not before, PART_WAIT_SECONDS)
            if UploadId not in self._ends:
                raise self._missing("UploadPart", "NoSuchUpload")
            offset = self._ends[UploadId]
            self._ends[UploadId] += length
            self._placed.setdefault(UploadId, set()).add(PartNumber)
            self._lock.notify_all()
        descriptor = os.open(self._upload(UploadId), os.O_WRONLY)
        try:
            view, written = memoryview(Body).cast("B"), 0
            while written < length:
                written += os.pwrite(descriptor, view[written:], offset + written)
        finally:
            os.close(descriptor)
        with self._lock:
            self._parts[UploadId][PartNumber] = (offset, length)
        return {"ETag": f'"{UploadId}-{PartNumber}"'}

    def complete_multipart_upload(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        UploadId: str,  # noqa: N803
        MultipartUpload: dict[str, Any],  # noqa: N803
    ) -> dict[str, Any]:
        with self._lock:
            stored = self._parts.pop(UploadId)
            self._placed.pop(UploadId, None)
            self._ends.pop(UploadId, None)
        numbers = [part["PartNumber"] for part in MultipartUpload["Parts"]]
        if sorted(stored) != numbers:
            raise ValueError(f"parts {numbers} listed, {sorted(stored)} uploaded")
        source, target = self._upload(UploadId), self._new(Bucket, Key)
        starts = list(itertools.accumulate((stored[n][1] for n in numbers), initial=0))
        if [stored[n][0] for n in numbers] == starts[:-1] and source.stat().st_size == starts[-1]:
            source.rename(target)  # arrived in order, nothing else in the file: the file is the object
            return {}
        with source.open("rb") as parts, target.open("wb") as out:
            for number in numbers:
                offset, length = stored[number]
                parts.seek(offset)
                out.write(parts.read(length))
        source.unlink()
        return {}

    def abort_multipart_upload(self, *, UploadId: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            self._parts.pop(UploadId, None)
            self._placed.pop(UploadId, None)
            self._ends.pop(UploadId, None)
        self._upload(UploadId).unlink(missing_ok=True)
        return {}


class NoQuotas:
    """A Service Quotas client listing no quotas: preprocess logs that the documented defaults apply, as in an
    account where the quotas cannot be read."""

    def get_paginator(self, _operation: str) -> _Paginator:
        return _Paginator([{"Quotas": []}])


@dataclass
class LambdaContext:
    function_name: str = "bench-function"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench-function"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


def use_local_aws(s3: LocalS3) -> None:
    """Make the handlers' client factories (``lambdas.shared.aws``) return the local S3 and the quota stub."""
    from lambdas.shared import aws

    aws.s3 = lambda: s3
    aws.service_quotas = lambda: NoQuotas()
