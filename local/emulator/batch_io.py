"""What a batch job does to S3: find and validate its input, answer every record, write the outputs and manifest.

Everything streams: input is read line by line, answers go through a bounded shuffle buffer into a temporary file that
``upload_fileobj`` sends (multipart when large), so memory stays bounded whatever the job size. The S3 client is
passed in (a plain boto3 client: moto in-process, a moto server, or real S3).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from local.emulator.families import Invocation, RecordError

T = TypeVar("T")

INPUT_SUFFIX = ".jsonl"
OUTPUT_SUFFIX = ".out"
MANIFEST_NAME = "manifest.json.out"
SHUFFLE_BUFFER = 1024
# docs/bedrock-facts.md, Records: "alphanumeric string", 11 characters in every example; the stricter reading.
RECORD_ID = re.compile(r"[A-Za-z0-9]{11}")


class JobFailure(Exception):
    """The job ends ``Failed`` with this message."""


@dataclass(frozen=True)
class Quotas:
    """One model's batch quotas (Bedrock's documented defaults): per-job limits checked while Validating and the cap
    on its submitted + in-progress jobs. Sizes are in decimal bytes: the service's "(in GB)" is read as 10**9, the
    smaller reading (docs/bedrock-facts.md, Batch quotas)."""

    min_records_per_job: int = 100
    max_records_per_file: int = 50_000
    max_records_per_job: int = 50_000
    max_file_bytes: int = 1_000_000_000
    max_job_bytes: int = 5_000_000_000
    max_active_jobs_per_model: int = 20


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return cls(bucket, key)

    def child(self, *parts: str) -> S3Location:
        return S3Location(self.bucket, "/".join([p for p in [self.key.rstrip("/"), *parts] if p]))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class InputFile:
    key: str
    name: str  # path relative to the input prefix, used to name the output file
    size: int
    records: int = 0


@dataclass
class Tally:
    total: int = 0
    success: int = 0
    error: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def processed(self) -> int:
        return self.success + self.error

    def add(self, other: Tally) -> None:
        self.success += other.success
        self.error += other.error
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens

    def manifest(self) -> dict[str, int]:
        return {
            "totalRecordCount": self.total,
            "processedRecordCount": self.processed,
            "successRecordCount": self.success,
            "errorRecordCount": self.error,
            "inputTokenCount": self.input_tokens,
            "outputTokenCount": self.output_tokens,
        }


# ---------------------------------------------------------------- pure record handling


def parse_record(line: bytes, where: str, default_id: str) -> dict[str, Any] | None:
    """One input line -> ``{"recordId", "modelInput"}``; None for a blank line; JobFailure for a malformed one."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError as error:
        raise JobFailure(f"{where} is not valid JSON ({error}); every line must be one JSON record") from None
    if not isinstance(record, dict) or not isinstance(record.get("modelInput"), dict):
        raise JobFailure(f'{where} has no \'modelInput\' object; expected {{"recordId": ..., "modelInput": {{...}}}}')
    record_id = record.get("recordId", default_id)
    if not isinstance(record_id, str) or RECORD_ID.fullmatch(record_id) is None:
        raise JobFailure(
            f'{where} has recordId {json.dumps(record_id)}: a recordId is 11 letters or digits (e.g. "CALL0000001"); '
            "fix it, or leave it out and Bedrock adds one"
        )
    return {"recordId": record_id, "modelInput": record["modelInput"]}


def generated_record_id(key: str, line_number: int) -> str:
    """The id Bedrock assigns to a record without one: 11 characters, stable for the same file and line."""
    return hashlib.sha256(f"{key}:{line_number}".encode()).hexdigest()[:11].upper()


def answer_record(record: dict[str, Any], answer: Callable[[dict[str, Any]], Invocation]) -> tuple[dict, Tally]:
    """The output line for one record and its contribution to the job's counts."""
    try:
        result = answer(record)
    except RecordError as error:
        line = {**record, "error": {"errorCode": error.code, "errorMessage": str(error)}}
        return line, Tally(error=1)
    line = {**record, "modelOutput": result.output}
    return line, Tally(success=1, input_tokens=result.input_tokens, output_tokens=result.output_tokens)


def shuffled(items: Iterable[T], rng: random.Random, buffer_size: int = SHUFFLE_BUFFER) -> Iterator[T]:
    """Yield ``items`` in a scrambled order with at most ``buffer_size`` held at once (fully shuffled below it)."""
    buffer: list[T] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


# ---------------------------------------------------------------- S3


def _lines(s3: Any, bucket: str, key: str) -> Iterator[bytes]:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].iter_lines()


