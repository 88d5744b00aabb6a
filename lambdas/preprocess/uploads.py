"""Job files written straight to S3 during preprocess's one pass, when the input gives its row count before it.

A Parquet input (one object, or a prefix of Parquet objects) holds its row count in its footers, so the jobs can be
planned by rows before the pass, and each job's JSONL lines sent as they are built: one multipart upload per job,
parts of at least ``PART_BYTES``. The lines are then written once, where staging wrote them to a local file, read
them back and uploaded them (2.3 GB twice more at 2.24M SimpleCoT rows).

Nothing becomes visible before the pass has validated every row: an object written by a multipart upload exists
only once the upload is completed, so every upload stays open until ``complete`` and ``abort`` ends them all on an
error (Amazon S3 user guide, "Uploading and copying objects using multipart upload").
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

# S3's minimum part size is 5 MiB for every part but the last; 8 MiB is boto3's own default part size.
PART_BYTES = 8 << 20
# Parts sent at once: one HTTP stream to S3 is slower than preprocess builds lines (boto3's managed uploads send up
# to 10 parts at once for the same reason); each part in flight holds its buffer, so this bounds that memory too.
PARTS_IN_FLIGHT = 4


class _Parts:
    """The part sending both uploaders share: ``send`` puts a part on a worker thread, up to ``PARTS_IN_FLIGHT`` at
    once (it waits for the oldest beyond that), ``drain`` waits for every part in flight, ``close`` ends the workers."""

    def __init__(self, s3: Any, bucket: str, thread_name: str) -> None:
        self._s3, self._bucket = s3, bucket
        self._pool = ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix=thread_name)
        self._in_flight: deque[Future[None]] = deque()

    def _send_part(self, key: str, upload_id: str, parts: list[dict[str, Any]], body: bytearray) -> None:
        """``body`` as the next part of ``parts`` (its ETag recorded there once sent)."""
        part: dict[str, Any] = {"PartNumber": len(parts) + 1}
        parts.append(part)
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            self._in_flight.popleft().result()
        self._in_flight.append(self._pool.submit(self._upload_part, key, upload_id, part, body))

    def _upload_part(self, key: str, upload_id: str, part: dict[str, Any], body: bytearray) -> None:
        answer = self._s3.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=part["PartNumber"], Body=body
        )
        part["ETag"] = answer["ETag"]

    def _drain(self, *, raise_errors: bool) -> None:
        """Wait for every part in flight; the first error is raised when ``raise_errors``."""
        while self._in_flight:
            future = self._in_flight.popleft()
            if raise_errors:
                future.result()
            else:
                future.exception()

    def close(self) -> None:
        self._drain(raise_errors=False)
        self._pool.shutdown(wait=True)


class JobUploads(_Parts):
    """One multipart upload per planned job (``keys[i]`` holds ``sizes[i]`` rows), fed the JSONL lines in row order.

    ``write`` takes the lines of the next rows and cuts them at the jobs' boundaries; a job's buffer is sent as a part
    whenever it holds ``PART_BYTES``, and its last part when its last row arrives, up to ``PARTS_IN_FLIGHT`` parts at
    once on worker threads (``write`` waits for the oldest beyond that). ``job_bytes`` is each job file's size.
    Memory holds the buffer being filled and the parts in flight, whatever the job sizes. ``close`` ends the workers
    (``complete`` and ``abort`` wait for every part first)."""

    def __init__(self, s3: Any, bucket: str, keys: list[str], sizes: list[int], *, part_bytes: int | None = None):
        if len(keys) != len(sizes):
            raise ValueError(f"{len(keys)} keys for {len(sizes)} jobs")
        super().__init__(s3, bucket, "preprocess-upload")
        self._keys = keys
        self._part_bytes = part_bytes or PART_BYTES
        self._ends = np.cumsum(sizes).tolist()  # the row after each job's last
        self._upload_ids: list[str | None] = [None] * len(keys)
        self._parts: list[list[dict[str, Any]]] = [[] for _ in keys]
        self.job_bytes = [0] * len(keys)
        self._job = self._row = 0
        self._buffer = bytearray()

    @property
    def rows(self) -> int:
        """Rows written so far."""
        return self._row

    def write(self, data: memoryview, offsets: np.ndarray) -> None:
        """The lines of the next ``len(offsets) - 1`` rows: row ``i``'s line is ``data[offsets[i]:offsets[i + 1]]``."""
        first, count = 0, len(offsets) - 1
        while first < count:
            if self._job >= len(self._keys):
                raise ValueError(f"more rows than the {self._ends[-1] if self._ends else 0} planned")
            take = min(count - first, self._ends[self._job] - self._row)
            piece = data[int(offsets[first]) : int(offsets[first + take])]
            self._buffer += piece
            self.job_bytes[self._job] += len(piece)
            self._row, first = self._row + take, first + take
            if self._row == self._ends[self._job]:
                self._send()
                self._job += 1
            elif len(self._buffer) >= self._part_bytes:
                self._send()

    def _send(self) -> None:
        """The buffer as the current job's next part (its upload created with the first part)."""
        job, key = self._job, self._keys[self._job]
        upload_id = self._upload_ids[job]
        if upload_id is None:
            upload_id = self._s3.create_multipart_upload(Bucket=self._bucket, Key=key)["UploadId"]
            self._upload_ids[job] = upload_id
        self._send_part(key, upload_id, self._parts[job], self._buffer)
        self._buffer = bytearray()

    def complete(self) -> None:
        """Make every job file visible; each job must have received all its rows."""
        if self._row != (self._ends[-1] if self._ends else 0):
            raise ValueError(f"{self._row} rows written of the {self._ends[-1]} planned")
        self._drain(raise_errors=True)
        for job, (key, upload_id, parts) in enumerate(zip(self._keys, self._upload_ids, self._parts, strict=True)):
            self._s3.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            self._upload_ids[job] = None  # completed: nothing to abort

    def abort(self) -> None:
        """End every upload still open: S3 drops their parts and no job file appears."""
        self._drain(raise_errors=False)
        for key, upload_id in zip(self._keys, self._upload_ids, strict=True):
            if upload_id is not None:
                self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        self._upload_ids = [None] * len(self._keys)
        self._buffer = bytearray()


