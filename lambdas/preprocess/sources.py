"""Input sources read as streams of Arrow record batches: S3 CSV and Parquet, and Hugging Face datasets.

Memory stays bounded whatever the input size: CSV is read in blocks, Parquet by row groups through ranged GETs,
Hugging Face datasets with ``streaming=True``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from lambdas.shared.errors import InputValidationError
from lambdas.shared.models import ExecutionInput
from lambdas.shared.s3io import S3RangeReader

BATCH_ROWS = 65_536
CSV_BLOCK_BYTES = 16 << 20
SUPPORTED_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def parquet_batches(parquet: pq.ParquetFile) -> Iterator[pa.RecordBatch]:
    """Batches of at most BATCH_ROWS, one row group at a time. Open the file with ``pre_buffer=False``: with
    pre-buffering, pyarrow keeps every row group's buffers while iterating (memory grew with the file's size)."""
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=[group])


class Source(Protocol):
    description: str

    def batches(self) -> Iterator[pa.RecordBatch]: ...

    @property
    def records_object(self) -> tuple[str, str] | None:
        """(bucket, key) of an S3 Parquet object that can serve as the run's records as it is (no re-encoding)."""
        ...


@dataclass
class CsvSource:
    s3: Any
    bucket: str
    key: str
    description: str

    records_object = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"]
        try:
            reader = pacsv.open_csv(body, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES))
            yield from reader
        except pa.ArrowInvalid as exc:
            raise InputValidationError(
                f"s3_uri '{self.description}' could not be read as CSV: {exc}; check that the file is UTF-8 CSV "
                "with a header row and the same columns on every line"
            ) from None


@dataclass
class ParquetSource:
    s3: Any
    bucket: str
    key: str
    size: int
    description: str

    @property
    def records_object(self) -> tuple[str, str]:
        return self.bucket, self.key

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            parquet = pq.ParquetFile(S3RangeReader(self.s3, self.bucket, self.key, self.size), pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputValidationError(
                f"s3_uri '{self.description}' could not be read as Parquet: {exc}; check the file is valid Parquet"
            ) from None
        yield from parquet_batches(parquet)


@dataclass
class HuggingFaceSource:
    dataset_id: str
    split: str
    description: str

    records_object = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        import datasets  # heavy import, only needed for this source

        try:
            dataset = datasets.load_dataset(self.dataset_id, split=self.split, streaming=True)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            # FileNotFoundError: unknown or empty repo; ValueError: unknown split; RuntimeError: a script dataset.
            # ConnectionError (hub unreachable) is not the user's input: it propagates as itself.
            raise InputValidationError(
                f"dataset_id '{self.dataset_id}' with split '{self.split}' could not be loaded: {exc}; check the id "
                "and split on the Hugging Face hub (private datasets need a token; script datasets are unsupported)"
            ) from None
        try:
            for table in dataset.with_format("arrow").iter(batch_size=BATCH_ROWS):
                yield from table.to_batches()
        except pa.ArrowInvalid as exc:
            if "BatchSize must be greater than 0" in str(exc):
                return  # an empty split: the caller reports "no rows"
            raise InputValidationError(
                f"dataset_id '{self.dataset_id}' split '{self.split}' has unreadable data: {exc}"
            ) from None


def open_source(inp: ExecutionInput, s3: Any, data_bucket: str) -> Source:
    if inp.dataset_id is not None:
        return HuggingFaceSource(inp.dataset_id, inp.split, description=f"hf:{inp.dataset_id}[{inp.split}]")
    bucket, key = inp.s3_location
    if bucket != data_bucket:
        raise InputValidationError(
            f"s3_uri '{inp.s3_uri}' is in bucket '{bucket}', but this deployment reads only its own bucket; "
            f"upload the file to s3://{data_bucket}/inputs/ and use that URI"
        )
    kind = SUPPORTED_SUFFIXES.get(PurePosixPath(key).suffix.lower())
    if kind is None:
        raise InputValidationError(
            f"s3_uri '{inp.s3_uri}' has an unsupported file type; use one of {sorted(SUPPORTED_SUFFIXES)}"
        )
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise InputValidationError(
                f"s3_uri '{inp.s3_uri}' does not exist; upload the file first (aws s3 cp FILE {inp.s3_uri})"
            ) from None
        raise
    size = int(head["ContentLength"])
    if size == 0:
        raise InputValidationError(f"s3_uri '{inp.s3_uri}' is an empty file; upload a file with a header and rows")
    if kind == "csv":
        return CsvSource(s3, bucket, key, description=inp.s3_uri or key)
    return ParquetSource(s3, bucket, key, size, description=inp.s3_uri or key)
