"""Small S3 helpers with the client passed in. No pyarrow here: control-plane functions import this too."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def put_json(s3: Any, bucket: str, key: str, value: Any) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(value, indent=1).encode(), ContentType="application/json")


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"], obj["Size"]


def iter_lines(s3: Any, bucket: str, key: str) -> Iterator[bytes]:
    """Stream an object line by line without loading it whole."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    yield from body.iter_lines(chunk_size=1 << 20)


class _ReadOnly(io.RawIOBase):
    """``readinto`` in terms of ``read``, for the read-only streams below."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class S3RangeReader(_ReadOnly):
    """A seekable, read-only file over one S3 object using ranged GETs (for Parquet footers and row groups)."""

    def __init__(self, s3: Any, bucket: str, key: str, size: int | None = None) -> None:
        super().__init__()
        self._s3, self._bucket, self._key = s3, bucket, key
        self._size = size if size is not None else s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        self._pos = 0

    @property
    def size(self) -> int:
        return self._size

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if self._pos >= self._size or size == 0:
            return b""
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        data: bytes = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={self._pos}-{end - 1}")[
            "Body"
        ].read()
        self._pos += len(data)
        return data


class FileRange(_ReadOnly):
    """Bytes ``[start, end)`` of an open binary file, as a readable stream (for uploading part of a file)."""

    def __init__(self, file: Any, start: int, end: int) -> None:
        super().__init__()
        self._file, self._start, self._end = file, start, end
        self._pos = start

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._pos
        if left <= 0:
            return b""
        size = left if size is None or size < 0 else min(size, left)
        self._file.seek(self._pos)
        data: bytes = self._file.read(size)
        self._pos += len(data)
        return data
