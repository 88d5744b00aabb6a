"""How ``uploads.JobUploads`` cuts JSONL lines into job files: by a plan, or greedily by rows and bytes."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from lambdas.preprocess.uploads import PARTS_IN_FLIGHT, JobUploads, ObjectUpload, PartBuffers


class MultipartS3:
    """The four multipart calls, in memory: an object exists only once its upload is completed."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.open: dict[str, dict[int, bytes]] = {}

    def create_multipart_upload(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        upload_id = f"{Key}#{len(self.open)}"
        self.open[upload_id] = {}
        return {"UploadId": upload_id}

    def upload_part(self, *, UploadId: str, PartNumber: int, Body: Any, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.open[UploadId][PartNumber] = bytes(Body)
        return {"ETag": f"{UploadId}-{PartNumber}"}

    def complete_multipart_upload(self, *, Key: str, UploadId: str, MultipartUpload: Any, **_: Any) -> None:  # noqa: N803
        parts = self.open.pop(UploadId)
        self.objects[Key] = b"".join(parts[part["PartNumber"]] for part in MultipartUpload["Parts"])

    def abort_multipart_upload(self, *, UploadId: str, **_: Any) -> None:  # noqa: N803
        self.open.pop(UploadId)


def lines(sizes: list[int], first: int = 0) -> tuple[memoryview, np.ndarray]:
    """One line per size (its last byte a newline), as ``jsonl.line_bytes`` gives them."""
    data = b"".join((f"{first + i:x}".encode() * size)[: size - 1] + b"\n" for i, size in enumerate(sizes))
    return memoryview(data), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)


def key(index: int) -> str:
    return f"jobs/{index:04d}.jsonl"


def test_greedy_jobs_close_at_the_row_limit_or_before_a_line_over_the_byte_limit():
    # GIVEN greedy uploads of at most 3 rows and 25 bytes a job
    s3 = MultipartS3()
    uploads = JobUploads(s3, "bucket", key, max_rows=3, max_bytes=25, part_bytes=8)
    # WHEN lines of 5, 5, 5, 10, 10, 6 and 20 bytes arrive in two writes
    first, second = lines([5, 5, 5, 10]), lines([10, 6, 20], first=4)
    uploads.write(*first)
    uploads.write(*second)
    sizes = uploads.finish()
    uploads.complete()
    # THEN the first job closed at 3 rows; the second (across the two writes) before the line that would take it to
    # 26 bytes, the third likewise before the 20-byte line; the last job holds the rest
    assert sizes == [3, 2, 1, 1]
    assert uploads.job_bytes == [15, 20, 6, 20]
    # AND the files hold every line once, in order, and no upload stays open
    assert [len(s3.objects[key(i)]) for i in range(4)] == [15, 20, 6, 20]
    assert b"".join(s3.objects[key(i)] for i in range(4)) == bytes(first[0]) + bytes(second[0])
    assert s3.open == {}


def test_a_line_over_the_byte_limit_aborts_every_greedy_upload():
    # GIVEN greedy uploads of at most 25 bytes a job, one job already sent in parts
    s3 = MultipartS3()
    uploads = JobUploads(s3, "bucket", key, max_rows=10, max_bytes=25, part_bytes=8)
    uploads.write(*lines([10, 10]))
    # WHEN a line of 30 bytes arrives, then more lines
    uploads.write(*lines([10, 30, 5], first=2))
    uploads.write(*lines([5], first=5))
    # THEN every upload was aborted, nothing exists, and the later lines were ignored
    assert uploads.broken and s3.open == {} and s3.objects == {}
    # AND nothing can be completed
    with pytest.raises(ValueError, match="over the byte limit"):
        uploads.complete()


def test_planned_jobs_take_their_planned_rows_whatever_their_bytes():
    # GIVEN uploads planned as jobs of 2 and 3 rows
    s3 = MultipartS3()
    uploads = JobUploads(s3, "bucket", key, sizes=[2, 3], part_bytes=8)
    # WHEN five lines arrive THEN the jobs take 2 and 3 of them
    uploads.write(*lines([40, 1, 1, 1, 1]))
    uploads.complete()
    assert uploads.record_counts == [2, 3] and uploads.job_bytes == [41, 3]
    # AND a sixth line is refused
    with pytest.raises(ValueError, match="more rows than the 5 planned"):
        uploads.write(*lines([1]))


def test_planned_jobs_missing_rows_are_not_completed():
    # GIVEN uploads planned as jobs of 2 and 3 rows, given four lines
    s3 = MultipartS3()
    uploads = JobUploads(s3, "bucket", key, sizes=[2, 3], part_bytes=8)
    uploads.write(*lines([1, 1, 1, 1]))
    # WHEN completed THEN it refuses, and abort leaves nothing
    with pytest.raises(ValueError, match="4 rows written of the 5 planned"):
        uploads.complete()
    uploads.abort()
    assert s3.open == {} and s3.objects == {}


class BodyKeepingS3(MultipartS3):
    """Also keeps every body object it was given (not a copy), to see which buffers carried the parts."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[Any] = []

    def upload_part(self, *, Body: Any, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        self.bodies.append(Body)
        return super().upload_part(Body=Body, **kwargs)


def test_full_parts_are_sent_from_a_few_reused_buffers_and_every_byte_arrives():
    # GIVEN one planned job of 60 lines of 7 bytes, sent in parts of 8 bytes (52 full parts and a short last one)
    s3 = BodyKeepingS3()
    data, offsets = lines([7] * 60)
    uploads = JobUploads(s3, "bucket", key, sizes=[60], part_bytes=8)
    # WHEN the lines are written in three pieces and the job completed
    for first, last in ((0, 20), (20, 45), (45, 60)):
        uploads.write(data, offsets[first : last + 1])
    uploads.complete()
    uploads.close()
    # THEN the job file holds every byte, in order
    assert s3.objects[key(0)] == bytes(data)
    # AND the full parts went out in a handful of buffers, each used again once its part was sent
    full = {id(body) for body in s3.bodies if len(body) == 8}
    assert len(s3.bodies) == 53
    assert len(full) <= PARTS_IN_FLIGHT + 1  # at most the parts in flight and the one being filled


def test_records_written_from_arrow_buffers_go_up_in_parts_of_the_s3_minimum_but_the_last():
    # GIVEN the records upload with parts of S3's smallest size but the last (5 MiB), and writes of every size from
    # Arrow buffers (what pyarrow's writer and the JSONL lines hand over: not bytearrays)
    import pyarrow as pa

    from lambdas.preprocess.uploads import ObjectUpload

    s3 = PartSizesS3()
    written = [bytes([i]) * size for i, size in enumerate((3, 5 << 20, 7 << 20, 1, 2 << 20))]
    upload = ObjectUpload(s3, "bucket", "records.parquet", part_bytes=5 << 20)
    # WHEN they are written and the upload completed
    for data in written:
        upload.write(pa.py_buffer(data))
    upload.complete()
    upload.close()
    # THEN the object holds every byte in order, in parts of exactly 5 MiB but the last (the rest: 4 MiB + 4 bytes)
    assert s3.objects["records.parquet"] == b"".join(written)
    assert [s3.sizes[number] for number in sorted(s3.sizes)] == [5 << 20, 5 << 20, (4 << 20) + 4]


class PartSizesS3(MultipartS3):
    """Also keeps each part's size by its number."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: dict[int, int] = {}

    def upload_part(self, *, PartNumber: int, Body: Any, **kwargs: Any) -> dict[str, Any]:  # noqa: N803
        self.sizes[PartNumber] = len(Body)
        return super().upload_part(PartNumber=PartNumber, Body=Body, **kwargs)


class CountingS3(MultipartS3):
    """Records the most parts being sent at once (each part takes a moment, so parts allowed at once overlap)."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = self.most_at_once = 0
        self._lock = threading.Lock()

    def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            self.sending += 1
            self.most_at_once = max(self.most_at_once, self.sending)
        time.sleep(0.01)
        try:
            return super().upload_part(**kwargs)
        finally:
            with self._lock:
                self.sending -= 1


@pytest.mark.parametrize("in_flight", [1, 2])
def test_an_object_upload_sends_at_most_its_parts_in_flight_at_once(in_flight):
    # GIVEN an object upload of 8-byte parts allowed `in_flight` parts at once
    s3 = CountingS3()
    upload = ObjectUpload(s3, "bucket", "records.parquet", part_bytes=8, in_flight=in_flight)
    # WHEN 20 parts' worth of bytes are written, one part at a time, and the upload is completed
    body = bytes(range(160))
    with upload:
        for start in range(0, len(body), 8):
            upload.write(body[start : start + 8])
        upload.complete()
    # THEN never more than `in_flight` parts were sent at once, and the object is whole
    assert 1 <= s3.most_at_once <= in_flight
    assert s3.objects["records.parquet"] == body


class GatedS3(MultipartS3):
    """S3 that takes no part until ``gate`` opens: every part sent stays in flight, holding its buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        self.gate.wait()
        return super().upload_part(**kwargs)


class WatchedBuffers(PartBuffers):
    """A pool that says when a ``take`` has to wait: every buffer exists and none is free."""

    def __init__(self, part_bytes: int, limit: int) -> None:
        super().__init__(part_bytes, limit)
        self.exhausted = threading.Event()

    def take(self) -> bytearray:
        if self.made == self.limit and not self._free:
            self.exhausted.set()
        return super().take()


def test_uploaders_sharing_part_buffers_never_make_more_than_the_limit_and_wait_for_a_sent_part():
    # GIVEN a job upload and a records upload sharing a pool of 3 buffers of 8 bytes, and an S3 that takes no part
    # until its gate opens
    s3 = GatedS3()
    pool = WatchedBuffers(part_bytes=8, limit=3)
    jobs = JobUploads(s3, "bucket", key, sizes=[40], part_bytes=8, buffers=pool)
    records = ObjectUpload(s3, "bucket", "records.parquet", part_bytes=8, buffers=pool)
    data, offsets = lines([4] * 40)

    def write() -> None:  # 20 parts to each upload, one line of each at a time, as the pass interleaves them
        for row in range(40):
            jobs.write(data, offsets[row : row + 2])
            records.write(data[offsets[row] : offsets[row + 1]])
        jobs.complete()
        records.complete()

    writer = threading.Thread(target=write)
    writer.start()
    # WHEN the writer has filled every buffer the pool may make (the safety timeout only ends a broken run)
    exhausted = pool.exhausted.wait(timeout=60)
    made_while_blocked = pool.made
    s3.gate.set()  # S3 takes the parts: their buffers come back
    writer.join()
    jobs.close()
    records.close()
    # THEN it waited for a sent part's buffer instead of making a fourth, and never made more than 3
    assert exhausted and made_while_blocked == 3
    assert pool.made == 3
    # AND every byte arrived in order, in both objects
    assert s3.objects[key(0)] == bytes(data)
    assert s3.objects["records.parquet"] == bytes(data)


class FailingS3(MultipartS3):
    """S3 that refuses every part."""

    def upload_part(self, **_: Any) -> dict[str, Any]:
        raise RuntimeError("S3 refused the part")


def test_failed_parts_give_their_buffers_back_so_the_error_is_raised_instead_of_a_wait():
    # GIVEN an upload whose own pool holds 5 buffers (4 parts in flight and one being filled) and an S3 that refuses
    # every part
    upload = ObjectUpload(FailingS3(), "bucket", "records.parquet", part_bytes=8)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(40):  # 40 parts: far more than the pool's buffers
                upload.write(b"x" * 8)
            upload.complete()
        except RuntimeError as exc:
            failed.append(exc)

    # WHEN more parts are written than the pool has buffers (in a thread: a writer left waiting for a buffer that
    # never comes back would otherwise hang the test run; the timeout only ends such a broken run)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=60)
    # THEN the writer got S3's error instead of waiting for a buffer
    assert not writer.is_alive()
    assert [str(exc) for exc in failed] == ["S3 refused the part"]
    upload.close()


def test_a_part_size_other_than_the_pools_is_refused():
    # GIVEN a pool of 8-byte buffers
    pool = PartBuffers(part_bytes=8, limit=3)
    # WHEN an upload asks for 16-byte parts from it
    # THEN it is refused
    with pytest.raises(ValueError, match="parts of 16 bytes from buffers of 8"):
        ObjectUpload(MultipartS3(), "bucket", "records.parquet", part_bytes=16, buffers=pool)