def _records(s3: Any, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(_lines(s3, bucket, key), start=1):
        record = parse_record(line, f"Line {number} of s3://{bucket}/{key}", generated_record_id(key, number))
        if record is not None:
            yield record


def list_input_files(s3: Any, uri: str) -> list[InputFile]:
    """The ``.jsonl`` objects a job reads: the object ``uri`` names, or every one under the folder it names."""
    location = S3Location.parse(uri)
    if location.key.endswith(INPUT_SUFFIX):
        try:
            head = s3.head_object(Bucket=location.bucket, Key=location.key)
        except ClientError:
            return []
        return [InputFile(location.key, location.key.rsplit("/", 1)[-1], head["ContentLength"])]
    prefix = location.key if not location.key or location.key.endswith("/") else location.key + "/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix)
    return [
        InputFile(item["Key"], item["Key"][len(prefix) :], item["Size"])
        for page in pages
        for item in page.get("Contents", [])
        if item["Key"].endswith(INPUT_SUFFIX)
    ]


def scan_input(s3: Any, uri: str, quotas: Quotas) -> tuple[InputFile, ...]:
    """What the Validating step checks: files found, sizes, record format and counts. Raises JobFailure."""
    bucket = S3Location.parse(uri).bucket
    files = list_input_files(s3, uri)
    if not files:
        raise JobFailure(f"No {INPUT_SUFFIX} input file found at {uri}")
    for file in files:
        if file.size > quotas.max_file_bytes:
            raise JobFailure(
                f"Input file s3://{bucket}/{file.key} is {file.size} bytes, over the limit of "
                f"{quotas.max_file_bytes} bytes per file (quota: Batch inference input file size)"
            )
    if sum(file.size for file in files) > quotas.max_job_bytes:
        raise JobFailure(
            f"The job input is over the limit of {quotas.max_job_bytes} bytes per job (quota: Batch inference job size)"
        )
    seen: dict[str, str] = {}  # recordId -> where it first appeared: ids are unique within a job
    counted = tuple(_count_records(s3, bucket, file, quotas, seen) for file in files)
    total = sum(file.records for file in counted)
    if total < quotas.min_records_per_job:
        raise JobFailure(
            f"The job has {total} records, below the minimum of {quotas.min_records_per_job} per job "
            "(quota: Minimum number of records per batch inference job)"
        )
    if total > quotas.max_records_per_job:
        raise JobFailure(
            f"The job has {total} records, over the limit of {quotas.max_records_per_job} per job "
            "(quota: Records per batch inference job)"
        )
    return counted


def _count_records(s3: Any, bucket: str, file: InputFile, quotas: Quotas, seen: dict[str, str]) -> InputFile:
    count = 0
    for count, record in enumerate(_records(s3, bucket, file.key), start=1):
        where = f"record {count} of s3://{bucket}/{file.key}"
        first = seen.setdefault(record["recordId"], where)
        if first != where:
            raise JobFailure(
                f"The recordId {record['recordId']} of {where} is also the recordId of {first}; recordIds must be "
                "unique within a job"
            )
    if count > quotas.max_records_per_file:
        raise JobFailure(
            f"s3://{bucket}/{file.key} has {count} records, over the limit of {quotas.max_records_per_file} per file "
            "(quota: Records per input file per batch inference job)"
        )
    return InputFile(file.key, file.name, file.size, count)


def corrupted(line: bytes) -> bytes:
    """A JSON object line cut in half: never valid JSON (its closing brace is gone)."""
    return line[: len(line) // 2]


def process_file(
    s3: Any,
    bucket: str,
    file: InputFile,
    output: S3Location,
    answer: Callable[[dict[str, Any]], Invocation],
    rng: random.Random,
    *,
    limit: int | None = None,
    corrupt: frozenset[int] = frozenset(),
    corrupted_ids: list[str] | None = None,
) -> Tally:
    """Answer the records of ``file`` and upload ``<output>/<name>.out`` in scrambled order.

    Faults: only the first ``limit`` records are processed (None: all), and the lines of the records at positions
    ``corrupt`` (0-based, input order) are written truncated, their recordIds appended to ``corrupted_ids`` (when
    given). The tally counts every record processed.
    """
    tally = Tally()

    def lines() -> Iterator[bytes]:
        for position, record in enumerate(itertools.islice(_records(s3, bucket, file.key), limit)):
            line, counts = answer_record(record, answer)
            tally.add(counts)
            data = json.dumps(line).encode()
            if position in corrupt:
                data = corrupted(data)
                if corrupted_ids is not None:
                    corrupted_ids.append(str(line["recordId"]))
            yield data + b"\n"

    target = output.child(file.name + OUTPUT_SUFFIX)
    with tempfile.TemporaryFile() as spool:
        spool.writelines(shuffled(lines(), rng))
        spool.seek(0)
        s3.upload_fileobj(spool, target.bucket, target.key)
    return tally


def write_manifest(s3: Any, output: S3Location, tally: Tally) -> None:
    target = output.child(MANIFEST_NAME)
    s3.put_object(Bucket=target.bucket, Key=target.key, Body=json.dumps(tally.manifest()).encode())
