"""Job files and records written straight to S3 during preprocess's pass, as multipart uploads.

Each job's JSONL lines are sent as they are built: one multipart upload per job, parts of at least ``PART_BYTES``
(``JobUploads``). The jobs are cut either by a plan made before the pass (a Parquet input holds its row count in its
footers: balanced sizes) or greedily as the rows arrive (CSV, JSONL: a job closes at its row limit or before the line
that would take it over its byte limit). The lines are then written once, where staging wrote them to a local file,
read them back and uploaded them (2.3 GB twice more at 2.24M SimpleCoT rows). ``records.parquet`` goes up the same
way, written by pyarrow into an ``ObjectUpload`` as into a file.

Nothing becomes visible before the pass has validated every row: an object written by a multipart upload exists
only once the upload is completed, so every upload stays open until ``complete`` and ``abort`` ends them all on an
error (Amazon S3 user guide, "Uploading and copying objects using multipart upload").
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Self

import numpy as np

# S3's minimum part size is 5 MiB for every part but the last; 8 MiB is boto3's own default part size.
PART_BYTES = 8 << 20
# The job files' parts where nothing else shares their pool (a pass that uploads no records): S3's minimum. A job
# file is at most 1 GB (the model's file quota): at most 191 parts of the 10,000 an upload may have.
JOB_PART_BYTES = 5 << 20
# Parts sent at once: one HTTP stream to S3 is slower than preprocess builds lines (boto3's managed uploads send up
# to 10 parts at once for the same reason); each part in flight holds its buffer, so this bounds that memory too.
PARTS_IN_FLIGHT = 4


class PartBuffers:
    """The part buffers of one pass, shared by its uploaders (the job files' and ``records.parquet``'s): at most
    ``limit`` buffers of ``part_bytes`` ever exist (default: ``PARTS_IN_FLIGHT`` parts in flight plus one being
    filled per uploader, for two), each filled in place and taken again once its part is sent. ``take`` waits for a
    sent part's buffer when all exist and none is free. Each uploader holds one buffer to fill, so a pool shared by
    ``n`` uploaders needs a ``limit`` above ``n`` (then one part is always in flight when a ``take`` waits).

    The bound is what keeps the pass's memory flat: each uploader used to make a new buffer whenever none of its own
    was free, and kept it, so the buffers added up over a long pass to whatever the slowest moment of S3 needed
    (bench.memory, CSV: 5 buffers at 200k rows, 8 at 2M, 9 at 20M, 8 MiB each; up to 12 could exist)."""

    def __init__(self, part_bytes: int | None = None, limit: int | None = None) -> None:
        self.part_bytes = part_bytes or PART_BYTES
        self.limit = limit or PARTS_IN_FLIGHT + 2
        self.made = 0  # buffers that exist (never more than limit)
        self._free: list[bytearray] = []
        self._changed = threading.Condition()

    def take(self) -> bytearray:
        """A free buffer, a new one while fewer than ``limit`` exist, or else the next one given back."""
        with self._changed:
            self._changed.wait_for(lambda: self._free or self.made < self.limit)
            if self._free:
                return self._free.pop()
            self.made += 1
        return bytearray(self.part_bytes)

    def give(self, buffer: bytearray) -> None:
        """``buffer``'s part is sent: it can be filled again."""
        with self._changed:
            self._free.append(buffer)
            self._changed.notify()