class ObjectUpload(_Parts):
    """One object written as a stream of bytes, as into a file (``write``: pyarrow's ParquetWriter writes
    ``records.parquet`` into it), and sent as a multipart upload of parts of ``PART_BYTES``, up to
    ``PARTS_IN_FLIGHT`` at once on worker threads, while the rest is still being written: the object is uploaded
    during the pass, not from a local file after it. Invisible until ``complete``; ``abort`` leaves nothing.
    ``close`` ends the workers."""

    closed = False  # what pyarrow asks of a Python file it writes into

    def __init__(self, s3: Any, bucket: str, key: str, *, part_bytes: int | None = None):
        super().__init__(s3, bucket, "preprocess-records")
        self.key = key
        self._part_bytes = part_bytes or PART_BYTES
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._buffer = bytearray()
        self.size = 0

    def write(self, data: Any) -> int:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self._part_bytes:
            self._send()
        return len(data)

    def flush(self) -> None:
        """Nothing to do: a part is sent once it holds ``PART_BYTES``, the rest by ``complete``."""

    def _send(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(Bucket=self._bucket, Key=self.key)["UploadId"]
        self._send_part(self.key, self._upload_id, self._parts, self._buffer)
        self._buffer = bytearray()

    def complete(self) -> None:
        """Send what is left as the last part (any size) and make the object visible."""
        if self._buffer or not self._parts:
            self._send()
        self._drain(raise_errors=True)
        self._s3.complete_multipart_upload(
            Bucket=self._bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        self._upload_id = None

    def abort(self) -> None:
        """End the upload if one is open: S3 drops its parts and no object appears."""
        self._drain(raise_errors=False)
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self.key, UploadId=self._upload_id)
        self._upload_id, self._buffer = None, bytearray()

    def __enter__(self) -> ObjectUpload:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """On an error, abort the upload (whatever it was), then end the workers."""
        try:
            if kind is not None:
                self.abort()
        finally:
            self.close()
