"""moto's S3 as the local runtime patches it (local/moto_patches.py): a request reads from an object's spool only
the bytes it needs, and S3 answers exactly as unpatched moto does."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from local import moto_patches

BUCKET = "local-s3-patches"
MB = 1 << 20


class CountingSpool:
    """A FakeKey's spool that records the size of every read from it."""

    def __init__(self, spool: Any) -> None:
        self.spool = spool
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.spool.read(size)
        self.reads.append(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.spool, name)


@pytest.fixture
def patched_s3() -> Iterator[Any]:
    with mock_aws(), moto_patches.installed():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _watch(key: Any) -> CountingSpool:
    """Count the reads from a moto FakeKey's spool from now on."""
    spool = CountingSpool(key._value_buffer)
    key._value_buffer = spool
    return spool


def _count_reads(key_name: str) -> CountingSpool:
    return _watch(s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(BUCKET, key_name))


def test_a_ranged_get_reads_only_its_range_from_the_spool(patched_s3: Any) -> None:
    # GIVEN a 12 MB object, its spool watched
    data = os.urandom(12 * MB)
    patched_s3.put_object(Bucket=BUCKET, Key="big", Body=data)
    spool = _count_reads("big")
    # WHEN a Parquet-footer-like range is read from it
    body = patched_s3.get_object(Bucket=BUCKET, Key="big", Range="bytes=1000-1099")["Body"].read()
    # THEN the answer is that range, and only those 100 bytes were read from the spool
    assert body == data[1000:1100]
    assert sum(spool.reads) == 100


def test_a_whole_object_get_streams_from_the_spool_as_the_client_reads(patched_s3: Any) -> None:
    # GIVEN a 12 MB object, its spool watched
    data = os.urandom(12 * MB)
    patched_s3.put_object(Bucket=BUCKET, Key="big", Body=data)
    spool = _count_reads("big")
    # WHEN a client opens it and reads its first MB
    body = patched_s3.get_object(Bucket=BUCKET, Key="big")["Body"]
    first = body.read(MB)
    # THEN only that MB has been read from the spool; the rest follows as it reads on
    assert first == data[:MB] and sum(spool.reads) == MB
    assert first + body.read() == data


def test_an_upload_part_copy_reads_only_its_range_of_the_source(patched_s3: Any) -> None:
    # GIVEN a 12 MB source object, its spool watched, and a multipart upload
    data = os.urandom(12 * MB)
    patched_s3.put_object(Bucket=BUCKET, Key="source", Body=data)
    spool = _count_reads("source")
    upload = patched_s3.create_multipart_upload(Bucket=BUCKET, Key="copy")["UploadId"]
    # WHEN one part copies 100 bytes of the source
    patched_s3.upload_part_copy(
        Bucket=BUCKET,
        Key="copy",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": BUCKET, "Key": "source"},
        CopySourceRange="bytes=2000-2099",
    )
    # THEN only those 100 bytes were read from the source's spool
    assert sum(spool.reads) == 100


def test_completing_a_multipart_upload_copies_the_parts_in_bounded_steps(patched_s3: Any) -> None:
    # GIVEN a multipart upload of two 6 MB parts, their spools watched
    data = os.urandom(12 * MB)
    upload = patched_s3.create_multipart_upload(Bucket=BUCKET, Key="joined")["UploadId"]
    etags = [
        patched_s3.upload_part(Bucket=BUCKET, Key="joined", UploadId=upload, PartNumber=n + 1, Body=part)["ETag"]
        for n, part in enumerate((data[: 6 * MB], data[6 * MB :]))
    ]
    multipart = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_bucket(BUCKET).multiparts[upload]
    spools = [_watch(part) for part in multipart.parts.values()]
    # WHEN the upload is completed
    patched_s3.complete_multipart_upload(
        Bucket=BUCKET,
        Key="joined",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": etag} for n, etag in enumerate(etags)]},
    )
    # THEN no read from a part took more than one copy step, and the object is the parts joined
    assert max(size for spool in spools for size in spool.reads) <= moto_patches.CHUNK
    assert patched_s3.get_object(Bucket=BUCKET, Key="joined")["Body"].read() == data