class _Parts:
    """The part sending both uploaders share: ``send`` puts a part on a worker thread, up to ``PARTS_IN_FLIGHT`` at
    once (it waits for the oldest beyond that), ``drain`` waits for every part in flight, ``close`` ends the workers.
    As a context manager, an error inside the block aborts the upload(s), and the workers end either way."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        thread_name: str,
        part_bytes: int | None,
        buffers: PartBuffers | None,
        in_flight: int = PARTS_IN_FLIGHT,
    ) -> None:
        self._s3, self._bucket, self._max_in_flight = s3, bucket, in_flight
        self._buffers = buffers or PartBuffers(part_bytes, in_flight + 1)
        if part_bytes is not None and part_bytes != self._buffers.part_bytes:
            raise ValueError(f"parts of {part_bytes} bytes from buffers of {self._buffers.part_bytes}")
        self._part_bytes = self._buffers.part_bytes
        self._buffer, self._filled = self._buffers.take(), 0
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=thread_name)
        self._in_flight: deque[Future[None]] = deque()

    def _send_part(self, key: str, upload_id: str, parts: list[dict[str, Any]], body: bytearray) -> None:
        """``body`` as the next part of ``parts`` (its ETag recorded there once sent)."""
        part: dict[str, Any] = {"PartNumber": len(parts) + 1}
        parts.append(part)
        while len(self._in_flight) >= self._max_in_flight:
            self._in_flight.popleft().result()
        self._in_flight.append(self._pool.submit(self._upload_part, key, upload_id, part, body))

    def _fill(self, data: Any) -> None:
        """Append ``data`` to the buffer being filled, sending it as a part each time it holds ``_part_bytes``: every
        part but the last is exactly that size, however big one write is (a batch's lines can be 50 MB; a part that
        size, times the parts in flight, held hundreds of MB)."""
        view, start = memoryview(data).cast("B"), 0
        while start < len(view):
            take = min(len(view) - start, self._part_bytes - self._filled)
            # through a memoryview: a bytearray's slice assignment copies any other object into a new bytearray
            # first (CPython's bytearray_ass_subscript), a second copy of every byte into memory just allocated
            memoryview(self._buffer)[self._filled : self._filled + take] = view[start : start + take]
            self._filled += take
            start += take
            if self._filled >= self._part_bytes:
                self._send()

    def _next_part(self) -> bytearray:
        """The part filled so far, and the buffer to fill next: a full part's buffer goes with it and is replaced by
        one from the pool (``PartBuffers``: one whose part has been sent, or a new one up to its limit); a shorter
        last part is copied out and its buffer kept. Every buffer has the one size ``_part_bytes`` and is filled in
        place, so the same few blocks serve every part: growing a buffer step by step to 8 MiB, part after part, left
        holes in glibc's heaps that grew with the row count (20M CSV rows: 15-40 MB of the peak, in paired runs)."""
        if self._filled < self._part_bytes:  # a shorter last part: copied out, this buffer is filled again
            body = self._buffer[: self._filled]
        else:
            body, self._buffer = self._buffer, self._buffers.take()
        self._filled = 0
        return body

    def _send(self) -> None:
        raise NotImplementedError

    def _upload_part(self, key: str, upload_id: str, part: dict[str, Any], body: bytearray) -> None:
        try:
            answer = self._s3.upload_part(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=part["PartNumber"], Body=body
            )
            part["ETag"] = answer["ETag"]
        finally:  # sent, or failed (the error is raised from the part's future): its buffer can hold a later part
            if len(body) == self._part_bytes:  # a pool buffer (a short last part is a copy)
                self._buffers.give(body)

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

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """On an error, abort the upload(s) (whatever the error was: nothing becomes visible), then end the
        workers; without one, only end the workers (completing is the caller's)."""
        try:
            if kind is not None:
                self.abort()
        finally:
            self.close()


