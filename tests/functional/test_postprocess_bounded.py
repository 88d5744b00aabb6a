"""Postprocess reads only its job's slice of ``records.parquet``, in bounded batches, whatever the row groups.

An input copied as is (a Parquet input is the run's records) may hold one huge row group; reading whole row groups
cost 1.3 GB for one 50k-record job. The counts below go through wrappers (decoded batches, ranged GETs), never time.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lambdas.postprocess import logic
from lambdas.shared import run_files
from lambdas.shared.models import JobState
from tests.functional.conftest import BUCKET
from tests.functional.test_postprocess import RUN, ok, put_output, read_output, state

ROWS = 50_000


class Counted:
    """What the reader decoded and fetched: rows per decoded batch, bytes per ranged GET."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gets: list[int] = []


class CountingS3:
    """The moto client, recording the size of each ranged GET it answers."""

    def __init__(self, s3: Any, counted: Counted) -> None:
        self._s3, self._counted = s3, counted

    def get_object(self, **kwargs: Any) -> Any:
        answer = self._s3.get_object(**kwargs)
        if "Range" in kwargs:
            self._counted.gets.append(int(answer["ContentLength"]))
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counted:
    """Every batch pyarrow decodes for the slice reader, counted through a ParquetFile subclass."""
    counts = Counted()

    class CountingParquetFile(pq.ParquetFile):
        def iter_batches(self, *args: Any, **kwargs: Any) -> Any:
            for batch in super().iter_batches(*args, **kwargs):
                counts.batches.append(batch.num_rows)
                yield batch

    monkeypatch.setattr(run_files.pq, "ParquetFile", CountingParquetFile)
    return counts


def stage_one_row_group(s3: Any) -> int:
    """records.parquet: 50k rows of incompressible text in ONE row group; returns the object's size."""
    rng = random.Random(3)
    text = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=200)) for _ in range(ROWS)]
    table = pa.table({"id": pa.array(range(ROWS), pa.int64()), "topic": text})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=ROWS, compression="snappy")
    assert pq.ParquetFile(io.BytesIO(buffer.getvalue())).num_row_groups == 1
    s3.put_object(Bucket=BUCKET, Key=f"runs/{RUN}/records.parquet", Body=buffer.getvalue())
    return len(buffer.getvalue())


def run_job(s3: Any, counted: Counted, tmp_path: Path, first_row: int, count: int) -> pa.Table:
    put_output(s3, [ok(i, f"answer {i}") for i in range(first_row, first_row + count)])
    logic.postprocess(JobState.model_validate(state(first_row, count)), s3=CountingS3(s3, counted), workdir=tmp_path)
    return read_output(s3)


def test_a_1k_row_job_decodes_one_bounded_batch_of_a_50k_row_group(s3, counted, tmp_path):
    # GIVEN records.parquet with one row group of 50k rows (about 10 MB)
    size = stage_one_row_group(s3)
    # WHEN postprocess writes the output of a 1k-row job at the start of the file
    out = run_job(s3, counted, tmp_path, first_row=0, count=1_000)
    # THEN the output holds exactly the job's rows, each with its answer
    assert out.column("id").to_pylist() == list(range(1_000))
    assert out.column("response").to_pylist() == [f"answer {i}" for i in range(1_000)]
    # AND the reader decoded one batch of at most SLICE_BATCH_ROWS rows, not the 50k of the row group
    assert counted.batches == [run_files.SLICE_BATCH_ROWS]
    # AND it fetched a bounded part of the object, in ranged GETs of at most the read buffer or one page (a page is
    # read whole; writers cut pages at about 1 MB)
    assert max(counted.gets) <= 2 * run_files.READ_BUFFER_BYTES
    assert sum(counted.gets) < size / 2


def test_a_job_inside_a_huge_row_group_is_read_in_bounded_batches_and_stops_after_its_rows(s3, counted, tmp_path):
    # GIVEN records.parquet with one row group of 50k rows
    stage_one_row_group(s3)
    # WHEN postprocess writes the output of rows 30,000 .. 30,999
    out = run_job(s3, counted, tmp_path, first_row=30_000, count=1_000)
    # THEN every row of the job is there once, in order, and no other row
    assert out.column("id").to_pylist() == list(range(30_000, 31_000))
    assert out.column("error_code").null_count == 1_000
    # AND no decoded batch is larger than SLICE_BATCH_ROWS, and decoding stopped at the batch holding the last row
    assert max(counted.batches) <= run_files.SLICE_BATCH_ROWS
    assert sum(counted.batches) < 31_000 + run_files.SLICE_BATCH_ROWS
    assert sum(counted.batches) < ROWS
    # AND every ranged GET is bounded by the read buffer or one page, never the 10 MB column chunk
    assert max(counted.gets) <= 2 * run_files.READ_BUFFER_BYTES


def test_a_slice_across_many_row_groups_reads_only_the_groups_it_overlaps(s3, counted):
    # GIVEN an object of 10 row groups of 1,000 rows
    table = pa.table({"id": pa.array(range(10_000), pa.int64())})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=1_000)
    s3.put_object(Bucket=BUCKET, Key="k.parquet", Body=buffer.getvalue())
    # WHEN rows 2,500 .. 4,499 are read in batches of 300
    batches = list(run_files.iter_row_range(s3, BUCKET, "k.parquet", 2_500, 2_000, batch_rows=300))
    # THEN they come back once each, in order, in batches of at most 300
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(2_500, 4_500))
    assert max(batch.num_rows for batch in batches) <= 300
    # AND only groups 2, 3 and 4 were decoded (3,000 rows), stopping at the last row needed
    assert sum(counted.batches) <= 3_000