def _s3_answers(path: Path, patched: bool) -> list[Any]:
    """What S3 answers to the requests our runs make (and their edge cases), with or without the patches."""
    data = path.read_bytes()
    answers: list[Any] = []
    with mock_aws(), moto_patches.installed() if patched else contextlib.nullcontext():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(path), BUCKET, "input")  # multipart: 8 MB parts
        head = s3.head_object(Bucket=BUCKET, Key="input", ChecksumMode="ENABLED")
        answers += [head["ETag"], head["ContentLength"], head.get("ChecksumCRC32")]
        for spec in ("bytes=100-199", "bytes=-10", f"bytes={len(data) - 5}-", "bytes=0-"):
            got = s3.get_object(Bucket=BUCKET, Key="input", Range=spec)
            answers += [got["ContentRange"], got["ContentLength"], got["Body"].read()]
        with pytest.raises(s3.exceptions.ClientError) as beyond:
            s3.get_object(Bucket=BUCKET, Key="input", Range=f"bytes={len(data) + 5}-")
        answers.append(beyond.value.response["Error"]["Code"])
        whole = s3.get_object(Bucket=BUCKET, Key="input", ChecksumMode="ENABLED")
        answers += [whole["Body"].read() == data, whole.get("ChecksumCRC32")]
        target = path.with_suffix(".download")
        s3.download_file(BUCKET, "input", str(target))  # ranged GETs from several threads
        answers.append(target.read_bytes() == data)
        upload = s3.create_multipart_upload(
            Bucket=BUCKET, Key="full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
        )["UploadId"]
        parts = []
        for number, (start, stop) in enumerate(((0, 5 * MB), (5 * MB, len(data))), start=1):
            part = s3.upload_part(
                Bucket=BUCKET,
                Key="full",
                UploadId=upload,
                PartNumber=number,
                Body=data[start:stop],
                ChecksumAlgorithm="CRC32",
            )
            parts.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumCRC32": part["ChecksumCRC32"]})
        done = s3.complete_multipart_upload(
            Bucket=BUCKET, Key="full", UploadId=upload, ChecksumType="FULL_OBJECT", MultipartUpload={"Parts": parts}
        )
        full = s3.head_object(Bucket=BUCKET, Key="full", ChecksumMode="ENABLED")
        answers += [done["ETag"], full["ChecksumCRC32"], full["ChecksumType"], full["ContentLength"]]
        small = s3.create_multipart_upload(Bucket=BUCKET, Key="small")["UploadId"]
        tiny = [
            s3.upload_part(Bucket=BUCKET, Key="small", UploadId=small, PartNumber=n, Body=b"x" * 10)["ETag"]
            for n in (1, 2)
        ]
        with pytest.raises(s3.exceptions.ClientError) as too_small:
            s3.complete_multipart_upload(
                Bucket=BUCKET,
                Key="small",
                UploadId=small,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), tiny, strict=True)]},
            )
        answers.append(too_small.value.response["Error"]["Code"])
        with pytest.raises(s3.exceptions.ClientError) as wrong_etag:
            s3.complete_multipart_upload(
                Bucket=BUCKET,
                Key="small",
                UploadId=small,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}]},
            )
        answers.append(wrong_etag.value.response["Error"]["Code"])
    return answers


def test_the_patched_s3_answers_exactly_as_moto_does(tmp_path: Path) -> None:
    # GIVEN a 20 MB file (uploaded in three parts)
    path = tmp_path / "input.bin"
    path.write_bytes(os.urandom(20 * MB + 12345))
    # WHEN the same requests are made of moto's S3 as it is and as the local runtime patches it
    plain, patched = _s3_answers(path, patched=False), _s3_answers(path, patched=True)
    # THEN every answer is the same: bodies, ranges, ETags, checksums and errors
    assert patched == plain
    assert "InvalidRange" in plain and "EntityTooSmall" in plain and "InvalidPart" in plain