class JobUploads(_Parts):
    """One multipart upload per job, fed the JSONL lines in row order, cut into jobs by one of two rules:

    - planned (``sizes``): job ``i`` holds ``sizes[i]`` rows, for a source that knows its row count before the pass;
    - greedy (``max_rows`` and ``max_bytes``, no ``sizes``): a job closes once it holds ``max_rows`` rows, or when
      the next line would take its file over ``max_bytes``; the next job starts with that line. The last job holds
      what is left (``finish``). A single line over ``max_bytes`` fits no job: every upload is aborted, ``broken``
      is set and later lines are ignored (the caller reports the row once the pass is over).

    Job ``i`` is written to ``key_for(i)``. ``write`` takes the lines of the next rows and cuts them at the jobs'
    boundaries; a job's buffer is sent as a part whenever it holds ``PART_BYTES``, and its last part when the job
    closes, up to ``PARTS_IN_FLIGHT`` parts at once on worker threads (``write`` waits for the oldest beyond that).
    ``record_counts`` and ``job_bytes`` are each job's rows and file size. Memory holds the buffer being filled and
    the parts in flight, whatever the job sizes. ``close`` ends the workers (``complete`` and ``abort`` wait for
    every part first)."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key_for: Callable[[int], str],
        *,
        sizes: list[int] | None = None,
        max_rows: int | None = None,
        max_bytes: int | None = None,
        part_bytes: int | None = None,
        buffers: PartBuffers | None = None,
    ):
        if (sizes is None) == (max_rows is None or max_bytes is None):
            raise ValueError("give either the planned sizes, or max_rows and max_bytes")
        super().__init__(s3, bucket, "preprocess-upload", part_bytes, buffers)
        self._key_for = key_for
        self._sizes, self._max_rows, self._max_bytes = sizes, max_rows, max_bytes
        self._keys: list[str] = []
        self._upload_ids: list[str | None] = []
        self._parts: list[list[dict[str, Any]]] = []
        self.record_counts: list[int] = []
        self.job_bytes: list[int] = []
        self._open = False  # whether the last job still takes rows
        self.broken = False

    def _start_job(self) -> None:
        job = len(self._keys)
        if self._sizes is not None and job >= len(self._sizes):
            raise ValueError(f"more rows than the {sum(self._sizes)} planned")
        self._keys.append(self._key_for(job))
        self._upload_ids.append(None)
        self._parts.append([])
        self.record_counts.append(0)
        self.job_bytes.append(0)
        self._open = True

    def _take(self, offsets: np.ndarray, first: int, count: int) -> int:
        """How many of the lines ``first`` .. ``count - 1`` the open job takes."""
        job = len(self._keys) - 1
        if self._sizes is not None:
            return min(count - first, self._sizes[job] - self.record_counts[job])
        assert self._max_rows is not None and self._max_bytes is not None
        take = min(count - first, self._max_rows - self.record_counts[job])
        room = self._max_bytes - self.job_bytes[job]
        if int(offsets[first + take]) - int(offsets[first]) > room:  # the bytes cut first: the lines that fit
            ends = offsets[first + 1 : first + take + 1] - offsets[first]
            take = int(np.searchsorted(ends, room, side="right"))
        return take

    def _full(self, job: int) -> bool:
        limit = self._sizes[job] if self._sizes is not None else self._max_rows
        return self.record_counts[job] == limit

    def write(self, data: memoryview, offsets: np.ndarray) -> None:
        """The lines of the next ``len(offsets) - 1`` rows: row ``i``'s line is ``data[offsets[i]:offsets[i + 1]]``."""
        first, count = 0, len(offsets) - 1
        while first < count and not self.broken:
            if not self._open:
                self._start_job()
            job = len(self._keys) - 1
            take = self._take(offsets, first, count)
            if take == 0:  # the next line does not fit in the job's bytes
                if self.record_counts[job] == 0:  # nor in any job's
                    self.abort()
                    self.broken = True
                    return
                self._close_job()
                continue
            piece = data[int(offsets[first]) : int(offsets[first + take])]
            self._fill(piece)
            self.job_bytes[job] += len(piece)
            self.record_counts[job] += take
            first += take
            if self._full(job):
                self._close_job()

    def _close_job(self) -> None:
        """Send what is left of the job as its last part (a job whose bytes filled its last part exactly has none)."""
        if self._filled or not self._parts[-1]:
            self._send()
        self._open = False

    def finish(self) -> list[int]:
        """Close the last job (greedy: it takes what is left); the rows of each job."""
        if self._open and not self.broken:
            self._close_job()
        return self.record_counts

    def _send(self) -> None:
        """The buffer as the current job's next part (its upload created with the first part)."""
        job = len(self._keys) - 1
        upload_id = self._upload_ids[job]
        if upload_id is None:
            upload_id = self._s3.create_multipart_upload(Bucket=self._bucket, Key=self._keys[job])["UploadId"]
            self._upload_ids[job] = upload_id
        self._send_part(self._keys[job], upload_id, self._parts[job], self._next_part())

    def complete(self) -> None:
        """Make every job file visible; each job must have received all its rows (planned: every planned job)."""
        if self.broken:
            raise ValueError("a line over the byte limit: nothing to complete")
        self.finish()
        if self._sizes is not None and self.record_counts != self._sizes:
            raise ValueError(f"{sum(self.record_counts)} rows written of the {sum(self._sizes)} planned")
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
        self._filled = 0


class ObjectUpload(_Parts):
    """One object written as a stream of bytes, as into a file (``write``: pyarrow's ParquetWriter writes
    ``records.parquet`` into it), and sent as a multipart upload of parts of ``PART_BYTES``, up to
    ``PARTS_IN_FLIGHT`` at once on worker threads, while the rest is still being written: the object is uploaded
    during the pass, not from a local file after it. Invisible until ``complete``; ``abort`` leaves nothing.
    ``close`` ends the workers. ``in_flight``: fewer parts at once, where the writer is slower than the upload (a copy
    of a file read from the hub)."""

    closed = False  # what pyarrow asks of a Python file it writes into

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        *,
        part_bytes: int | None = None,
        buffers: PartBuffers | None = None,
        in_flight: int = PARTS_IN_FLIGHT,
    ):
        super().__init__(s3, bucket, "preprocess-records", part_bytes, buffers, in_flight)
        self.key = key
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.size = 0

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self._fill(data)
        self.size += size
        return size

    def flush(self) -> None:
        """Nothing to do: a part is sent once it holds ``PART_BYTES``, the rest by ``complete``."""

    def _send(self) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(Bucket=self._bucket, Key=self.key)["UploadId"]
        self._send_part(self.key, self._upload_id, self._parts, self._next_part())

    def complete(self) -> None:
        """Send what is left as the last part (any size) and make the object visible."""
        if self._filled or not self._parts:
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
        self._upload_id, self._filled = None, 0
